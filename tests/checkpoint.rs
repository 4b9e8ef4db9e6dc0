//! Checkpoints through the public API: stateful lineage stays bounded, a restart from a
//! checkpoint directory continues the state and the batch times, and a changed graph, a
//! corrupt value or a newer format are refused with clear errors.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use rivulet::prelude::*;

/// Batch `i` (from 1) of the word stream: words `w{i % 7}` and `w{i % 3}`.
fn words(batches: usize) -> Vec<Vec<String>> {
    (1..=batches)
        .map(|i| vec![format!("w{}", i % 7), format!("w{}", i % 3)])
        .collect()
}

/// The running counts after `n` batches of [`words`], computed by hand from the input.
fn counts_after(n: usize) -> Vec<(String, u64)> {
    let mut counts = std::collections::BTreeMap::new();
    for batch in words(n) {
        for w in batch {
            *counts.entry(w).or_insert(0u64) += 1;
        }
    }
    counts.into_iter().collect()
}

fn running_count(ssc: &StreamingContext, input: Vec<Vec<String>>) -> DStream<(String, u64)> {
    ssc.queue_stream(input)
        .map(|w: String| (w, 1u64))
        .update_state_by_key(|vs: Vec<u64>, s: Option<u64>| {
            Some(s.unwrap_or(0) + vs.iter().sum::<u64>())
        })
}

#[actix::test]
async fn lineage_stays_bounded_over_a_thousand_batches() {
    within(async {
        let ssc = context(2, 2);
        let state =
            running_count(&ssc, words(1000)).checkpoint(Duration::from_millis(5 * BATCH_MS as u64));
        let lineage = Arc::new(Mutex::new(Vec::new()));
        let seen = lineage.clone();
        state.foreach_rdd(move |rdd, _| {
            seen.lock()
                .unwrap()
                .push((rdd.lineage_batches(), rdd.lineage_depth()));
            Ok(())
        });
        let last = state.collect_batches();
        ssc.start().await.unwrap();
        ssc.advance(1000).await.unwrap();
        ssc.stop(StopMode::Graceful).await.unwrap();
        let lineage = lineage.lock().unwrap().clone();
        assert_eq!(lineage.len(), 1000);
        let (max_batches, max_depth) = lineage
            .iter()
            .fold((0, 0), |(b, d), &(lb, ld)| (b.max(lb), d.max(ld)));
        // The checkpoint interval is 5 batches: the lineage never reaches further back.
        assert!(
            max_batches <= 5 + 1,
            "lineage reached {max_batches} batches back"
        );
        let late_depth = lineage[900..].iter().map(|l| l.1).max().unwrap();
        let early_depth = lineage[..20].iter().map(|l| l.1).max().unwrap();
        assert!(
            late_depth <= early_depth,
            "depth grew from {early_depth} to {late_depth}"
        );
        assert!(max_depth > 0);
        assert_eq!(sorted(last.batches().pop().unwrap()), counts_after(1000));
    })
    .await;
}

/// Builds the running count over [`words`] with a 5-batch checkpoint interval, collecting
/// its state per batch.
fn build_count(
    ssc: &StreamingContext,
    out: &Arc<Mutex<Option<BatchCollector<(String, u64)>>>>,
) -> Result<()> {
    let state =
        running_count(ssc, words(40)).checkpoint(Duration::from_millis(5 * BATCH_MS as u64));
    *out.lock().unwrap() = Some(state.collect_batches());
    Ok(())
}

async fn run_counts(
    dir: &std::path::Path,
    batches: u32,
) -> (Option<Time>, Vec<(Time, Vec<(String, u64)>)>) {
    let out = Arc::new(Mutex::new(None));
    let ssc = StreamingContext::get_or_create(dir, config(2, 3), |ssc| build_count(ssc, &out))
        .expect("restart");
    let restored = ssc.restored_batch();
    ssc.start().await.unwrap();
    ssc.advance(batches).await.unwrap();
    ssc.stop(StopMode::Graceful).await.unwrap();
    let collected = out.lock().unwrap().take().unwrap();
    (restored, collected.timed_batches())
}

#[actix::test]
async fn a_restart_continues_state_and_batch_times_from_the_checkpoint() {
    within(async {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("ckpt");
        let (restored, first) = run_counts(&dir, 12).await;
        assert_eq!(restored, None, "a fresh directory starts anew");
        assert_eq!(first.len(), 12);
        // The second run continues after batch 12 (data checkpoint at 10; 11 and 12 are
        // recomputed from their input); its state equals a run that never stopped.
        let (restored, second) = run_counts(&dir, 8).await;
        assert_eq!(restored, Some(batch_time(12)));
        let times: Vec<Time> = second.iter().map(|(t, _)| *t).collect();
        assert_eq!(times, (13..=20).map(batch_time).collect::<Vec<_>>());
        for (i, (_, state)) in second.into_iter().enumerate() {
            assert_eq!(sorted(state), counts_after(13 + i), "batch {}", 13 + i);
        }
        // A third run goes on from batch 20.
        let (restored, third) = run_counts(&dir, 1).await;
        assert_eq!(restored, Some(batch_time(20)));
        assert_eq!(sorted(third[0].1.clone()), counts_after(21));
    })
    .await;
}

