//! An exactly-once Kafka output (beyond Spark, whose Kafka outputs are at-least-once): each
//! batch's records are written in one Kafka transaction together with a progress record
//! naming the batch and the offset ranges its Kafka input read, and the ranges are also
//! sent to the transaction as the consumer group's offsets (Kafka's
//! `sendOffsetsToTransaction`, so that Kafka's tools show the output's progress).
//!
//! A batch recomputed after a restart looks up the last progress record of its
//! transactional id first: if the ranges published reach past the batch's, it publishes
//! nothing (the batch's ranges are the same as before the crash: see [`ExactlyOnce`]).
//! Otherwise any transaction the dead process left open is aborted when the new producer
//! registers (`initTransactions` fences the old producer), and the batch is written again.
//! A consumer with `isolation.level=read_committed` therefore sees every batch's records
//! exactly once, on a broker that implements transactions (librdkafka's mock cluster does
//! not: see [`ExactlyOnce`]).
//!
//! The progress record, not the group's committed offsets, decides: librdkafka's mock
//! cluster does not keep offsets committed in a transaction (measured: the group's offset
//! stays unset), and the record works the same on any broker. Outputs run one batch at a
//! time in batch order (rivulet's default, as Spark's `concurrentJobs` = 1), which the
//! progress rule relies on.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use rivulet_framework::data::Data;
use std::collections::BTreeMap;

use rivulet_framework::dstream::{DStream, DirectStream, OffsetRange, SourcePartition};
use rivulet_framework::time::Time;
use rivulet_framework::BoxError;
use serde::{Deserialize, Serialize};

use crate::sink::send_waiting;
use crate::{KafkaRecord, KafkaSink};

/// How long a transaction's steps (registering the producer, committing, aborting) and a
/// read of the progress topic may take.
const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(30);

/// The header every record of a batch carries: the batch's time, ms, as decimal text.
pub const BATCH_HEADER: &str = "rivulet-batch-ms";

/// The progress records read back at a time, from the end of the progress topic.
const PROGRESS_WINDOW: i64 = 64;

/// The transaction's marker: which batch of which output committed, with what input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Progress {
    /// The batch's time, ms.
    batch_ms: i64,
    /// The offset ranges the batch's Kafka input read.
    ranges: Vec<OffsetRange>,
}

/// The producer of one transactional id and what it knows of the output's progress.
struct Session {
    producer: ThreadedProducer<DefaultProducerContext>,
    /// A consumer of the output's own group, for its metadata in the transaction.
    group: BaseConsumer,
    /// Where the newest committed transaction's ranges end, per source partition.
    published_until: BTreeMap<SourcePartition, u64>,
}

/// Where [`save_to_kafka_exactly_once`] writes: a [`KafkaSink`], the transactional id (one
/// per output operation, stable across restarts) and the topic of its progress records.
///
/// Each batch's records go in one Kafka transaction with a progress record naming the batch
/// and the offset ranges its Kafka input read (the ranges are also sent to the transaction
/// as the consumer group's offsets, Kafka's `sendOffsetsToTransaction`). A batch recomputed
/// after a restart first looks up the newest committed progress record of the id: if its
/// ranges already reach past every range the batch reads, the batch's records were published
/// and nothing is written again; otherwise the new producer's registration
/// (`initTransactions`) aborts whatever the dead process left open, and the batch is
/// written. Offsets, not batch times, say what was published, so a restart never skips
/// records it did not publish.
///
/// **Why the ranges are the same after a crash.** Spark writes a batch's offset ranges with
/// its metadata checkpoint, after the batch's outputs: a process killed after a batch's
/// transaction committed and before that checkpoint would cut the batch again from the same
/// offsets to the then latest ones, and publish the longer batch whole again. rivulet makes
/// the ranges durable before the outputs run (the input cut,
/// [`InputCut`](rivulet_framework::checkpoint::InputCut), with a checkpoint directory), so
/// the batch is recomputed over the ranges it had and skipped here. Should the ranges differ
/// all the same (the checkpoint directory was replaced), the batch is published whole again
/// with a warning, and the records published before count twice for a `read_committed`
/// reader: never fewer.
///
/// Every record carries its batch's time in the [`BATCH_HEADER`] header, so that a reader of
/// a broker without transaction isolation can tell a batch written again from a new one:
/// librdkafka's mock cluster is one (its `EndTxn` commits and aborts nothing: what a
/// transaction sent is visible at once, so the records a killed run had sent before its
/// commit stay beside the batch written again; the records are acknowledged before the
/// progress record is produced, so a progress record never stands for records the broker
/// does not hold). This relies on outputs running one batch at a time in batch order
/// (rivulet's default, as Spark's `concurrentJobs` = 1). Beyond Spark, whose Kafka outputs
/// are at-least-once.
#[derive(Clone, Debug)]
pub struct ExactlyOnce {
    sink: KafkaSink,
    transactional_id: String,
    progress_topic: String,
}

