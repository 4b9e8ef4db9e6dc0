//! The DAG scheduler's failure paths, through a scripted [`TaskLauncher`] that runs tasks
//! inline as one of several executors, each with its own block store.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::future::{self, LocalBoxFuture};
use parking_lot::Mutex;

use super::*;
use crate::block::{BlockData, BlockId, ExecutorId};
use crate::rdd::{Rdd, RddContext};
use crate::scheduler::{
    run_task, BlockAccess, JobRunner, MemoryBlockStore, TaskContext, TaskFailure,
};

/// What the script makes of a launch.
enum Act {
    /// Run the task.
    Run,
    /// The executor dies: its store is cleared and the task answers `ExecutorLost`.
    Lose,
    /// Clear executor `e`'s store (a silent loss), then run the task.
    ClearThenRun(ExecutorId),
    /// Never answer (a straggler).
    Hang,
    /// Fail the task (not retryable).
    Fail,
    /// Run the cache task over this RDD instead of the registered one: an executor
    /// process's own copy of it (the same ids, another object).
    RunAs(Arc<dyn crate::rdd::RddBase>),
}

/// A launch as [`Fake`] records it: `(executor, kind, partition, batch, stage)`.
type Launched = (ExecutorId, TaskKind, usize, Option<crate::time::Time>, u32);

type Script = Box<dyn FnMut(ExecutorId, &TaskDescription) -> Act + Send>;

struct Fake {
    registry: Arc<TaskRegistry>,
    stores: Vec<Arc<MemoryBlockStore>>,
    alive: Mutex<Vec<bool>>,
    /// `(executor, kind, partition, batch, stage)` of each launch.
    launches: Mutex<Vec<Launched>>,
    lost_reports: Mutex<Vec<ExecutorId>>,
    script: Mutex<Script>,
}

/// Executor `own`'s view: its store first, then the others'.
struct View {
    own: ExecutorId,
    stores: Vec<Arc<MemoryBlockStore>>,
}

impl BlockAccess for View {
    fn get(&self, id: &BlockId) -> Option<BlockData> {
        self.stores[self.own]
            .get(id)
            .or_else(|| self.stores.iter().find_map(|s| s.get(id)))
    }
    fn put(&self, id: BlockId, data: BlockData, encode: crate::block::BlockEncoder) {
        self.stores[self.own].put(id, data, encode)
    }
}

impl TaskLauncher for Fake {
    fn executors(&self, _: Placement) -> Vec<ExecutorId> {
        let alive = self.alive.lock();
        (0..alive.len()).filter(|&e| alive[e]).collect()
    }
    fn launch(&self, e: ExecutorId, task: TaskDescription) -> LocalBoxFuture<'static, TaskOutcome> {
        self.launches
            .lock()
            .push((e, task.kind, task.partition, task.batch_time, task.stage));
        if !self.alive.lock()[e] {
            return Box::pin(future::ready(TaskOutcome::ExecutorLost));
        }
        let act = (self.script.lock())(e, &task);
        let view = || {
            Arc::new(View {
                own: e,
                stores: self.stores.clone(),
            })
        };
        let run = |task: &TaskDescription| match self.registry.get(task.job, task.stage) {
            Some(stage) => run_task(&stage, task, &TaskContext::new(task, e, view())),
            None => TaskOutcome::Failed(TaskFailure {
                operator: "fake".into(),
                message: "not registered".into(),
                fetch_failed: None,
                retryable: true,
            }),
        };
        let outcome = match act {
            Act::Run => run(&task),
            Act::RunAs(rdd) => {
                let stage = StageRunnable::Cache {
                    op: rdd.meta().op(),
                    rdd,
                };
                run_task(&stage, &task, &TaskContext::new(&task, e, view()))
            }
            Act::ClearThenRun(victim) => {
                self.stores[victim].clear();
                run(&task)
            }
            Act::Lose => {
                self.alive.lock()[e] = false;
                self.stores[e].clear();
                TaskOutcome::ExecutorLost
            }
            Act::Hang => return Box::pin(future::pending()),
            Act::Fail => TaskOutcome::Failed(TaskFailure {
                operator: "fake".into(),
                message: "scripted failure".into(),
                fetch_failed: None,
                retryable: false,
            }),
        };
        Box::pin(future::ready(outcome))
    }
    fn has_block(&self, id: &BlockId) -> bool {
        self.stores.iter().any(|s| s.get(id).is_some())
    }
    fn executor_lost(&self, e: ExecutorId) -> bool {
        self.lost_reports.lock().push(e);
        true
    }
    fn sleep(&self, _: Duration) -> LocalBoxFuture<'static, ()> {
        // The speculation check runs whenever the scheduler waits.
        Box::pin(future::ready(()))
    }
}

