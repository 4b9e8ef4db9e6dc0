//! The direct input DStream over a replayable source (Spark: `DirectKafkaInputDStream` of
//! `connector/kafka-0-10`, the receiver-less input): a log whose partitions hold records at
//! offsets and can be read again by range.
//!
//! As batch `t` is cut, the coordinator alone decides the batch's input: for each partition
//! of the source, the range from where the previous batch stopped to the latest offset
//! (capped by `max_rate_per_partition`). The ranges go into the metadata checkpoint before
//! the batch runs, and the batch's RDD has one partition per range that reads exactly it on
//! an executor. A lost partition is recomputed by reading the same range again; a restarted
//! program recomputes its pending batches over the same ranges and goes on from where they
//! stopped: exactly-once input with no write-ahead log. After a batch whose outputs all
//! succeeded, the source may commit its ranges back (Spark's `commitAsync`, so that other
//! tools see the progress); the checkpoint, not the source, is the truth on restart.
//!
//! Built on the polled input ([`PolledSource`]): the ranges are its splits, so reports,
//! checkpoints and the unreadable-input policy are the same.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::data::Data;
use crate::dstream::polled::Polled;
use crate::dstream::{DStream, DStreamGraph, NewSplits, PolledSource, ReadError};
use crate::error::{Error, OpInfo, Result};
use crate::rdd::PartitionIter;
use crate::time::Time;

/// One partition of a replayable source (Spark: Kafka's `TopicPartition`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SourcePartition {
    /// The topic, stream or subject.
    pub topic: String,
    /// The partition's number within it.
    pub partition: u32,
}

impl SourcePartition {
    /// Partition `partition` of `topic`.
    pub fn new(topic: impl Into<String>, partition: u32) -> SourcePartition {
        SourcePartition {
            topic: topic.into(),
            partition,
        }
    }
}

impl fmt::Display for SourcePartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.topic, self.partition)
    }
}

/// The offsets `from..until` (`until` excluded) of one partition that one batch reads
/// (Spark: `OffsetRange`). What an offset counts is the source's: a record number, an entry
/// id mapped to one, a sequence.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct OffsetRange {
    /// The partition.
    pub partition: SourcePartition,
    /// The first offset read.
    pub from: u64,
    /// One past the last offset read.
    pub until: u64,
}

impl OffsetRange {
    /// How many offsets the range spans (`until - from`).
    pub fn count(&self) -> u64 {
        self.until.saturating_sub(self.from)
    }
}

impl fmt::Display for OffsetRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} offsets {}..{}",
            self.partition, self.from, self.until
        )
    }
}

