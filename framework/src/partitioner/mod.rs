//! [`HashPartitioner`]: places a key in a partition by [`stable_hash`], a pinned hash of
//! the key's MessagePack encoding (Spark: `HashPartitioner`), the same in every run,
//! process and build (DESIGN invariant 1 and "Persistence").

mod encoding;

use serde::{Deserialize, Serialize};

use encoding::{Encoder, Sink};

/// The pinned 64-bit hash that places keys in partitions: the same value in every run,
/// process, platform, and release of rivulet and of Rust, so a new build reads old
/// checkpoints' state partitions where they were written (DESIGN, "Persistence"). It reads
/// the key through its `serde::Serialize` impl, never through `std::hash::Hash`, whose byte
/// stream std does not promise to keep between Rust releases.
///
/// **Definition** (pinned: it is part of the checkpoint format, so changing it needs a new
/// [`FORMAT_VERSION`](crate::checkpoint::FORMAT_VERSION)):
///
/// `stable_hash(k) = splitmix64(fnv1a_64(msgpack(k)))`, where
///
/// * `msgpack(k)` is the MessagePack encoding of `k` that `rmp_serde::to_vec` (rmp-serde
///   1.3, compact: structs without field names) writes, with serde's non-human-readable
///   forms (`is_human_readable() == false`). All multi-byte numbers are big-endian:
///   * `bool`: `0xc2` (false), `0xc3` (true). `()`, `None`: nil `0xc0`. `Some(x)`: `x`.
///   * Unsigned integers (`u8`..`u64`, `usize`), and signed ones that are `>= 0`: the
///     smallest of positive fixint (`0x00..=0x7f`), uint8 `0xcc`, uint16 `0xcd`, uint32
///     `0xce`, uint64 `0xcf`, then the value. Negative integers: negative fixint
///     (`0xe0..=0xff`) for -32..=-1, else the smallest of int8 `0xd0` (to -128), int16
///     `0xd1`, int32 `0xd2`, int64 `0xd3`, then the value. `i128`/`u128`: bin8 of their
///     16 bytes (`0xc4 0x10 ...`).
///   * `f32`: `0xca` and its IEEE 754 bits; `f64`: `0xcb` and its bits.
///   * `str`/`String` of `n` UTF-8 bytes: fixstr `0xa0 | n` (n < 32), str8 `0xd9 n`
///     (n < 256), str16 `0xda` (n < 65536) or str32 `0xdb` with a 2- or 4-byte `n`, then
///     the bytes. A `char`: its UTF-8 as a string.
///   * Bytes given as bytes (`serialize_bytes`, e.g. `serde_bytes`): bin8 `0xc4`, bin16
///     `0xc5` or bin32 `0xc6` with `n`, then the bytes. (A `Vec<u8>` is a sequence.)
///   * Sequences (`Vec`, slices, sets), tuples, tuple structs, and structs (their fields in
///     declaration order, without names): fixarray `0x90 | n` (n < 16), array16 `0xdc` or
///     array32 `0xdd` with `n`, then each element. A unit struct: `0x90`. A newtype struct:
///     its inner value (also when named `_ExtStruct`, where rmp-serde writes an ext type).
///   * Maps: fixmap `0x80 | n`, map16 `0xde` or map32 `0xdf` with `n` entries, then key and
///     value of each in the map's iteration order (so a `HashMap` is no key to hash).
///   * Enum variants, by name as rmp-serde writes them: a unit variant is its name as a
///     string; a newtype variant is `0x81`, the name, the value; a tuple or struct variant
///     is `0x81`, the name, an array of its fields.
///   * A sequence or map whose impl does not give its length up front gets the header of the
///     count it turns out to have, as rmp-serde writes it. A length past `u32::MAX` is cut to
///     its low 32 bits, as rmp-serde does.
/// * `fnv1a_64`: offset basis `0xcbf29ce484222325`; per byte `h ^= byte; h *=
///   0x100000001b3` (wrapping).
/// * `splitmix64`: `x ^= x >> 30; x *= 0xbf58476d1ce4e5b9; x ^= x >> 27; x *=
///   0x94d049bb133111eb; x ^= x >> 31` (wrapping), so that the high bits, which
///   [`HashPartitioner`] uses, depend on every byte.
///
/// **A key that cannot be encoded** (its `Serialize` impl returns an error): the hash is of
/// the bytes encoded until the failure (without those of an unfinished sequence or map of
/// unknown length), followed by the byte `0xc1`, which MessagePack never uses. It never
/// panics, and such a key still has one fixed place.
///
/// Nothing is allocated for a key, except to count a sequence or map of unknown length.
///
/// # Examples
/// ```
/// use rivulet_framework::partitioner::stable_hash;
/// // "the" is fixstr 0xa3 followed by its bytes.
/// assert_eq!(stable_hash("the"), 0xca07_2bff_606c_4c25);
/// assert_eq!(stable_hash("the"), stable_hash(&"the".to_string()));
/// ```
pub fn stable_hash<K: Serialize + ?Sized>(key: &K) -> u64 {
    let mut encoder = Encoder {
        sink: Fnv1a::default(),
    };
    if key.serialize(&mut encoder).is_err() {
        encoder.sink.put(&[UNENCODABLE]);
    }
    splitmix64(encoder.sink.state)
}

/// Appended to the bytes of a key whose `Serialize` impl failed: a byte MessagePack never
/// uses ("never used" in the specification), so no encodable key ends in it.
const UNENCODABLE: u8 = 0xc1;

/// FNV-1a 64 over the bytes put into it.
#[derive(Clone, Copy, Debug)]
struct Fnv1a {
    state: u64,
}

impl Default for Fnv1a {
    fn default() -> Self {
        Fnv1a {
            state: 0xcbf2_9ce4_8422_2325,
        }
    }
}

impl Sink for Fnv1a {
    #[inline]
    fn put(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.state ^= u64::from(b);
            self.state = self.state.wrapping_mul(FNV_PRIME);
        }
    }
    #[inline]
    fn put_byte(&mut self, byte: u8) {
        self.state = (self.state ^ u64::from(byte)).wrapping_mul(FNV_PRIME);
    }
}

const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

#[inline]
fn splitmix64(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
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

    /// The partition of `key`, in `0..num_partitions`: `(stable_hash(key) * num_partitions)
    /// >> 64` in 128-bit arithmetic (see [`stable_hash`]; pinned as it is).
    #[inline]
    pub fn partition<K: Serialize + ?Sized>(&self, key: &K) -> usize {
        // Multiply-shift uses the hash's high bits, which the finalizer mixes.
        ((u128::from(stable_hash(key)) * self.num_partitions as u128) >> 64) as usize
    }

    /// `pairs` cut into one bucket per partition by [`partition`](HashPartitioner::partition)
    /// of each key, in order within a bucket (a shuffle map task's output).
    pub(crate) fn buckets<K: Serialize, V>(
        &self,
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Vec<Vec<(K, V)>> {
        let mut buckets: Vec<Vec<(K, V)>> = (0..self.num_partitions).map(|_| Vec::new()).collect();
        for (k, v) in pairs {
            buckets[self.partition(&k)].push((k, v));
        }
        buckets
    }
}

#[cfg(test)]
mod tests;