struct FakeRunner {
    dag: DagScheduler,
    fake: Fake,
}

impl JobRunner for FakeRunner {
    fn run_job(&self, job: JobSpec) -> Result<Vec<crate::scheduler::TaskOutput>> {
        futures::executor::block_on(self.dag.run_job(&job, &self.fake))
    }
}

/// A context whose jobs run on `executors` fake executors under `script`.
fn setup(
    executors: usize,
    max_attempts: u32,
    speculation: Option<Speculation>,
    script: impl FnMut(ExecutorId, &TaskDescription) -> Act + Send + 'static,
) -> (Arc<RddContext>, Arc<FakeRunner>) {
    let registry = TaskRegistry::new();
    let runner = Arc::new(FakeRunner {
        dag: DagScheduler::new(
            registry.clone(),
            Arc::new(MapOutputTracker::new()),
            max_attempts,
        )
        .with_speculation(speculation),
        fake: Fake {
            registry,
            stores: (0..executors).map(|_| Arc::default()).collect(),
            alive: Mutex::new(vec![true; executors]),
            launches: Mutex::default(),
            lost_reports: Mutex::default(),
            script: Mutex::new(Box::new(script)),
        },
    });
    let ctx = RddContext::new(3);
    ctx.set_runner(runner.clone());
    (ctx, runner)
}

/// `0..60` counted by `x % 5`, through a shuffle of 6 map partitions into 3.
fn counts(ctx: &Arc<RddContext>) -> Rdd<(u64, u64)> {
    ctx.parallelize((0..60u64).collect(), 6)
        .map(|x| (x % 5, 1u64))
        .reduce_by_key(|a, b| a + b)
}

fn sorted(mut v: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    v.sort_unstable();
    v
}

const EXPECTED: [(u64, u64); 5] = [(0, 12), (1, 12), (2, 12), (3, 12), (4, 12)];

fn map_launches(r: &FakeRunner) -> usize {
    r.fake
        .launches
        .lock()
        .iter()
        .filter(|l| l.1 == TaskKind::ShuffleMap)
        .count()
}

#[test]
fn lost_shuffle_output_reruns_the_map_tasks_of_its_executor() {
    let mut cleared = false;
    let (ctx, r) = setup(3, 4, None, move |_, t| {
        if t.kind == TaskKind::Result && !std::mem::replace(&mut cleared, true) {
            return Act::ClearThenRun(1);
        }
        Act::Run
    });
    assert_eq!(sorted(counts(&ctx).collect().unwrap()), EXPECTED);
    let m = r.dag.counters().snapshot();
    assert_eq!(m.stages_resubmitted, 1, "one FetchFailed, one resubmit");
    // 6 map tasks spread 2 per executor; executor 1's two are rerun, in one resubmit.
    assert_eq!(map_launches(&r), 8);
}

#[test]
fn a_task_failing_every_attempt_fails_the_job_with_its_attempt_count() {
    let calls = Arc::new(AtomicUsize::new(0));
    let (ctx, _r) = setup(2, 3, None, |_, _| Act::Run);
    let c = calls.clone();
    let err = ctx
        .parallelize((0..6u64).collect(), 3)
        .map(move |x| {
            if x == 3 {
                c.fetch_add(1, Ordering::SeqCst);
                panic!("bad record {x}");
            }
            x
        })
        .collect()
        .expect_err("partition 1 always fails");
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    match err {
        Error::Task {
            partition,
            attempts,
            message,
            ..
        } => {
            assert_eq!((partition, attempts), (1, 3));
            assert!(message.contains("bad record 3"), "{message}");
        }
        other => panic!("expected Error::Task, got {other:?}"),
    }
}

