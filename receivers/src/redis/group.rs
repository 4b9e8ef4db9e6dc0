//! A Redis Streams consumer-group receiver (Spark users write one as a custom reliable
//! receiver): entries are read with `XREADGROUP`, stored with
//! [`store_reliably`](rivulet_framework::receiver::BlockSink::store_reliably), and
//! acknowledged with `XACK` only once their blocks are stored (in the write-ahead log, with
//! `receiver_wal` on). Entries a crashed consumer of the group left pending for longer than
//! the claim idle time are taken over with `XAUTOCLAIM`; this consumer's own pending entries
//! (read before its process died) are read again first. Nothing acknowledged is lost; an
//! entry stored but not yet acknowledged when the process dies is delivered again: at least
//! once, as Spark's reliable receivers.
//!
//! A wrong or missing password (see [the module docs](super) on credentials) stops the
//! receiver with a fatal error saying `authentication failed` and naming the server: a
//! restart would send the same password. Other failures (a server down or gone) are
//! retryable: the receiver supervisor restarts the receiver after its backoff, logging the
//! reason, up to `receiver_restarts` times.
//!
//! The `redis` client is synchronous: every call runs on a blocking thread
//! (`tokio::task::spawn_blocking`), never on the receiver's actor thread.

use std::fmt;
use std::time::Duration;

use redis::{Connection, Value};
use rivulet_framework::receiver::{BlockSink, Flow, Receiver, ReceiverError};

use super::{entries, Fields, RedisEntry};

/// Entries read per call.
const COUNT: usize = 1_000;

/// How long one `XREADGROUP` waits for new entries, ms.
const BLOCK_MS: u64 = 200;

/// A receiver reading a Redis stream as a member of a consumer group (see the module docs);
/// give it to `StreamingContext::receiver_stream`. Several receivers with different consumer
/// names share the stream's entries.
///
/// # Example
/// ```no_run
/// use rivulet_receivers::RedisGroupReceiver;
/// let receiver = RedisGroupReceiver::new("redis://127.0.0.1:6379/", "events", "wordcount", "worker-1")?;
/// # Ok::<(), rivulet_framework::Error>(())
/// ```
pub struct RedisGroupReceiver {
    client: redis::Client,
    url: String,
    stream: String,
    group: String,
    consumer: String,
    claim_idle: Duration,
    connection: Option<Connection>,
    /// Whether this consumer's own pending entries were read again since the start.
    own_pending_read: bool,
}

impl fmt::Debug for RedisGroupReceiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisGroupReceiver")
            .field("url", &self.url)
            .field("stream", &self.stream)
            .field("group", &self.group)
            .field("consumer", &self.consumer)
            .field("claim_idle", &self.claim_idle)
            .finish_non_exhaustive()
    }
}

/// What one step read: entries to store, and ids to acknowledge once they are stored (the
/// entries' and those of deleted entries still pending).
struct Read {
    entries: Vec<RedisEntry>,
    ack: Vec<String>,
}

impl RedisGroupReceiver {
    /// Consumer `consumer` of group `group` (created at the stream's start, with the
    /// stream, if missing) of `stream` on the server at `url` (`redis://host:port/db`, or
    /// `redis://:PASSWORD@host:port/db`). Entries pending for 60 s in another consumer are
    /// claimed.
    ///
    /// # Errors
    /// [`Error::Config`](rivulet_framework::Error::Config) naming the URL when it is not a
    /// Redis URL.
    pub fn new(
        url: &str,
        stream: &str,
        group: &str,
        consumer: &str,
    ) -> rivulet_framework::Result<RedisGroupReceiver> {
        let client = redis::Client::open(url).map_err(|e| {
            rivulet_framework::Error::Config(format!("redis URL `{}`: {e}", super::redacted(url)))
        })?;
        let url = &super::redacted(url);
        Ok(RedisGroupReceiver {
            client,
            url: url.to_string(),
            stream: stream.to_string(),
            group: group.to_string(),
            consumer: consumer.to_string(),
            claim_idle: Duration::from_secs(60),
            connection: None,
            own_pending_read: false,
        })
    }