/// What [`slow_first_record`] collects: the count per batch.
type Counts = Arc<Mutex<Option<BatchCollector<u64>>>>;

/// A count over [`words`] whose first record blocks its task for 300 ms after notifying
/// `started`: an executor thread still busy when `stop` begins.
fn slow_first_record(
    ssc: &StreamingContext,
    started: Arc<tokio::sync::Notify>,
    first: Arc<std::sync::atomic::AtomicBool>,
    out: &Counts,
) -> Result<()> {
    let counts = ssc
        .queue_stream(words(3))
        .map(move |w: String| {
            if first.swap(false, std::sync::atomic::Ordering::SeqCst) {
                started.notify_one();
                std::thread::sleep(Duration::from_millis(300));
            }
            (w, 1u64)
        })
        .count()
        .collect_batches();
    *out.lock().unwrap() = Some(counts);
    Ok(())
}

/// `stop(Now)` while a task is still running returns only once that task's executor thread
/// has ended, so the checkpoint directory (sled's lock) can be opened again at once. Before,
/// `stop` returned while the thread still held it and the reopen failed with `WouldBlock`.
/// The batch cut short is not checkpointed as completed: the restart recomputes it. Before,
/// its job thread went on to write a checkpoint of the emptied graph, which the restart
/// then refused as a changed graph.
#[actix::test]
async fn stop_releases_the_checkpoint_directory_even_while_a_task_runs() {
    within(async {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("ckpt");
        let started = Arc::new(tokio::sync::Notify::new());
        let first = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let (s, f, out) = (started.clone(), first.clone(), Counts::default());
        let ssc = StreamingContext::get_or_create(&dir, config(1, 1), move |ssc| {
            slow_first_record(ssc, s.clone(), f.clone(), &out)
        })
        .unwrap();
        ssc.start().await.unwrap();
        {
            let advance = ssc.advance(1);
            tokio::pin!(advance);
            tokio::select! {
                _ = &mut advance => panic!("the batch finished before its task was seen running"),
                _ = started.notified() => {}
            }
            ssc.stop(StopMode::Now).await.unwrap();
        }
        drop(ssc);
        // The same program again, on the same directory.
        let out = Counts::default();
        let again = StreamingContext::get_or_create(&dir, config(1, 1), |ssc| {
            slow_first_record(ssc, Arc::default(), Arc::default(), &out)
        })
        .unwrap_or_else(|e| panic!("the directory is still held, or refused: {e}"));
        assert_ne!(
            again.restored_batch(),
            Some(batch_time(1)),
            "batch 1 never completed"
        );
        again.start().await.unwrap();
        again.advance(1).await.unwrap();
        again.stop(StopMode::Graceful).await.unwrap();
        let counts = out.lock().unwrap().take().unwrap().timed_batches();
        assert_eq!(
            counts,
            vec![(batch_time(1), vec![2])],
            "batch 1, recomputed"
        );
    })
    .await;
}

/// An output operation that takes 300 ms (after notifying `started`) on the first batch.
fn slow_output(
    ssc: &StreamingContext,
    started: Arc<tokio::sync::Notify>,
    first: Arc<std::sync::atomic::AtomicBool>,
) -> Result<()> {
    ssc.queue_stream(words(3)).foreach_rdd(move |rdd, _| {
        if first.swap(false, std::sync::atomic::Ordering::SeqCst) {
            started.notify_one();
            std::thread::sleep(Duration::from_millis(300));
        }
        rdd.count()?;
        Ok(())
    });
    Ok(())
}

/// `stop(Now)` while an output operation's own code runs waits (up to 10 s) for it to
/// return: until then its RDD holds the checkpoint directory.
#[actix::test]
async fn stop_waits_for_a_running_output_operation_before_releasing_the_directory() {
    within(async {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("ckpt");
        let started = Arc::new(tokio::sync::Notify::new());
        let first = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let (s, f) = (started.clone(), first.clone());
        let ssc = StreamingContext::get_or_create(&dir, config(1, 1), move |ssc| {
            slow_output(ssc, s.clone(), f.clone())
        })
        .unwrap();
        ssc.start().await.unwrap();
        {
            let advance = ssc.advance(1);
            tokio::pin!(advance);
            tokio::select! {
                _ = &mut advance => panic!("the batch finished before its output was seen running"),
                _ = started.notified() => {}
            }
            ssc.stop(StopMode::Now).await.unwrap();
        }
        drop(ssc);
        let again = StreamingContext::get_or_create(&dir, config(1, 1), |ssc| {
            slow_output(ssc, Arc::default(), Arc::default())
        });
        assert!(again.is_ok(), "{:?}", again.err());
    })
    .await;
}