#[test]
fn repeatedly_lost_shuffle_outputs_fail_the_job_after_max_attempts_resubmits() {
    // Every result task finds the map outputs gone.
    let (ctx, r) = setup(2, 3, None, |_, t| match t.kind {
        TaskKind::Result => Act::ClearThenRun(0),
        TaskKind::ShuffleMap | TaskKind::Cache => Act::Run,
    });
    // One executor holds all map outputs, so each fetch fails.
    r.fake.alive.lock()[1] = false;
    let err = counts(&ctx).collect().expect_err("outputs keep vanishing");
    match err {
        Error::Task {
            attempts, message, ..
        } => {
            assert_eq!(attempts, 3);
            assert!(message.contains("lost repeatedly"), "{message}");
        }
        other => panic!("expected Error::Task, got {other:?}"),
    }
    assert_eq!(r.dag.counters().snapshot().stages_resubmitted, 2);
}

#[test]
fn a_task_on_a_lost_executor_is_rerun_elsewhere() {
    let mut lost = false;
    let (ctx, r) = setup(3, 1, None, move |e, _| {
        if e == 1 && !std::mem::replace(&mut lost, true) {
            return Act::Lose;
        }
        Act::Run
    });
    // One attempt only: a loss must not count as a failed attempt.
    assert_eq!(sorted(counts(&ctx).collect().unwrap()), EXPECTED);
    assert!(r.fake.lost_reports.lock().iter().all(|&e| e == 1));
    let launches = r.fake.launches.lock().clone();
    // Executor 1 had map partitions 1 and 4 in flight when it died: both rerun elsewhere,
    // and no later stage goes there.
    for p in [1, 4] {
        assert!(
            launches
                .iter()
                .any(|l| l.0 != 1 && l.1 == TaskKind::ShuffleMap && l.2 == p),
            "map partition {p} rerun elsewhere: {launches:?}"
        );
    }
    assert!(
        launches
            .iter()
            .all(|l| l.1 == TaskKind::ShuffleMap || l.0 != 1),
        "{launches:?}"
    );
    assert!(r.dag.counters().snapshot().tasks_rerun_after_loss >= 1);
}

#[test]
fn losing_every_executor_is_not_running() {
    let (ctx, _r) = setup(2, 4, None, |_, _| Act::Lose);
    let err = counts(&ctx).collect().expect_err("no executor left");
    assert!(matches!(err, Error::NotRunning(_)), "{err:?}");
}

#[test]
fn a_straggler_gets_a_speculative_copy_and_the_first_result_wins() {
    let speculation = Speculation {
        min_runtime: Duration::ZERO,
        ..Speculation::default()
    };
    // Executor 2 never answers; the other copies finish at once.
    let (ctx, r) = setup(3, 1, Some(speculation), |e, _| {
        if e == 2 {
            Act::Hang
        } else {
            Act::Run
        }
    });
    assert_eq!(sorted(counts(&ctx).collect().unwrap()), EXPECTED);
    let m = r.dag.counters().snapshot();
    // Map stage: executor 2 holds 2 of 6 tasks; result stage: 1 of 3.
    assert_eq!(m.speculative_tasks, 3, "{m:?}");
    let per_partition: HashMap<(bool, usize), usize> =
        r.fake
            .launches
            .lock()
            .iter()
            .fold(HashMap::new(), |mut m, l| {
                *m.entry((l.1 == TaskKind::Result, l.2)).or_default() += 1;
                m
            });
    assert_eq!(per_partition.values().filter(|&&n| n == 2).count(), 3);
}

#[test]
fn without_speculation_no_copy_is_launched() {
    let (ctx, r) = setup(3, 1, None, |_, _| Act::Run);
    assert_eq!(sorted(counts(&ctx).collect().unwrap()), EXPECTED);
    assert_eq!(r.dag.counters().snapshot().speculative_tasks, 0);
    assert_eq!(map_launches(&r), 6);
}

/// `0..10` as an RDD of the batch at `ms` (ids in that batch's scope).
fn earlier_batch(ctx: &Arc<RddContext>, ms: i64) -> Rdd<u64> {
    use crate::rdd::{with_scope, IdScope};
    with_scope(IdScope::new(1, crate::time::Time::from_ms(ms)), || {
        ctx.parallelize((0..10u64).collect(), 2)
    })
}

