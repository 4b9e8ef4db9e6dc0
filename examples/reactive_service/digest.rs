//! [`CountDigest`]: per-user event counts in 16 bytes, whatever the number of users, so that
//! the service, the analytics and the generator can each keep theirs for months and still
//! be compared user by user at the end.

use std::sync::atomic::{AtomicU64, Ordering};

/// An order-independent fingerprint of per-user counts: the number of events and the
/// wrapping sum, over the events, of a 64-bit hash of their user (rivulet's `stable_hash`).
/// Per-user counts `c_u` give `sum = Σ c_u · h(u) mod 2^64`, however the events are split
/// into sessions or batches, so two digests of the same per-user counts are equal; counts
/// that differ by `d_u` give equal digests only if `Σ d_u · h(u) ≡ 0 mod 2^64` (for one user
/// counted wrong by `d`, only if `d · h(u)` is a multiple of 2^64: never for `|d| < 2^k`
/// when `h(u)` has fewer than `64 - k` trailing zero bits).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CountDigest {
    /// Events counted.
    pub events: u64,
    /// The wrapping sum of the events' user hashes.
    pub sum: u64,
}

fn user_hash(user: &str) -> u64 {
    rivulet::framework::partitioner::stable_hash(user)
}

impl CountDigest {
    /// Counts `n` events of `user`.
    pub fn add(&mut self, user: &str, n: u64) {
        self.events = self.events.wrapping_add(n);
        self.sum = self.sum.wrapping_add(user_hash(user).wrapping_mul(n));
    }
}

/// A [`CountDigest`] that many threads add to without a lock.
#[derive(Debug, Default)]
pub struct AtomicCountDigest {
    events: AtomicU64,
    sum: AtomicU64,
}

impl AtomicCountDigest {
    /// Counts one event of `user` (atomic additions wrap, as [`CountDigest::add`]).
    pub fn add_one(&self, user: &str) {
        self.events.fetch_add(1, Ordering::Relaxed);
        self.sum.fetch_add(user_hash(user), Ordering::Relaxed);
    }

    /// The digest so far (read once the adders are done for an exact value).
    pub fn get(&self) -> CountDigest {
        CountDigest {
            events: self.events.load(Ordering::Relaxed),
            sum: self.sum.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_counts_split_differently_give_equal_digests_and_a_wrong_count_does_not() {
        let mut per_event = CountDigest::default();
        for user in ["ann", "bob", "ann", "cy", "ann", "bob"] {
            per_event.add(user, 1);
        }
        // The same counts, added per session instead of per event.
        let mut sessions = CountDigest::default();
        sessions.add("bob", 2);
        sessions.add("ann", 1);
        sessions.add("ann", 2);
        sessions.add("cy", 1);
        assert_eq!(per_event, sessions);
        let mut moved = CountDigest::default();
        moved.add("ann", 2);
        moved.add("bob", 3);
        moved.add("cy", 1);
        assert_eq!(moved.events, per_event.events);
        assert_ne!(moved, per_event, "one event moved from ann to bob is seen");
    }
}
