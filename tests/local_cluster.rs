//! Executor processes (`StreamingConfig::local_cluster`): the same program run with three
//! executor processes and with in-process executors only gives the hand count, while map
//! tasks run in the processes; a process that dies (SIGKILL) in the middle of a map task
//! is lost, its task runs again elsewhere and a new process takes its slot; one SIGKILLed
//! between batches (`kill_executor` on a process's id) is replaced too; a process SIGKILLed
//! after a batch's shuffle stages, behind the coordinator's back, loses map outputs the
//! batch's later outputs read: a reduce task's fetch fails and the map stage is rerun
//! (`stages_resubmitted`, asserted) on the survivors. Beside the counts,
//! the same graph runs a 3-batch window with an inverse function, `map_with_state` and a
//! join over them; in both runs each batch's outputs are checked against values the test
//! computes itself from that run's per-batch counts. With processes, the state and the
//! window are computed and kept in the processes (cache stages, counted), and recomputed
//! from lineage when a process holding them dies.
//!
//! This file holds ONE test on purpose: an executor process is this test binary started
//! again with the same arguments, which runs the same test up to `start` and serves the
//! coordinator from there. Another test in the same binary would run in the executor
//! processes too and build another graph.

mod cluster_support;
mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cluster_support::{hand_count, lines_of, per_batch, taken, words_upto, GatedLines};
use common::*;
use rivulet::prelude::*;

/// The word that crashes the first executor process that maps it.
const POISON: &str = "poison";

/// 3,000 lines of 4 words from a 9-word vocabulary, a poisoned word every 100 lines.
fn lines() -> Vec<String> {
    let vocab = [
        "ash", "birch", "cedar", "elm", "fir", "oak", "yew", "pine", "larch",
    ];
    let mut lines = lines_of(&vocab, LINES, 7);
    for line in lines.iter_mut().skip(50).step_by(100) {
        line.replace_range(..line.find(' ').unwrap_or(0), POISON);
    }
    lines
}

/// Where the first executor process to map the poison marks that it crashed: named after
/// the coordinator (the test process), so that only one process of a run crashes.
fn crash_marker(coordinator_pid: u32) -> PathBuf {
    std::env::temp_dir().join(format!("rivulet-local-cluster-{coordinator_pid}.crashed"))
}

/// In an executor process, the first time any process of this run maps the poison: SIGKILL
/// itself, a crash in the middle of a map task.
fn crash_on_poison(word: &str) {
    if word == POISON && StreamingContext::is_executor_process() {
        let marker = crash_marker(std::os::unix::process::parent_id());
        if std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(marker)
            .is_ok()
        {
            // SIGKILL, from itself: the process dies in the middle of the task.
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &std::process::id().to_string()])
                .status();
            loop {
                std::thread::park();
            }
        }
    }
}

/// SIGKILLs `pid` and waits (at most 10 s) until the kernel has torn it down (gone, or a
/// zombie: its sockets are closed), so that nothing it held can still be served.
fn sigkill_and_wait(pid: u32) {
    let _ = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status();
    let stat = format!("/proc/{pid}/stat");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match std::fs::read_to_string(&stat) {
            // The state is the field after the parenthesized command name.
            Ok(s)
                if !s
                    .rsplit(')')
                    .next()
                    .unwrap_or("")
                    .trim_start()
                    .starts_with('Z') =>
            {
                assert!(std::time::Instant::now() < deadline, "{pid} did not die");
                std::thread::yield_now();
            }
            _ => return,
        }
    }
}

/// After a shuffle stage: armed with the executor processes' pids and map-task counts,
/// the first non-empty batch's first output SIGKILLs the first process (by slot) that ran
/// a map task since, before the batch's other outputs, which read the same shuffles, run.
/// Its map outputs of the batch die with it: with every process free, the batch's last
/// map stage (3 tasks after the repartition's 1) gave each process one of its tasks. The
/// coordinator is not told: it learns of the loss when a reduce task cannot fetch an
/// output, and reruns the map stage on the survivors.
#[derive(Clone, Default)]
struct KillAfterShuffle {
    armed: Arc<Mutex<Option<(StreamingContext, Vec<(u32, u64)>)>>>,
    killed: Arc<Mutex<Vec<u32>>>,
}

impl KillAfterShuffle {
    /// Arms the kill for the next non-empty batch, once every process is connected.
    fn arm(&self, ssc: &StreamingContext) {
        let ran: Vec<(u32, u64)> = ssc
            .executor_processes()
            .iter()
            .filter_map(|p| Some((p.pid?, p.map_tasks)))
            .collect();
        *self.armed.lock().unwrap() = Some((ssc.clone(), ran));
    }

