//! Redis Streams as a direct source (the `redis` crate against `redis-server` 7): each
//! stream key is one partition, and a batch reads the entries between two entry ids with
//! `XRANGE`, the ids decided as the batch is cut. An entry id `<ms>-<seq>` is the offset
//! `ms << 22 | seq` (ordered as the ids are; ids with a sequence of 2^22 or more within one
//! millisecond, or a time past the year 2109, are refused with an error naming them).
//!
//! Re-reading a range returns the same entries unless some were deleted since it was
//! decided. A read fails, naming the stream and the ids, as a range past Kafka's retention
//! does, when it can tell: when the range's last entry (which existed when the range was
//! decided) is gone (`XTRIM`, `MAXLEN` trimmed past it, or `XDEL`), or when Redis 7's
//! `max-deleted-entry-id` falls inside the range (`XDEL`). A trim that removes only the
//! range's first entries is not seen (Redis keeps no record of the ids a trim removed): keep
//! a stream's `MAXLEN` well above what it receives in a few batch intervals. Every call
//! opens its own connection (with a 5 s connect timeout), so a server that goes away and
//! comes back is met by the next poll or task retry.
//!
//! A wrong or missing password fails the call with an error saying `authentication failed`
//! and naming the server (see [the module docs](super) on credentials): at start the start
//! fails with it, later each batch fails with it until the password is right again; no
//! call is retried within a batch.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use redis::{Connection, Value};
use rivulet_framework::dstream::{DirectSource, OffsetRange, ReadError, SourcePartition};
use rivulet_framework::rdd::PartitionIter;
use rivulet_framework::{Error, Result};
use serde::{Deserialize, Serialize};

use super::{entries, RedisEntry};

/// Bits of an offset that hold the entry id's sequence number.
const SEQ_BITS: u32 = 22;

/// Entries fetched per `XRANGE` call while reading a range.
const PAGE: usize = 10_000;

/// Where a stream seen for the first time starts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum StartPosition {
    /// Its first entry (Kafka's `auto.offset.reset=earliest`).
    #[default]
    Earliest,
    /// After its last entry at the first batch: only entries added later.
    Latest,
}

/// A direct source over Redis streams (see the module docs); give it to
/// `StreamingContext::direct_stream`.
///
/// # Example
/// ```no_run
/// use rivulet_receivers::RedisStreamSource;
/// let source = RedisStreamSource::new("redis://127.0.0.1:6379/", ["events"])?;
/// # Ok::<(), rivulet_framework::Error>(())
/// ```
#[derive(Clone)]
pub struct RedisStreamSource {
    client: redis::Client,
    url: String,
    streams: Vec<String>,
    start: StartPosition,
}

impl fmt::Debug for RedisStreamSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStreamSource")
            .field("url", &self.url)
            .field("streams", &self.streams)
            .field("start", &self.start)
            .finish()
    }
}

/// An entry id as an offset.
fn offset_of(stream: &str, id: &str) -> Result<u64> {
    let bad = || {
        Error::User(format!(
            "redis stream {stream}: entry id `{id}` is not <ms>-<seq>"
        ))
    };
    let (ms, seq) = id.split_once('-').ok_or_else(bad)?;
    let (ms, seq): (u64, u64) = (
        ms.parse().map_err(|_| bad())?,
        seq.parse().map_err(|_| bad())?,
    );
    if seq >= 1 << SEQ_BITS || ms >= 1 << (64 - SEQ_BITS) {
        return Err(Error::User(format!(
            "redis stream {stream}: entry id `{id}` is outside what an offset holds (ms below 2^42, seq below 2^22)"
        )));
    }
    Ok(ms << SEQ_BITS | seq)
}

/// The entry id of an offset.
fn id_of(offset: u64) -> String {
    format!("{}-{}", offset >> SEQ_BITS, offset & ((1 << SEQ_BITS) - 1))
}

impl RedisStreamSource {
    /// Reads the streams `streams` (each key one partition, numbered 0) of the server at
    /// `url` (`redis://host:port/db`, `redis://:PASSWORD@host:port/db` for a server that
    /// requires a password), from their first entry.
    ///
    /// # Errors
    /// [`Error::Config`] naming the URL when it is not a Redis URL, or when no stream is
    /// named.
    pub fn new<I, S>(url: &str, streams: I) -> Result<RedisStreamSource>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let client = redis::Client::open(url)
            .map_err(|e| Error::Config(format!("redis URL `{}`: {e}", super::redacted(url))))?;
        let url = &super::redacted(url);
        let streams: Vec<String> = streams.into_iter().map(Into::into).collect();
        if streams.is_empty() {
            return Err(Error::Config(format!(
                "redis {url}: name at least one stream"
            )));
        }
        Ok(RedisStreamSource {
            client,
            url: url.to_string(),
            streams,
            start: StartPosition::Earliest,
        })
    }

    /// Where streams seen for the first time start (default: their first entry).
    pub fn start_at(mut self, start: StartPosition) -> Self {
        self.start = start;
        self
    }

    fn connect(&self) -> Result<Connection> {
        self.client
            .get_connection_with_timeout(Duration::from_secs(5))
            .map_err(|e| self.failed("cannot connect", e))
    }

    fn error(&self, what: &str, e: impl fmt::Display) -> Error {
        Error::User(format!("redis {}: {what}: {e}", self.url))
    }

    /// The error for a failed call: an authentication failure says so, whatever the call.
    fn failed(&self, what: &str, e: redis::RedisError) -> Error {
        if super::is_auth_error(&e) {
            Error::User(super::auth_failed(&self.url, &e))
        } else {
            self.error(what, e)
        }
    }

    fn xrange(
        &self,
        con: &mut Connection,
        stream: &str,
        start: &str,
        end: &str,
        count: usize,
    ) -> Result<Vec<(String, super::Fields)>> {
        let reply: Value = redis::cmd("XRANGE")
            .arg(stream)
            .arg(start)
            .arg(end)
            .arg("COUNT")
            .arg(count)
            .query(con)
            .map_err(|e| self.failed(&format!("XRANGE {stream}"), e))?;
        entries(stream, reply)
    }

    /// The highest id deleted from `stream` (Redis 7: `max-deleted-entry-id` of `XINFO
    /// STREAM`), as an offset.
    fn max_deleted(&self, con: &mut Connection, stream: &str) -> Result<u64> {
        let info: BTreeMap<String, Value> = redis::cmd("XINFO")
            .arg("STREAM")
            .arg(stream)
            .query(con)
            .map_err(|e| self.failed(&format!("XINFO STREAM {stream}"), e))?;
        match info.get("max-deleted-entry-id") {
            Some(v) => {
                let id: String = redis::from_redis_value(v)
                    .map_err(|e| self.failed(&format!("XINFO STREAM {stream}"), e))?;
                offset_of(stream, &id)
            }
            None => Err(self.error(
                &format!("XINFO STREAM {stream}"),
                "no max-deleted-entry-id: the server is older than Redis 7",
            )),
        }
    }
}