impl ExactlyOnce {
    /// Transactions of `transactional_id` into `sink`'s topic; progress records go to topic
    /// `<topic>.progress` (partition 0) unless [`progress_topic`](Self::progress_topic)
    /// says otherwise. The id must be the same for the same output at every restart and
    /// differ between outputs; it is also the consumer group its offsets are sent to.
    pub fn new(sink: KafkaSink, transactional_id: &str) -> ExactlyOnce {
        let progress_topic = format!("{}.progress", sink.topic);
        ExactlyOnce {
            sink,
            transactional_id: transactional_id.to_string(),
            progress_topic,
        }
    }

    /// The topic the progress records go to (one partition is read: partition 0).
    pub fn progress_topic(mut self, topic: impl Into<String>) -> Self {
        self.progress_topic = topic.into();
        self
    }

    fn error(&self, what: &str, e: impl std::fmt::Display) -> BoxError {
        format!(
            "kafka {} transactional id {}: {what}: {e}",
            self.sink.brokers, self.transactional_id
        )
        .into()
    }

    /// Registers the producer (aborting what a previous one of the id left open) and reads
    /// the last committed progress record.
    fn open(&self) -> Result<Session, BoxError> {
        let producer: ThreadedProducer<DefaultProducerContext> = self
            .sink
            .config()
            .set("transactional.id", &self.transactional_id)
            .create()
            .map_err(|e| self.error("cannot create a transactional producer", e))?;
        producer
            .init_transactions(TRANSACTION_TIMEOUT)
            .map_err(|e| self.error("cannot register the transactional producer", e))?;
        let group = self
            .consumer(&self.transactional_id)
            .map_err(|e| self.error("cannot create the group's consumer", e))?;
        let published_until = self
            .last_published()?
            .map(|p| {
                p.ranges
                    .into_iter()
                    .map(|r| (r.partition, r.until))
                    .collect()
            })
            .unwrap_or_default();
        Ok(Session {
            producer,
            group,
            published_until,
        })
    }

    fn consumer(&self, group: &str) -> rdkafka::error::KafkaResult<BaseConsumer> {
        ClientConfig::new()
            .set("bootstrap.servers", &self.sink.brokers)
            .set("group.id", group)
            .set("isolation.level", "read_committed")
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false")
            .set("log_level", "3")
            .create()
    }

