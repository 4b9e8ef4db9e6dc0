//! Batch time and interval arithmetic (Spark: `Time`, `Duration.isMultipleOf`).
//!
//! A [`Time`] is a point on the streaming clock in whole milliseconds: milliseconds since the
//! Unix epoch under the system clock, milliseconds since zero under the manual clock used in
//! tests. Intervals are [`std::time::Duration`]s; rivulet only uses whole milliseconds of them.

use std::fmt;
use std::ops::{Add, Sub};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A batch time in milliseconds on the streaming clock (Spark: `Time`).
///
/// Under the system clock, `Time` zero is the Unix epoch (1970-01-01T00:00:00Z) and a batch
/// time is wall-clock milliseconds since then; under the manual clock it is milliseconds
/// since the context's start, which is `Time::ZERO`.
///
/// Batch `t` covers the records received in `(t - batch_interval, t]`; a window at `t` covers
/// `(t - window_duration, t]`.
#[derive(
    Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize,
)]
pub struct Time(i64);

impl Time {
    /// Zero: the Unix epoch under the system clock, the start under the manual clock.
    pub const ZERO: Time = Time(0);
    /// A time later than every batch: the scope of static (non-streaming) RDDs.
    pub const MAX: Time = Time(i64::MAX);

    /// A time `ms` milliseconds after the clock's zero.
    pub const fn from_ms(ms: i64) -> Time {
        Time(ms)
    }

    /// Milliseconds since the clock's zero.
    pub const fn as_ms(self) -> i64 {
        self.0
    }

    /// Whether this time is a whole number of `interval`s after the clock's zero.
    ///
    /// A zero `interval` divides nothing, so the answer is then `false`.
    pub fn is_multiple_of(self, interval: Duration) -> bool {
        let step = duration_ms(interval);
        step != 0 && self.0 % step == 0
    }

    /// The latest multiple of `interval` not after this time (Spark: `Time.floor`).
    ///
    /// # Panics
    /// If `interval` is shorter than one millisecond.
    pub fn floor(self, interval: Duration) -> Time {
        let step = duration_ms(interval);
        assert!(step > 0, "Time::floor needs an interval of at least 1 ms");
        Time(self.0.div_euclid(step) * step)
    }

    /// The times `from + k * step` in `(from, to]`, in increasing order (Spark: `Time.until`
    /// shifted by one step, as `DStream.slice` walks it).
    ///
    /// # Panics
    /// If `step` is shorter than one millisecond.
    pub fn steps_after(from: Time, to: Time, step: Duration) -> impl Iterator<Item = Time> {
        let step = duration_ms(step);
        assert!(step > 0, "Time::steps_after needs a step of at least 1 ms");
        let mut next = from.0.saturating_add(step);
        std::iter::from_fn(move || {
            (next <= to.0).then(|| {
                let t = Time(next);
                next = next.saturating_add(step);
                t
            })
        })
    }
}

impl Add<Duration> for Time {
    type Output = Time;
    fn add(self, rhs: Duration) -> Time {
        Time(self.0.saturating_add(duration_ms(rhs)))
    }
}

impl Sub<Duration> for Time {
    type Output = Time;
    fn sub(self, rhs: Duration) -> Time {
        Time(self.0.saturating_sub(duration_ms(rhs)))
    }
}

impl Sub<Time> for Time {
    type Output = Duration;
    /// The duration from `rhs` to `self`, zero if `rhs` is later.
    fn sub(self, rhs: Time) -> Duration {
        Duration::from_millis(u64::try_from(self.0.saturating_sub(rhs.0)).unwrap_or(0))
    }
}

impl fmt::Display for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ms", self.0)
    }
}

/// Whole milliseconds of `d`, saturating at `i64::MAX`.
pub fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Whether `d` is a positive whole number of `unit`s (both in whole milliseconds).
pub fn is_multiple(d: Duration, unit: Duration) -> bool {
    let (d, unit) = (duration_ms(d), duration_ms(unit));
    unit > 0 && d > 0 && d % unit == 0
}

/// The delay before retry number `retry` (0 for the first) after failures: `initial`
/// doubled `retry` times, at most `max` (saturating; doublings past 16 change nothing more).
/// The one exponential backoff of the receiver supervisor, the executor restarts and the
/// socket receiver's reconnects.
pub fn exponential_backoff(initial: Duration, retry: u32, max: Duration) -> Duration {
    initial.saturating_mul(1 << retry.min(16)).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn backoff_doubles_up_to_its_maximum() {
        let delays: Vec<Duration> = (0..5)
            .map(|r| exponential_backoff(MS(100), r, MS(1000)))
            .collect();
        assert_eq!(delays, [MS(100), MS(200), MS(400), MS(800), MS(1000)]);
        assert_eq!(exponential_backoff(MS(100), u32::MAX, MS(5000)), MS(5000));
    }

    #[test]
    fn arithmetic_and_multiples() {
        let t = Time::from_ms(3000);
        assert_eq!(t + MS(500), Time::from_ms(3500));
        assert_eq!(t - MS(1000), Time::from_ms(2000));
        assert_eq!(t - Time::from_ms(1000), MS(2000));
        assert_eq!(Time::from_ms(1000) - t, MS(0));
        assert!(t.is_multiple_of(MS(1000)));
        assert!(!t.is_multiple_of(MS(700)));
        assert!(!t.is_multiple_of(MS(0)));
        assert_eq!(Time::from_ms(3499).floor(MS(500)), Time::from_ms(3000));
        assert_eq!(Time::from_ms(-1).floor(MS(500)), Time::from_ms(-500));
        assert!(is_multiple(MS(3000), MS(1000)));
        assert!(!is_multiple(MS(0), MS(1000)));
        assert!(!is_multiple(MS(1500), MS(1000)));
        assert_eq!(t.to_string(), "3000 ms");
    }

    #[test]
    fn steps_after_is_left_open_right_closed() {
        let got: Vec<_> =
            Time::steps_after(Time::from_ms(1000), Time::from_ms(4000), MS(1000)).collect();
        assert_eq!(
            got,
            vec![
                Time::from_ms(2000),
                Time::from_ms(3000),
                Time::from_ms(4000)
            ]
        );
        assert_eq!(
            Time::steps_after(Time::from_ms(4000), Time::from_ms(4000), MS(10)).count(),
            0
        );
    }
}