impl DirectSource for RedisStreamSource {
    type Item = RedisEntry;

    /// Executor processes read entry ranges from the server too, as Spark's executors read
    /// Kafka partitions.
    fn read_anywhere(&self) -> bool {
        true
    }

    fn name(&self) -> String {
        format!("redis streams {} at {}", self.streams.join(","), self.url)
    }

    fn latest_offsets(&self) -> Result<BTreeMap<SourcePartition, u64>> {
        let mut con = self.connect()?;
        let mut latest = BTreeMap::new();
        for stream in &self.streams {
            let kind: String = redis::cmd("TYPE")
                .arg(stream)
                .query(&mut con)
                .map_err(|e| self.failed(&format!("TYPE {stream}"), e))?;
            if kind != "stream" {
                return Err(Error::User(format!(
                    "redis {}: stream {stream} does not exist (its key is of type `{kind}`)",
                    self.url
                )));
            }
            let reply: Value = redis::cmd("XREVRANGE")
                .arg(stream)
                .arg("+")
                .arg("-")
                .arg("COUNT")
                .arg(1)
                .query(&mut con)
                .map_err(|e| self.failed(&format!("XREVRANGE {stream}"), e))?;
            let after = match entries(stream, reply)?.first() {
                Some((id, _)) => offset_of(stream, id)? + 1,
                None => 0,
            };
            latest.insert(SourcePartition::new(stream.clone(), 0), after);
        }
        Ok(latest)
    }

    fn offsets_count_records(&self) -> bool {
        // Entry ids have gaps: the distance between two says nothing of the entries between.
        false
    }

    fn start_offset(&self, _partition: &SourcePartition, latest: u64) -> Result<u64> {
        Ok(match self.start {
            StartPosition::Earliest => 0,
            StartPosition::Latest => latest,
        })
    }

    fn offset_after(
        &self,
        partition: &SourcePartition,
        from: u64,
        records: u64,
        latest: u64,
    ) -> Result<u64> {
        let mut con = self.connect()?;
        let stream = &partition.topic;
        let found = self.xrange(
            &mut con,
            stream,
            &id_of(from),
            &id_of(latest - 1),
            usize::try_from(records).unwrap_or(usize::MAX),
        )?;
        match found.last() {
            Some((id, _)) if found.len() as u64 >= records => Ok(offset_of(stream, id)? + 1),
            _ => Ok(latest),
        }
    }

    fn read(
        &self,
        range: &OffsetRange,
    ) -> std::result::Result<PartitionIter<RedisEntry>, ReadError> {
        let stream = &range.partition.topic;
        let mut con = self.connect()?;
        let mut out = Vec::new();
        let mut start = id_of(range.from);
        let end = id_of(range.until - 1);
        loop {
            let page = self.xrange(&mut con, stream, &start, &end, PAGE)?;
            let full = page.len() == PAGE;
            if let Some((last, _)) = page.last() {
                start = format!("({last}");
            }
            out.extend(page.into_iter().map(|(id, fields)| RedisEntry {
                stream: stream.clone(),
                id,
                fields,
            }));
            if !full {
                break;
            }
        }
        // The range's last entry existed when the range was decided.
        let last_gone = out.last().map(|e| e.id.as_str()) != Some(end.as_str());
        // Checked after the read: an entry deleted before or during it shows here.
        let deleted = self.max_deleted(&mut con, stream)?;
        if last_gone || (range.from..range.until).contains(&deleted) && deleted != 0 {
            return Err(ReadError::Unreadable {
                reason: format!(
                    "entries of redis stream {stream} between ids {} and {} were deleted (trimmed or XDEL) after the batch's range was decided: the range cannot be read as it was",
                    id_of(range.from),
                    end
                ),
            });
        }
        Ok(Box::new(out.into_iter()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_offsets_map_both_ways_in_order() {
        for id in [
            "0-0",
            "0-1",
            "1-0",
            "1733500000000-7",
            "1733500000000-4194303",
        ] {
            assert_eq!(id_of(offset_of("s", id).unwrap()), id);
        }
        assert!(offset_of("s", "1-0").unwrap() > offset_of("s", "0-4194303").unwrap());
        let err = offset_of("s", "1-4194304").unwrap_err().to_string();
        assert!(
            err.contains("`1-4194304`") && err.contains("stream s"),
            "{err}"
        );
        assert!(offset_of("s", "abc").is_err());
        assert!(offset_of("s", "1-x").is_err());
    }
}
