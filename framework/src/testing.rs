//! Helpers for doc tests and unit tests: DStream programs run batch by batch on one thread
//! with [`LocalRunner`], no actors (Spark's `TestSuiteBase.testOperation`, simplified).
//! They unwrap: a failure is a test failure.

use std::sync::Arc;
use std::time::Duration;

use crate::data::Data;
use crate::dstream::{DStream, DStreamGraph};
use crate::rdd::RddContext;
use crate::scheduler::LocalRunner;
use crate::time::Time;

/// The batch interval of [`run_batches`]: 1 s.
pub const BATCH: Duration = Duration::from_secs(1);

/// An RDD context whose actions run inline, with `parallelism` default partitions.
pub fn local_context(parallelism: usize) -> Arc<RddContext> {
    let ctx = RddContext::new(parallelism);
    ctx.set_runner(Arc::new(LocalRunner::new(1)));
    ctx
}

/// Each batch sorted: for comparing batches whose order within a batch is not defined
/// (after a shuffle).
pub fn sorted<T: Ord>(batches: Vec<Vec<T>>) -> Vec<Vec<T>> {
    batches
        .into_iter()
        .map(|mut b| {
            b.sort();
            b
        })
        .collect()
}

/// `(&str, value)` pairs as owned `(String, value)` records.
pub fn pairs<V: Clone>(pairs: &[(&str, V)]) -> Vec<(String, V)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

/// Runs `op` over a queue stream of `input` (one `Vec` per batch, 2 partitions each) for as
/// many batches as `input` has, and returns the output stream's batches.
///
/// # Panics
/// If the graph is invalid or a batch fails.
pub fn run_batches<T: Data, U: Data>(
    input: Vec<Vec<T>>,
    op: impl FnOnce(DStream<T>) -> DStream<U>,
) -> Vec<Vec<U>> {
    let n = input.len();
    run_batches_for(input, n, op)
}

/// Like [`run_batches`], for `batches` batches (more than the input gives empty batches).
///
/// # Panics
/// If the graph is invalid or a batch fails.
pub fn run_batches_for<T: Data, U: Data>(
    input: Vec<Vec<T>>,
    batches: usize,
    op: impl FnOnce(DStream<T>) -> DStream<U>,
) -> Vec<Vec<U>> {
    run_graph(batches, |graph| op(graph.queue_stream(input)))
}

/// Runs the program `build` adds to a fresh graph (batch interval [`BATCH`], 2 default
/// partitions) for `batches` batches, and returns the batches of the stream it returns: for
/// programs over several inputs, each made with
/// [`queue_stream`](DStreamGraph::queue_stream).
///
/// # Panics
/// If the graph is invalid or a batch fails.
pub fn run_graph<U: Data>(
    batches: usize,
    build: impl FnOnce(&DStreamGraph) -> DStream<U>,
) -> Vec<Vec<U>> {
    let graph = DStreamGraph::new(BATCH, local_context(2), 1000, None);
    let out = build(&graph).collect_batches();
    graph.start(Time::ZERO).expect("valid graph");
    for i in 1..=batches {
        let t = Time::ZERO + BATCH * i as u32;
        for job in graph.generate_jobs(t) {
            job.run().expect("batch runs");
        }
        graph.clear_old(t);
    }
    graph.shutdown();
    out.batches()
}
