//! Redis Streams (the `redis` crate against `redis-server` 7), two ways: a direct source
//! ([`RedisStreamSource`], entry id ranges per batch in the checkpoint: exactly-once input)
//! and a consumer-group receiver ([`RedisGroupReceiver`], `XREADGROUP` with `XACK` after the
//! records are stored, `XAUTOCLAIM` for a crashed consumer's pending entries: at least once).
//!
//! # Authentication
//! The password (and ACL user) go in the URL: `redis://:PASSWORD@host:port/` or
//! `redis://USER:PASSWORD@host:port/`; the client sends `AUTH` on every connection. Errors
//! and names show the URL with the password replaced by `***`. A wrong password, or none
//! for a server that requires one (`WRONGPASS`, `NOAUTH`), is an error saying
//! `authentication failed` and naming the server: the direct source's batch (or start)
//! fails with it; the consumer-group receiver stops with a fatal error (no restart: a
//! restart would send the same password), which stops the context as any failed receiver.

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

/// `url` with the password of its user information, if any, replaced by `***`, for
/// errors and names (`redis://:secret@h:1/` reads `redis://:***@h:1/`).
pub(crate) fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_string();
    };
    let user = match rest[..at].split_once(':') {
        Some((user, _)) => format!("{user}:***"),
        // Only a user name: no secret to hide.
        None => rest[..at].to_string(),
    };
    format!("{scheme}://{user}@{}", &rest[at + 1..])
}

/// Whether `e` is the server refusing the client's credentials: a wrong password or user
/// (`WRONGPASS`, the client's `AuthenticationFailed`), or none given to a server that
/// requires one (`NOAUTH`).
pub(crate) fn is_auth_error(e: &redis::RedisError) -> bool {
    e.kind() == redis::ErrorKind::AuthenticationFailed
        || matches!(e.code(), Some("NOAUTH" | "WRONGPASS"))
}

/// The text of an authentication failure of the server at `url` (already redacted).
pub(crate) fn auth_failed(url: &str, e: &redis::RedisError) -> String {
    format!(
        "redis {url}: authentication failed (a wrong or missing password or user in the URL): {e}"
    )
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
    fn passwords_are_hidden_in_urls() {
        assert_eq!(redacted("redis://:s3cret@h:1/0"), "redis://:***@h:1/0");
        assert_eq!(redacted("redis://u:p@ss@h:1/"), "redis://u:***@h:1/");
        assert_eq!(redacted("redis://u@h:1/"), "redis://u@h:1/");
        assert_eq!(redacted("redis://h:1/#a@b"), "redis://h:1/#a@b");
        assert_eq!(redacted("not a url"), "not a url");
    }

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
