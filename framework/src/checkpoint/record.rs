//! The checkpoint record format: every value in a checkpoint store is
//!
//! ```text
//! "RVCK" | format version: u32 LE | CRC-32 (IEEE) of the payload: u32 LE | payload
//! ```
//!
//! where the payload is the value in named-field rmp-serde (`to_vec_named`), so fields can be
//! added in later versions. A value whose header, checksum or payload is wrong is a
//! [`CheckpointError::Corrupt`]; one of a newer format is a [`CheckpointError::NewerFormat`],
//! one of a format older than [`OLDEST_FORMAT_VERSION`] a [`CheckpointError::OlderFormat`].
//!
//! Versions: 1 placed state by a hash of std's `Hash` byte stream; 2 places it by
//! [`stable_hash`](crate::partitioner::stable_hash) of the key's MessagePack encoding.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{CheckpointError, Error, Result};

/// The checkpoint format this build writes, and the newest it reads.
pub const FORMAT_VERSION: u32 = 2;

/// The oldest checkpoint format this build reads. Format 1 placed keyed state in partitions
/// by another hash than [`stable_hash`](crate::partitioner::stable_hash): read by this
/// build, a key's old state and its new records would land in different partitions.
pub const OLDEST_FORMAT_VERSION: u32 = 2;

const MAGIC: &[u8; 4] = b"RVCK";
const HEADER: usize = 12;

/// Encodes `value` as a checkpoint record.
///
/// # Errors
/// [`Error::Internal`] if `value` cannot be serialized (a `Serialize` impl that fails).
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    let payload = rmp_serde::to_vec_named(value)
        .map_err(|e| Error::Internal(format!("cannot serialize a checkpoint value: {e}")))?;
    Ok(frame(&payload))
}

