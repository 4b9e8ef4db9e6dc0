use std::collections::BTreeMap;
use std::fmt::Debug;

use proptest::prelude::*;
use serde::ser::{Error as _, SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};

use super::*;

/// FNV-1a 64 of `bytes`, finalized with splitmix64: the definition, written out here
/// rather than taken from the code under test.
fn reference(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for &b in bytes {
        h = (h ^ b as u64).wrapping_mul(0x100000001b3);
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d049bb133111eb);
    h ^ (h >> 31)
}

/// The hash of `key` is the reference hash of what rmp-serde writes for it.
#[track_caller]
fn check<K: Serialize + Debug + ?Sized>(key: &K) {
    let bytes = rmp_serde::to_vec(key).expect("rmp-serde encodes the test key");
    assert_eq!(
        stable_hash(key),
        reference(&bytes),
        "{key:?} (rmp-serde bytes, first 16: {:02x?})",
        &bytes[..bytes.len().min(16)]
    );
}

#[derive(Serialize, Debug)]
struct Point {
    x: i32,
    name: String,
    tags: Vec<u8>,
}

#[derive(Serialize, Debug)]
struct Meters(u64);

#[derive(Serialize, Debug)]
struct Pair(String, i16);

#[derive(Serialize, Debug)]
struct Nothing;

#[derive(Serialize, Debug)]
enum Event {
    Start,
    Click(u32),
    Move(i64, i64),
    Rename { from: String, to: String },
}

/// Bytes through `serialize_bytes` (what `serde_bytes` does), which rmp writes as bin.
#[derive(Debug)]
struct Bytes(Vec<u8>);

impl Serialize for Bytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

/// A sequence (or map, of pairs) whose impl does not give its length up front.
#[derive(Debug)]
struct Unsized<T>(Vec<T>, bool);

impl<T: Serialize> Serialize for Unsized<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.1 {
            let mut m = s.serialize_map(None)?;
            for (i, x) in self.0.iter().enumerate() {
                m.serialize_entry(&i, x)?;
            }
            m.end()
        } else {
            let mut q = s.serialize_seq(None)?;
            for x in &self.0 {
                q.serialize_element(x)?;
            }
            q.end()
        }
    }
}

#[test]
fn the_hash_is_fnv1a_splitmix_of_the_rmp_serde_encoding() {
    // Strings at every header boundary: fixstr, str8, str16, str32.
    for n in [0, 1, 31, 32, 255, 256, 65_535, 65_536, 70_000] {
        check(&"x".repeat(n));
        check("x".repeat(n).as_str());
    }
    check("naïve 🦀");
    // Unsigned integers at every MessagePack size boundary.
    let unsigned = [
        0u64,
        1,
        127,
        128,
        255,
        256,
        65_535,
        65_536,
        u32::MAX as u64,
        u32::MAX as u64 + 1,
        u64::MAX - 1,
        u64::MAX,
    ];
    for v in unsigned {
        check(&v);
        check(&(v as usize));
        check(&(v as u32));
        check(&(v as u16));
        check(&(v as u8));
    }
    // Signed, positive and negative, at every boundary.
    let signed = [
        0i64,
        1,
        127,
        128,
        255,
        256,
        65_535,
        65_536,
        i32::MAX as i64,
        i32::MAX as i64 + 1,
        u32::MAX as i64,
        u32::MAX as i64 + 1,
        i64::MAX,
        -1,
        -31,
        -32,
        -33,
        -127,
        -128,
        -129,
        -32_767,
        -32_768,
        -32_769,
        i32::MIN as i64 + 1,
        i32::MIN as i64,
        i32::MIN as i64 - 1,
        i64::MIN + 1,
        i64::MIN,
    ];
    for v in signed {
        check(&v);
        check(&(v as isize));
        check(&(v as i32));
        check(&(v as i16));
        check(&(v as i8));
    }
    check(&i128::MIN);
    check(&u128::MAX);
    check(&1.5f32);
    check(&-0.0f64);
    check(&f64::NAN);
    check(&true);
    check(&false);
    check(&'a');
    check(&'🦀');
    check(&());
    // Tuples, nested tuples, options, sequences of every array header.
    check(&("the".to_string(), 7u32));
    check(&(("a".to_string(), -1i8), (2u64, ("b", true)), ()));
    check(&Some("x".to_string()));
    check(&None::<u32>);
    check(&Some(Some(0u8)));
    check(&Some(None::<u8>));
    for n in [0usize, 1, 15, 16, 65_535, 65_536] {
        check(&vec![7u32; n]);
        check(&vec![("k".to_string(), n); n.min(20)]);
    }
    check(&[1u8, 2, 3]);
    check(&vec![200u8, 201]);
    check(&vec!["a".to_string(), String::new()]);
    // Structs (compact: fields without names), newtype and unit structs, enums.
    check(&Point {
        x: -5,
        name: "p".into(),
        tags: vec![1, 2],
    });
    check(&Meters(1_000_000));
    check(&Pair("w".into(), -300));
    check(&Nothing);
    check(&Event::Start);
    check(&Event::Click(9));
    check(&Event::Move(-1, i64::MAX));
    check(&Event::Rename {
        from: "a".into(),
        to: "b".into(),
    });
    check(&vec![Event::Start, Event::Click(1)]);
    // Maps of every header, with non-string keys too.
    for n in [0u32, 1, 15, 16, 300] {
        let m: BTreeMap<u32, String> = (0..n).map(|i| (i, i.to_string())).collect();
        check(&m);
    }
    check(&BTreeMap::from([((1u8, 2u8), vec![true])]));
    // Bytes as bytes: bin8, bin16, bin32.
    for n in [0usize, 255, 256, 65_535, 65_536] {
        check(&Bytes(vec![0xab; n]));
    }
    // Lengths not given up front: buffered, then the counted header (nested too).
    for n in [0usize, 3, 16, 70_000] {
        check(&Unsized(vec![1u16; n], false));
        check(&Unsized(vec!["v"; n.min(40)], true));
    }
    check(&Unsized(vec![Unsized(vec![5u8; 17], false)], false));
    check(&(Unsized(vec![("k", Unsized(vec![-1i8], true))], true), 1u8));
}