    /// Claims entries another consumer left pending for at least `idle` (default 60 s).
    pub fn claim_idle(mut self, idle: Duration) -> Self {
        self.claim_idle = idle;
        self
    }

    fn error(&self, what: &str, e: impl fmt::Display) -> ReceiverError {
        ReceiverError::retryable(format!(
            "redis {} stream {}: {what}: {e}",
            self.url, self.stream
        ))
    }

    /// The error for a failed call: fatal when the server refused the credentials,
    /// retryable otherwise.
    fn failed(&self, what: &str, e: redis::RedisError) -> ReceiverError {
        if super::is_auth_error(&e) {
            ReceiverError::fatal(format!(
                "{} (stream {})",
                super::auth_failed(&self.url, &e),
                self.stream
            ))
        } else {
            self.error(what, e)
        }
    }

    /// Runs `f` with the connection on a blocking thread; the connection is dropped on an
    /// error (the next call reconnects).
    async fn call<R: Send + 'static>(
        &mut self,
        what: &'static str,
        f: impl FnOnce(&mut Connection) -> redis::RedisResult<R> + Send + 'static,
    ) -> Result<R, ReceiverError> {
        let connection = match self.connection.take() {
            Some(c) => c,
            None => {
                let client = self.client.clone();
                tokio::task::spawn_blocking(move || {
                    client.get_connection_with_timeout(Duration::from_secs(5))
                })
                .await
                .map_err(|e| self.error("the blocking call failed", e))?
                .map_err(|e| self.failed("cannot connect", e))?
            }
        };
        let (connection, result) = tokio::task::spawn_blocking(move || {
            let mut connection = connection;
            let result = f(&mut connection);
            (connection, result)
        })
        .await
        .map_err(|e| self.error("the blocking call failed", e))?;
        match result {
            Ok(r) => {
                self.connection = Some(connection);
                Ok(r)
            }
            Err(e) => Err(self.failed(what, e)),
        }
    }

    /// The entries of an `XREADGROUP` or `XAUTOCLAIM` list, split into live entries and the
    /// ids of deleted ones (no fields).
    fn split(&self, list: Value) -> Result<Read, ReceiverError> {
        let mut read = Read {
            entries: Vec::new(),
            ack: Vec::new(),
        };
        let listed: Vec<(String, Fields)> = match list {
            Value::Nil => Vec::new(),
            list => entries(&self.stream, list).map_err(|e| self.error("reading", e))?,
        };
        for (id, fields) in listed {
            read.ack.push(id.clone());
            if !fields.is_empty() {
                read.entries.push(RedisEntry {
                    stream: self.stream.clone(),
                    id,
                    fields,
                });
            }
        }
        Ok(read)
    }

    /// `XREADGROUP ... COUNT count ... STREAMS stream <from>`: `0` for this consumer's
    /// pending entries, `>` for new ones.
    async fn read_group(
        &mut self,
        from: &'static str,
        block: bool,
        count: usize,
    ) -> Result<Read, ReceiverError> {
        let (stream, group, consumer) = (
            self.stream.clone(),
            self.group.clone(),
            self.consumer.clone(),
        );
        let reply: Value = self
            .call("XREADGROUP", move |c| {
                let mut cmd = redis::cmd("XREADGROUP");
                cmd.arg("GROUP")
                    .arg(&group)
                    .arg(&consumer)
                    .arg("COUNT")
                    .arg(count);
                if block {
                    cmd.arg("BLOCK").arg(BLOCK_MS);
                }
                cmd.arg("STREAMS").arg(&stream).arg(from).query(c)
            })
            .await?;
        // [[stream, [entries...]]], or nil when nothing came.
        let list = match reply {
            Value::Array(mut streams) if !streams.is_empty() => match streams.swap_remove(0) {
                Value::Array(mut pair) if pair.len() == 2 => pair.pop().unwrap_or(Value::Nil),
                _ => return Err(self.error("XREADGROUP", "an unexpected reply")),
            },
            _ => Value::Nil,
        };
        self.split(list)
    }

    /// `XAUTOCLAIM`: up to `count` entries other consumers left pending longer than the
    /// claim idle time.
    async fn claim(&mut self, count: usize) -> Result<Read, ReceiverError> {
        let (stream, group, consumer) = (
            self.stream.clone(),
            self.group.clone(),
            self.consumer.clone(),
        );
        let idle = self.claim_idle.as_millis() as u64;
        let reply: Value = self
            .call("XAUTOCLAIM", move |c| {
                redis::cmd("XAUTOCLAIM")
                    .arg(&stream)
                    .arg(&group)
                    .arg(&consumer)
                    .arg(idle)
                    .arg("0-0")
                    .arg("COUNT")
                    .arg(count)
                    .query(c)
            })
            .await?;
        // [next start id, [entries...], [deleted ids...]]: deleted ids left the pending list.
        match reply {
            Value::Array(mut parts) if parts.len() >= 2 => {
                let list = parts.swap_remove(1);
                self.split(list)
            }
            _ => Err(self.error("XAUTOCLAIM", "an unexpected reply")),
        }
    }

    async fn ack(&mut self, ids: Vec<String>) -> Result<(), ReceiverError> {
        if ids.is_empty() {
            return Ok(());
        }
        let (stream, group) = (self.stream.clone(), self.group.clone());
        self.call("XACK", move |c| {
            redis::cmd("XACK")
                .arg(&stream)
                .arg(&group)
                .arg(&ids)
                .query::<u64>(c)
        })
        .await
        .map(drop)
    }
}