/// A replayable source that a direct stream reads by offset ranges (what Spark's direct
/// Kafka stream asks of Kafka). `latest_offsets` and `start_offset` run on a blocking thread
/// of the coordinator as a batch is cut; `read` runs in tasks on executors, possibly more than
/// once for one range (a retried task, a recomputed partition), and must return the same
/// records each time; `commit` runs on the coordinator after a batch succeeded.
pub trait DirectSource: Send + Sync + 'static {
    /// The record type.
    type Item: Data;

    /// A short name for logs and errors, e.g. `kafka topic events at 127.0.0.1:9092`.
    fn name(&self) -> String;

    /// The offset after the newest record of every partition now (Spark: the latest offsets
    /// of `DirectKafkaInputDStream.latestOffsets`). A partition that appears is read from
    /// [`start_offset`](Self::start_offset); one that disappears fails the batch with an
    /// error naming it.
    ///
    /// # Errors
    /// An error naming the source (a broker that cannot be reached): the batch fails with
    /// it and the next batch asks again.
    fn latest_offsets(&self) -> Result<BTreeMap<SourcePartition, u64>>;

    /// Where to start reading `partition`, seen for the first time, whose latest offset is
    /// `latest` (e.g. a consumer group's committed offset, or the earliest or the latest
    /// offset by the source's reset policy).
    ///
    /// # Errors
    /// An error naming the source and partition.
    fn start_offset(&self, partition: &SourcePartition, latest: u64) -> Result<u64>;

    /// The offset `records` records after `from` in `partition`, at most `latest`: where a
    /// batch capped at `records` stops. Default: `min(from + records, latest)`, for dense
    /// offsets (Kafka's); a source whose offsets have gaps (stream entry ids) counts its
    /// records instead.
    ///
    /// # Errors
    /// An error naming the source and partition.
    fn offset_after(
        &self,
        _partition: &SourcePartition,
        from: u64,
        records: u64,
        latest: u64,
    ) -> Result<u64> {
        Ok(latest.min(from.saturating_add(records)))
    }

    /// Whether an offset range's length is its number of records (Kafka's offsets, give or
    /// take compaction), so that backpressure can split its rate over partitions by lag;
    /// default `true`. A source whose offsets have gaps (stream entry ids) returns `false`,
    /// and the rate is split evenly over the partitions that have records to read.
    fn offsets_count_records(&self) -> bool {
        true
    }

    /// The records of `range`, in offset order, read inside a task.
    ///
    /// # Errors
    /// [`ReadError::Unreadable`] when the range is no longer available (retention passed:
    /// name the partition and offsets): the batch fails and the context stops, as no retry
    /// can help; [`ReadError::Failed`] for a failure a retry may cure (the task is retried).
    fn read(
        &self,
        range: &OffsetRange,
    ) -> std::result::Result<PartitionIter<Self::Item>, ReadError>;

    /// Whether tasks on executor processes (other processes, possibly on other hosts) may
    /// read this source's ranges, as Spark's executors read Kafka partitions; default
    /// `false`, so that a source over the coordinator's memory stays there. A source over a
    /// broker returns `true`. See [`PolledSource::read_anywhere`].
    fn read_anywhere(&self) -> bool {
        false
    }

    /// Commits the ranges of a batch whose outputs all succeeded back to the source (Spark:
    /// `CanCommitOffsets.commitAsync`), in batch order. Default: nothing.
    ///
    /// # Errors
    /// An error naming the source; it is logged at WARN and the run goes on (the checkpoint,
    /// not the commit, is where a restart resumes).
    fn commit(&self, _ranges: &[OffsetRange]) -> Result<()> {
        Ok(())
    }
}

/// How a direct stream takes its input. With backpressure on
/// (`StreamingConfig::backpressure`), the rate the PID estimator allows the stream (from
/// `backpressure_initial_rate` at start) is also split over its partitions in proportion
/// to how far behind each is, as Spark's `maxMessagesPerPartition` does, and each partition
/// takes the smaller of its share and `max_rate_per_partition`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct DirectOptions {
    /// The most records a batch reads per partition per second of batch interval (Spark:
    /// `spark.streaming.kafka.maxRatePerPartition`); `None`: everything up to the latest
    /// offset. A partition that is behind catches up over the following batches.
    pub max_rate_per_partition: Option<f64>,
    /// Whether a batch that reads no record (every range empty) has no RDD rather than an
    /// empty one (default `false`, as Spark's direct Kafka stream, which always makes one);
    /// see [`PolledSource::produces_rdd`] for what the operators downstream then do.
    pub skip_empty_batches: bool,
}

impl DirectOptions {
    /// Makes a batch that reads no record produce no RDD, as the field of the same name
    /// says: output operations downstream then do not run for it.
    pub fn skip_empty_batches(mut self, skip: bool) -> Self {
        self.skip_empty_batches = skip;
        self
    }

    /// Caps each partition at `records_per_sec` per second of batch interval (at least one
    /// record per batch).
    pub fn max_rate_per_partition(mut self, records_per_sec: f64) -> Self {
        self.max_rate_per_partition = Some(records_per_sec);
        self
    }
}

/// The polled source a direct source becomes: its splits are offset ranges, its state the
/// next offset of each partition.
struct Direct<S: DirectSource> {
    source: S,
    options: DirectOptions,
    batch_interval: Duration,
    next: Mutex<BTreeMap<SourcePartition, u64>>,
    /// The rate backpressure allows over all partitions, records per second.
    rate: Mutex<Option<f64>>,
}