/// A key whose `Serialize` impl writes a string, then fails.
#[derive(Debug)]
struct Failing {
    inside_unsized: bool,
}

impl Serialize for Failing {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut q = s.serialize_seq(if self.inside_unsized { None } else { Some(2) })?;
        q.serialize_element("ok")?;
        Err(S::Error::custom("cannot encode this key"))
    }
}

#[test]
fn a_key_that_cannot_be_encoded_has_a_fixed_documented_hash() {
    // The bytes up to the failure (array header, "ok"), then 0xc1.
    let expected = reference(&[0x92, 0xa2, b'o', b'k', 0xc1]);
    assert_eq!(
        stable_hash(&Failing {
            inside_unsized: false
        }),
        expected
    );
    // An unfinished sequence of unknown length contributes nothing.
    let inside = Failing {
        inside_unsized: true,
    };
    assert_eq!(stable_hash(&inside), reference(&[0xc1]));
    assert_eq!(stable_hash(&(1u8, &inside)), reference(&[0x92, 0x01, 0xc1]));
    let p = HashPartitioner::new(8).partition(&inside);
    assert!(p < 8);
}

#[test]
fn the_hash_is_pinned() {
    // Pinned values: a new build must place keys where old checkpoints put them. If one of
    // these changes, the checkpoint format changed (a new FORMAT_VERSION).
    let tuple = ("the".to_string(), 7u32);
    assert_eq!(stable_hash("the"), reference(&[0xa3, b't', b'h', b'e']));
    assert_eq!(stable_hash(&12345u64), reference(&[0xcd, 0x30, 0x39]));
    assert_eq!(
        stable_hash(&tuple),
        reference(&[0x92, 0xa3, b't', b'h', b'e', 0x07])
    );
    assert_eq!(stable_hash("the"), 0xca07_2bff_606c_4c25);
    assert_eq!(stable_hash(&12345u64), 0x9e78_4026_150f_4cd8);
    assert_eq!(stable_hash(&tuple), 0x5fb9_8524_8f24_39e6);
    let p = HashPartitioner::new(8);
    assert_eq!(p.partition("the"), 6);
    assert_eq!(p.partition(&12345u64), 4);
    assert_eq!(p.partition(&tuple), 2);
    // A `&str` and a `String`, an `Option`'s `Some` and its value, are one key.
    assert_eq!(p.partition("the"), p.partition(&"the".to_string()));
    assert_eq!(stable_hash(&Some(12345u64)), stable_hash(&12345u64));
}

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
    let mut counts = [0usize; 4];
    for i in 0..4000u64 {
        counts[p.partition(&i)] += 1;
    }
    assert!(counts.iter().all(|&c| c > 700), "skewed: {counts:?}");
    assert_eq!(HashPartitioner::new(1).partition("x"), 0);
}

proptest! {
    #[test]
    fn the_hash_of_a_key_is_the_hash_of_its_rmp_serde_bytes(
        s in ".{0,80}",
        u in any::<u64>(),
        i in any::<i64>(),
        n in any::<u32>(),
    ) {
        let rmp = |bytes: Vec<u8>| reference(&bytes);
        prop_assert_eq!(stable_hash(&s), rmp(rmp_serde::to_vec(&s).unwrap()));
        prop_assert_eq!(stable_hash(&u), rmp(rmp_serde::to_vec(&u).unwrap()));
        prop_assert_eq!(stable_hash(&i), rmp(rmp_serde::to_vec(&i).unwrap()));
        let pair = (s, n);
        prop_assert_eq!(stable_hash(&pair), rmp(rmp_serde::to_vec(&pair).unwrap()));
    }
}
