//! JetStream streams as a direct source (what Spark's direct Kafka stream asks of Kafka,
//! asked of JetStream): each stream is one source partition (`<stream>/0`), because a
//! JetStream stream has one sequence for all its subjects, and the offset of the message at
//! stream sequence `s` is `s - 1`. So the offset after the newest message is the stream's
//! last sequence, a range `from..until` holds sequences `from + 1 ..= until`, and an empty
//! stream's latest offset is 0.
//!
//! How a range is read, on an executor:
//! 1. An ephemeral pull consumer is made on the stream, delivering from sequence `from + 1`
//!    (`DeliverPolicy::ByStartSequence`), without acks, in memory, removed by the server 30 s
//!    after its last use if this task dies.
//! 2. Messages are fetched in batches of at most 10,000 (`fetch`, which does not wait for
//!    messages that do not exist yet) until the one at sequence `until`, a message past it,
//!    or the end of the stream; the messages past `until` are dropped. Sequences with no
//!    message (deleted one by one) are not delivered.
//! 3. The consumer is deleted, and the stream's info is read again: when sequence `from + 1`
//!    was not delivered and the stream's first sequence is now past it, messages of the range
//!    were removed by the stream's limits (`max_msgs`, `max_bytes`, `max_age`) or a purge
//!    after the range was decided, and the read fails with [`ReadError::Unreadable`] naming
//!    the stream and the sequences (Kafka's offset out of range). The same happens when the
//!    stream is gone or its last sequence went back (deleted and made again).
//! 4. Otherwise the read succeeds with the messages delivered. The sequences of the range
//!    that were not delivered (the *gaps*: messages deleted one by one with `jsm.msg.delete`,
//!    or removed by a per-subject limit `max_msgs_per_subject`, before or after the range was
//!    decided) are counted and logged at WARN on the executor: one event per read that met
//!    gaps, with the server, the stream, the range (`sequences = 11..=20`, and as the batch's
//!    input report names it, `range = <stream>/0 offsets 10..20`), the number of missing
//!    sequences (`missing`), the missing sequences themselves as runs (`missing_sequences =
//!    11, 14..=15, 20`; the first 20 runs, then how many more) and the number of messages
//!    read (`read`). The batch goes on without them; a retried task or a partition computed
//!    again reads the same messages and logs the same event again.
//!
//! Limits other than per-subject ones remove a stream's oldest messages, so a range that
//! lost messages to them lost its first one: that is what step 3 sees. A range whose first
//! messages were deleted one by one up to the stream's first message looks the same, and
//! fails the same way. Gaps are not listed in the batch's polled-input report
//! (`on_polled_input`, the status page): its `records` (the messages read) falls short of its
//! ranges' length by their number, but the framework's report lists only whole ranges
//! skipped, not sequences missing inside a range that was read, so the WARN is where they
//! are named.
//!
//! Offsets count records except for the gaps, so
//! [`offsets_count_records`](DirectSource::offsets_count_records) is `true`: a rate cap
//! reads at most its number of records, fewer when the range has gaps.
//!
//! [`commit`](DirectSource::commit) does nothing: JetStream keeps a consumer's progress as
//! acknowledgements of messages delivered to it, not as a position a reader can set, and the
//! checkpoint is where a restarted program resumes anyway.
//!
//! Every call runs on the source's own runtime (see the crate docs); a server that is down
//! fails the call at once with an error naming it (the batch fails, and the next batch asks
//! again), and a server that came back is met by the next call. Credentials go in the URL
//! (`nats://user:password@host:port` or `nats://token@host:port`); a server that refuses
//! them, or requires some and got none, fails the call the same way with an error saying
//! `authentication failed` and naming the server (without the credentials): the start
//! fails with it, or each batch until they are right.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy, ReplayPolicy};
use async_nats::jetstream::context::GetStreamErrorKind;
use async_nats::jetstream::stream::State;
use async_nats::jetstream::ErrorCode;
use async_nats::jetstream::{self, Context};
use futures::StreamExt;
use rivulet_framework::dstream::{DirectSource, OffsetRange, ReadError, SourcePartition};
use rivulet_framework::rdd::PartitionIter;
use rivulet_framework::{Error, Result};
use serde::{Deserialize, Serialize};