/// `0..60` counted by `x % 5` as an RDD of the batch at `ms` (ids in that batch's scope),
/// optionally with `earlier` (an RDD of another batch) unioned in before the count.
fn batch_counts(ctx: &Arc<RddContext>, ms: i64, earlier: Option<&Rdd<u64>>) -> Rdd<(u64, u64)> {
    use crate::rdd::{with_scope, IdScope};
    with_scope(IdScope::new(1, crate::time::Time::from_ms(ms)), || {
        let input = ctx.parallelize((0..60u64).collect(), 6);
        let input = match earlier {
            Some(e) => input.union(e),
            None => input,
        };
        input.map(|x| (x % 5, 1u64)).reduce_by_key(|a, b| a + b)
    })
}

/// [`EXPECTED`] plus the counts of `0..10`.
fn expected_with_earlier() -> Vec<(u64, u64)> {
    EXPECTED
        .iter()
        .map(|&(k, c)| (k, c + (0..10u64).filter(|x| x % 5 == k).count() as u64))
        .collect()
}

#[test]
fn map_stages_of_a_batch_run_ahead_and_its_job_skips_them() {
    let (ctx, r) = setup(2, 4, None, |_, _| Act::Run);
    let rdd = batch_counts(&ctx, 200, None);
    let t = crate::time::Time::from_ms(200);
    let ran = futures::executor::block_on(r.dag.run_map_stages_ahead(&rdd.as_base(), t, &r.fake));
    assert_eq!(ran, 1, "the one shuffle over the batch's own input");
    assert_eq!(map_launches(&r), 6);
    assert_eq!(r.dag.counters().snapshot().stages_pipelined, 1);
    // Run ahead again: the stage is complete, so nothing is planned.
    let again = futures::executor::block_on(r.dag.run_map_stages_ahead(&rdd.as_base(), t, &r.fake));
    assert_eq!(again, 0);
    // The job finds the map outputs complete: no map task runs again.
    assert_eq!(sorted(rdd.collect().unwrap()), EXPECTED);
    assert_eq!(map_launches(&r), 6);
    // Both jobs unregistered their stages when they ended (job 0 ran ahead, job 2 collected).
    for job in 0..3 {
        for stage in 0..2 {
            assert!(
                r.fake.registry.get(job, stage).is_none(),
                "job {job} stage {stage}"
            );
        }
    }
}

#[test]
fn a_map_stage_that_computes_an_earlier_batch_does_not_run_ahead() {
    let (ctx, r) = setup(2, 4, None, |_, _| Act::Run);
    let earlier = earlier_batch(&ctx, 100);
    let rdd = batch_counts(&ctx, 200, Some(&earlier));
    let t = crate::time::Time::from_ms(200);
    let ran = futures::executor::block_on(r.dag.run_map_stages_ahead(&rdd.as_base(), t, &r.fake));
    assert_eq!(ran, 0, "its lineage computes an RDD of batch 100");
    assert_eq!(map_launches(&r), 0);
    // The job runs it as usual.
    assert_eq!(sorted(rdd.collect().unwrap()), expected_with_earlier());
}

#[test]
fn a_map_stage_reading_a_cached_rdd_of_an_earlier_batch_runs_ahead() {
    let (ctx, r) = setup(2, 4, None, |_, _| Act::Run);
    let earlier = earlier_batch(&ctx, 100).cache();
    assert_eq!(earlier.count().unwrap(), 10, "cached on the executors");
    let rdd = batch_counts(&ctx, 200, Some(&earlier));
    let t = crate::time::Time::from_ms(200);
    let ran = futures::executor::block_on(r.dag.run_map_stages_ahead(&rdd.as_base(), t, &r.fake));
    assert_eq!(
        ran, 1,
        "it reads batch 100's cached partitions, it does not compute them"
    );
    assert_eq!(sorted(rdd.collect().unwrap()), expected_with_earlier());
}

#[test]
fn a_failed_map_stage_run_ahead_is_left_to_its_job() {
    let mut failing = true;
    let (ctx, r) = setup(1, 1, None, move |_, t| {
        if t.kind == TaskKind::ShuffleMap && std::mem::replace(&mut failing, false) {
            return Act::Lose;
        }
        Act::Run
    });
    let rdd = batch_counts(&ctx, 200, None);
    let t = crate::time::Time::from_ms(200);
    let ran = futures::executor::block_on(r.dag.run_map_stages_ahead(&rdd.as_base(), t, &r.fake));
    assert_eq!(ran, 0);
    assert_eq!(r.dag.counters().snapshot().stages_pipelined, 0);
}

