//! The checkpoint record decoder returns a value or a `CheckpointError` for any bytes, never
//! panics; and what it accepts re-encodes to a record that decodes to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rivulet_framework::checkpoint::{decode, encode};
use serde::{Deserialize, Serialize};

/// A record shaped like checkpoint metadata: named fields, nested values, a map.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Meta {
    batch_time: i64,
    pending: Vec<i64>,
    files: Vec<String>,
    offsets: std::collections::BTreeMap<String, u64>,
}

fuzz_target!(|data: &[u8]| {
    if let Ok(meta) = decode::<Meta>(data, "fuzz", "meta") {
        let again = encode(&meta).expect("a decoded value encodes");
        assert_eq!(decode::<Meta>(&again, "fuzz", "meta").expect("round trip"), meta);
    }
    let _ = decode::<Vec<u8>>(data, "fuzz", "state");
});