use crate::runtime::{ClientRuntime, Connection, REQUEST_TIMEOUT};
use crate::NatsMessage;

/// Messages fetched per request while reading a range.
const FETCH: u64 = 10_000;

/// How long the server keeps a read's consumer after its last use, when the task that made
/// it died before deleting it.
const READ_CONSUMER_TTL: Duration = Duration::from_secs(30);

/// Where a stream seen for the first time starts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum StartSequence {
    /// Its first message now (Kafka's `auto.offset.reset=earliest`).
    #[default]
    Earliest,
    /// After its last message at the first batch: only messages published later.
    Latest,
    /// At this stream sequence (the first message at or after it); after the last message
    /// when the sequence is past it.
    Sequence(u64),
}

/// A direct source over JetStream streams (see the module docs); give it to
/// `StreamingContext::direct_stream`. Clones share the connection and its runtime.
///
/// # Example
/// ```no_run
/// use rivulet_nats::NatsStreamSource;
/// let source = NatsStreamSource::new("nats://127.0.0.1:4222", ["lines"])?;
/// # Ok::<(), rivulet_framework::Error>(())
/// ```
#[derive(Clone)]
pub struct NatsStreamSource {
    connection: Connection,
    runtime: ClientRuntime,
    streams: Vec<String>,
    start: StartSequence,
}

impl fmt::Debug for NatsStreamSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsStreamSource")
            .field("server", &self.connection.server)
            .field("streams", &self.streams)
            .field("start", &self.start)
            .finish_non_exhaustive()
    }
}

/// A failure while talking to the server: whether it is the range's fault (gone for good)
/// or the call's (a retry may cure it).
enum Failure {
    Gone(String),
    Call(String),
}

impl NatsStreamSource {
    /// Reads the JetStream streams `streams` (each one partition, numbered 0) of the server
    /// at `server` (`nats://host:port`, or `host:port`; `nats://user:password@host:port` or
    /// `nats://token@host:port` for a server that requires them), from their first message.
    ///
    /// # Errors
    /// [`Error::Config`] when no stream is named, or the client's runtime cannot be made.
    pub fn new<I, S>(server: &str, streams: I) -> Result<NatsStreamSource>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let streams: Vec<String> = streams.into_iter().map(Into::into).collect();
        if streams.is_empty() {
            return Err(Error::Config(format!(
                "nats {server}: name at least one stream"
            )));
        }
        let runtime = ClientRuntime::new().map_err(|e| {
            Error::Config(format!(
                "nats {server}: cannot start the client's runtime: {e}"
            ))
        })?;
        Ok(NatsStreamSource {
            connection: Connection::new(server),
            runtime,
            streams,
            start: StartSequence::Earliest,
        })
    }

    /// Where streams seen for the first time start (default: their first message).
    pub fn start_at(mut self, start: StartSequence) -> Self {
        self.start = start;
        self
    }

    fn error(&self, what: impl fmt::Display) -> Error {
        Error::User(format!("nats {}: {what}", self.connection.server))
    }

    /// Runs `f` with a JetStream context on the source's runtime, waiting for it here; an
    /// error drops the connection (the next call connects again).
    fn call<T, F, Fut>(&self, f: F) -> std::result::Result<T, Failure>
    where
        T: Send + 'static,
        F: FnOnce(Context) -> Fut + Send + 'static,
        Fut: Future<Output = std::result::Result<T, Failure>> + Send,
    {
        let connection = self.connection.clone();
        let result = self
            .runtime
            .block(async move {
                let client = connection
                    .client()
                    .await
                    .map_err(|f| Failure::Call(f.message))?;
                let mut js = jetstream::new(client);
                js.set_timeout(REQUEST_TIMEOUT);
                f(js).await
            })
            .unwrap_or_else(|e| Err(Failure::Call(e)));
        if matches!(result, Err(Failure::Call(_))) {
            self.connection.reset();
        }
        result
    }

    /// The state of every stream (messages, first and last sequence), in `streams` order.
    fn states(&self) -> Result<Vec<(String, State)>> {
        let streams = self.streams.clone();
        self.call(move |js| async move {
            let mut states = Vec::with_capacity(streams.len());
            for name in streams {
                let state = stream_state(&js, &name).await?;
                states.push((name, state));
            }
            Ok(states)
        })
        .map_err(|f| match f {
            Failure::Gone(e) | Failure::Call(e) => self.error(e),
        })
    }
}

