//! Speculative execution (Spark: `spark.speculation`, on by default here): a task on a
//! slowed executor (`StreamingContext::slow_executor`) gets a copy on another executor once
//! 75% of its stage finished and it ran 1.5 × their median (at least 100 ms); the first copy
//! wins. Asserted through `scheduler_metrics`, never through wall-clock times.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use rivulet::framework::listener::JobInfo;
use rivulet::prelude::*;

/// 6 partitions of numbers, counted by residue mod 4.
fn input() -> Vec<Vec<u64>> {
    vec![(0..120).collect(), (120..200).collect()]
}

fn hand_counts(input: &[Vec<u64>]) -> Vec<Vec<(u64, u64)>> {
    input
        .iter()
        .map(|b| {
            let mut m = BTreeMap::new();
            for x in b {
                *m.entry(x % 4).or_insert(0u64) += 1;
            }
            m.into_iter().collect()
        })
        .collect()
}

/// Runs the two batches with executor 1 (of 3) slowed by `delay`; returns the outputs and
/// the metrics.
async fn run_slowed(
    config: StreamingConfig,
    delay: Duration,
) -> (Vec<Vec<(u64, u64)>>, SchedulerMetrics) {
    let ssc = StreamingContext::new(config).expect("valid config");
    ssc.add_listener(Jobs(JOBS.with(|j| j.clone())));
    ssc.add_listener(Batches(BATCHES.with(|b| b.clone())));
    let out = ssc
        .queue_stream(input())
        .map(|x| (x % 4, 1u64))
        .reduce_by_key(|a, b| a + b)
        .collect_batches();
    ssc.start().await.unwrap();
    ssc.slow_executor(1, delay)
        .await
        .expect("executor 1 exists");
    ssc.advance(2).await.expect("both batches finish");
    ssc.slow_executor(1, Duration::ZERO)
        .await
        .expect("executor 1 exists");
    let m = ssc.scheduler_metrics().expect("started");
    ssc.stop(StopMode::Now).await.unwrap();
    (sorted_batches(out.batches()), m)
}

thread_local! {
    /// The jobs the listener saw, per test thread.
    static JOBS: std::sync::Arc<std::sync::Mutex<Vec<JobInfo>>> = Default::default();
}

thread_local! {
    /// The processing time of every batch, per test thread.
    static BATCHES: std::sync::Arc<std::sync::Mutex<Vec<Duration>>> = Default::default();
}

/// Records every batch's processing time.
struct Batches(std::sync::Arc<std::sync::Mutex<Vec<Duration>>>);

impl StreamingListener for Batches {
    fn on_batch_completed(&mut self, batch: &BatchInfo) {
        self.0
            .lock()
            .unwrap()
            .push(batch.processing_delay.unwrap_or_default());
    }
}

/// Records every job's stage information.
struct Jobs(std::sync::Arc<std::sync::Mutex<Vec<JobInfo>>>);

impl StreamingListener for Jobs {
    fn on_job_completed(&mut self, job: &JobInfo) {
        self.0.lock().unwrap().push(job.clone());
    }
}

#[actix::test]
async fn a_slowed_executors_tasks_are_speculated_and_the_batches_finish() {
    within(async {
        // Executor 1 holds 2 of each stage's 6 tasks; the other 4 (the 75% quantile) finish
        // at once, so its tasks are copied long before its 1 s delay ends.
        let (out, m) = run_slowed(config(3, 6), Duration::from_secs(1)).await;
        assert_eq!(out, hand_counts(&input()));
        assert!(m.speculative_tasks >= 1, "{m:?}");
        assert_eq!(m.executors_lost, 0);
        // The jobs' stage information shows the same copies, stage by stage.
        let jobs = JOBS.with(|j| j.lock().unwrap().clone());
        let speculated: usize = jobs
            .iter()
            .flat_map(|j| &j.stages)
            .map(|s| s.speculative)
            .sum();
        assert_eq!(speculated as u64, m.speculative_tasks, "{jobs:?}");
        assert!(jobs
            .iter()
            .flat_map(|j| &j.stages)
            .all(|s| s.launched >= s.tasks));
    })
    .await;
}

#[actix::test]
async fn without_speculation_a_slowed_executor_only_delays_the_batch() {
    within(async {
        let delay = Duration::from_millis(150);
        let (out, m) = run_slowed(config(3, 6).speculation(false), delay).await;
        assert_eq!(out, hand_counts(&input()));
        assert_eq!(m.speculative_tasks, 0, "{m:?}");
        // The fault happened: a batch waited for executor 1's slowed tasks (a lower bound
        // the injected delay guarantees, never a bound on speed).
        let slowest = BATCHES.with(|b| b.lock().unwrap().iter().copied().max());
        assert!(
            slowest.is_some_and(|d| d >= delay),
            "no batch was slowed: {slowest:?}"
        );
    })
    .await;
}
