//! The number of state partitions belongs to the state, not to the executor count (DESIGN,
//! "Persistence"): a job checkpointed with 2 executors restarts from its checkpoint
//! directory with 1 and then 3 executors, for each stateful operator (`update_state_by_key`,
//! `map_with_state`, the inverse `reduce_by_key_and_window`), and its state goes on as if
//! it had never stopped. A stream whose count is not given adopts the checkpoint's; one
//! whose count is given and differs is refused at restore, naming the stream and both
//! counts.
//!
//! Expected states are computed here from the input with a plain `HashMap`, not by rivulet.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use rivulet::framework::CheckpointError;
use rivulet::prelude::*;

/// Batches in the queue (more than any test runs).
const BATCHES: usize = 60;
/// Every stateful stream is data-checkpointed every 5 batches.
const CHECKPOINT_BATCHES: u64 = 5;
/// The inverse window covers the last 4 batches and slides by one.
const WINDOW_BATCHES: usize = 4;

/// Batch `i` (from 1): six words drawn from 23 keys (enough keys for every partition).
fn words() -> Vec<Vec<String>> {
    (1..=BATCHES)
        .map(|i| {
            (0..6)
                .map(|j| format!("k{}", (i * 7 + j * j * 3 + i * j) % 23))
                .collect()
        })
        .collect()
}

/// Counts of the words of batches `from..=to` (from 1), and a 0 for every other word seen in
/// batches `1..=to` when `keep_seen`.
fn counts(from: usize, to: usize, keep_seen: bool) -> Vec<(String, u64)> {
    let mut counts: HashMap<String, u64> = HashMap::new();
    for (i, batch) in words().into_iter().enumerate().take(to) {
        for w in batch {
            let n = counts.entry(w).or_insert(0);
            if i + 1 >= from {
                *n += 1;
            }
        }
    }
    sorted(
        counts
            .into_iter()
            .filter(|(_, n)| keep_seen || *n > 0)
            .collect(),
    )
}

/// The running count of every word after batch `i`.
fn running_counts(i: usize) -> Vec<(String, u64)> {
    counts(1, i, false)
}

/// The inverse window's state after batch `i`: the counts of the last [`WINDOW_BATCHES`]
/// batches, and 0 for every word seen before (an inverse window without a filter keeps them).
fn window_counts(i: usize) -> Vec<(String, u64)> {
    counts((i + 1).saturating_sub(WINDOW_BATCHES).max(1), i, true)
}

/// 100 ms batches on the manual clock, `executors` executors, and no explicit default
/// parallelism: it follows the executor count.
fn config(executors: usize) -> StreamingConfig {
    StreamingConfig::new()
        .batch_interval(Duration::from_millis(BATCH_MS as u64))
        .executors(executors)
        .manual_clock(true)
}

fn checkpoint_interval() -> Duration {
    Duration::from_millis(CHECKPOINT_BATCHES * BATCH_MS as u64)
}

fn pairs(ssc: &StreamingContext) -> DStream<(String, u64)> {
    ssc.queue_stream(words()).map(|w: String| (w, 1u64))
}

fn update_state(ssc: &StreamingContext) -> DStream<(String, u64)> {
    pairs(ssc)
        .update_state_by_key(|vs: Vec<u64>, s: Option<u64>| {
            Some(s.unwrap_or(0) + vs.iter().sum::<u64>())
        })
        .checkpoint(checkpoint_interval())
}

#[allow(clippy::ptr_arg)] // the mapping function gets `&K`, here `&String`
fn running_sum(key: &String, value: Option<u64>, state: &mut State<u64>) -> (String, u64) {
    let sum = state.get().copied().unwrap_or(0) + value.unwrap_or(0);
    state.update(sum);
    (key.clone(), sum)
}

fn map_with_state(ssc: &StreamingContext, partitions: Option<usize>) -> DStream<(String, u64)> {
    let spec = StateSpec::function(running_sum);
    let spec = match partitions {
        Some(n) => spec.num_partitions(n),
        None => spec,
    };
    let mws = pairs(ssc).map_with_state(spec); // the call site PartitionsChanged names
    mws.checkpoint(checkpoint_interval());
    mws.state_snapshots()
}

fn inverse_window(ssc: &StreamingContext) -> DStream<(String, u64)> {
    let batch = Duration::from_millis(BATCH_MS as u64);
    pairs(ssc)
        .reduce_by_key_and_window_inv(
            |a, b| a + b,
            |a, b| a - b,
            batch * WINDOW_BATCHES as u32,
            batch,
        )
        .expect("a valid window")
        .checkpoint(checkpoint_interval())
}

/// What a run saw at each batch: its time, the state's partition count, the sorted state.
type Seen = Vec<(Time, usize, Vec<(String, u64)>)>;

/// Builds the stateful stream with `build` and records every batch's state in `seen`.
fn build_and_record(
    ssc: &StreamingContext,
    build: &dyn Fn(&StreamingContext) -> DStream<(String, u64)>,
    seen: &Arc<Mutex<Seen>>,
) {
    let seen = seen.clone();
    build(ssc).foreach_rdd(move |rdd, t| {
        let state = sorted(rdd.collect()?);
        seen.lock().unwrap().push((t, rdd.num_partitions(), state));
        Ok(())
    });
}

