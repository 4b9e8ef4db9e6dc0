//! # rivulet
//!
//! Discretized Streams — the model of Spark Streaming (SOSP'13) — in Rust, as supervised
//! actix actors. A live stream is cut into micro-batches on a fixed batch interval; each
//! batch is an immutable, partitioned dataset (an [`Rdd`](prelude::Rdd)) with lineage; a
//! graph of [`DStream`](prelude::DStream)s turns input RDDs into outputs by running fused
//! stage tasks on executor actors, one per core.
//!
//! This crate is the facade: [`StreamingContext`], the [`prelude`], and re-exports of the
//! data model ([`framework`]), the runtime ([`actors`]) and the input sources ([`receivers`]).
//!
//! # Examples
//! Word count over a queue of batches, run with the manual clock:
//! ```
//! use rivulet::prelude::*;
//! use std::time::Duration;
//!
//! #[actix::main]
//! async fn main() -> Result<()> {
//!     let ssc = StreamingContext::new(
//!         StreamingConfig::new()
//!             .batch_interval(Duration::from_millis(100))
//!             .executors(2)
//!             .manual_clock(true),
//!     )?;
//!     let lines = ssc.queue_stream(vec![vec!["to be or".to_string(), "not to be".to_string()]]);
//!     let counts = lines
//!         .flat_map(|l: String| l.split(' ').map(str::to_string).collect::<Vec<_>>())
//!         .map(|w| (w, 1u64))
//!         .reduce_by_key(|a, b| a + b)
//!         .collect_batches();
//!     ssc.start().await?;
//!     ssc.advance(1).await?;
//!     ssc.stop(StopMode::Graceful).await?;
//!     let mut first = counts.batches().remove(0);
//!     first.sort();
//!     let w = |s: &str, n| (s.to_string(), n);
//!     assert_eq!(first, vec![w("be", 2), w("not", 1), w("or", 1), w("to", 2)]);
//!     Ok(())
//! }
//! ```
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

mod context;
mod limits;

pub use context::StreamingContext;
pub use rivulet_actors as actors;
pub use rivulet_framework as framework;
pub use rivulet_receivers as receivers;

/// What a streaming program needs: `use rivulet::prelude::*;`.
pub mod prelude {
    pub use crate::StreamingContext;
    pub use rivulet_actors::{
        ActorOutputs, ActorSink, ActorSource, Batch, KeyedActorOutputs, SendError, Status,
        StopMode, TrySendError,
    };
    pub use rivulet_framework::config::StreamingConfig;
    pub use rivulet_framework::data::{Data, Key};
    pub use rivulet_framework::dstream::{
        BatchCollector, DStream, DirectOptions, DirectSource, DirectStream, MapWithStateDStream,
        OffsetRange, ReadError, SourcePartition, State, StateSpec, UnreadablePolicy, WindowReduce,
    };
    pub use rivulet_framework::listener::{
        BatchInfo, OutputOperationInfo, PolledInputInfo, ReceiverInfo, SkippedSplit,
        StreamingListener,
    };
    pub use rivulet_framework::partitioner::HashPartitioner;
    pub use rivulet_framework::rdd::{KeyedCombiner, PartitionIter, Rdd};
    pub use rivulet_framework::receiver::{BlockSink, Flow, Receiver, ReceiverError};
    pub use rivulet_framework::scheduler::SchedulerMetrics;
    pub use rivulet_framework::time::Time;
    pub use rivulet_framework::{BoxError, Error, GraphError, Result};
}

/// The README's Rust code blocks, compiled (and, unless marked `no_run`, run) as doctests,
/// so that a snippet users copy cannot stop compiling unnoticed.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