/// A stateful stream's RDD of the batch at `ms` as a DStream generates it: `previous` (an
/// RDD of an earlier batch) unioned with the batch's counts of `0..60` by `x % 5` (3
/// partitions: both sides are partitioned alike, so the union keeps their partitioning).
fn state_step(ctx: &Arc<RddContext>, ms: i64, previous: &Rdd<(u64, u64)>) -> Rdd<(u64, u64)> {
    state_step_counted(ctx, ms, previous, &Arc::default())
}

/// [`state_step`], counting the records its last function sees in `calls`.
fn state_step_counted(
    ctx: &Arc<RddContext>,
    ms: i64,
    previous: &Rdd<(u64, u64)>,
    calls: &Arc<AtomicUsize>,
) -> Rdd<(u64, u64)> {
    use crate::rdd::{with_scope, IdScope};
    let calls = calls.clone();
    with_scope(IdScope::new(2, crate::time::Time::from_ms(ms)), || {
        let next = previous.union(&counts(ctx)).map(move |kv| {
            calls.fetch_add(1, Ordering::Relaxed);
            kv
        });
        next.mark_generated();
        next
    })
}

/// The first state, generated for the batch at 100 ms: the counts, cached if `cached`.
fn first_state(ctx: &Arc<RddContext>, cached: bool) -> Rdd<(u64, u64)> {
    use crate::rdd::{with_scope, IdScope};
    let state = with_scope(IdScope::new(2, crate::time::Time::from_ms(100)), || {
        counts(ctx)
    });
    state.mark_generated();
    if cached {
        state.cache();
    }
    assert_eq!(sorted(state.collect().unwrap()), EXPECTED);
    state
}

/// The cache tasks launched so far, as `(batch ms, partition)`, in launch order.
fn cache_launches(r: &FakeRunner) -> Vec<(i64, usize)> {
    r.fake
        .launches
        .lock()
        .iter()
        .filter(|l| l.1 == TaskKind::Cache)
        .map(|l| (l.3.map_or(-1, |t| t.as_ms()), l.2))
        .collect()
}

/// Drops partition `p` of `rdd` from every fake executor's store (its process was lost).
fn lose_partition(r: &FakeRunner, rdd: &Rdd<(u64, u64)>, p: usize) {
    for store in &r.fake.stores {
        store.remove(&rdd.meta().block_id(p));
    }
}

/// [`EXPECTED`] three times, sorted.
fn expected_thrice() -> Vec<(u64, u64)> {
    let mut v = expected_twice();
    v.extend(EXPECTED);
    sorted(v)
}

#[test]
fn a_lost_partition_of_the_previous_state_is_recovered_in_its_own_batch_first() {
    let (ctx, r) = setup(2, 4, None, |_, _| Act::Run);
    let first = first_state(&ctx, true);
    let second = state_step(&ctx, 200, &first);
    assert_eq!(sorted(second.collect().unwrap()), expected_twice());
    assert_eq!(cache_launches(&r), vec![(200, 0), (200, 1), (200, 2)]);
    lose_partition(&r, &second, 1);
    let third = state_step(&ctx, 300, &second);
    assert_eq!(sorted(third.collect().unwrap()), expected_thrice());
    let launched = cache_launches(&r);
    assert_eq!(
        launched[3],
        (200, 1),
        "the lost partition recomputed by a task of batch 200 first"
    );
    assert_eq!(
        launched[4..].iter().map(|l| l.0).collect::<Vec<_>>(),
        vec![300; third.num_partitions()],
        "then batch 300 materialized"
    );
    assert_eq!(r.dag.counters().snapshot().partitions_recovered, 1);
    assert!((0..3).all(|p| r.fake.has_block(&second.meta().block_id(p))));
}

