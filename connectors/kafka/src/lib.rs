//! Kafka for rivulet, on librdkafka (the `rdkafka` crate, built from its bundled source):
//!
//! - [`KafkaSource`], a direct source (Spark: `KafkaUtils.createDirectStream`): give it to
//!   `StreamingContext::direct_stream`. Each batch reads the offset ranges the coordinator
//!   decided when it cut the batch, one RDD partition per topic partition; the ranges are in
//!   the metadata checkpoint, so lost partitions and a restarted program's pending batches
//!   read exactly the same records: exactly-once input, no write-ahead log. Ranges are
//!   committed to the consumer group after each batch's outputs succeeded.
//! - [`save_to_kafka`], an output through an idempotent producer, flushed per partition
//!   (at-least-once), and [`save_to_kafka_exactly_once`], which writes each batch in one
//!   Kafka transaction with the offsets its Kafka input read, so that a batch recomputed
//!   after a restart never publishes twice (beyond Spark).
//!
//! Tested against librdkafka's mock cluster (`rdkafka::mocking::MockCluster`), which speaks
//! Kafka's protocol on 127.0.0.1; not yet against a broker of Apache Kafka itself.
//!
//! # Example
//! ```no_run
//! use rivulet::prelude::*;
//! use rivulet_kafka::KafkaSource;
//!
//! # async fn run() -> Result<()> {
//! let ssc = StreamingContext::new(StreamingConfig::new())?;
//! let lines = ssc.direct_stream(
//!     KafkaSource::new("127.0.0.1:9092", ["lines"]).group("wordcount"),
//!     DirectOptions::default().max_rate_per_partition(100_000.0),
//! );
//! lines
//!     .stream()
//!     .flat_map(|r| {
//!         r.text()
//!             .unwrap_or_default()
//!             .split_whitespace()
//!             .map(str::to_string)
//!             .collect::<Vec<_>>()
//!     })
//!     .map(|w| (w, 1u64))
//!     .reduce_by_key(|a, b| a + b)
//!     .print(10);
//! ssc.start().await?;
//! # Ok(()) }
//! ```

#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

mod sink;
mod source;
mod transactional;

pub use sink::{produce_lines, save_to_kafka, send_waiting, KafkaSink};
pub use source::{KafkaRecord, KafkaSource, StartOffset};
pub use transactional::{save_to_kafka_exactly_once, ExactlyOnce, BATCH_HEADER};
