//! # rivulet-framework
//!
//! The data model of rivulet, Discretized Streams (the model of Spark Streaming) in Rust:
//! batch [`time`], the [`Data`](crate::data::Data)/[`Key`](crate::data::Key)
//! bounds, [`Rdd`](crate::rdd::Rdd)s with lineage, the [`DStream`](crate::dstream::DStream)
//! graph and every operator's per-batch RDD generation, jobs/stages/tasks
//! ([`scheduler`]), the [`Receiver`](crate::receiver::Receiver) trait, listener events and
//! errors. No actors and no I/O threads live here: the `rivulet-actors` crate runs it.
//!
//! Most users want the `rivulet` crate, which puts a `StreamingContext` in front of this.
//!
//! # Examples
//! A DStream program run on the single-threaded test harness (the actor runtime runs the
//! same graph on executors):
//! ```
//! use rivulet_framework::testing::run_batches;
//!
//! let input = vec![vec!["a b".to_string(), "b".to_string()], vec![], vec!["c".to_string()]];
//! let out = run_batches(input, |lines| {
//!     lines
//!         .flat_map(|l: String| l.split(' ').map(String::from).collect::<Vec<_>>())
//!         .map(|w| (w, 1u32))
//!         .reduce_by_key(|a, b| a + b)
//! });
//! let sorted: Vec<Vec<(String, u32)>> = out.into_iter().map(|mut b| { b.sort(); b }).collect();
//! let s = |w: &str, n| (w.to_string(), n);
//! assert_eq!(sorted, vec![vec![s("a", 1), s("b", 2)], vec![], vec![s("c", 1)]]);
//! ```
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

pub mod block;
pub mod checkpoint;
pub mod cluster_manager;
pub mod config;
pub mod data;
pub mod dstream;
pub mod error;
pub mod listener;
pub mod partitioner;
pub mod rdd;
pub mod receiver;
pub mod scheduler;
pub mod testing;
pub mod time;
pub(crate) mod trace;

pub use error::{BoxError, CheckpointError, Error, GraphError, OpInfo, Result};