impl<S: DirectSource> Direct<S> {
    /// The most records one batch takes from a partition `lag` records behind when all are
    /// `total_lag` behind (Spark: `DirectKafkaInputDStream.maxMessagesPerPartition`): the
    /// backpressure rate's share in proportion to the lag, at most `max_rate_per_partition`,
    /// times the batch interval, at least one record.
    fn cap(&self, lag: u64, total_lag: u64) -> Option<u64> {
        let backpressure = (*self.rate.lock())
            .filter(|_| total_lag > 0)
            .map(|rate| rate * lag as f64 / total_lag as f64);
        let rate = match (backpressure, self.options.max_rate_per_partition) {
            (Some(b), Some(m)) => b.min(m),
            (b, m) => b.or(m)?,
        };
        Some(((rate * self.batch_interval.as_secs_f64()).floor() as u64).max(1))
    }
}

impl<S: DirectSource> PolledSource for Direct<S> {
    type Item = S::Item;
    type Split = OffsetRange;
    type State = BTreeMap<SourcePartition, u64>;

    fn name(&self) -> String {
        self.source.name()
    }

    fn describe(&self, range: &OffsetRange) -> String {
        range.to_string()
    }

    fn read_anywhere(&self) -> bool {
        self.source.read_anywhere()
    }

    fn start(&self) -> Result<()> {
        // A source that cannot be reached at start stops the start with its error.
        self.source.latest_offsets().map(drop)
    }

    fn poll(&self, _t: Time) -> Result<NewSplits<OffsetRange>> {
        let latest = self.source.latest_offsets()?;
        let mut next = self.next.lock();
        if let Some(gone) = next.keys().find(|p| !latest.contains_key(p)) {
            return Err(Error::User(format!(
                "{}: partition {gone} is gone (revoked, or its topic deleted) with records from offset {} still to read",
                self.source.name(),
                next[gone]
            )));
        }
        let mut starts = Vec::with_capacity(latest.len());
        for (partition, &latest) in &latest {
            let from = match next.get(partition) {
                Some(&from) => from,
                None => self.source.start_offset(partition, latest)?,
            };
            if latest < from {
                return Err(Error::User(format!(
                    "{}: partition {partition}'s latest offset {latest} is before offset {from}, where the stream stands (was the topic recreated?)",
                    self.source.name()
                )));
            }
            starts.push((partition, from, latest));
        }
        // How far behind each partition is, as backpressure splits its rate: in records, or
        // the same for every partition with records when offsets do not count records.
        let dense = self.source.offsets_count_records();
        let lag = |from: u64, latest: u64| match dense {
            true => latest - from,
            false => u64::from(latest > from),
        };
        let total_lag: u64 = starts
            .iter()
            .map(|(_, from, latest)| lag(*from, *latest))
            .sum();
        let mut ranges = Vec::with_capacity(starts.len());
        let mut advanced = next.clone();
        for (partition, from, latest) in starts {
            let until = match self.cap(lag(from, latest), total_lag) {
                Some(cap) if latest > from => self
                    .source
                    .offset_after(partition, from, cap, latest)?
                    .clamp(from, latest),
                _ => latest,
            };
            advanced.insert(partition.clone(), until);
            ranges.push(OffsetRange {
                partition: partition.clone(),
                from,
                until,
            });
        }
        *next = advanced;
        Ok(ranges.into())
    }

    fn read(&self, range: &OffsetRange) -> std::result::Result<PartitionIter<S::Item>, ReadError> {
        if range.count() == 0 {
            return Ok(Box::new(std::iter::empty()));
        }
        self.source.read(range)
    }

    fn state(&self) -> Self::State {
        self.next.lock().clone()
    }

    fn restore(&self, state: Self::State) {
        *self.next.lock() = state;
    }

    fn rate_controlled(&self) -> bool {
        true
    }

    fn produces_rdd(&self, splits: &[OffsetRange]) -> bool {
        !self.options.skip_empty_batches || splits.iter().any(|r| r.count() > 0)
    }

    fn set_rate(&self, records_per_sec: Option<f64>) {
        *self.rate.lock() = records_per_sec;
    }

    fn batch_completed(&self, t: Time, ranges: &[OffsetRange]) {
        if let Err(e) = self.source.commit(ranges) {
            tracing::warn!(input = %self.source.name(), batch_time = %t, error = %e, "Could not commit the batch's offsets to the source; a restart resumes from the checkpoint all the same.");
        }
    }
}

