//! A Kafka output (Spark users write one with `foreachPartition` and a producer): each
//! partition of each batch is produced by an idempotent producer (`enable.idempotence`:
//! librdkafka's retries never duplicate or reorder a record within the producer's session)
//! and flushed before the task ends, so a batch's output operation succeeds only once every
//! record is acknowledged by the brokers (`acks=all`).
//!
//! A task that fails and is retried, a speculative copy of a slow task (speculation is on by
//! default: `StreamingConfig::speculation(false)` turns it off), or a batch recomputed after
//! a restart produces its records again: at-least-once, as Spark's.
//! [`save_to_kafka_exactly_once`](crate::save_to_kafka_exactly_once) writes each batch once.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaResult;
use rdkafka::message::ToBytes;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rivulet_framework::data::Data;
use rivulet_framework::dstream::DStream;
use rivulet_framework::BoxError;

/// How long a partition's flush may wait for the brokers' acknowledgements.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(30);

/// Where [`save_to_kafka`] writes: a topic of a cluster, with producer settings.
#[derive(Clone, Debug)]
pub struct KafkaSink {
    pub(crate) brokers: String,
    pub(crate) topic: String,
    settings: Vec<(String, String)>,
}

impl KafkaSink {
    /// Topic `topic` of the cluster at `brokers` (`host:port[,host:port...]`).
    pub fn new(brokers: &str, topic: &str) -> KafkaSink {
        KafkaSink {
            brokers: brokers.to_string(),
            topic: topic.to_string(),
            settings: Vec::new(),
        }
    }

    /// Sets a librdkafka producer property (e.g. `compression.type`, `linger.ms`).
    pub fn set(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.settings.push((key.into(), value.into()));
        self
    }

    /// An idempotent producer's settings, the sink's own last.
    pub(crate) fn config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("log_level", "3");
        for (k, v) in &self.settings {
            config.set(k, v);
        }
        config
    }

    fn producer(&self) -> Result<ThreadedProducer<DefaultProducerContext>, BoxError> {
        self.config()
            .create()
            .map_err(|e| format!("kafka {}: cannot create a producer: {e}", self.brokers).into())
    }
}

/// Writes each batch of `stream` to `sink`'s topic: `record` turns each element into its
/// key (or `None`) and value. One producer per partition task, flushed before the task ends;
/// a record the brokers refuse fails the task (retried as any task) with an error naming the
/// topic.
///
/// # Example
/// ```no_run
/// # fn build(counts: rivulet_framework::dstream::DStream<(String, u64)>) {
/// use rivulet_kafka::{save_to_kafka, KafkaSink};
/// save_to_kafka(&counts, KafkaSink::new("127.0.0.1:9092", "counts"), |(w, n)| {
///     (Some(w.as_bytes().to_vec()), n.to_string().into_bytes())
/// });
/// # }
/// ```
#[track_caller]
pub fn save_to_kafka<T: Data>(
    stream: &DStream<T>,
    sink: KafkaSink,
    record: impl Fn(&T) -> (Option<Vec<u8>>, Vec<u8>) + Send + Sync + 'static,
) {
    let (sink, record) = (Arc::new(sink), Arc::new(record));
    stream.foreach_partition(move |_, records| {
        let producer = sink.producer()?;
        for r in records {
            let (key, value) = record(&r);
            let mut message = BaseRecord::<Vec<u8>, Vec<u8>>::to(&sink.topic).payload(&value);
            if let Some(key) = &key {
                message = message.key(key);
            }
            send_waiting(&producer, message)
                .map_err(|e| format!("kafka topic {}: cannot produce: {e}", sink.topic))?;
        }
        producer
            .flush(FLUSH_TIMEOUT)
            .map_err(|e| format!("kafka topic {}: records not acknowledged: {e}", sink.topic))?;
        Ok(())
    });
}

/// Hands `record` to `producer`, waiting (10 ms at a time) while the producer's local queue
/// is full until deliveries make room; what then happens to it is the producer's (flush to
/// wait for the brokers' acknowledgements).
///
/// # Errors
/// Any error of `send` but a full queue (e.g. a record over `message.max.bytes`).
pub fn send_waiting<K, P>(
    producer: &ThreadedProducer<DefaultProducerContext>,
    record: BaseRecord<'_, K, P>,
) -> KafkaResult<()>
where
    K: ToBytes + ?Sized,
    P: ToBytes + ?Sized,
{
    let mut record = record;
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((e, r)) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull) => {
                record = r;
                std::thread::sleep(Duration::from_millis(10));
            }
            Err((e, _)) => return Err(e),
        }
    }
}

/// Produces each of `lines` as a record's value (no key) to `topic` of the cluster at
/// `brokers` through an idempotent producer, then waits (at most 60 s) until the brokers
/// acknowledged them all: how the examples load their bundled text into a topic.
///
/// # Errors
/// A producer that cannot be created, a record refused (naming the topic), or
/// acknowledgements that did not all come within 60 s.
pub fn produce_lines(brokers: &str, topic: &str, lines: &[String]) -> Result<(), BoxError> {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .create()
        .map_err(|e| format!("kafka {brokers}: cannot create a producer: {e}"))?;
    for line in lines {
        send_waiting(&producer, BaseRecord::<(), String>::to(topic).payload(line))
            .map_err(|e| format!("producing to {topic}: {e}"))?;
    }
    producer
        .flush(Duration::from_secs(60))
        .map_err(|e| format!("kafka topic {topic}: records not acknowledged: {e}"))?;
    Ok(())
}