/// `get_or_create` on `dir`, retrying while the previous run's store is still being
/// released (its actors stop asynchronously).
fn open(
    dir: &Path,
    executors: usize,
    build: impl Fn(&StreamingContext) -> Result<()>,
) -> Result<StreamingContext> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match StreamingContext::get_or_create(dir, config(executors), &build) {
            Err(e) if e.to_string().contains("lock") && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

/// Runs `batches` batches from `dir` with `executors` executors; returns the batch the run
/// was restored from and what it saw.
async fn run(
    dir: &Path,
    executors: usize,
    batches: u32,
    build: &dyn Fn(&StreamingContext) -> DStream<(String, u64)>,
) -> (Option<Time>, Seen) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let ssc = open(dir, executors, |ssc| {
        build_and_record(ssc, build, &seen);
        Ok(())
    })
    .expect("open the checkpoint directory");
    let restored = ssc.restored_batch();
    ssc.start().await.unwrap();
    ssc.advance(batches).await.unwrap();
    ssc.stop(StopMode::Graceful).await.unwrap();
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    (restored, seen)
}

/// Asserts that `seen` holds batches `first..` in order, each with `partitions` partitions
/// and the state `expected(i)`.
#[track_caller]
fn assert_states(
    seen: &Seen,
    first: usize,
    partitions: usize,
    expected: fn(usize) -> Vec<(String, u64)>,
) {
    for (k, (t, n, state)) in seen.iter().enumerate() {
        let i = first + k;
        assert_eq!(*t, batch_time(i as i64), "batch {i}: time");
        assert_eq!(*n, partitions, "batch {i}: partition count");
        assert_eq!(*state, expected(i), "batch {i}: state");
    }
}

/// Runs 12 batches with 2 executors (data checkpoints at 5 and 10), then 8 more restarted
/// with 1 executor, then 8 more with 3: the state keeps the 2 partitions it was
/// checkpointed with, and equals `expected` at every batch.
async fn restarts_with_other_executor_counts(
    build: &dyn Fn(&StreamingContext) -> DStream<(String, u64)>,
    expected: fn(usize) -> Vec<(String, u64)>,
) {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("ckpt");

    let (restored, seen) = run(&dir, 2, 12, build).await;
    assert_eq!(restored, None, "a fresh directory starts anew");
    assert_eq!(seen.len(), 12);
    // Fresh: the default parallelism, which is the executor count.
    assert_states(&seen, 1, 2, expected);

    let (restored, seen) = run(&dir, 1, 8, build).await;
    assert_eq!(restored, Some(batch_time(12)));
    assert_eq!(seen.len(), 8);
    assert_states(&seen, 13, 2, expected);

    let (restored, seen) = run(&dir, 3, 8, build).await;
    assert_eq!(restored, Some(batch_time(20)));
    assert_eq!(seen.len(), 8);
    assert_states(&seen, 21, 2, expected);

    // The same program in a fresh directory with 3 executors has 3 partitions: the 2 above
    // came from the checkpoint.
    let fresh = root.path().join("fresh");
    let (_, seen) = run(&fresh, 3, 2, build).await;
    assert_states(&seen, 1, 3, expected);
}

#[actix::test]
async fn update_state_by_key_restores_with_1_and_3_executors() {
    within(restarts_with_other_executor_counts(
        &update_state,
        running_counts,
    ))
    .await;
}

#[actix::test]
async fn map_with_state_restores_with_1_and_3_executors() {
    within(restarts_with_other_executor_counts(
        &|ssc| map_with_state(ssc, None),
        running_counts,
    ))
    .await;
}

#[actix::test]
async fn inverse_window_restores_with_1_and_3_executors() {
    within(restarts_with_other_executor_counts(
        &inverse_window,
        window_counts,
    ))
    .await;
}

#[actix::test]
async fn an_explicit_count_other_than_the_checkpoints_is_refused() {
    within(async {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("ckpt");
        let explicit = |n| move |ssc: &StreamingContext| map_with_state(ssc, Some(n));

        let (_, seen) = run(&dir, 2, 12, &explicit(4)).await;
        assert_states(&seen, 1, 4, running_counts);

        // Asking for 3 partitions: refused, naming the stream, its call site and both counts.
        let seen = Arc::new(Mutex::new(Vec::new()));
        let err = open(&dir, 2, |ssc| {
            build_and_record(ssc, &explicit(3), &seen);
            Ok(())
        })
        .expect_err("a restore with another explicit partition count");
        let line = line_of(
            include_str!("state_partitions.rs"),
            "the call site PartitionsChanged names",
        );
        match &err {
            Error::Checkpoint(CheckpointError::PartitionsChanged {
                dir: in_dir,
                stream,
                checkpoint,
                program,
            }) => {
                assert_eq!((*checkpoint, *program), (4, 3), "{err}");
                assert!(in_dir.contains("ckpt"), "{err}");
                assert!(
                    stream.starts_with(&format!(
                        "map_with_state at tests/state_partitions.rs:{line}"
                    )),
                    "{err}"
                );
            }
            other => panic!("expected PartitionsChanged, got {other:?}"),
        }
        let text = err.to_string();
        assert!(
            text.contains("in 4 partitions") && text.contains("asks for 3"),
            "{text}"
        );

        // Keeping the count (or leaving it unset) restores, and the state goes on.
        let (restored, seen) = run(&dir, 3, 4, &explicit(4)).await;
        assert_eq!(restored, Some(batch_time(12)));
        assert_states(&seen, 13, 4, running_counts);
        let (restored, seen) = run(&dir, 1, 4, &|ssc| map_with_state(ssc, None)).await;
        assert_eq!(restored, Some(batch_time(16)));
        assert_states(&seen, 17, 4, running_counts);
    })
    .await;
}
