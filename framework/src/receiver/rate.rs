//! Rate control (Spark's backpressure: `RateController`, `PIDRateEstimator`): after each
//! batch, a PID controller estimates how many records per second a receiver's stream can be
//! processed at, from the batch's record count, processing delay and scheduling delay; the
//! receiver's buffer then admits records at that rate (its `store` waits).

use std::time::Duration;

use crate::error::{Error, Result};

/// Spark's `PIDRateEstimator`: the rate a stream can be processed at, from each completed
/// batch (`spark.streaming.backpressure.pid.*`: proportional 1.0, integral 0.2, derivative
/// 0.0, minimum rate 100 records/s).
///
/// The error is the difference between the current rate and the rate the last batch was
/// processed at (records / processing delay); the integral term is the backlog the
/// scheduling delay shows (`scheduling delay × processing rate / batch interval`); the
/// new rate is `rate - P·error - I·backlog - D·d(error)/dt`, at least the minimum.
#[derive(Clone, Debug, PartialEq)]
pub struct PidRateEstimator {
    batch_interval_ms: f64,
    proportional: f64,
    integral: f64,
    derivative: f64,
    min_rate: f64,
    first_run: bool,
    latest_time_ms: i64,
    latest_rate: f64,
    latest_error: f64,
}

impl PidRateEstimator {
    /// An estimator with Spark's gains for batches of `batch_interval`.
    ///
    /// # Errors
    /// [`Error::Config`] for a zero batch interval.
    pub fn new(batch_interval: Duration) -> Result<PidRateEstimator> {
        PidRateEstimator::with_gains(batch_interval, 1.0, 0.2, 0.0, 100.0)
    }

    /// An estimator with the given gains and minimum rate (records/s).
    ///
    /// # Errors
    /// [`Error::Config`] for a zero batch interval, a negative (or NaN) gain, or a minimum
    /// rate that is not positive (as Spark's checks).
    pub fn with_gains(
        batch_interval: Duration,
        proportional: f64,
        integral: f64,
        derivative: f64,
        min_rate: f64,
    ) -> Result<PidRateEstimator> {
        let bad = |m: String| Err(Error::Config(m));
        if batch_interval.is_zero() {
            return bad("rate estimator: the batch interval must be positive".into());
        }
        for (name, gain) in [
            ("proportional", proportional),
            ("integral", integral),
            ("derivative", derivative),
        ] {
            if gain.is_nan() || gain < 0.0 {
                return bad(format!(
                    "rate estimator: the {name} gain must be >= 0, got {gain}"
                ));
            }
        }
        if min_rate.is_nan() || min_rate <= 0.0 {
            return bad(format!(
                "rate estimator: the minimum rate must be > 0, got {min_rate}"
            ));
        }
        Ok(PidRateEstimator {
            batch_interval_ms: batch_interval.as_secs_f64() * 1000.0,
            proportional,
            integral,
            derivative,
            min_rate,
            first_run: true,
            latest_time_ms: -1,
            latest_rate: -1.0,
            latest_error: -1.0,
        })
    }

    /// Feeds the batch completed at `time_ms` that held `records` records and took
    /// `processing_delay` after waiting `scheduling_delay`; returns the new rate
    /// (records/s), or `None` when there is none yet: for the first batch with records,
    /// for a batch without records or processing time, or one not after the last.
    pub fn compute(
        &mut self,
        time_ms: i64,
        records: u64,
        processing_delay: Duration,
        scheduling_delay: Duration,
    ) -> Option<f64> {
        let processing_ms = processing_delay.as_secs_f64() * 1000.0;
        if time_ms <= self.latest_time_ms || records == 0 || processing_ms <= 0.0 {
            return None;
        }
        let since_update_s = (time_ms - self.latest_time_ms) as f64 / 1000.0;
        let processing_rate = records as f64 / processing_ms * 1000.0;
        let error = self.latest_rate - processing_rate;
        let backlog =
            scheduling_delay.as_secs_f64() * 1000.0 * processing_rate / self.batch_interval_ms;
        let d_error = (error - self.latest_error) / since_update_s;
        let new_rate = (self.latest_rate
            - self.proportional * error
            - self.integral * backlog
            - self.derivative * d_error)
            .max(self.min_rate);
        self.latest_time_ms = time_ms;
        if self.first_run {
            self.latest_rate = processing_rate;
            self.latest_error = 0.0;
            self.first_run = false;
            None
        } else {
            self.latest_rate = new_rate;
            self.latest_error = error;
            Some(new_rate)
        }
    }
}