/// The state of stream `name`.
async fn stream_state(js: &Context, name: &str) -> std::result::Result<State, Failure> {
    match js.get_stream(name).await {
        Ok(stream) => Ok(stream.cached_info().state.clone()),
        Err(e) => match e.kind() {
            GetStreamErrorKind::JetStream(j) if j.kind() == ErrorCode::STREAM_NOT_FOUND => Err(
                Failure::Gone(format!("stream {name} does not exist")),
            ),
            GetStreamErrorKind::InvalidStreamName | GetStreamErrorKind::EmptyName => Err(
                Failure::Gone(format!("`{name}` is not a valid stream name")),
            ),
            _ => Err(Failure::Call(format!(
                "stream {name}: cannot read its info: {e} (is JetStream enabled: `nats-server -js`?)"
            ))),
        },
    }
}

/// Reads sequences `first..=last` of stream `name` (see the module docs, steps 1 to 3).
async fn read_sequences(
    js: Context,
    name: String,
    first: u64,
    last: u64,
) -> std::result::Result<Vec<NatsMessage>, Failure> {
    let gone = |f: Failure| match f {
        Failure::Gone(e) => {
            Failure::Gone(format!("{e}: sequences {first}..={last} cannot be read"))
        }
        call => call,
    };
    let stream = match js.get_stream(&name).await {
        Ok(s) => s,
        Err(_) => {
            // Tell a missing stream (the range is gone) from a failed call.
            stream_state(&js, &name).await.map_err(gone)?;
            return Err(Failure::Call(format!(
                "stream {name}: cannot read its info"
            )));
        }
    };
    let consumer = stream
        .create_consumer(pull::Config {
            deliver_policy: DeliverPolicy::ByStartSequence {
                start_sequence: first,
            },
            ack_policy: AckPolicy::None,
            replay_policy: ReplayPolicy::Instant,
            inactive_threshold: READ_CONSUMER_TTL,
            memory_storage: true,
            ..Default::default()
        })
        .await
        .map_err(|e| Failure::Call(format!("stream {name}: cannot make a reader: {e}")))?;
    let mut out: Vec<NatsMessage> = Vec::new();
    let mut next = first;
    'fetching: while next <= last {
        let want = (last - next + 1).min(FETCH) as usize;
        let mut batch = consumer
            .fetch()
            .max_messages(want)
            .messages()
            .await
            .map_err(|e| Failure::Call(format!("stream {name}: fetch: {e}")))?;
        let mut got = 0;
        while let Some(message) = batch.next().await {
            let message =
                message.map_err(|e| Failure::Call(format!("stream {name}: fetch: {e}")))?;
            got += 1;
            let info = message
                .info()
                .map_err(|e| Failure::Call(format!("stream {name}: a message's metadata: {e}")))?;
            let (sequence, pending) = (info.stream_sequence, info.pending);
            let published_ns =
                i64::try_from(info.published.unix_timestamp_nanos()).unwrap_or_default();
            if sequence > last {
                break 'fetching;
            }
            next = sequence + 1;
            out.push(NatsMessage {
                stream: name.clone(),
                subject: message.subject.to_string(),
                sequence,
                payload: message.payload.to_vec(),
                published_ns,
            });
            if pending == 0 {
                // The end of the stream: the rest of the range was deleted.
                break 'fetching;
            }
        }
        if got == 0 {
            break;
        }
    }
    // Best effort: the server removes it after READ_CONSUMER_TTL anyway.
    let consumer_name = consumer.cached_info().name.clone();
    let _ = stream.delete_consumer(&consumer_name).await;
    let state = stream_state(&js, &name).await.map_err(gone)?;
    let first_missing = out.first().map(|m| m.sequence) != Some(first);
    if first_missing && state.first_sequence > first {
        return Err(Failure::Gone(format!(
            "stream {name}: sequences {first}..={last} are no longer all in the stream (its first sequence is now {}: removed by its limits or a purge after the batch's range was decided)",
            state.first_sequence
        )));
    }
    if state.last_sequence < last {
        return Err(Failure::Gone(format!(
            "stream {name}: sequences {first}..={last} are past its last sequence {} (was the stream deleted and made again?)",
            state.last_sequence
        )));
    }
    Ok(out)
}