    /// The newest committed progress record of this id, reading the progress topic
    /// backwards a window at a time; `None` when there is none.
    fn last_published(&self) -> Result<Option<Progress>, BoxError> {
        let topic = &self.progress_topic;
        let reader = self
            .consumer(&format!("{}.reader", self.transactional_id))
            .map_err(|e| self.error("cannot create a consumer", e))?;
        let (low, high) = match reader.fetch_watermarks(topic, 0, TRANSACTION_TIMEOUT) {
            Ok(marks) => marks,
            Err(e)
                if e.rdkafka_error_code()
                    == Some(rdkafka::types::RDKafkaErrorCode::UnknownTopicOrPartition) =>
            {
                return Ok(None)
            }
            Err(e) => return Err(self.error(&format!("cannot read topic {topic}'s offsets"), e)),
        };
        let mut until = high;
        while until > low {
            let from = (until - PROGRESS_WINDOW).max(low);
            let mut newest = None;
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition_offset(topic, 0, Offset::Offset(from))
                .map_err(|e| self.error("cannot assign", e))?;
            reader
                .assign(&tpl)
                .map_err(|e| self.error(&format!("cannot assign {topic}/0"), e))?;
            let deadline = std::time::Instant::now() + TRANSACTION_TIMEOUT;
            loop {
                let position = reader
                    .position()
                    .ok()
                    .and_then(|p| p.find_partition(topic, 0).map(|e| e.offset()));
                if matches!(position, Some(Offset::Offset(p)) if p >= until) {
                    break;
                }
                if std::time::Instant::now() > deadline {
                    return Err(self.error(
                        &format!("reading {topic}/0 offsets {from}..{until}"),
                        "timed out",
                    ));
                }
                match reader.poll(Duration::from_millis(200)) {
                    None => {}
                    Some(Err(e)) => return Err(self.error(&format!("reading {topic}/0"), e)),
                    Some(Ok(m)) => {
                        if m.offset() >= until {
                            break;
                        }
                        if m.key() != Some(self.transactional_id.as_bytes()) {
                            continue;
                        }
                        let progress: Progress = serde_json::from_slice(
                            m.payload().unwrap_or_default(),
                        )
                        .map_err(|e| {
                            self.error(
                                &format!(
                                    "{topic}/0 offset {} is not a progress record",
                                    m.offset()
                                ),
                                e,
                            )
                        })?;
                        newest = Some(progress);
                    }
                }
            }
            if newest.is_some() {
                return Ok(newest);
            }
            until = from;
        }
        Ok(None)
    }

    /// Writes batch `t`'s records and its progress in one transaction,
    /// unless the newest committed progress record reaches past every range it reads.
    fn publish<T>(
        &self,
        session: &mut Session,
        t: Time,
        ranges: Vec<OffsetRange>,
        records: impl FnOnce() -> Result<Vec<T>, BoxError>,
        record: &(dyn Fn(&T) -> (Option<Vec<u8>>, Vec<u8>) + Send + Sync),
    ) -> Result<(), BoxError> {
        let batch_ms = t.as_ms();
        let reading: Vec<&OffsetRange> = ranges.iter().filter(|r| r.count() > 0).collect();
        let published = |r: &OffsetRange| session.published_until.get(&r.partition).copied();
        if !reading.is_empty()
            && reading
                .iter()
                .all(|r| published(r).is_some_and(|until| until >= r.until))
        {
            tracing::info!(
                "kafka transactional id {}: batch {t}'s records were published before the restart; not again",
                self.transactional_id
            );
            return Ok(());
        }
        if let Some(r) = reading
            .iter()
            .find(|r| published(r).is_some_and(|until| until > r.from))
        {
            tracing::warn!(
                "kafka transactional id {}: batch {t} reads {r}, of which offsets up to {} were published before: its ranges differ from those published (was the checkpoint directory replaced?); it is published whole, and the records published before count twice",
                self.transactional_id,
                published(r).unwrap_or(r.from)
            );
        }
        let records = records()?;
        let published_ranges = ranges.clone();
        let started = std::time::Instant::now();
        let producer = &session.producer;
        producer
            .begin_transaction()
            .map_err(|e| self.error("cannot begin a transaction", e))?;
        let batch_text = batch_ms.to_string();
        let written = (|| -> Result<(), BoxError> {
            for r in &records {
                let (key, value) = record(r);
                let headers = OwnedHeaders::new().insert(Header {
                    key: BATCH_HEADER,
                    value: Some(&batch_text),
                });
                let mut message = BaseRecord::<Vec<u8>, Vec<u8>>::to(&self.sink.topic)
                    .payload(&value)
                    .headers(headers);
                if let Some(key) = &key {
                    message = message.key(key);
                }
                send_waiting(producer, message).map_err(|e| {
                    self.error(&format!("cannot produce to topic {}", self.sink.topic), e)
                })?;
            }
            let mut offsets = TopicPartitionList::new();
            for r in &ranges {
                offsets
                    .add_partition_offset(
                        &r.partition.topic,
                        r.partition.partition as i32,
                        Offset::Offset(r.until as i64),
                    )
                    .map_err(|e| self.error("cannot list the offsets", e))?;
            }
            // The records are acknowledged before the progress record is produced: even a
            // broker without transaction isolation then never holds a batch's progress
            // record without all of its records.
            producer
                .flush(TRANSACTION_TIMEOUT)
                .map_err(|e| self.error(&format!("records of batch {t} not acknowledged"), e))?;
            let progress = serde_json::to_vec(&Progress {
                batch_ms,
                ranges: ranges.clone(),
            })?;
            send_waiting(
                producer,
                BaseRecord::to(&self.progress_topic)
                    .partition(0)
                    .key(self.transactional_id.as_bytes())
                    .payload(&progress),
            )
            .map_err(|e| {
                self.error(
                    &format!("cannot produce to topic {}", self.progress_topic),
                    e,
                )
            })?;
            if offsets.count() > 0 {
                let metadata = session
                    .group
                    .group_metadata()
                    .ok_or_else(|| self.error("no consumer group metadata", "librdkafka"))?;
                producer
                    .send_offsets_to_transaction(&offsets, &metadata, TRANSACTION_TIMEOUT)
                    .map_err(|e| self.error("cannot add the offsets to the transaction", e))?;
            }
            producer
                .commit_transaction(TRANSACTION_TIMEOUT)
                .map_err(|e| self.error(&format!("cannot commit batch {t}"), e))
        })();
        match written {
            Ok(()) => {
                tracing::debug!(
                    "kafka transactional id {}: batch {t}: {} records committed in {:?}",
                    self.transactional_id,
                    records.len(),
                    started.elapsed()
                );
                for r in &published_ranges {
                    session.published_until.insert(r.partition.clone(), r.until);
                }
                Ok(())
            }
            Err(e) => {
                if let Err(abort) = producer.abort_transaction(TRANSACTION_TIMEOUT) {
                    tracing::warn!(
                        "kafka transactional id {}: aborting batch {t}'s transaction: {abort}",
                        self.transactional_id
                    );
                }
                Err(e)
            }
        }
    }
}

