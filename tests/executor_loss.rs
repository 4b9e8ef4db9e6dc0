//! Executor loss (`StreamingContext::kill_executor`): before, during and after a shuffle,
//! from between batches, from an output operation and from inside a running task, and in
//! stateful and windowed pipelines. Every faulty run must give the same output as the same
//! program run without faults (and as a hand count), and the fault must be visible in
//! `scheduler_metrics`.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use rivulet::prelude::*;

const B: Duration = Duration::from_millis(BATCH_MS as u64);

/// `batches` batches of 40 words drawn from a 7-word vocabulary.
fn words(batches: usize) -> Vec<Vec<String>> {
    let vocab = ["ash", "birch", "cedar", "elm", "fir", "oak", "yew"];
    let mut rng = fastrand::Rng::with_seed(42);
    (0..batches)
        .map(|_| {
            (0..40)
                .map(|_| vocab[rng.u64(..vocab.len() as u64) as usize].to_string())
                .collect()
        })
        .collect()
}

/// Each batch's word counts, counted by hand.
fn hand_counts(input: &[Vec<String>]) -> Vec<Vec<(String, u64)>> {
    input
        .iter()
        .map(|batch| {
            let mut m: BTreeMap<String, u64> = BTreeMap::new();
            for w in batch {
                *m.entry(w.clone()).or_default() += 1;
            }
            m.into_iter().collect()
        })
        .collect()
}

fn metrics(ssc: &StreamingContext) -> SchedulerMetrics {
    ssc.scheduler_metrics().expect("started")
}

/// Word counts, cached, and their 3-batch window. Kills executor `e` after batch `i` for
/// each `(i, e)` of `kills_between`, and from an output operation that runs before the
/// collecting ones at `kill_in_output` (batch from 1, executor).
async fn shuffle_program(
    kills_between: &[(u32, usize)],
    kill_in_output: Option<(i64, usize)>,
    batches: u32,
) -> (
    Vec<Vec<(String, u64)>>,
    Vec<Vec<(String, u64)>>,
    SchedulerMetrics,
) {
    let ssc = context(3, 3);
    let counts = ssc
        .queue_stream(words(batches as usize))
        .map(|w| (w, 1u64))
        .reduce_by_key(|a, b| a + b)
        .cache();
    if let Some((at, executor)) = kill_in_output {
        let killer = ssc.clone();
        counts.foreach_rdd(move |_, t| {
            if t == batch_time(at) {
                futures::executor::block_on(killer.kill_executor(executor))?;
            }
            Ok(())
        });
    }
    let windowed = counts
        .window(B * 3, B)
        .expect("valid window")
        .reduce_by_key(|a, b| a + b);
    let counts_out = counts.collect_batches();
    let windowed_out = windowed.collect_batches();
    ssc.start().await.unwrap();
    let mut done = 0;
    for &(after, executor) in kills_between {
        ssc.advance(after - done)
            .await
            .expect("batches before the kill");
        done = after;
        ssc.kill_executor(executor).await.expect("executor exists");
    }
    ssc.advance(batches - done)
        .await
        .expect("batches after the kills");
    let m = metrics(&ssc);
    ssc.stop(StopMode::Now).await.unwrap();
    (
        sorted_batches(counts_out.batches()),
        sorted_batches(windowed_out.batches()),
        m,
    )
}

#[actix::test]
async fn kills_between_batches_and_from_an_output_give_the_fault_free_output() {
    within(async {
        let (counts, windowed, clean) = shuffle_program(&[], None, 6).await;
        assert_eq!(clean.executors_lost, 0);
        assert_eq!(
            counts,
            hand_counts(&words(6)),
            "the fault-free run is right"
        );

        // Before batch 2's shuffle (after batch 1), after batch 3's (its cached counts and
        // map outputs are what the window of batch 4 and 5 reads), and from an output
        // operation of batch 5, between its two jobs.
        let (f_counts, f_windowed, m) = shuffle_program(&[(1, 0), (3, 1)], Some((5, 2)), 6).await;
        assert_eq!(f_counts, counts);
        assert_eq!(f_windowed, windowed);
        assert_eq!(m.executors_lost, 3, "{m:?}");
    })
    .await;
}

