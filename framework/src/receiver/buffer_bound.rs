//! [`BufferBound`]: how many records a receiver's buffer may hold, by time at the rate the
//! executors were measured to process.
//!
//! A buffer bounded by a fixed record count caps throughput at about
//! `count / (batch interval + processing time)` whatever the executors could do: at 1 s
//! batches, 500 000 records held a pipeline that processes 2 M records/s to 0.5 M. So the
//! bound follows the work instead: after each batch the buffer may hold what the executors
//! process in [`time`](BufferBound::time) at the rate that batch was processed at (records
//! of the stream / processing time), never less than the configured floor. At a steady
//! state a buffer holds the batch being filled and the batch being processed, under two
//! batch intervals of input at a rate the executors sustain; the default time of three
//! batch intervals leaves room for that, and still bounds memory to a few batch intervals
//! of what the executors can take in (rate control, when on, keeps the input near that rate).

use std::time::Duration;

/// The bound on a receiver's stored-but-unfinished records.
///
/// # Examples
/// ```
/// use std::time::Duration;
/// use rivulet_framework::receiver::BufferBound;
///
/// let bound = BufferBound::new(500_000, Duration::from_secs(3), 1 << 30);
/// // 1 M records processed in 250 ms: 4 M records/s, 3 s of it.
/// assert_eq!(bound.after_batch(1_000_000, Duration::from_millis(250)), 12_000_000);
/// // A light batch never takes the bound below the floor.
/// assert_eq!(bound.after_batch(10, Duration::from_millis(5)), 500_000);
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BufferBound {
    floor: usize,
    time: Duration,
    ceiling: usize,
}

impl BufferBound {
    /// A bound of at least `floor` records (also the bound before the first batch), at
    /// most `ceiling`, holding `time` of input at the measured processing rate.
    pub fn new(floor: usize, time: Duration, ceiling: usize) -> BufferBound {
        let floor = floor.max(1);
        BufferBound {
            floor,
            time,
            ceiling: ceiling.max(floor),
        }
    }

    /// The bound before any batch was measured, and the least bound: the floor.
    pub fn floor(&self) -> usize {
        self.floor
    }

    /// How long the buffered records take to process at the measured rate.
    pub fn time(&self) -> Duration {
        self.time
    }

    /// The bound after a batch that processed `records` records of the stream in
    /// `processing` (its processing delay): `records / processing × time`, clamped to
    /// `[floor, ceiling]`. A batch without records, or measured at zero time, gives the
    /// floor.
    pub fn after_batch(&self, records: usize, processing: Duration) -> usize {
        let secs = processing.as_secs_f64();
        if records == 0 || secs <= 0.0 {
            return self.floor;
        }
        let bound = records as f64 / secs * self.time.as_secs_f64();
        // `as` saturates a float past usize::MAX; the clamp then applies the ceiling.
        (bound.ceil() as usize).clamp(self.floor, self.ceiling)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bound_is_time_at_the_measured_rate_within_floor_and_ceiling() {
        let b = BufferBound::new(100, Duration::from_millis(300), 10_000);
        // 1,000 records in 100 ms = 10,000/s; 300 ms of it = 3,000.
        assert_eq!(b.after_batch(1_000, Duration::from_millis(100)), 3_000);
        assert_eq!(
            b.after_batch(1_000, Duration::from_millis(1)),
            10_000,
            "ceiling"
        );
        assert_eq!(b.after_batch(1, Duration::from_millis(100)), 100, "floor");
        assert_eq!(b.after_batch(0, Duration::from_millis(100)), 100);
        assert_eq!(b.after_batch(1_000, Duration::ZERO), 100);
        assert_eq!(b.floor(), 100);
        assert_eq!(b.time(), Duration::from_millis(300));
    }

    #[test]
    fn a_ceiling_below_the_floor_is_the_floor() {
        let b = BufferBound::new(100, Duration::from_secs(1), 10);
        assert_eq!(b.after_batch(1_000_000, Duration::from_millis(1)), 100);
        assert_eq!(BufferBound::new(0, Duration::from_secs(1), 0).floor(), 1);
    }
}