#[actix::test]
async fn a_changed_graph_a_corrupt_value_and_an_occupied_directory_are_refused() {
    within(async {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("ckpt");
        run_counts(&dir, 6).await;

        // `new` on a directory that holds a checkpoint: refused, pointing at get_or_create.
        let err = StreamingContext::new(config(2, 3).checkpoint_dir(&dir)).unwrap_err();
        assert!(err.to_string().contains("get_or_create"), "{err}");

        // Another graph: a filter where the program had a map.
        let err = StreamingContext::get_or_create(&dir, config(2, 3), |ssc| {
            ssc.queue_stream(words(3))
                .filter(|w: &String| !w.is_empty())
                .map(|w: String| (w, 1u64))
                .reduce_by_key(|a, b| a + b)
                .print(1);
            Ok(())
        })
        .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("different DStream graph")
                && msg.contains("stream 1: checkpoint has map")
                && msg.contains("program has filter"),
            "{msg}"
        );

        // A truncated newest metadata value: the restart falls back to the previous
        // complete checkpoint and says which one it skipped.
        let truncate_newest = |skip: usize| {
            let store = rivulet::actors::SledCheckpointStore::open(&dir).unwrap();
            use rivulet::framework::checkpoint::{CheckpointStore, Tree};
            let keys = store.keys(Tree::Meta, b"meta/").unwrap();
            let key = &keys[keys.len() - 1 - skip];
            let mut value = store.get(Tree::Meta, key).unwrap().unwrap();
            let n = value.len();
            value.truncate(n - 3);
            store.put(Tree::Meta, key, &value).unwrap();
            store.flush().unwrap();
        };
        truncate_newest(0);
        let out = Arc::new(Mutex::new(None));
        let ssc = StreamingContext::get_or_create(&dir, config(2, 3), |ssc| build_count(ssc, &out))
            .unwrap();
        let report = ssc.restore_report().unwrap();
        assert_eq!(
            report.checkpoint.batch_time_ms,
            5 * BATCH_MS,
            "the previous batch's checkpoint"
        );
        assert!(
            report.skipped[0].contains("meta/meta/"),
            "{:?}",
            report.skipped
        );
        assert_eq!(report.batches_behind(), 1, "batch 6 runs again");
        ssc.start().await.unwrap();
        ssc.stop(StopMode::Graceful).await.unwrap();
        drop(ssc);

        // Both kept checkpoints damaged: refused, naming the directory and the key.
        truncate_newest(1);
        let err = StreamingContext::get_or_create(&dir, config(2, 3), |ssc| build_count(ssc, &out))
            .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("corrupt") && msg.contains("ckpt") && msg.contains("meta/meta/"),
            "{msg}"
        );
    })
    .await;
}

#[actix::test]
async fn state_lost_long_after_the_remember_duration_is_rebuilt_from_the_checkpoint() {
    within(async {
        let ssc = context(2, 2);
        let state =
            running_count(&ssc, words(40)).checkpoint(Duration::from_millis(5 * BATCH_MS as u64));
        let lineage = Arc::new(Mutex::new(Vec::new()));
        let seen = lineage.clone();
        state.foreach_rdd(move |rdd, _| {
            seen.lock().unwrap().push(rdd.lineage_batches());
            Ok(())
        });
        let out = state.collect_batches();
        ssc.start().await.unwrap();
        ssc.advance(30).await.unwrap();
        // Every executor dies: every cached state partition is gone, 29 batches after the
        // first (the state remembers one batch).
        ssc.kill_executor(0).await.unwrap();
        ssc.kill_executor(1).await.unwrap();
        ssc.advance(5).await.unwrap();
        let metrics = ssc.scheduler_metrics().unwrap();
        ssc.stop(StopMode::Graceful).await.unwrap();
        assert_eq!(metrics.executors_lost, 2, "{metrics:?}");
        let batches = out.batches();
        assert_eq!(batches.len(), 35);
        for (i, batch) in batches.into_iter().enumerate() {
            assert_eq!(sorted(batch), counts_after(i + 1), "batch {}", i + 1);
        }
        // What was recomputed after the loss reached back at most one checkpoint interval.
        let after_kill = lineage.lock().unwrap()[30..].to_vec();
        assert!(after_kill.iter().all(|&b| b <= 6), "{after_kill:?}");
    })
    .await;
}

/// A store whose disk fills up after `room` metadata writes.
struct FillingStore {
    inner: rivulet::framework::checkpoint::MemoryCheckpointStore,
    room: std::sync::atomic::AtomicUsize,
}