#[cfg(test)]
mod tests {
    //! After Spark's `PIDRateEstimatorSuite`.
    use super::*;

    const B: Duration = Duration::from_millis(100);
    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn the_first_estimate_is_none_and_the_second_is_not() {
        let mut p = PidRateEstimator::new(B).unwrap();
        assert_eq!(p.compute(0, 10, ms(10), ms(0)), None);
        assert!(p.compute(10, 10, ms(10), ms(0)).is_some());
    }

    #[test]
    fn no_estimate_without_a_time_difference_records_or_processing_time() {
        let mut p = PidRateEstimator::new(B).unwrap();
        assert_eq!(p.compute(10, 10, ms(10), ms(0)), None);
        assert_eq!(p.compute(10, 10, ms(10), ms(0)), None, "same time");
        assert_eq!(p.compute(20, 0, ms(10), ms(0)), None, "no records");
        assert_eq!(p.compute(30, 10, ms(0), ms(0)), None, "no processing time");
    }

    #[test]
    fn the_rate_respects_the_minimum() {
        let mut p = PidRateEstimator::with_gains(B, 1.0, 1.0, 0.0, 10.0).unwrap();
        // 1 record in 1 s: a processing rate of 1 record/s, far below the minimum.
        assert_eq!(p.compute(0, 1, Duration::from_secs(1), ms(0)), None);
        for t in 1..10 {
            assert_eq!(
                p.compute(t * 100, 1, Duration::from_secs(1), ms(0)),
                Some(10.0)
            );
        }
    }

    #[test]
    fn with_no_backlog_and_no_error_it_follows_the_processing_speed() {
        // Proportional only: 1000 records in 100 ms, every batch: 10,000 records/s.
        let mut p = PidRateEstimator::with_gains(B, 1.0, 0.0, 0.0, 10.0).unwrap();
        assert_eq!(p.compute(0, 1000, ms(100), ms(0)), None);
        for t in 1..10 {
            assert_eq!(p.compute(t * 100, 1000, ms(100), ms(0)), Some(10_000.0));
        }
    }

    #[test]
    fn a_positive_error_is_corrected_to_the_processing_speed() {
        // The batch after the first is processed at half the speed: the rate follows it.
        let mut p = PidRateEstimator::with_gains(B, 1.0, 0.0, 0.0, 10.0).unwrap();
        assert_eq!(p.compute(0, 1000, ms(100), ms(0)), None);
        assert_eq!(p.compute(100, 500, ms(100), ms(0)), Some(5_000.0));
    }

    #[test]
    fn a_backlog_keeps_the_rate_below_the_processing_speed() {
        // Scheduling delay of half an interval at 10,000 records/s: backlog 5,000; with
        // integral gain 0.2 the rate is 10,000 - 0.2 * 5,000 = 9,000 records/s.
        let mut p = PidRateEstimator::new(B).unwrap();
        assert_eq!(p.compute(0, 1000, ms(100), ms(0)), None);
        let r = p.compute(100, 1000, ms(100), ms(50)).unwrap();
        assert!((r - 9_000.0).abs() < 1e-6, "{r}");
    }

    #[test]
    fn bad_gains_are_refused_naming_them() {
        let e = PidRateEstimator::with_gains(B, -1.0, 0.2, 0.0, 100.0).unwrap_err();
        assert!(e.to_string().contains("proportional"), "{e}");
        let e = PidRateEstimator::with_gains(B, 1.0, 0.2, 0.0, 0.0).unwrap_err();
        assert!(e.to_string().contains("minimum rate"), "{e}");
        assert!(PidRateEstimator::new(Duration::ZERO).is_err());
    }
}
