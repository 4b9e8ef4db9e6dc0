//! Restart policy of supervised actors and receivers: at most `max_restarts` restarts within
//! `period`, with exponential backoff between them (as OTP's intensity/period); past the
//! limit the failure escalates to the streaming context.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How often, and how soon, a failed component is restarted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RestartPolicy {
    /// Restarts allowed within `period` before giving up.
    pub max_restarts: u32,
    /// The window over which restarts are counted.
    pub period: Duration,
    /// The delay before the first restart; doubled for each further one within the period.
    pub initial_backoff: Duration,
    /// The longest delay between restarts.
    pub max_backoff: Duration,
}

impl RestartPolicy {
    /// `max_restarts` within 60 s, starting at `initial_backoff`, at most 10 s apart.
    pub fn new(max_restarts: u32, initial_backoff: Duration) -> RestartPolicy {
        RestartPolicy {
            max_restarts,
            period: Duration::from_secs(60),
            initial_backoff,
            max_backoff: Duration::from_secs(10),
        }
    }
}

/// Counts the restarts of one component under a [`RestartPolicy`].
#[derive(Debug)]
pub struct RestartTracker {
    policy: RestartPolicy,
    recent: VecDeque<Instant>,
}

impl RestartTracker {
    /// A tracker with no restarts yet.
    pub fn new(policy: RestartPolicy) -> RestartTracker {
        RestartTracker {
            policy,
            recent: VecDeque::new(),
        }
    }

    /// The policy it counts under.
    pub fn policy(&self) -> RestartPolicy {
        self.policy
    }

    /// Records a failure at `now`: the delay before restarting, or `None` when the
    /// component failed more than `max_restarts` times within the period.
    pub fn on_failure(&mut self, now: Instant) -> Option<Duration> {
        while self
            .recent
            .front()
            .is_some_and(|t| now.duration_since(*t) > self.policy.period)
        {
            self.recent.pop_front();
        }
        if self.recent.len() >= self.policy.max_restarts as usize {
            return None;
        }
        let retry = u32::try_from(self.recent.len()).unwrap_or(u32::MAX);
        self.recent.push_back(now);
        Some(rivulet_framework::time::exponential_backoff(
            self.policy.initial_backoff,
            retry,
            self.policy.max_backoff,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backs_off_exponentially_then_gives_up_and_forgets_old_failures() {
        let ms = Duration::from_millis;
        let mut t = RestartTracker::new(RestartPolicy::new(3, ms(100)));
        let start = Instant::now();
        assert_eq!(t.on_failure(start), Some(ms(100)));
        assert_eq!(t.on_failure(start), Some(ms(200)));
        assert_eq!(t.on_failure(start), Some(ms(400)));
        assert_eq!(t.on_failure(start), None);
        assert_eq!(t.on_failure(start + Duration::from_secs(61)), Some(ms(100)));
    }
}