impl rivulet::framework::checkpoint::CheckpointStore for FillingStore {
    fn location(&self) -> String {
        "/full/disk".into()
    }
    fn put(
        &self,
        tree: rivulet::framework::checkpoint::Tree,
        key: &[u8],
        value: &[u8],
    ) -> Result<()> {
        use std::sync::atomic::Ordering;
        if tree == rivulet::framework::checkpoint::Tree::Meta
            && self
                .room
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |r| r.checked_sub(1))
                .is_err()
        {
            return Err(rivulet::framework::CheckpointError::Storage {
                dir: self.location(),
                action: "write a metadata checkpoint".into(),
                message: "No space left on device (os error 28)".into(),
            }
            .into());
        }
        self.inner.put(tree, key, value)
    }
    fn get(
        &self,
        tree: rivulet::framework::checkpoint::Tree,
        key: &[u8],
    ) -> Result<Option<Vec<u8>>> {
        self.inner.get(tree, key)
    }
    fn remove(&self, tree: rivulet::framework::checkpoint::Tree, key: &[u8]) -> Result<()> {
        self.inner.remove(tree, key)
    }
    fn keys(
        &self,
        tree: rivulet::framework::checkpoint::Tree,
        prefix: &[u8],
    ) -> Result<Vec<Vec<u8>>> {
        self.inner.keys(tree, prefix)
    }
    fn flush(&self) -> Result<()> {
        Ok(())
    }
}

#[actix::test]
async fn a_checkpoint_that_cannot_be_written_stops_the_context_with_the_error() {
    within(async {
        let ssc = context(2, 2);
        ssc.graph()
            .rdd_context()
            .set_checkpoint_store(Arc::new(FillingStore {
                inner: Default::default(),
                room: 3.into(),
            }));
        let counts = running_count(&ssc, words(10)).collect_batches();
        ssc.start().await.unwrap();
        let failed = ssc.advance(5).await;
        let err = ssc.await_termination().await.unwrap_err().to_string();
        assert!(
            err.contains("/full/disk") && err.contains("No space left on device"),
            "{err}"
        );
        assert!(
            failed.is_err(),
            "the batch whose checkpoint failed reports it"
        );
        // The first three batches checkpointed; the fourth could not, and nothing ran after.
        assert_eq!(counts.len(), 4, "{:?}", counts.batches());
        assert!(matches!(ssc.status(), Some(Status::Stopped(Some(_)))));
    })
    .await;
}

/// Records every data checkpoint.
struct Checkpoints(Arc<Mutex<Vec<rivulet::framework::checkpoint::DataCheckpoint>>>);

impl StreamingListener for Checkpoints {
    fn on_data_checkpoint(&mut self, c: &rivulet::framework::checkpoint::DataCheckpoint) {
        self.0.lock().unwrap().push(c.clone());
    }
}

#[actix::test]
async fn data_checkpoints_reach_listeners_with_the_states_key_count() {
    within(async {
        let ssc = context(2, 2);
        let seen = Arc::new(Mutex::new(Vec::new()));
        ssc.add_listener(Checkpoints(seen.clone()));
        let every = Duration::from_millis(5 * BATCH_MS as u64);
        let pairs = ssc.queue_stream(words(10)).map(|w: String| (w, 1u64));
        let sums = pairs
            .update_state_by_key(|vs: Vec<u64>, s: Option<u64>| {
                Some(s.unwrap_or(0) + vs.iter().sum::<u64>())
            })
            .checkpoint(every);
        sums.foreach_batch(|_, _| {});
        let counts = pairs.map_with_state(StateSpec::function(
            |k: &String, v: Option<u64>, s: &mut State<u64>| {
                let n = s.get().copied().unwrap_or(0) + v.unwrap_or(0);
                s.update(n);
                (k.clone(), n)
            },
        ));
        counts.checkpoint(every);
        counts.foreach_batch(|_, _| {});
        ssc.start().await.unwrap();
        ssc.advance(10).await.unwrap();
        ssc.stop(StopMode::Graceful).await.unwrap();
        let seen = seen.lock().unwrap().clone();
        // Two streams, checkpointed at batches 5 and 10; the keys are the distinct words so far.
        let at = |n: usize| counts_after(n).len() as u64;
        let mut got: Vec<(i64, Option<u64>)> = seen.iter().map(|c| (c.time_ms, c.keys)).collect();
        got.sort();
        let t = |i: i64| i * BATCH_MS;
        assert_eq!(
            got,
            vec![
                (t(5), Some(at(5))),
                (t(5), Some(at(5))),
                (t(10), Some(at(10))),
                (t(10), Some(at(10)))
            ],
            "{seen:?}"
        );
    })
    .await;
}