impl Receiver for RedisGroupReceiver {
    type Item = RedisEntry;

    fn name(&self) -> String {
        format!(
            "redis group {} of stream {} at {}",
            self.group, self.stream, self.url
        )
    }

    /// `true`: any process reaches the server the same way, and the pending entries are the
    /// consumer name's. In an executor process the entries are acknowledged once the
    /// coordinator confirmed their block; a process lost before leaves them pending for
    /// this consumer, whose next process reads them again first.
    fn runs_anywhere(&self) -> bool {
        true
    }

    async fn on_start(&mut self) -> Result<(), ReceiverError> {
        self.own_pending_read = false;
        let (stream, group) = (self.stream.clone(), self.group.clone());
        let created: redis::RedisResult<()> = self
            .call("XGROUP CREATE", move |c| {
                match redis::cmd("XGROUP")
                    .arg("CREATE")
                    .arg(&stream)
                    .arg(&group)
                    .arg("0")
                    .arg("MKSTREAM")
                    .query::<()>(c)
                {
                    // The group exists: join it.
                    Err(e) if e.code() == Some("BUSYGROUP") => Ok(Ok(())),
                    other => Ok(other),
                }
            })
            .await?;
        created.map_err(|e| self.failed("cannot create the consumer group", e))
    }

    /// Reads up to 1,000 entries or, under backpressure, what the rate admits in 200 ms
    /// (`BlockSink::store_size`): first this consumer's own pending entries, then entries
    /// claimed from idle consumers, then new ones; stores them reliably and acknowledges
    /// them.
    async fn receive(&mut self, sink: &mut BlockSink<RedisEntry>) -> Result<Flow, ReceiverError> {
        let count = sink.store_size(COUNT);
        let read = if !self.own_pending_read {
            let read = self.read_group("0", false, count).await?;
            if read.ack.is_empty() {
                self.own_pending_read = true;
            }
            read
        } else {
            let claimed = self.claim(count).await?;
            if claimed.ack.is_empty() {
                self.read_group(">", true, count).await?
            } else {
                claimed
            }
        };
        if read.ack.is_empty() {
            return Ok(Flow::Continue);
        }
        if sink.store_reliably(read.entries).await.is_err() {
            // Stopping before the blocks were stored: not acknowledged, delivered again.
            return Ok(Flow::Finished);
        }
        self.ack(read.ack).await?;
        Ok(Flow::Continue)
    }
}