/// Counts the words of 3 batches with `count` (a shuffle by word from a queue stream of
/// the words), killing every executor from inside the first reduce task that sees the
/// trigger word: the lost map outputs are recomputed and the counts equal the hand count.
async fn kill_inside_the_reduce_stage(
    count: impl FnOnce(DStream<String>) -> DStream<(String, u64)>,
) {
    let input = words(3);
    let ssc = context(3, 3);
    let fired = Arc::new(AtomicBool::new(false));
    let (killer, flag) = (ssc.clone(), fired.clone());
    let counts = count(ssc.queue_stream(input.clone()))
        // Runs in the reduce stage, after every map output of the batch was written.
        .map(move |kv| {
            if is_trigger(&kv) && !flag.swap(true, Ordering::SeqCst) {
                // Every executor dies, this task's own included: its result is lost,
                // and so is every map output it and the other reduce tasks need.
                for e in 0..3 {
                    futures::executor::block_on(killer.kill_executor(e)).expect("executor exists");
                }
            }
            kv
        });
    let out = counts.collect_batches();
    ssc.start().await.unwrap();
    ssc.advance(3).await.expect("every batch heals");
    assert!(fired.load(Ordering::SeqCst));
    let m = metrics(&ssc);
    assert_eq!(m.executors_lost, 3, "{m:?}");
    // The killing task's own reply may still arrive (its actor finishes the message it
    // is handling), so it is not always rerun; the lost map outputs always are.
    assert!(m.stages_resubmitted >= 1, "{m:?}");
    assert_eq!(sorted_batches(out.batches()), hand_counts(&input));
    ssc.stop(StopMode::Now).await.unwrap();
}

#[actix::test]
async fn a_kill_from_inside_the_reduce_stage_reruns_the_lost_map_outputs() {
    within(kill_inside_the_reduce_stage(|words| {
        words.map(|w| (w, 1u64)).reduce_by_key(|a, b| a + b)
    }))
    .await;
}

/// The same loss under the count by reference: its map tasks read the queue's partitions by
/// reference again when they rerun.
#[actix::test]
async fn a_count_by_reference_heals_the_same_way() {
    within(kill_inside_the_reduce_stage(|words| {
        words.flat_map_reduce_by_key(|w: &String, counts| counts.add(w, 1u64), |a, b| a + b)
    }))
    .await;
}

/// The record whose reduce task fires the kill (in the first batch holding it; a flag keeps
/// it to one kill).
fn is_trigger(kv: &(String, u64)) -> bool {
    kv.0 == "oak"
}

/// Running sums per key, three ways: `map_with_state`, `update_state_by_key`, and a
/// 3-batch `reduce_by_key_and_window_inv`. Returns each output, batch by batch, sorted.
async fn stateful_program(
    kills_between: &[(u32, usize)],
    batches: u32,
) -> (Vec<Vec<String>>, SchedulerMetrics) {
    let ssc = context(3, 3);
    let pairs = ssc.queue_stream(words(batches as usize)).map(|w| (w, 1i64));
    let mws = pairs.map_with_state(StateSpec::function(
        |key: &String, value: Option<i64>, state: &mut State<i64>| {
            let sum = state.get().copied().unwrap_or(0) + value.unwrap_or(0);
            state.update(sum);
            (key.clone(), sum)
        },
    ));
    let mapped = mws.map(|(k, v)| format!("mws {k}={v}"));
    let snapshots = mws
        .state_snapshots()
        .map(|(k, v)| format!("snapshot {k}={v}"));
    let totals = pairs
        .update_state_by_key(|vs: Vec<i64>, s: Option<i64>| {
            Some(s.unwrap_or(0) + vs.iter().sum::<i64>())
        })
        .map(|(k, v)| format!("total {k}={v}"));
    let windowed = pairs
        .reduce_by_key_and_window_inv(|a, b| a + b, |a, b| a - b, B * 3, B)
        .expect("valid window")
        .map(|(k, v)| format!("window {k}={v}"));
    let all = ssc
        .union(&[mapped, snapshots, totals, windowed])
        .expect("same slide");
    let out = all.collect_batches();
    ssc.start().await.unwrap();
    let mut done = 0;
    for &(after, executor) in kills_between {
        ssc.advance(after - done)
            .await
            .expect("batches before the kill");
        done = after;
        ssc.kill_executor(executor).await.expect("executor exists");
    }
    ssc.advance(batches - done)
        .await
        .expect("batches after the kills");
    let m = metrics(&ssc);
    ssc.stop(StopMode::Now).await.unwrap();
    (sorted_batches(out.batches()), m)
}

