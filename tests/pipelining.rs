//! Timestep pipelining (`StreamingConfig::pipelining`, the D-Streams paper's section 4.2):
//! batches queued behind a running one have their independent map stages run ahead, their
//! jobs skip them, and every output still equals a run one batch at a time, in batch order.
//!
//! Batches queue up deterministically under the manual clock by advancing several times at
//! once: each `advance(1)` cuts its batch before the first batch's job can finish, since that
//! job's actions go through the same coordinator mailbox.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::*;
use futures::future::join_all;
use proptest::prelude::*;
use rivulet::prelude::*;

/// Batch `i` (from 0) of the input: words drawn from a small vocabulary.
fn input(batches: usize, seed: u64) -> Vec<Vec<String>> {
    let mut rng = fastrand::Rng::with_seed(seed);
    (0..batches)
        .map(|_| {
            (0..40)
                .map(|_| format!("w{}", rng.u64(..9)))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Word counts per batch, computed by hand.
fn counts(batch: &[String]) -> Vec<(String, u64)> {
    let mut c = BTreeMap::new();
    for w in batch {
        *c.entry(w.clone()).or_insert(0u64) += 1;
    }
    c.into_iter().collect()
}

/// Running counts after each batch, computed by hand.
fn running(batches: &[Vec<String>]) -> Vec<Vec<(String, u64)>> {
    let mut c = BTreeMap::new();
    batches
        .iter()
        .map(|b| {
            for w in b {
                *c.entry(w.clone()).or_insert(0u64) += 1;
            }
            c.clone().into_iter().collect()
        })
        .collect()
}

/// Counts per window of 3 batches sliding by 1, computed by hand.
fn windowed(batches: &[Vec<String>]) -> Vec<Vec<(String, u64)>> {
    (0..batches.len())
        .map(|i| counts(&batches[i.saturating_sub(2)..=i].concat()))
        .collect()
}

struct Outputs {
    per_batch: BatchCollector<(String, u64)>,
    state: BatchCollector<(String, u64)>,
    window: BatchCollector<(String, u64)>,
}

/// Word counts per batch, running counts (state) and windowed counts over `data`.
fn build(ssc: &StreamingContext, data: Vec<Vec<String>>) -> Outputs {
    let pairs = ssc.queue_stream(data).map(|w: String| (w, 1u64));
    let per_batch = pairs.reduce_by_key(|a, b| a + b).collect_batches();
    let state = pairs
        .update_state_by_key(|vs: Vec<u64>, s: Option<u64>| {
            Some(s.unwrap_or(0) + vs.iter().sum::<u64>())
        })
        .collect_batches();
    let window = pairs
        .reduce_by_key_and_window(
            |a, b| a + b,
            std::time::Duration::from_millis(3 * BATCH_MS as u64),
            std::time::Duration::from_millis(BATCH_MS as u64),
        )
        .expect("multiples of the batch interval")
        .collect_batches();
    Outputs {
        per_batch,
        state,
        window,
    }
}

/// Runs `n` batches of `data`, all cut at once, and returns the outputs and how many map
/// stages ran ahead.
async fn run_queued(pipelining: bool, data: Vec<Vec<String>>) -> (Outputs, u64) {
    run_queued_on(config(2, 3).pipelining(pipelining), data).await
}

async fn run_queued_on(config: StreamingConfig, data: Vec<Vec<String>>) -> (Outputs, u64) {
    let n = data.len();
    let ssc = StreamingContext::new(config).unwrap();
    let out = build(&ssc, data);
    ssc.start().await.unwrap();
    for done in join_all((0..n).map(|_| ssc.advance(1))).await {
        done.unwrap();
    }
    let pipelined = ssc.scheduler_metrics().unwrap().stages_pipelined;
    ssc.stop(StopMode::Graceful).await.unwrap();
    (out, pipelined)
}

fn check(out: &Outputs, data: &[Vec<String>]) {
    let times: Vec<Time> = (1..=data.len() as i64).map(batch_time).collect();
    let got_times: Vec<Time> = out.per_batch.timed_batches().iter().map(|b| b.0).collect();
    assert_eq!(
        got_times, times,
        "outputs run once per batch, in batch order"
    );
    let per_batch: Vec<_> = out.per_batch.batches().into_iter().map(sorted).collect();
    let expected: Vec<_> = data.iter().map(|b| counts(b)).collect();
    assert_eq!(per_batch, expected);
    let state: Vec<_> = out.state.batches().into_iter().map(sorted).collect();
    assert_eq!(state, running(data));
    let window: Vec<_> = out.window.batches().into_iter().map(sorted).collect();
    assert_eq!(window, windowed(data));
}

#[actix::test]
async fn queued_batches_run_their_map_stages_ahead_and_outputs_stay_exact() {
    within(async {
        let data = input(6, 7);
        let (out, pipelined) = run_queued(true, data.clone()).await;
        check(&out, &data);
        // Batches 2..6 queued behind batch 1 (all ticks reach the coordinator before it
        // runs); each has three map stages over its own input that ran ahead: the per-batch
        // count's shuffle, the state's (co-partitioning the new values; the state itself
        // never moves) and the window's per-batch reduction.
        assert_eq!(pipelined, 5 * 3);
    })
    .await;
}

#[actix::test]
async fn without_pipelining_nothing_runs_ahead_and_the_outputs_are_the_same() {
    within(async {
        let data = input(6, 7);
        let (out, pipelined) = run_queued(false, data.clone()).await;
        check(&out, &data);
        assert_eq!(pipelined, 0);
    })
    .await;
}

#[actix::test]
async fn batches_advanced_one_at_a_time_never_queue_so_nothing_runs_ahead() {
    within(async {
        let data = input(4, 11);
        let ssc = StreamingContext::new(config(2, 3).pipelining(true)).unwrap();
        let out = build(&ssc, data.clone());
        ssc.start().await.unwrap();
        ssc.advance(4).await.unwrap();
        assert_eq!(ssc.scheduler_metrics().unwrap().stages_pipelined, 0);
        ssc.stop(StopMode::Graceful).await.unwrap();
        check(&out, &data);
    })
    .await;
}

/// An executor killed from inside a map task of a queued batch (the task that sees the
/// word `kill`, in batch 3): lost map outputs and the task are recomputed, run ahead or by
/// the job, and every output still equals the hand count.
#[actix::test]
async fn an_executor_lost_while_batches_queue_changes_no_output() {
    within(async {
        let mut data = input(6, 3);
        data[2].push("kill".into());
        let ssc = StreamingContext::new(config(3, 3).pipelining(true)).unwrap();
        let killed = Arc::new(AtomicBool::new(false));
        let (killer, flag) = (ssc.clone(), killed.clone());
        let pairs = ssc.queue_stream(data.clone()).map(move |w: String| {
            if w == "kill" && !flag.swap(true, Ordering::SeqCst) {
                futures::executor::block_on(killer.kill_executor(0)).expect("executor 0");
            }
            (w, 1u64)
        });
        let per_batch = pairs.reduce_by_key(|a, b| a + b).collect_batches();
        let state = pairs
            .update_state_by_key(|vs: Vec<u64>, s: Option<u64>| {
                Some(s.unwrap_or(0) + vs.iter().sum::<u64>())
            })
            .collect_batches();
        ssc.start().await.unwrap();
        for done in join_all((0..data.len()).map(|_| ssc.advance(1))).await {
            done.unwrap();
        }
        let m = ssc.scheduler_metrics().unwrap();
        ssc.stop(StopMode::Graceful).await.unwrap();
        assert!(killed.load(Ordering::SeqCst));
        assert_eq!(m.executors_lost, 1);
        assert!(m.stages_pipelined > 0);
        let got: Vec<_> = per_batch.batches().into_iter().map(sorted).collect();
        assert_eq!(got, data.iter().map(|b| counts(b)).collect::<Vec<_>>());
        let got: Vec<_> = state.batches().into_iter().map(sorted).collect();
        assert_eq!(got, running(&data));
    })
    .await;
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    /// Whatever the input, executors, partitions and how many batches queue at once, the
    /// pipelined run's outputs equal the hand-computed per-batch, running and windowed counts.
    #[test]
    fn pipelined_outputs_equal_the_hand_computed_ones(
        batches in 2usize..=6,
        seed in any::<u64>(),
        executors in 1usize..=3,
        parts in 1usize..=4,
    ) {
        let data = input(batches, seed);
        let config = config(executors, parts).pipelining(true);
        let (out, pipelined) = actix::System::new()
            .block_on(within(run_queued_on(config, data.clone())));
        check(&out, &data);
        prop_assert!(pipelined > 0);
    }
}