/// A direct input DStream and its offset ranges per batch (see
/// [`DStreamGraph::direct_stream`]).
pub struct DirectStream<T: Data> {
    stream: DStream<T>,
    ranges: Arc<dyn Fn(Time) -> Option<Vec<OffsetRange>> + Send + Sync>,
}

impl<T: Data> Clone for DirectStream<T> {
    fn clone(&self) -> Self {
        DirectStream {
            stream: self.stream.clone(),
            ranges: self.ranges.clone(),
        }
    }
}

impl<T: Data> fmt::Debug for DirectStream<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DirectStream")
            .field("stream", &self.stream.id())
            .finish_non_exhaustive()
    }
}

impl<T: Data> DirectStream<T> {
    /// The stream of records: batch `t` holds the records of its offset ranges, one
    /// partition per source partition, each in offset order.
    pub fn stream(&self) -> &DStream<T> {
        &self.stream
    }

    /// The offset ranges batch `t` reads, one per source partition (Spark:
    /// `HasOffsetRanges.offsetRanges` on the batch's RDD); `None` for a batch not cut yet
    /// or long done. Call it in an output operation of the batch, e.g. in `foreach_rdd`.
    pub fn offset_ranges(&self, t: Time) -> Option<Vec<OffsetRange>> {
        (self.ranges)(t)
    }
}

impl DStreamGraph {
    /// A direct input DStream over `source` (Spark: `KafkaUtils.createDirectStream`): see
    /// the [module docs](crate::dstream::direct) for what each batch reads and how it
    /// recovers. What each batch read is reported to listeners as a polled input's
    /// (`on_polled_input`, the ranges as its splits).
    ///
    /// # Example
    /// ```
    /// # use std::collections::BTreeMap;
    /// # use rivulet_framework::dstream::*;
    /// # use rivulet_framework::rdd::PartitionIter;
    /// # use rivulet_framework::Result;
    /// /// A log of 5 numbers in one partition.
    /// struct Numbers;
    /// impl DirectSource for Numbers {
    ///     type Item = u64;
    ///     fn name(&self) -> String { "numbers".into() }
    ///     fn latest_offsets(&self) -> Result<BTreeMap<SourcePartition, u64>> {
    ///         Ok([(SourcePartition::new("numbers", 0), 5)].into())
    ///     }
    ///     fn start_offset(&self, _: &SourcePartition, _: u64) -> Result<u64> { Ok(0) }
    ///     fn read(&self, r: &OffsetRange) -> std::result::Result<PartitionIter<u64>, ReadError> {
    ///         Ok(Box::new(r.from..r.until))
    ///     }
    /// }
    /// let batches = rivulet_framework::testing::run_graph(2, |graph| {
    ///     graph
    ///         .direct_stream(Numbers, DirectOptions::default().max_rate_per_partition(3.0))
    ///         .stream()
    ///         .clone()
    /// });
    /// // 1 s batches at 3 records per second: 3 records, then the other 2.
    /// assert_eq!(batches, vec![vec![0, 1, 2], vec![3, 4]]);
    /// ```
    #[track_caller]
    pub fn direct_stream<S: DirectSource>(
        &self,
        source: S,
        options: DirectOptions,
    ) -> DirectStream<S::Item> {
        self.direct_stream_op(OpInfo::caller("direct_stream"), source, options)
    }

    /// [`direct_stream`](DStreamGraph::direct_stream) named after a caller's operator.
    pub fn direct_stream_op<S: DirectSource>(
        &self,
        op: OpInfo,
        source: S,
        options: DirectOptions,
    ) -> DirectStream<S::Item> {
        let direct = Direct {
            source,
            options,
            batch_interval: self.batch_interval(),
            next: Mutex::new(BTreeMap::new()),
            rate: Mutex::new(None),
        };
        let (stream, polled): (DStream<S::Item>, Arc<Polled<Direct<S>>>) =
            self.polled_stream_with(op, direct);
        DirectStream {
            stream,
            ranges: Arc::new(move |t| polled.splits_of(t)),
        }
    }
}
