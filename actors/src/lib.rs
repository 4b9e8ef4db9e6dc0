//! # rivulet-actors
//!
//! rivulet's runtime on actix: the [`Coordinator`] (Spark's `JobGenerator`, `JobScheduler`
//! and `DAGScheduler` in one actor), a [`BatchBuilder`] per receiver sealing blocks every
//! block interval, one [`Executor`] per core on its own arbiter with a dashmap block store,
//! and a [`ReceiverSupervisor`] per receiver that restarts it with backoff.
//!
//! It runs a `rivulet_framework` DStream graph; most users reach it through the `rivulet`
//! crate's `StreamingContext`.
//!
//! # Examples
//! ```
//! use std::time::Duration;
//! use rivulet_actors::{Runtime, StopMode};
//! use rivulet_framework::config::StreamingConfig;
//! use rivulet_framework::dstream::DStreamGraph;
//! use rivulet_framework::rdd::RddContext;
//!
//! #[actix::main]
//! async fn main() -> rivulet_framework::Result<()> {
//!     let config = StreamingConfig::new().batch_interval(Duration::from_millis(100)).executors(2).manual_clock(true);
//!     let graph = DStreamGraph::new(config.get_batch_interval(), RddContext::new(2), 1000, None);
//!     let doubled = graph.queue_stream(vec![vec![1, 2, 3], vec![4]]).map(|x: i32| x * 2).collect_batches();
//!     let runtime = Runtime::start(graph, &config, Vec::new())?;
//!     runtime.advance(3).await?;
//!     runtime.stop(StopMode::Graceful).await;
//!     assert_eq!(doubled.batches(), vec![vec![2, 4, 6], vec![8], vec![]]);
//!     Ok(())
//! }
//! ```
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

mod actor_io;
mod batch_builder;
mod block_store;
mod checkpoint_store;
pub mod cluster;
mod coordinator;
mod event_log;
mod executor;
mod listener_bus;
mod messages;
mod receiver_supervisor;
mod runtime;
mod supervision;
pub mod transport;
mod ui;

pub use actor_io::{
    ActorOutputs, ActorReceiver, ActorSink, ActorSource, Batch, Event, KeyedActorOutputs,
    SendError, TrySendError,
};
pub use batch_builder::{BatchBuilder, ReceivedBlockStore};
pub use block_store::BlockManager;
pub use checkpoint_store::SledCheckpointStore;
pub use coordinator::Coordinator;
pub use event_log::{EventLog, RunInfo, EVENT_LOG_FORMAT};
pub use executor::Executor;
pub use messages::{
    AddListener, Advance, BlocksStored, ReceiverEvent, RunTask, SealBlock, SealedBlock,
    StopContext, StopMode, StopReceiver, SubmitJob, WalFailed,
};
pub use receiver_supervisor::ReceiverSupervisor;
pub use runtime::{Runtime, RuntimeHandle, Status};
pub use supervision::{RestartPolicy, RestartTracker};
pub use ui::HistoryServer;