    /// The output that kills, to be registered before the batch's other outputs.
    fn register(&self, counts: &DStream<(String, u64)>) {
        let me = self.clone();
        counts.foreach_batch(move |_, batch: Vec<(String, u64)>| {
            if batch.is_empty() {
                return;
            }
            let Some((ssc, before)) = me.armed.lock().unwrap().take() else {
                return;
            };
            let ran_since = |p: &rivulet::actors::cluster::ExecutorProcess| {
                before
                    .iter()
                    .find(|&&(pid, tasks)| p.pid == Some(pid) && p.map_tasks > tasks)
                    .map(|&(pid, _)| pid)
            };
            if let Some(pid) = ssc.executor_processes().iter().find_map(ran_since) {
                sigkill_and_wait(pid);
                me.killed.lock().unwrap().push(pid);
            }
        });
    }
}

/// What one run saw: the counts summed over every batch, the running totals' last state,
/// each batch's counts, window, `map_with_state` output and join, the scheduler's
/// recoveries and the executor processes.
struct Outcome {
    summed: BTreeMap<String, u64>,
    state: BTreeMap<String, u64>,
    counts: Vec<(Time, Vec<(String, u64)>)>,
    windowed: Vec<(Time, Vec<(String, u64)>)>,
    running: Vec<(Time, Vec<(String, u64)>)>,
    joined: Vec<(Time, Vec<(String, (u64, u64))>)>,
    metrics: SchedulerMetrics,
    processes: Vec<rivulet::actors::cluster::ExecutorProcess>,
    /// The processes SIGKILLed after a shuffle stage.
    killed_after_shuffle: Vec<u32>,
    /// The slot (index in `processes`) of the process killed between batches.
    killed_between: Option<usize>,
    /// How many times `map_with_state`'s function ran in this (the coordinator's) process.
    state_calls_here: u64,
}

/// Counts the `map_with_state` function's calls in the coordinator's process.
static STATE_CALLS_HERE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Checks each batch's window, `map_with_state` output and join against values computed
/// here from the run's per-batch counts: the window sums the counts of its last 3 batches
/// (keys that left it stay with 0, as Spark's without a filter), `map_with_state` emits
/// each key of the batch with its count so far, and the join pairs each key of the batch
/// with its window.
fn check_operators(o: &Outcome) {
    let slide = Duration::from_millis(BATCH_MS as u64);
    let counts: BTreeMap<Time, BTreeMap<String, u64>> = o
        .counts
        .iter()
        .map(|(t, b)| (*t, b.iter().cloned().collect()))
        .collect();
    let sum = |from: Time, to: Time| {
        let mut total: BTreeMap<String, u64> = BTreeMap::new();
        for (_, batch) in counts.range(from..=to) {
            for (w, n) in batch {
                *total.entry(w.clone()).or_default() += n;
            }
        }
        total
    };
    assert!(!o.windowed.is_empty() && !o.running.is_empty() && !o.joined.is_empty());
    let mut windows = BTreeMap::new();
    for (t, window) in &o.windowed {
        let nonzero: BTreeMap<String, u64> =
            window.iter().filter(|(_, n)| *n > 0).cloned().collect();
        let first = *t - slide * 2;
        assert_eq!(nonzero, sum(first, *t), "the window at {t}");
        windows.insert(*t, nonzero);
    }
    let first_batch = counts.keys().next().copied().expect("a batch");
    for (t, out) in &o.running {
        let so_far = sum(first_batch, *t);
        let expected: BTreeMap<String, u64> = counts
            .get(t)
            .map(|b| b.keys().map(|w| (w.clone(), so_far[w])).collect())
            .unwrap_or_default();
        let got: BTreeMap<String, u64> = out.iter().cloned().collect();
        assert_eq!(got, expected, "map_with_state at {t}");
    }
    for (t, out) in &o.joined {
        let window = windows.get(t).cloned().unwrap_or_default();
        let expected: BTreeMap<String, (u64, u64)> = counts
            .get(t)
            .map(|b| {
                b.iter()
                    .map(|(w, n)| (w.clone(), (*n, window[w])))
                    .collect()
            })
            .unwrap_or_default();
        let got: BTreeMap<String, (u64, u64)> = out.iter().cloned().collect();
        assert_eq!(got, expected, "the join at {t}");
    }
}