/// A checkpoint record around `payload`, a value rmp-serde already serialized (named fields
/// or not: [`decode`] reads structs written either way), e.g. the bytes a stream's
/// [`BlockEncoder`](crate::block::BlockEncoder) wrote for a block that an executor process
/// received, which the coordinator logs as they came. Shapes: `payload.len()` bytes in,
/// 12 more out.
pub fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// Decodes a checkpoint record read from `dir` under `key` (both only for error messages).
///
/// # Errors
/// [`CheckpointError::Corrupt`] for a short, altered or unparsable value;
/// [`CheckpointError::NewerFormat`] for a format newer than [`FORMAT_VERSION`];
/// [`CheckpointError::OlderFormat`] for one older than [`OLDEST_FORMAT_VERSION`].
pub fn decode<T: DeserializeOwned>(bytes: &[u8], dir: &str, key: &str) -> Result<T> {
    let corrupt = |reason: String| {
        Error::from(CheckpointError::Corrupt {
            dir: dir.to_string(),
            key: key.to_string(),
            reason,
        })
    };
    if bytes.len() < HEADER {
        return Err(corrupt(format!(
            "{} bytes, shorter than the {HEADER}-byte header",
            bytes.len()
        )));
    }
    if &bytes[..4] != MAGIC {
        return Err(corrupt("it does not start with the RVCK marker".into()));
    }
    let word =
        |at: usize| u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    let version = word(4);
    if version > FORMAT_VERSION {
        return Err(CheckpointError::NewerFormat {
            dir: dir.to_string(),
            key: key.to_string(),
            found: version,
            supported: FORMAT_VERSION,
        }
        .into());
    }
    if version < OLDEST_FORMAT_VERSION {
        return Err(CheckpointError::OlderFormat {
            dir: dir.to_string(),
            key: key.to_string(),
            found: version,
            oldest: OLDEST_FORMAT_VERSION,
        }
        .into());
    }
    let payload = &bytes[HEADER..];
    let (stored, actual) = (word(8), crc32fast::hash(payload));
    if stored != actual {
        return Err(corrupt(format!(
            "checksum {actual:08x} does not match the stored {stored:08x}"
        )));
    }
    rmp_serde::from_slice(payload).map_err(|e| corrupt(format!("cannot decode: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::CheckpointError;

    fn decode_err(bytes: &[u8]) -> CheckpointError {
        match decode::<Vec<(String, u64)>>(bytes, "/ckpt", "state/k") {
            Err(Error::Checkpoint(e)) => e,
            other => panic!("expected a checkpoint error, got {other:?}"),
        }
    }

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Reading {
        sensor: String,
        value: u64,
    }

    /// A block an executor process received is logged in the bytes its block encoder wrote
    /// (structs as arrays, not maps): framed, they read back as `encode`'s do.
    #[test]
    fn a_framed_payload_without_field_names_decodes_as_an_encoded_value() {
        let value = vec![Reading {
            sensor: "t1".into(),
            value: 7,
        }];
        let positional = rmp_serde::to_vec(&value).unwrap();
        assert_ne!(positional, rmp_serde::to_vec_named(&value).unwrap());
        let framed = frame(&positional);
        assert_eq!(decode::<Vec<Reading>>(&framed, "d", "k").unwrap(), value);
        assert_eq!(
            decode::<Vec<Reading>>(&encode(&value).unwrap(), "d", "k").unwrap(),
            value
        );
        let mut flipped = framed;
        *flipped.last_mut().unwrap() ^= 1;
        assert!(decode_err(&flipped).to_string().contains("checksum"));
    }

    #[test]
    fn round_trips_and_refuses_damage() {
        let value = vec![("the".to_string(), 3u64), ("cat".to_string(), 1)];
        let bytes = encode(&value).unwrap();
        assert_eq!(&bytes[..4], b"RVCK");
        assert_eq!(
            decode::<Vec<(String, u64)>>(&bytes, "d", "k").unwrap(),
            value
        );

        // Truncated: header cut, then payload cut.
        assert!(matches!(
            decode_err(&bytes[..7]),
            CheckpointError::Corrupt { .. }
        ));
        let e = decode_err(&bytes[..bytes.len() - 2]);
        assert!(
            e.to_string().contains("/ckpt") && e.to_string().contains("state/k"),
            "{e}"
        );
        // One flipped payload bit.
        let mut flipped = bytes.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(decode_err(&flipped).to_string().contains("checksum"));
        // A newer format names both versions.
        let mut newer = bytes.clone();
        newer[4..8].copy_from_slice(&7u32.to_le_bytes());
        let e = decode_err(&newer);
        assert_eq!(
            e,
            CheckpointError::NewerFormat {
                dir: "/ckpt".into(),
                key: "state/k".into(),
                found: 7,
                supported: FORMAT_VERSION
            }
        );
        assert!(e.to_string().contains("version 7") && e.to_string().contains("up to 2"));
        // So does an older one (format 1 placed state by another hash).
        let mut older = bytes.clone();
        older[4..8].copy_from_slice(&1u32.to_le_bytes());
        let e = decode_err(&older);
        assert_eq!(
            e,
            CheckpointError::OlderFormat {
                dir: "/ckpt".into(),
                key: "state/k".into(),
                found: 1,
                oldest: OLDEST_FORMAT_VERSION
            }
        );
        assert!(e.to_string().contains("version 1") && e.to_string().contains("from 2"));
    }

    #[test]
    fn named_fields_let_old_records_gain_fields() {
        #[derive(serde::Serialize)]
        struct V1 {
            a: u32,
        }
        #[derive(serde::Deserialize, Debug, PartialEq)]
        struct V2 {
            a: u32,
            #[serde(default)]
            b: Vec<u32>,
        }
        let bytes = encode(&V1 { a: 5 }).unwrap();
        assert_eq!(
            decode::<V2>(&bytes, "d", "k").unwrap(),
            V2 {
                a: 5,
                b: Vec::new()
            }
        );
    }

    /// The checkpoint fuzz target's seed is a real record, so the fuzzer starts from the
    /// payload decoder rather than from bytes the header check refuses.
    #[test]
    fn the_fuzz_seed_is_a_valid_record() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../fuzz/seeds/checkpoint_decode/small"
        );
        let bytes = std::fs::read(path).unwrap();
        let value = vec![("the".to_string(), 3u64), ("cat".to_string(), 1)];
        assert_eq!(bytes, encode(&value).unwrap());
        assert_eq!(
            decode::<Vec<(String, u64)>>(&bytes, "seed", "small").unwrap(),
            value
        );
    }
}