#[actix::test]
async fn stateful_and_windowed_pipelines_survive_two_executors_killed_in_turn() {
    within(async {
        let (clean, _) = stateful_program(&[], 7).await;
        // The fault-free totals agree with a hand count of everything so far.
        let input = words(7);
        let mut running: BTreeMap<String, u64> = BTreeMap::new();
        for w in input[..3].iter().flatten() {
            *running.entry(w.clone()).or_default() += 1;
        }
        for (k, v) in &running {
            assert!(clean[2].contains(&format!("total {k}={v}")), "{k}");
        }

        let (faulty, m) = stateful_program(&[(2, 0), (4, 1)], 7).await;
        assert_eq!(m.executors_lost, 2, "{m:?}");
        assert_eq!(faulty, clean);
    })
    .await;
}

/// Stores its records once, then idles.
struct Fixed {
    records: Vec<String>,
    stored: Arc<tokio::sync::Notify>,
}

impl Receiver for Fixed {
    type Item = String;
    fn name(&self) -> String {
        "fixed".into()
    }
    async fn on_start(&mut self) -> Result<(), ReceiverError> {
        Ok(())
    }
    async fn receive(&mut self, sink: &mut BlockSink<String>) -> Result<Flow, ReceiverError> {
        if self.records.is_empty() {
            std::future::pending::<()>().await;
        }
        sink.store_many(std::mem::take(&mut self.records))
            .await
            .map_err(|_| ReceiverError::fatal("stopped"))?;
        self.stored.notify_one();
        Ok(Flow::Continue)
    }
}

#[actix::test]
async fn received_blocks_survive_a_kill_through_their_replica() {
    within(async {
        let input = words(1).remove(0);
        // Two executors: every block is on both, so killing one always hits a copy.
        let ssc = context(2, 2);
        let stored = Arc::new(tokio::sync::Notify::new());
        let lines = ssc.receiver_stream(Fixed {
            records: input.clone(),
            stored: stored.clone(),
        });
        let killer = ssc.clone();
        // The first output runs after the batch's blocks were stored, before the count.
        lines.foreach_rdd(move |_, t| {
            if t == batch_time(1) {
                futures::executor::block_on(killer.kill_executor(0))?;
            }
            Ok(())
        });
        let out = lines
            .map(|w| (w, 1u64))
            .reduce_by_key(|a, b| a + b)
            .collect_batches();
        ssc.start().await.unwrap();
        tokio::time::timeout(DATA_TIMEOUT, stored.notified())
            .await
            .expect("the receiver stores its records");
        ssc.advance(1).await.expect("the batch reads the replica");
        assert_eq!(metrics(&ssc).executors_lost, 1);
        assert_eq!(sorted_batches(out.batches()), hand_counts(&[input]));
        ssc.stop(StopMode::Now).await.unwrap();
    })
    .await;
}

#[actix::test]
async fn killing_an_unknown_executor_is_an_error_naming_it() {
    within(async {
        let ssc = context(3, 3);
        ssc.queue_stream(vec![vec![1]]).collect_batches();
        assert!(matches!(
            ssc.kill_executor(0).await,
            Err(Error::NotRunning(_))
        ));
        ssc.start().await.unwrap();
        let err = ssc.kill_executor(3).await.expect_err("out of range");
        let msg = err.to_string();
        assert!(
            msg.contains("executor 3") && msg.contains("3 executor(s)"),
            "{msg}"
        );
        let err = ssc
            .slow_executor(7, Duration::from_millis(1))
            .await
            .expect_err("out of range");
        assert!(err.to_string().contains("executor 7"), "{err}");
        ssc.stop(StopMode::Now).await.unwrap();
    })
    .await;
}
