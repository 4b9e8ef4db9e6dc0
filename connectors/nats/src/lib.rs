//! NATS JetStream for rivulet, on `async-nats`:
//!
//! - [`NatsStreamSource`], a direct source over JetStream streams (what Spark's
//!   `KafkaUtils.createDirectStream` does for Kafka): give it to
//!   `StreamingContext::direct_stream`. Each stream is one source partition and its stream
//!   sequences are the offsets (sequence `s` is offset `s - 1`). Each batch reads the
//!   sequence ranges the coordinator decided when it cut the batch; the ranges are in the
//!   metadata checkpoint, so lost partitions and a restarted program's pending batches read
//!   exactly the same messages: exactly-once input, no write-ahead log. A range whose
//!   messages the stream's limits or a purge removed fails naming the stream and sequences;
//!   messages deleted one by one inside a range (or by a per-subject limit) are left out and
//!   logged at WARN naming the stream, the range and the missing sequences.
//! - [`NatsConsumerReceiver`], a receiver through a durable pull consumer with explicit
//!   acks: messages are acknowledged only once their blocks are stored (at least once), and
//!   several receivers share one consumer.
//!
//! # Threads
//! async-nats is asynchronous; [`DirectSource`](rivulet_framework::dstream::DirectSource)'s
//! methods are synchronous and run on the coordinator's blocking threads and executors' task
//! threads. Each source and receiver therefore owns a small tokio runtime (one worker thread
//! named `rivulet-nats`) on which its client lives: the synchronous methods hand their work
//! to it and wait on a channel, and the receiver awaits its tasks there. No actix or tokio
//! worker thread ever blocks on the server.
//!
//! # Server
//! Debian's `nats-server` (2.9) with JetStream on (`bash scripts/install-test-tools.sh`
//! installs it):
//!
//! ```text
//! nats-server -js -a 127.0.0.1 -p 4222 -sd /tmp/nats-data
//! ```
//!
//! A server that is down fails the call that needed it at once, with an error naming it
//! (`nats nats://127.0.0.1:4222: cannot connect: ...`): the batch fails and the next one asks
//! again, a receiver restarts after its backoff. Credentials go in the URL
//! (`nats://user:password@host:port`, or `nats://token@host:port`; async-nats alone would
//! ignore them) and never appear in errors or names; a server that refuses them is an error
//! saying `authentication failed` and naming the server: the direct source's call fails,
//! the receiver stops with a fatal error (no restarts). This build has no TLS by default: enable
//! the `tls` feature (rustls with `ring`) for a server that requires it; without it, a
//! connection to such a server fails with an error (the client's task panics inside its own
//! runtime, which is reported as an error, and the panic message is logged).
//!
//! # Features
//! - `tls` (off): TLS to the server, through rustls with the `ring` provider.
//!
//! # Example
//! ```no_run
//! use rivulet::prelude::*;
//! use rivulet_nats::{NatsMessage, NatsStreamSource};
//!
//! # async fn run() -> Result<()> {
//! let ssc = StreamingContext::new(StreamingConfig::new())?;
//! let lines = ssc.direct_stream(
//!     NatsStreamSource::new("nats://127.0.0.1:4222", ["lines"])?,
//!     DirectOptions::default().max_rate_per_partition(100_000.0),
//! );
//! lines
//!     .stream()
//!     .flat_map(|m: NatsMessage| {
//!         m.text()
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

mod message;
mod receiver;
mod runtime;
mod source;

pub use message::NatsMessage;
pub use receiver::NatsConsumerReceiver;
pub use source::{NatsStreamSource, StartSequence};
