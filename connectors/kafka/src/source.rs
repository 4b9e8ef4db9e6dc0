//! Kafka topics as a direct source (Spark: `DirectKafkaInputDStream`): each topic partition is
//! one source partition, Kafka's offsets are the offsets, and a batch's range of a partition
//! is read with a consumer assigned to it at the range's first offset.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use rivulet_framework::dstream::{DirectSource, OffsetRange, ReadError, SourcePartition};
use rivulet_framework::rdd::PartitionIter;
use rivulet_framework::{Error, Result};
use serde::{Deserialize, Serialize};

/// How long one metadata or watermark request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a read of one range may wait for records the broker said it has.
const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Where a partition seen for the first time starts (Kafka's `auto.offset.reset`), unless
/// the consumer group has a committed offset for it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum StartOffset {
    /// Its earliest offset on the broker.
    #[default]
    Earliest,
    /// Its latest offset at the first batch: only records produced later.
    Latest,
}

/// One Kafka record (Spark: `ConsumerRecord`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KafkaRecord {
    /// Its topic.
    pub topic: String,
    /// Its partition.
    pub partition: u32,
    /// Its offset.
    pub offset: u64,
    /// Its key, if it has one.
    pub key: Option<Vec<u8>>,
    /// Its value, if it has one (`None`: a tombstone).
    pub payload: Option<Vec<u8>>,
    /// Its timestamp, ms since the Unix epoch, if the broker gave one.
    pub timestamp_ms: Option<i64>,
}

impl KafkaRecord {
    /// The value as text; `None` for a tombstone or a value that is not UTF-8.
    pub fn text(&self) -> Option<&str> {
        std::str::from_utf8(self.payload.as_deref()?).ok()
    }
}

/// A direct source over Kafka topics; give it to `StreamingContext::direct_stream`.
///
/// With a consumer group ([`group`](Self::group)), partitions seen for the first time start
/// at the group's committed offset when it has one, and each batch's ranges are committed
/// to the group after the batch's outputs succeeded (Spark's `commitAsync`), so that Kafka's
/// tools show the job's progress; the checkpoint, not the group, is where a restarted
/// program resumes.
///
/// # Example
/// ```no_run
/// use rivulet_kafka::KafkaSource;
/// let source = KafkaSource::new("127.0.0.1:9092", ["events"]).group("wordcount");
/// ```
#[derive(Clone)]
pub struct KafkaSource {
    brokers: String,
    topics: Vec<String>,
    group: Option<String>,
    start: StartOffset,
    settings: Vec<(String, String)>,
    /// The consumer for metadata and commits, made at first use and again after an error.
    control: Arc<parking_lot::Mutex<Option<BaseConsumer>>>,
}

impl fmt::Debug for KafkaSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaSource")
            .field("brokers", &self.brokers)
            .field("topics", &self.topics)
            .field("group", &self.group)
            .field("start", &self.start)
            .finish_non_exhaustive()
    }
}