#[test]
fn a_chain_of_lost_partitions_is_recovered_oldest_first() {
    let (ctx, r) = setup(2, 4, None, |_, _| Act::Run);
    let first = first_state(&ctx, true);
    let second = state_step(&ctx, 200, &first);
    assert_eq!(second.count().unwrap(), 10);
    let third = state_step(&ctx, 300, &second);
    assert_eq!(third.count().unwrap(), 15);
    lose_partition(&r, &second, 2);
    lose_partition(&r, &third, 2);
    // Their batches' shuffles are forgotten too: recovering them reruns their map stages.
    r.dag.map_outputs().remove_before(301);
    let before = r.fake.launches.lock().len();
    let fourth = state_step(&ctx, 400, &third);
    let mut expected = expected_thrice();
    expected.extend(EXPECTED);
    assert_eq!(sorted(fourth.collect().unwrap()), sorted(expected));
    let launched: Vec<(TaskKind, usize, i64)> = r.fake.launches.lock()[before..]
        .iter()
        .map(|l| (l.1, l.2, l.3.map_or(-1, |t| t.as_ms())))
        .collect();
    let first_cache = launched
        .iter()
        .position(|l| l.0 == TaskKind::Cache)
        .expect("cache tasks");
    let maps = |ms| {
        launched[..first_cache]
            .iter()
            .filter(|l| l.0 == TaskKind::ShuffleMap && l.2 == ms)
            .count()
    };
    assert_eq!(
        (maps(200), maps(300)),
        (6, 6),
        "both batches' map stages ran before any recovery cache task: {launched:?}"
    );
    let stage_of = |ms: i64, kind: TaskKind| -> std::collections::BTreeSet<u32> {
        r.fake.launches.lock()[before..]
            .iter()
            .filter(|l| l.1 == kind && l.3.map(|t| t.as_ms()) == Some(ms))
            .map(|l| l.4)
            .collect()
    };
    let stages = [
        stage_of(200, TaskKind::ShuffleMap),
        stage_of(300, TaskKind::ShuffleMap),
        stage_of(200, TaskKind::Cache),
        stage_of(300, TaskKind::Cache),
    ];
    assert!(
        stages.iter().all(|s| s.len() == 1),
        "one stage each: {stages:?}"
    );
    let ids: std::collections::BTreeSet<u32> = stages.iter().flatten().copied().collect();
    assert_eq!(ids.len(), 4, "each stage has an id of its own: {stages:?}");
    let cache: Vec<(usize, i64)> = launched
        .iter()
        .filter(|l| l.0 == TaskKind::Cache)
        .map(|l| (l.1, l.2))
        .collect();
    assert_eq!(
        cache[..2],
        [(2, 200), (2, 300)],
        "batch 200's partition before batch 300's, which reads it"
    );
    assert_eq!(r.dag.counters().snapshot().partitions_recovered, 2);
}

#[test]
fn a_previous_state_lost_in_full_is_recovered_in_full() {
    let (ctx, r) = setup(2, 4, None, |_, _| Act::Run);
    let first = first_state(&ctx, true);
    let second = state_step(&ctx, 200, &first);
    assert_eq!(second.count().unwrap(), 10);
    for p in 0..3 {
        lose_partition(&r, &second, p);
    }
    let before = cache_launches(&r).len();
    let third = state_step(&ctx, 300, &second);
    assert_eq!(sorted(third.collect().unwrap()), expected_thrice());
    assert_eq!(
        cache_launches(&r)[before..before + 3],
        [(200, 0), (200, 1), (200, 2)]
    );
    assert_eq!(r.dag.counters().snapshot().partitions_recovered, 3);
}

/// A stateful stream's RDD of the batch at `ms` that keeps its partitioning: `previous`
/// unioned with the batch's counts, its values mapped (partition `p` reads partition `p`
/// of `previous`).
fn keyed_step(ctx: &Arc<RddContext>, ms: i64, previous: &Rdd<(u64, u64)>) -> Rdd<(u64, u64)> {
    use crate::rdd::{with_scope, IdScope};
    with_scope(IdScope::new(2, crate::time::Time::from_ms(ms)), || {
        let next = previous.union(&counts(ctx)).map_values(|v| v);
        next.mark_generated();
        next
    })
}

