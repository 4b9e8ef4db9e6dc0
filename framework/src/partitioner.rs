//! [`HashPartitioner`]: places a key in a partition by a fixed-seed hash (Spark:
//! `HashPartitioner`), the same in every run and process (DESIGN invariant 1).

use std::hash::{Hash, Hasher};

use serde::{Deserialize, Serialize};

/// A fixed-seed 64-bit hash of `value` (FxHash), stable across runs and processes of the
/// same build.
pub fn stable_hash<K: Hash + ?Sized>(value: &K) -> u64 {
    let mut h = rustc_hash::FxHasher::default();
    value.hash(&mut h);
    h.finish()
}

/// Places keys into `num_partitions` partitions by [`stable_hash`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub struct HashPartitioner {
    num_partitions: usize,
}

impl HashPartitioner {
    /// A partitioner into `num_partitions` partitions.
    ///
    /// # Panics
    /// If `num_partitions` is zero.
    pub fn new(num_partitions: usize) -> HashPartitioner {
        assert!(
            num_partitions > 0,
            "a HashPartitioner needs at least one partition"
        );
        HashPartitioner { num_partitions }
    }

    /// How many partitions.
    pub fn num_partitions(&self) -> usize {
        self.num_partitions
    }

    /// The partition of `key`, in `0..num_partitions`.
    #[inline]
    pub fn partition<K: Hash + ?Sized>(&self, key: &K) -> usize {
        // Multiply-shift uses the hash's high bits, which FxHash mixes best.
        ((u128::from(stable_hash(key)) * self.num_partitions as u128) >> 64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_are_in_range_stable_and_spread() {
        let p = HashPartitioner::new(4);
        let mut counts = [0usize; 4];
        for i in 0..4000 {
            let key = format!("word{i}");
            let part = p.partition(&key);
            assert_eq!(part, p.partition(&key));
            counts[part] += 1;
        }
        assert!(counts.iter().all(|&c| c > 700), "skewed: {counts:?}");
        assert_eq!(HashPartitioner::new(1).partition("x"), 0);
    }
}