impl KafkaSource {
    /// Reads `topics` (all their partitions, new ones included as they appear) from the
    /// cluster at `brokers` (`host:port[,host:port...]`), from their earliest offsets.
    pub fn new<I, S>(brokers: &str, topics: I) -> KafkaSource
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        KafkaSource {
            brokers: brokers.to_string(),
            topics: topics.into_iter().map(Into::into).collect(),
            group: None,
            start: StartOffset::Earliest,
            settings: Vec::new(),
            control: Arc::default(),
        }
    }

    /// Commits each batch's ranges to consumer group `group`, and starts new partitions at
    /// its committed offsets.
    pub fn group(mut self, group: impl Into<String>) -> Self {
        self.group = Some(group.into());
        self
    }

    /// Where partitions without a committed offset start (default: the earliest offset).
    pub fn start_at(mut self, start: StartOffset) -> Self {
        self.start = start;
        self
    }

    /// Sets a librdkafka consumer property (e.g. `security.protocol`, `sasl.mechanism`).
    ///
    /// Authentication is librdkafka's: `security.protocol=SASL_PLAINTEXT`,
    /// `sasl.mechanism=PLAIN`, `sasl.username`, `sasl.password` (this build has no TLS and no
    /// SCRAM). librdkafka reports a refused password as `Local: Authentication failure`;
    /// what the source's calls then return (the metadata request's error or timeout, naming
    /// the brokers, failing the start or the batch) is not tested: librdkafka's mock cluster
    /// has no SASL.
    pub fn set(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.settings.push((key.into(), value.into()));
        self
    }

    fn error(&self, what: &str, e: impl fmt::Display) -> Error {
        Error::User(format!("kafka {}: {what}: {e}", self.brokers))
    }

    /// A consumer of the cluster that never commits on its own.
    fn consumer(&self) -> Result<BaseConsumer> {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.brokers)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "false")
            // The direct stream's own group id when none is given: Kafka requires one to
            // consume, and nothing is committed to it.
            .set(
                "group.id",
                self.group.as_deref().unwrap_or("rivulet-direct-stream"),
            )
            .set("log_level", "3");
        for (k, v) in &self.settings {
            config.set(k, v);
        }
        config
            .create()
            .map_err(|e| self.error("cannot create a consumer", e))
    }

    /// Runs `f` with the control consumer; an error drops it, so that the next call
    /// reconnects (to a broker that came back, or another of the cluster).
    fn with_control<R>(&self, f: impl FnOnce(&BaseConsumer) -> Result<R>) -> Result<R> {
        let mut control = self.control.lock();
        if control.is_none() {
            *control = Some(self.consumer()?);
        }
        let result = match control.as_ref() {
            Some(consumer) => f(consumer),
            None => Err(self.error("cannot create a consumer", "unknown")),
        };
        if result.is_err() {
            *control = None;
        }
        result
    }

    fn start_offset_with(
        &self,
        consumer: &BaseConsumer,
        partition: &SourcePartition,
        latest: u64,
    ) -> Result<u64> {
        if self.group.is_some() {
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition(&partition.topic, partition.partition as i32);
            let committed = consumer
                .committed_offsets(tpl, REQUEST_TIMEOUT)
                .map_err(|e| {
                    self.error(&format!("cannot read {partition}'s committed offset"), e)
                })?;
            if let Some(Offset::Offset(n)) = committed
                .find_partition(&partition.topic, partition.partition as i32)
                .map(|e| e.offset())
            {
                return Ok((n.max(0) as u64).min(latest));
            }
        }
        Ok(match self.start {
            StartOffset::Earliest => {
                self.watermarks(consumer, &partition.topic, partition.partition as i32)?
                    .0
            }
            StartOffset::Latest => latest,
        })
    }

    fn partitions(&self, consumer: &BaseConsumer, topic: &str) -> Result<Vec<i32>> {
        let metadata = consumer
            .fetch_metadata(Some(topic), REQUEST_TIMEOUT)
            .map_err(|e| self.error(&format!("cannot read topic {topic}'s metadata"), e))?;
        let Some(t) = metadata.topics().iter().find(|t| t.name() == topic) else {
            return Err(self.error(&format!("topic {topic}"), "not in the cluster's metadata"));
        };
        if let Some(e) = t.error() {
            let code = RDKafkaErrorCode::from(e);
            return Err(match code {
                RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic => {
                    self.error(&format!("topic {topic}"), "does not exist")
                }
                other => self.error(&format!("topic {topic}"), other),
            });
        }
        Ok(t.partitions().iter().map(|p| p.id()).collect())
    }

    fn watermarks(
        &self,
        consumer: &BaseConsumer,
        topic: &str,
        partition: i32,
    ) -> Result<(u64, u64)> {
        let (low, high) = consumer
            .fetch_watermarks(topic, partition, REQUEST_TIMEOUT)
            .map_err(|e| self.error(&format!("cannot read {topic}/{partition}'s offsets"), e))?;
        Ok((low.max(0) as u64, high.max(0) as u64))
    }
}

impl DirectSource for KafkaSource {
    type Item = KafkaRecord;