/// Runs of missing sequences a gap's WARN lists; the others are only counted.
const GAP_RUNS_SHOWN: usize = 20;

/// The sequences of `first..=last` missing from `read` (ascending stream sequences), as
/// inclusive runs `(from, to)` in ascending order; none when `first > last`. Sequences of
/// `read` outside the range, or not ascending, are ignored.
fn gaps(first: u64, last: u64, read: impl IntoIterator<Item = u64>) -> Vec<(u64, u64)> {
    let mut runs = Vec::new();
    // The first sequence of the range not yet accounted for.
    let mut next = first;
    for sequence in read {
        if sequence < next || sequence > last {
            continue;
        }
        if sequence > next {
            runs.push((next, sequence - 1));
        }
        match sequence.checked_add(1) {
            Some(after) => next = after,
            None => return runs,
        }
    }
    if next <= last {
        runs.push((next, last));
    }
    runs
}

/// How many sequences `runs` (from [`gaps`]) hold.
fn missing(runs: &[(u64, u64)]) -> u64 {
    runs.iter()
        .map(|&(from, to)| (to - from).saturating_add(1))
        .fold(0, u64::saturating_add)
}

/// `runs` as `3, 5..=7`: the first [`GAP_RUNS_SHOWN`], then how many more.
fn describe_runs(runs: &[(u64, u64)]) -> String {
    let mut shown: Vec<String> = runs
        .iter()
        .take(GAP_RUNS_SHOWN)
        .map(|&(from, to)| match from == to {
            true => from.to_string(),
            false => format!("{from}..={to}"),
        })
        .collect();
    if runs.len() > GAP_RUNS_SHOWN {
        shown.push(format!("and {} more runs", runs.len() - GAP_RUNS_SHOWN));
    }
    shown.join(", ")
}

impl DirectSource for NatsStreamSource {
    type Item = NatsMessage;

    /// Executor processes read sequence ranges from the server too, as Spark's executors
    /// read Kafka partitions.
    fn read_anywhere(&self) -> bool {
        true
    }

    fn name(&self) -> String {
        format!(
            "nats streams {} at {}",
            self.streams.join(","),
            self.connection.server
        )
    }

    fn latest_offsets(&self) -> Result<BTreeMap<SourcePartition, u64>> {
        Ok(self
            .states()?
            .into_iter()
            .map(|(name, state)| (SourcePartition::new(name, 0), state.last_sequence))
            .collect())
    }

    fn start_offset(&self, partition: &SourcePartition, latest: u64) -> Result<u64> {
        match self.start {
            StartSequence::Latest => Ok(latest),
            StartSequence::Sequence(s) => Ok(s.saturating_sub(1).min(latest)),
            StartSequence::Earliest => {
                let name = partition.topic.clone();
                let state = self
                    .call(move |js| async move { stream_state(&js, &name).await })
                    .map_err(|f| match f {
                        Failure::Gone(e) | Failure::Call(e) => self.error(e),
                    })?;
                // An empty stream's first sequence is 0 (new) or last + 1 (purged).
                Ok(state.first_sequence.saturating_sub(1).min(latest))
            }
        }
    }