/// Writes each batch of `stream` to a Kafka topic exactly once (see [`ExactlyOnce`]): the
/// batch's records (`record` turns each into its key, or `None`, and
/// value) in one transaction with a progress record holding the batch time and the offset
/// ranges `input` read for the batch. `stream` must be computed from `input` (its records
/// depend on those ranges alone, not on when they were read).
///
/// Each batch is collected on the job thread and written by one transactional producer of
/// the output, kept across batches. A failure (a broker refusing a record, a commit timing
/// out) aborts the transaction and fails the batch's output with an error naming the
/// brokers and the transactional id; the producer is registered again for the next try.
///
/// # Example
/// ```no_run
/// # fn build(
/// #     input: &rivulet_framework::dstream::DirectStream<rivulet_kafka::KafkaRecord>,
/// #     counts: rivulet_framework::dstream::DStream<(String, u64)>,
/// # ) {
/// use rivulet_kafka::{save_to_kafka_exactly_once, ExactlyOnce, KafkaSink};
/// let sink = ExactlyOnce::new(KafkaSink::new("127.0.0.1:9092", "counts"), "wordcount-counts");
/// save_to_kafka_exactly_once(&counts, input, sink, |(w, n)| {
///     (Some(w.as_bytes().to_vec()), n.to_string().into_bytes())
/// });
/// # }
/// ```
#[track_caller]
pub fn save_to_kafka_exactly_once<T: Data>(
    stream: &DStream<T>,
    input: &DirectStream<KafkaRecord>,
    output: ExactlyOnce,
    record: impl Fn(&T) -> (Option<Vec<u8>>, Vec<u8>) + Send + Sync + 'static,
) {
    let input = input.clone();
    let session: Arc<Mutex<Option<Session>>> = Arc::default();
    stream.foreach_rdd(move |rdd, t| {
        let ranges = input
            .offset_ranges(t)
            .ok_or_else(|| output.error(&format!("batch {t}"), "its offset ranges are gone"))?;
        let mut guard = session.lock();
        let open = match guard.take() {
            Some(open) => open,
            None => output.open()?,
        };
        let mut open = open;
        let published = output.publish(&mut open, t, ranges, || Ok(rdd.collect()?), &record);
        // After a failure the producer is registered again (fencing whatever it left).
        if published.is_ok() {
            *guard = Some(open);
        }
        published
    });
}
