//! [`HashPartitioner`]: places a key in a partition by a fixed-seed hash (Spark:
//! `HashPartitioner`), the same in every run and process (DESIGN invariant 1).

use std::hash::{Hash, Hasher};

use serde::{Deserialize, Serialize};

/// The pinned 64-bit hash that places keys in partitions: the same value in every run,
/// process, platform and release of rivulet, so a new build reads old checkpoints' state
/// partitions where they were written (DESIGN, "Persistence").
///
/// **Definition (pinned; changing it is a checkpoint format change):** FNV-1a 64 (offset
/// basis `0xcbf29ce484222325`, prime `0x100000001b3`) over the bytes the key's `Hash`
/// implementation writes, with every integer written as its little-endian bytes (`usize`
/// and `isize` as 64-bit), then the `splitmix64` finalizer (`x ^= x >> 30; x *=
/// 0xbf58476d1ce4e5b9; x ^= x >> 27; x *= 0x94d049bb133111eb; x ^= x >> 31`) so that the
/// high bits, which [`HashPartitioner`] uses, depend on every byte. For example
/// `stable_hash("the") == 0xac65_c459_0dd7_1fe3` (a `str` writes its bytes, then `0xff`).
pub fn stable_hash<K: Hash + ?Sized>(value: &K) -> u64 {
    let mut h = StableHasher::default();
    value.hash(&mut h);
    h.finish()
}

/// The [`Hasher`] behind [`stable_hash`] (FNV-1a 64 over little-endian bytes, `splitmix64`
/// finalizer). Never use a hasher crate's output for placement: it may change between its
/// releases.
#[derive(Clone, Copy, Debug)]
pub struct StableHasher {
    state: u64,
}

impl Default for StableHasher {
    fn default() -> Self {
        StableHasher {
            state: 0xcbf2_9ce4_8422_2325,
        }
    }
}

impl Hasher for StableHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.state ^= u64::from(b);
            self.state = self.state.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    fn write_u8(&mut self, i: u8) {
        self.write(&[i]);
    }
    fn write_u16(&mut self, i: u16) {
        self.write(&i.to_le_bytes());
    }
    fn write_u32(&mut self, i: u32) {
        self.write(&i.to_le_bytes());
    }
    fn write_u64(&mut self, i: u64) {
        self.write(&i.to_le_bytes());
    }
    fn write_u128(&mut self, i: u128) {
        self.write(&i.to_le_bytes());
    }
    fn write_usize(&mut self, i: usize) {
        self.write_u64(i as u64);
    }
    fn write_i8(&mut self, i: i8) {
        self.write_u8(i as u8);
    }
    fn write_i16(&mut self, i: i16) {
        self.write_u16(i as u16);
    }
    fn write_i32(&mut self, i: i32) {
        self.write_u32(i as u32);
    }
    fn write_i64(&mut self, i: i64) {
        self.write_u64(i as u64);
    }
    fn write_i128(&mut self, i: i128) {
        self.write_u128(i as u128);
    }
    fn write_isize(&mut self, i: isize) {
        self.write_u64(i as i64 as u64);
    }
    fn finish(&self) -> u64 {
        let mut x = self.state;
        x ^= x >> 30;
        x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x ^= x >> 27;
        x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^ (x >> 31)
    }
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
        // Multiply-shift uses the hash's high bits, which the finalizer mixes.
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

    /// FNV-1a 64 of the bytes, finalized with splitmix64 — computed here by hand, not by
    /// the hasher under test.
    fn reference(bytes: &[u8]) -> u64 {
        let mut h: u64 = 0xcbf29ce484222325;
        for &b in bytes {
            h = (h ^ b as u64).wrapping_mul(0x100000001b3);
        }
        h = (h ^ (h >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
        h = (h ^ (h >> 27)).wrapping_mul(0x94d049bb133111eb);
        h ^ (h >> 31)
    }

    #[test]
    fn the_hash_is_pinned() {
        // A str writes its bytes then 0xff; integers are little-endian, usize as 64 bits.
        assert_eq!(stable_hash("the"), reference(b"the\xff"));
        assert_eq!(stable_hash(&7u32), reference(&[7, 0, 0, 0]));
        assert_eq!(stable_hash(&7usize), reference(&[7, 0, 0, 0, 0, 0, 0, 0]));
        assert_eq!(stable_hash(&-1i16), reference(&[0xff, 0xff]));
        // Pinned values: a new build must place keys where old checkpoints put them.
        assert_eq!(stable_hash("the"), 0xac65_c459_0dd7_1fe3);
        assert_eq!(HashPartitioner::new(8).partition("the"), 5);
        assert_eq!(HashPartitioner::new(8).partition(&12345u64), 5);
    }
}
