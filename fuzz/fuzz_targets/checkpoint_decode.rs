//! The checkpoint record decoder returns a value or a `CheckpointError` for any bytes, never
//! panics; and what it accepts re-encodes to a record that decodes to the same value.
//!
//! Each input is decoded twice: as is (header, version and checksum checks), and with its
//! header rewritten to a valid one whose CRC matches the rest, so that the fuzzer reaches
//! the payload decoder instead of stopping at the checksum.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rivulet_framework::checkpoint::{decode, encode, FORMAT_VERSION};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::fmt::Debug;

/// A record shaped like checkpoint metadata: named fields, nested values, a map.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Meta {
    batch_time: i64,
    pending: Vec<i64>,
    files: Vec<String>,
    offsets: std::collections::BTreeMap<String, u64>,
}

/// Decodes `bytes` as a `T`; if accepted, checks that it round-trips.
fn check<T: Serialize + DeserializeOwned + PartialEq + Debug>(bytes: &[u8]) {
    if let Ok(value) = decode::<T>(bytes, "fuzz", "key") {
        let again = encode(&value).expect("a decoded value encodes");
        assert_eq!(decode::<T>(&again, "fuzz", "key").expect("round trip"), value);
    }
}

/// `bytes` with a valid 12-byte header: magic, this format, the CRC of the rest.
fn with_valid_header(bytes: &[u8]) -> Option<Vec<u8>> {
    let payload = bytes.get(12..)?;
    let mut fixed = Vec::with_capacity(bytes.len());
    fixed.extend_from_slice(b"RVCK");
    fixed.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    fixed.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    fixed.extend_from_slice(payload);
    Some(fixed)
}

fuzz_target!(|data: &[u8]| {
    for bytes in std::iter::once(data.to_vec()).chain(with_valid_header(data)) {
        check::<Meta>(&bytes);
        // Shaped like saved state: (key, count) pairs.
        check::<Vec<(String, u64)>>(&bytes);
        let _ = decode::<Vec<u8>>(&bytes, "fuzz", "state");
    }
});
