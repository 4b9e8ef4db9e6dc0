//! Redis Streams (the `redis` crate against `redis-server` 7), two ways: a direct source
//! ([`RedisStreamSource`], entry id ranges per batch in the checkpoint: exactly-once input)
//! and a consumer-group receiver ([`RedisGroupReceiver`], `XREADGROUP` with `XACK` after the
//! records are stored, `XAUTOCLAIM` for a crashed consumer's pending entries: at least once).

use redis::Value;
use rivulet_framework::{Error, Result};
use serde::{Deserialize, Serialize};

mod direct;
mod group;

pub use direct::{RedisStreamSource, StartPosition};
pub use group::RedisGroupReceiver;

/// One entry of a Redis stream: its id and its field-value pairs, in the order `XADD` gave.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RedisEntry {
    /// The stream's key.
    pub stream: String,
    /// The entry id, `<ms>-<seq>`.
    pub id: String,
    /// Its fields and values, as bytes (values need not be UTF-8).
    pub fields: Vec<(Vec<u8>, Vec<u8>)>,
}

impl RedisEntry {
    /// The value of `field`, if the entry has it.
    pub fn get(&self, field: &str) -> Option<&[u8]> {
        self.fields
            .iter()
            .find(|(f, _)| f == field.as_bytes())
            .map(|(_, v)| v.as_slice())
    }

    /// The value of `field` as text; `None` when the entry lacks it or it is not UTF-8.
    pub fn text(&self, field: &str) -> Option<&str> {
        std::str::from_utf8(self.get(field)?).ok()
    }
}

/// The fields of an entry, as `(field, value)` pairs.
pub(crate) type Fields = Vec<(Vec<u8>, Vec<u8>)>;

/// A stream's entries as `(id, fields)`, from an `XRANGE` reply.
pub(crate) fn entries(stream: &str, reply: Value) -> Result<Vec<(String, Fields)>> {
    let bad = |what: &str| Error::User(format!("redis stream {stream}: unexpected reply ({what})"));
    let Value::Array(items) = reply else {
        return Err(bad("not a list"));
    };
    items
        .into_iter()
        .map(|item| {
            let Value::Array(mut pair) = item else {
                return Err(bad("an entry is not a list"));
            };
            if pair.len() != 2 {
                return Err(bad("an entry is not [id, fields]"));
            }
            let fields = pair.pop().unwrap_or(Value::Nil);
            let id: String = redis::from_redis_value(&pair[0]).map_err(|_| bad("an id"))?;
            let flat: Vec<Vec<u8>> = redis::from_redis_value(&fields).map_err(|_| bad("fields"))?;
            let mut flat = flat.into_iter();
            let mut pairs = Vec::new();
            while let (Some(f), Some(v)) = (flat.next(), flat.next()) {
                pairs.push((f, v));
            }
            Ok((id, pairs))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_fields_read_as_bytes_and_text() {
        let e = RedisEntry {
            stream: "s".into(),
            id: "1-0".into(),
            fields: vec![
                (b"line".to_vec(), b"to be".to_vec()),
                (b"raw".to_vec(), vec![0xff]),
            ],
        };
        assert_eq!(e.text("line"), Some("to be"));
        assert_eq!(e.get("raw"), Some(&[0xff][..]));
        assert_eq!(e.text("raw"), None, "not UTF-8");
        assert_eq!(e.get("none"), None);
    }
}
