//! Helpers shared by the issue-3 integration tests (`ops3_*`, `prop_*`): manual-clock
//! contexts, a timeout, running a fixed number of batches, and comparison helpers.
//!
//! Every test binary includes this module and uses only part of it.
#![allow(dead_code)]

use std::fmt::Debug;
use std::future::Future;
use std::time::Duration;

use rivulet::prelude::*;

/// The batch interval: batch `k` (from 1) is at `k * 100` ms.
pub const B: Duration = Duration::from_millis(100);

/// How long any one test may run before it fails instead of hanging.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(30);

/// `n` batches as a duration (window and slide lengths).
pub fn batches(n: u32) -> Duration {
    B * n
}

/// A manual-clock config with 100 ms batches, `executors` executors and `parallelism`
/// default partitions.
pub fn config(executors: usize, parallelism: usize) -> StreamingConfig {
    StreamingConfig::new()
        .manual_clock(true)
        .batch_interval(B)
        .executors(executors)
        .default_parallelism(parallelism)
}

/// A context from [`config`].
pub fn context(executors: usize, parallelism: usize) -> StreamingContext {
    StreamingContext::new(config(executors, parallelism)).expect("a valid config")
}

/// The usual test context: 2 executors, 3 default partitions (so that queue batches span
/// several partitions and shuffles really move records).
pub fn ctx() -> StreamingContext {
    context(2, 3)
}

/// Runs `f`, failing the test if it takes longer than [`TEST_TIMEOUT`].
pub async fn within<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(TEST_TIMEOUT, f)
        .await
        .expect("the test did not finish within its timeout")
}

/// Starts `ssc`, runs `n` batches to completion, and stops it.
pub async fn run(ssc: &StreamingContext, n: u32) {
    ssc.start().await.expect("start");
    ssc.advance(n).await.expect("every batch succeeds");
    ssc.stop(StopMode::Graceful).await.expect("stop");
}

/// `v`, sorted.
pub fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}

/// Each batch sorted (multiset comparison, for results of shuffles).
pub fn sorted_batches<T: Ord>(batches: Vec<Vec<T>>) -> Vec<Vec<T>> {
    batches.into_iter().map(sorted).collect()
}

/// `(k.to_string(), v)`.
pub fn kv<V>(k: &str, v: V) -> (String, V) {
    (k.to_string(), v)
}

/// Pairs `(k, v)` with owned keys.
pub fn kvs<V: Clone>(pairs: &[(&str, V)]) -> Vec<(String, V)> {
    pairs.iter().map(|(k, v)| kv(k, v.clone())).collect()
}

/// Batches of words as owned strings.
pub fn words(batches: &[&[&str]]) -> Vec<Vec<String>> {
    batches
        .iter()
        .map(|b| b.iter().map(|w| w.to_string()).collect())
        .collect()
}

/// The batch times (ms) of a collector's batches.
pub fn times<T: Clone>(c: &BatchCollector<T>) -> Vec<i64> {
    c.timed_batches().iter().map(|(t, _)| t.as_ms()).collect()
}

/// Asserts that `c` collected exactly `expected`, batch by batch and in order, at the
/// batch times `at` (ms).
pub fn assert_batches<T: Clone + PartialEq + Debug>(
    what: &str,
    c: &BatchCollector<T>,
    at: &[i64],
    expected: Vec<Vec<T>>,
) {
    assert_eq!(times(c), at, "{what}: batch times");
    assert_eq!(c.batches(), expected, "{what}: batches");
}

/// As [`assert_batches`], comparing each batch as a multiset.
pub fn assert_sorted_batches<T: Clone + Ord + Debug>(
    what: &str,
    c: &BatchCollector<T>,
    at: &[i64],
    expected: Vec<Vec<T>>,
) {
    assert_eq!(times(c), at, "{what}: batch times");
    assert_eq!(
        sorted_batches(c.batches()),
        sorted_batches(expected),
        "{what}: batches (as multisets)"
    );
}

/// `1..=n` times 100 ms: the batch times of a per-batch stream over `n` batches.
pub fn every_batch(n: i64) -> Vec<i64> {
    (1..=n).map(|k| k * 100).collect()
}