    /// The messages at sequences `range.from + 1 ..= range.until` of stream
    /// `range.partition.topic`, in sequence order (steps 1 to 4 of the module docs). A
    /// sequence with no message (a gap: deleted one by one, or by a per-subject limit) is
    /// left out, and the read logs one WARN naming the server, the stream, the range and the
    /// missing sequences (their count and their runs).
    ///
    /// # Errors
    /// [`ReadError::Unreadable`], naming the server, the stream and the sequences, when the
    /// range's first sequence is no longer in the stream (removed by its limits or a purge),
    /// the stream is gone, or its last sequence is now before the range's end;
    /// [`ReadError::Failed`], naming the server, when a call to it failed (the task is
    /// retried).
    fn read(
        &self,
        range: &OffsetRange,
    ) -> std::result::Result<PartitionIter<NatsMessage>, ReadError> {
        let (name, first, last) = (
            range.partition.topic.clone(),
            range.from.saturating_add(1),
            range.until,
        );
        let stream = name.clone();
        match self.call(move |js| read_sequences(js, name, first, last)) {
            Ok(messages) => {
                let runs = gaps(first, last, messages.iter().map(|m| m.sequence));
                if !runs.is_empty() {
                    tracing::warn!(
                        server = %self.connection.server,
                        stream = %stream,
                        sequences = %format_args!("{first}..={last}"),
                        range = %range,
                        missing = missing(&runs),
                        missing_sequences = %describe_runs(&runs),
                        read = messages.len(),
                        "Messages of a batch's range are no longer in the stream (deleted one by one, or by a per-subject limit); the batch goes on without them."
                    );
                }
                Ok(Box::new(messages.into_iter()))
            }
            Err(Failure::Gone(reason)) => Err(ReadError::Unreadable {
                reason: format!("nats {}: {reason}", self.connection.server),
            }),
            Err(Failure::Call(e)) => Err(ReadError::Failed(self.error(e))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_are_the_runs_of_the_range_not_read() {
        assert_eq!(gaps(1, 10, 1..=10), vec![]);
        assert_eq!(
            gaps(11, 20, [12, 13, 16, 17, 18, 19]),
            vec![(11, 11), (14, 15), (20, 20)]
        );
        assert_eq!(gaps(5, 7, []), vec![(5, 7)]);
        // Out of the range, or not ascending: ignored.
        assert_eq!(gaps(5, 7, [4, 6, 6, 5, 8]), vec![(5, 5), (7, 7)]);
        assert_eq!(gaps(8, 7, []), vec![]);
        assert_eq!(
            gaps(u64::MAX - 1, u64::MAX, [u64::MAX]),
            vec![(u64::MAX - 1, u64::MAX - 1)]
        );
        assert_eq!(
            gaps(u64::MAX - 1, u64::MAX, [u64::MAX - 1, u64::MAX]),
            vec![]
        );
    }

    #[test]
    fn missing_counts_and_describe_runs_lists_the_first_twenty() {
        let runs = gaps(11, 20, [12, 13, 16, 17, 18, 19]);
        assert_eq!(missing(&runs), 4);
        assert_eq!(describe_runs(&runs), "11, 14..=15, 20");
        assert_eq!(missing(&[(0, u64::MAX)]), u64::MAX);
        // Every other sequence of 1..=50 read: 25 runs of one.
        let runs = gaps(1, 50, (1..=50).filter(|s| s % 2 == 0));
        assert_eq!((runs.len(), missing(&runs)), (25, 25));
        let text = describe_runs(&runs);
        assert!(text.starts_with("1, 3, 5"), "{text}");
        assert!(text.ends_with("37, 39, and 5 more runs"), "{text}");
    }
}