#[test]
fn only_the_partitions_a_lost_partition_reads_are_recovered_in_earlier_batches() {
    let (ctx, r) = setup(2, 4, None, |_, _| Act::Run);
    let first = first_state(&ctx, true);
    let second = keyed_step(&ctx, 200, &first);
    assert_eq!(second.count().unwrap(), 10);
    let third = keyed_step(&ctx, 300, &second);
    assert_eq!(third.count().unwrap(), 15);
    assert_eq!(third.num_partitions(), 3, "partitioned as the state");
    // Batch 200 forgotten by the block stores, partition 1 of batch 300 lost.
    for p in 0..3 {
        lose_partition(&r, &second, p);
    }
    lose_partition(&r, &third, 1);
    let before = cache_launches(&r).len();
    let fourth = keyed_step(&ctx, 400, &third);
    let mut expected = expected_thrice();
    expected.extend(EXPECTED);
    assert_eq!(sorted(fourth.collect().unwrap()), sorted(expected));
    assert_eq!(
        cache_launches(&r)[before..before + 2],
        [(200, 1), (300, 1)],
        "partition 1 of batch 200, which partition 1 of batch 300 reads, and nothing else of it"
    );
    assert_eq!(r.dag.counters().snapshot().partitions_recovered, 2);
}

#[test]
fn a_lost_rdd_without_lineage_is_restored_in_full() {
    use crate::rdd::{with_scope, IdScope};
    let (ctx, r) = setup(2, 4, None, |_, _| Act::Run);
    // As a data checkpoint read back: generated for batch 100, cached, no lineage.
    let first = with_scope(IdScope::new(2, crate::time::Time::from_ms(100)), || {
        ctx.parallelize(EXPECTED.to_vec(), 3).cache()
    });
    first.mark_generated();
    assert_eq!(first.count().unwrap(), 5);
    for p in 0..3 {
        lose_partition(&r, &first, p);
    }
    let second = state_step(&ctx, 200, &first);
    assert_eq!(sorted(second.collect().unwrap()), expected_twice());
    let launched = cache_launches(&r);
    assert_eq!(launched[..3], [(100, 0), (100, 1), (100, 2)]);
    assert_eq!(launched.len(), 3 + second.num_partitions());
    assert_eq!(r.dag.counters().snapshot().partitions_recovered, 3);
}

/// [`EXPECTED`] twice, sorted.
fn expected_twice() -> Vec<(u64, u64)> {
    sorted(EXPECTED.iter().chain(EXPECTED.iter()).copied().collect())
}

fn launches_of(r: &FakeRunner, kind: TaskKind) -> usize {
    r.fake
        .launches
        .lock()
        .iter()
        .filter(|l| l.1 == kind)
        .count()
}

#[test]
fn a_batch_reading_earlier_cached_state_is_materialized_by_a_cache_stage_first() {
    let (ctx, r) = setup(2, 4, None, |_, _| Act::Run);
    let previous = first_state(&ctx, true);
    assert_eq!(
        launches_of(&r, TaskKind::Cache),
        0,
        "batch 100 reads no earlier cache"
    );
    let next = state_step(&ctx, 200, &previous);
    assert!(!next.is_cached());
    assert_eq!(sorted(next.collect().unwrap()), expected_twice());
    assert_eq!(next.num_partitions(), 3);
    assert_eq!(
        launches_of(&r, TaskKind::Cache),
        3,
        "one cache task per partition"
    );
    assert!(next.is_cached(), "the cache stage marked it cached");
    assert!((0..3).all(|p| r.fake.has_block(&next.meta().block_id(p))));
    // The result tasks read the cached partitions: collecting again runs no cache task.
    assert_eq!(sorted(next.collect().unwrap()), expected_twice());
    assert_eq!(launches_of(&r, TaskKind::Cache), 3);
}

#[test]
fn a_failed_cache_stage_leaves_its_partitions_to_the_result_stage() {
    let (ctx, r) = setup(2, 4, None, |_, t| match t.kind {
        TaskKind::Cache => Act::Fail,
        _ => Act::Run,
    });
    let previous = first_state(&ctx, true);
    let next = state_step(&ctx, 200, &previous);
    assert_eq!(sorted(next.collect().unwrap()), expected_twice());
    let cache = launches_of(&r, TaskKind::Cache);
    assert!(
        (1..=3).contains(&cache),
        "one attempt per task, no retries: {cache}"
    );
    assert_eq!(r.dag.counters().snapshot().task_retries, 0);
}