/// Lines per chunk the receiver stores, one chunk per batch.
const CHUNK: usize = 150;

/// How many lines [`lines`] makes.
const LINES: usize = 3_000;

/// How many chunks they are fed in.
const CHUNKS: usize = LINES / CHUNK;

/// Word counts per batch and their running totals (`update_state_by_key`) over `lines`
/// (repartitioned first, so that map tasks also read shuffle buckets other processes
/// wrote), with `processes` executor processes beside one in-process executor. With
/// processes, three faults: the first process to map the poison dies in that map task
/// (during a shuffle stage); a process that has computed state since the start is
/// SIGKILLed between the third and fourth chunk's batches (before one); in the sixth chunk's batch, a process that ran
/// one of its map tasks is SIGKILLed after its first output ran (after one,
/// [`KillAfterShuffle`]).
async fn run(lines: Vec<String>, processes: usize) -> Outcome {
    let words_upto = words_upto(&lines, CHUNK);
    let permits = Arc::new(tokio::sync::Semaphore::new(0));
    let ssc = StreamingContext::new(
        config(1, 2)
            .local_cluster(processes)
            .heartbeat_timeout(Duration::from_secs(2)),
    )
    .expect("valid config");
    let counts = ssc
        .receiver_stream(GatedLines {
            records: lines,
            chunk: CHUNK,
            permits: permits.clone(),
        })
        .repartition(3)
        .flat_map(|line: String| line.split(' ').map(str::to_string).collect::<Vec<String>>())
        .map(|w: String| {
            crash_on_poison(&w);
            (w, 1u64)
        })
        .reduce_by_key(|a, b| a + b);
    let totals = counts.update_state_by_key(|new: Vec<u64>, old: Option<u64>| {
        Some(old.unwrap_or(0) + new.iter().sum::<u64>())
    });
    let slide = Duration::from_millis(BATCH_MS as u64);
    let windowed = counts
        .reduce_by_key_and_window_inv(|a, b| a + b, |a, b| a - b, slide * 3, slide)
        .expect("a valid window");
    let running = counts.map_with_state(StateSpec::function(
        |w: &String, n: Option<u64>, s: &mut State<u64>| {
            if !StreamingContext::is_executor_process() {
                STATE_CALLS_HERE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            let total = s.get().copied().unwrap_or(0) + n.unwrap_or(0);
            s.update(total);
            (w.clone(), total)
        },
    ));
    let joined = counts.join(&windowed);
    let kill_after_shuffle = KillAfterShuffle::default();
    kill_after_shuffle.register(&counts);
    let batches = (
        per_batch(&counts),
        per_batch(&windowed),
        per_batch(&running),
        per_batch(&joined),
    );
    let summed = Arc::new(Mutex::new(BTreeMap::<String, u64>::new()));
    let sink = summed.clone();
    counts.foreach_batch(move |_, batch: Vec<(String, u64)>| {
        let mut summed = sink.lock().unwrap();
        for (w, n) in batch {
            *summed.entry(w).or_default() += n;
        }
    });
    let state = Arc::new(Mutex::new(BTreeMap::new()));
    let last = state.clone();
    totals.foreach_batch(move |_, batch: Vec<(String, u64)>| {
        *last.lock().unwrap() = batch.into_iter().collect();
    });
    ssc.start().await.expect("started");
    let seen = || summed.lock().unwrap().values().sum::<u64>();
    let mut killed_between = None;
    for (i, upto) in words_upto.iter().enumerate() {
        if i == 5 && processes > 0 {
            advance_until(&ssc, || ssc.executor_processes().iter().all(|p| p.alive)).await;
            kill_after_shuffle.arm(&ssc);
        }
        permits.add_permits(1);
        advance_until(&ssc, || seen() >= *upto).await;
        if i == 2 && processes > 0 {
            // A process that has run since the start and computed state, so that it holds
            // cached partitions (not a replacement of one the poison killed).
            let holds_state = |p: &rivulet::actors::cluster::ExecutorProcess| {
                p.alive && p.losses == 0 && p.cache_tasks > 0
            };
            advance_until(&ssc, || ssc.executor_processes().iter().any(holds_state)).await;
            let slot = ssc
                .executor_processes()
                .iter()
                .position(holds_state)
                .expect("a process holding state");
            killed_between = Some(slot);
            let victim = ssc.executor_processes()[slot].executor;
            ssc.kill_executor(victim).await.expect("a process to kill");
        }
    }
    ssc.advance(1).await.expect("one more batch");
    let metrics = ssc.scheduler_metrics().expect("started");
    let processes = ssc.executor_processes();
    ssc.stop(StopMode::Graceful).await.expect("stopped");
    let summed = summed.lock().unwrap().clone();
    let state = state.lock().unwrap().clone();
    let killed_after_shuffle = kill_after_shuffle.killed.lock().unwrap().clone();
    Outcome {
        summed,
        state,
        counts: taken(&batches.0),
        windowed: taken(&batches.1),
        running: taken(&batches.2),
        joined: taken(&batches.3),
        metrics,
        processes,
        killed_after_shuffle,
        killed_between,
        state_calls_here: STATE_CALLS_HERE.swap(0, std::sync::atomic::Ordering::Relaxed),
    }
}

#[actix_rt::test]
async fn executor_processes_give_the_in_process_counts_and_survive_a_crash_and_a_kill() {
    let marker = crash_marker(std::process::id());
    let _ = std::fs::remove_file(&marker);
    let expected = hand_count(&lines());

    let cluster = tokio::time::timeout(Duration::from_secs(120), run(lines(), 3))
        .await
        .expect("the cluster run finished in time");
    assert!(
        marker.exists(),
        "an executor process mapped the poison and was killed"
    );
    let _ = std::fs::remove_file(&marker);
    assert_eq!(
        cluster.summed, expected,
        "each word counted once, by the batches"
    );
    assert_eq!(
        cluster.state, expected,
        "the running totals end at the hand count"
    );
    assert!(
        cluster.processes.iter().all(|p| p.map_tasks > 0),
        "every slot ran map tasks: {:?}",
        cluster.processes
    );
    let after_shuffle = cluster.killed_after_shuffle.len() as u64;
    assert_eq!(
        after_shuffle, 1,
        "a process that ran a map task of the sixth batch was killed after it"
    );
    let losses: u64 = cluster.processes.iter().map(|p| p.losses).sum();
    assert_eq!(
        losses,
        2 + after_shuffle,
        "one poisoned, one killed between batches, {after_shuffle} after a shuffle stage: {:?}",
        cluster.processes
    );
    let killed = cluster
        .killed_between
        .expect("a process was killed between batches");
    assert!(
        cluster.processes[killed].losses >= 1,
        "the killed slot lost one"
    );
    assert_eq!(
        cluster.metrics.executors_lost,
        2 + after_shuffle,
        "{:?}",
        cluster.metrics
    );
    assert!(
        cluster.metrics.tasks_rerun_after_loss >= 1,
        "the poisoned process's map task ran again elsewhere: {:?}",
        cluster.metrics
    );
    assert!(
        cluster.metrics.stages_resubmitted >= 1,
        "a reduce task found a map output of the killed processes gone and its map stage \
         ran again: {:?}",
        cluster.metrics
    );
    let cached: u64 = cluster.processes.iter().map(|p| p.cache_tasks).sum();
    assert!(
        cached >= CHUNKS as u64,
        "the state (update_state_by_key, map_with_state) and the window were computed and \
         kept on the processes, at least once per chunk: {:?}",
        cluster.processes
    );
    assert!(
        cluster.processes.iter().map(|p| p.cached_lost).sum::<u64>() > 0,
        "a killed process held cached partitions (the outputs above still equal the \
         test's values: they were recomputed): {:?}",
        cluster.processes
    );
    assert!(
        cluster.metrics.partitions_recovered > 0,
        "the state partitions the killed processes held were recovered on the survivors \
         before the batches reading them: {:?}",
        cluster.metrics
    );
    check_operators(&cluster);

    let local = tokio::time::timeout(Duration::from_secs(60), run(lines(), 0))
        .await
        .expect("the in-process run finished in time");
    assert_eq!(
        local.summed, cluster.summed,
        "in-process and cluster runs agree"
    );
    assert_eq!(local.state, cluster.state);
    check_operators(&local);
    assert!(local.processes.is_empty());
    assert_eq!(local.metrics.executors_lost, 0);
    assert_eq!(local.metrics.stages_resubmitted, 0);
    assert!(local.killed_after_shuffle.is_empty());
    // The processes computed the state, and recovered what died with a process: the
    // coordinator only where a cache stage could not run (the first batch; measured: 10
    // calls against 200 in-process).
    assert!(
        cluster.state_calls_here * 2 < local.state_calls_here,
        "map_with_state's function ran {} times in the coordinator with processes, {} \
         without",
        cluster.state_calls_here,
        local.state_calls_here
    );
}