    /// Executor processes read offset ranges from the brokers too, as Spark's executors do.
    fn read_anywhere(&self) -> bool {
        true
    }

    fn name(&self) -> String {
        format!("kafka topics {} at {}", self.topics.join(","), self.brokers)
    }

    fn latest_offsets(&self) -> Result<BTreeMap<SourcePartition, u64>> {
        self.with_control(|consumer| {
            let mut latest = BTreeMap::new();
            for topic in &self.topics {
                for partition in self.partitions(consumer, topic)? {
                    let (_, high) = self.watermarks(consumer, topic, partition)?;
                    latest.insert(SourcePartition::new(topic.clone(), partition as u32), high);
                }
            }
            Ok(latest)
        })
    }

    fn start_offset(&self, partition: &SourcePartition, latest: u64) -> Result<u64> {
        self.with_control(|consumer| self.start_offset_with(consumer, partition, latest))
    }

    fn read(
        &self,
        range: &OffsetRange,
    ) -> std::result::Result<PartitionIter<KafkaRecord>, ReadError> {
        let (topic, partition) = (&range.partition.topic, range.partition.partition as i32);
        let consumer = self.consumer()?;
        let (low, _) = self.watermarks(&consumer, topic, partition)?;
        if low > range.from {
            return Err(ReadError::Unreadable {
                reason: format!(
                    "offsets {}..{} of {topic}/{partition} are no longer on the broker (its earliest offset is {low}: retention passed)",
                    range.from, range.until
                ),
            });
        }
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, partition, Offset::Offset(range.from as i64))
            .map_err(|e| self.error("cannot assign", e))?;
        consumer
            .assign(&tpl)
            .map_err(|e| self.error(&format!("cannot assign {topic}/{partition}"), e))?;
        let mut records = Vec::with_capacity(range.count().min(1 << 20) as usize);
        let mut next = range.from;
        let deadline = Instant::now() + READ_TIMEOUT;
        while next < range.until {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ReadError::Failed(self.error(
                    &format!(
                        "reading {topic}/{partition} offsets {}..{}",
                        range.from, range.until
                    ),
                    format!("only reached offset {next} within {READ_TIMEOUT:?}"),
                )));
            }
            match consumer.poll(left.min(Duration::from_secs(1))) {
                None => {}
                Some(Err(KafkaError::PartitionEOF(_))) => {}
                Some(Err(e)) => {
                    return Err(ReadError::Failed(
                        self.error(&format!("reading {topic}/{partition}"), e),
                    ))
                }
                Some(Ok(m)) => {
                    let offset = m.offset().max(0) as u64;
                    if offset < next {
                        continue;
                    }
                    if offset >= range.until {
                        break;
                    }
                    // Offsets may skip (compacted topics, transaction markers): the range is
                    // what the broker holds between its ends.
                    next = offset + 1;
                    records.push(KafkaRecord {
                        topic: topic.clone(),
                        partition: range.partition.partition,
                        offset,
                        key: m.key().map(<[u8]>::to_vec),
                        payload: m.payload().map(<[u8]>::to_vec),
                        timestamp_ms: m.timestamp().to_millis(),
                    });
                    if next >= range.until {
                        break;
                    }
                }
            }
        }
        Ok(Box::new(records.into_iter()))
    }

    fn commit(&self, ranges: &[OffsetRange]) -> Result<()> {
        if self.group.is_none() || ranges.iter().all(|r| r.count() == 0) {
            return Ok(());
        }
        let mut tpl = TopicPartitionList::new();
        for r in ranges.iter().filter(|r| r.count() > 0) {
            tpl.add_partition_offset(
                &r.partition.topic,
                r.partition.partition as i32,
                Offset::Offset(r.until as i64),
            )
            .map_err(|e| self.error("cannot commit", e))?;
        }
        // Handed to librdkafka's own threads: the coordinator does not wait for the broker.
        self.with_control(|consumer| {
            consumer
                .commit(&tpl, CommitMode::Async)
                .map_err(|e| self.error("cannot commit offsets", e))
        })
    }
}