#[test]
fn without_a_cached_earlier_batch_no_cache_stage_runs() {
    let (ctx, r) = setup(2, 4, None, |_, _| Act::Run);
    let previous = first_state(&ctx, false);
    let next = state_step(&ctx, 200, &previous);
    assert_eq!(sorted(next.collect().unwrap()), expected_twice());
    assert_eq!(launches_of(&r, TaskKind::Cache), 0);
}

#[test]
fn state_read_across_a_shuffle_is_materialized_before_the_map_stage() {
    use crate::rdd::{with_scope, IdScope};
    let (ctx, r) = setup(2, 4, None, |_, _| Act::Run);
    let previous = first_state(&ctx, true);
    let next = state_step(&ctx, 200, &previous);
    // An output that reduces the state again: the state is read by a map stage.
    let totals = with_scope(IdScope::new(3, crate::time::Time::from_ms(200)), || {
        next.map(|(k, c)| (k, c)).reduce_by_key(|a, b| a + b)
    });
    let doubled: Vec<(u64, u64)> = EXPECTED.iter().map(|&(k, c)| (k, 2 * c)).collect();
    assert_eq!(sorted(totals.collect().unwrap()), doubled);
    assert_eq!(launches_of(&r, TaskKind::Cache), 3);
    assert!(next.is_cached());
}

#[test]
fn only_cached_rdds_of_earlier_batches_are_leaves_an_executor_process_reads() {
    use crate::rdd::{computable_remotely_with, with_scope, IdScope};
    let (ctx, r) = setup(2, 4, None, |_, _| Act::Run);
    let t = crate::time::Time::from_ms(200);
    let cached = |meta: &RddMeta| is_cached(&r.fake, meta);
    // Parallelized data of batch 200, cached: a process missing a partition would compute
    // it from data only this process has, so it is no leaf.
    let own = with_scope(IdScope::new(4, t), || {
        ctx.parallelize(vec![1u64, 2, 3], 3).cache()
    });
    assert_eq!(own.count().unwrap(), 3);
    let over_own = with_scope(IdScope::new(4, t), || own.map(|x| x + 1));
    assert!(!computable_remotely_with(&*over_own.as_base(), t, &cached));
    // The same of batch 100, read by batch 200: a leaf (a stand-in in the process).
    let earlier = with_scope(IdScope::new(4, crate::time::Time::from_ms(100)), || {
        ctx.parallelize(vec![1u64, 2, 3], 3).cache()
    });
    let over_earlier = with_scope(IdScope::new(4, t), || earlier.map(|x| x + 1));
    assert!(
        !computable_remotely_with(&*over_earlier.as_base(), t, &cached),
        "not cached yet"
    );
    assert_eq!(earlier.count().unwrap(), 3);
    assert!(computable_remotely_with(
        &*over_earlier.as_base(),
        t,
        &cached
    ));
}

#[test]
fn the_result_stage_reads_what_a_process_materialized_and_does_not_recompute_it() {
    let remote: Arc<Mutex<Option<Arc<dyn crate::rdd::RddBase>>>> = Arc::default();
    let slot = remote.clone();
    let (ctx, r) = setup(2, 4, None, move |_, t| {
        match (t.kind, slot.lock().clone()) {
            (TaskKind::Cache, Some(rdd)) => Act::RunAs(rdd),
            _ => Act::Run,
        }
    });
    let previous = first_state(&ctx, true);
    // The executor process's own copy of the batch's RDD: the same ids, another object.
    let theirs_calls = Arc::new(AtomicUsize::new(0));
    let theirs = state_step_counted(&ctx, 200, &previous, &theirs_calls);
    *remote.lock() = Some(theirs.as_base());
    let ours_calls = Arc::new(AtomicUsize::new(0));
    let ours = state_step_counted(&ctx, 200, &previous, &ours_calls);
    assert_eq!(ours.id(), theirs.id());
    assert_eq!(sorted(ours.collect().unwrap()), expected_twice());
    assert_eq!(launches_of(&r, TaskKind::Cache), 3);
    assert_eq!(
        theirs_calls.load(Ordering::Relaxed),
        10,
        "the process computed it"
    );
    assert_eq!(
        ours_calls.load(Ordering::Relaxed),
        0,
        "the result stage read the partitions from the block stores"
    );
}
