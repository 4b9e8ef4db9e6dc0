//! The DAG scheduler: runs a job's stages in order through a [`TaskLauncher`], retrying
//! failed tasks and rerunning lost map outputs (Spark: `DAGScheduler` + `TaskSetManager`).
//!
//! It is plain async code with no runtime of its own: the actor runtime drives it on the
//! coordinator, [`LocalRunner`](super::LocalRunner) drives it inline.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::{self, Either, LocalBoxFuture};
use futures::stream::{FuturesUnordered, StreamExt};
use futures::FutureExt;
use tracing::{debug, warn};

use crate::block::{BlockId, ExecutorId};
use crate::error::{Error, Result};
use crate::listener::{JobInfo, StageInfo};
use crate::rdd::{RddBase, RddMeta, ShuffleId, ShuffleMap};
use crate::scheduler::{
    independent_map_stages, plan_stages, JobId, JobSpec, MapOutputTracker, SchedulerCounters,
    Speculation, Stage, StageKind, StageRunnable, TaskDescription, TaskKind, TaskOutcome,
    TaskOutput, TaskRegistry,
};
use crate::time::Time;

/// Tasks in flight per executor: one running, one waiting in its mailbox, so an executor
/// never idles for a round trip between tasks.
const SLOTS_PER_EXECUTOR: usize = 2;

/// Where tasks run.
pub trait TaskLauncher {
    /// The executors that can take tasks now.
    fn executors(&self) -> Vec<ExecutorId>;
    /// Sends `task` to `executor`; resolves with its outcome ([`TaskOutcome::ExecutorLost`]
    /// if the executor died before answering).
    fn launch(
        &self,
        executor: ExecutorId,
        task: TaskDescription,
    ) -> LocalBoxFuture<'static, TaskOutcome>;
    /// Whether some executor's block store holds `id`.
    fn has_block(&self, id: &BlockId) -> bool;
    /// Reports that `executor` was lost; the launcher stops offering it (and may restart it).
    /// Returns whether this was news: `false` when the loss was already handled (the
    /// executor was killed on purpose, or replaced after an earlier report), so that what a
    /// replacement already holds is not forgotten.
    fn executor_lost(&self, executor: ExecutorId) -> bool;
    /// A future that resolves after `duration`: the scheduler's timer for
    /// [speculation](Speculation). The default never resolves, so a launcher without a
    /// timer never speculates.
    fn sleep(&self, _duration: Duration) -> LocalBoxFuture<'static, ()> {
        Box::pin(future::pending())
    }
}

enum StageFailure {
    FetchFailed(ShuffleId, usize),
    Failed(Error),
}

/// Runs jobs: plans stages, launches tasks, retries, tracks map outputs.
pub struct DagScheduler {
    registry: Arc<TaskRegistry>,
    map_outputs: Arc<MapOutputTracker>,
    max_attempts: u32,
    speculation: Option<Speculation>,
    counters: Arc<SchedulerCounters>,
    next_job: AtomicU64,
}

impl fmt::Debug for DagScheduler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DagScheduler")
            .field("max_attempts", &self.max_attempts)
            .field("speculation", &self.speculation)
            .finish_non_exhaustive()
    }
}

/// Removes a job's stages from the registry when the job ends, however it ends.
struct Unregister<'a>(&'a TaskRegistry, JobId);

impl Drop for Unregister<'_> {
    fn drop(&mut self) {
        self.0.remove_job(self.1);
    }
}

impl DagScheduler {
    /// A scheduler that registers stages in `registry`, tracks shuffles in `map_outputs`,
    /// and gives each task `max_attempts` attempts (at least 1). Speculation is off; see
    /// [`with_speculation`](DagScheduler::with_speculation).
    pub fn new(
        registry: Arc<TaskRegistry>,
        map_outputs: Arc<MapOutputTracker>,
        max_attempts: u32,
    ) -> Self {
        DagScheduler {
            registry,
            map_outputs,
            max_attempts: max_attempts.max(1),
            speculation: None,
            counters: Arc::default(),
            next_job: AtomicU64::new(0),
        }
    }

    /// Launches speculative copies of slow tasks as `speculation` says (`None`: never).
    /// They need a launcher whose [`TaskLauncher::sleep`] resolves.
    pub fn with_speculation(mut self, speculation: Option<Speculation>) -> Self {
        self.speculation = speculation;
        self
    }

    /// What the scheduler healed so far (lost executors, reruns, speculative copies); the
    /// runtime counts executor losses here too.
    pub fn counters(&self) -> &Arc<SchedulerCounters> {
        &self.counters
    }

    /// The map output tracker.
    pub fn map_outputs(&self) -> &Arc<MapOutputTracker> {
        &self.map_outputs
    }

    /// Runs `job`: returns one output per partition of its RDD, in partition order.
    ///
    /// # Errors
    /// [`Error::Task`] naming the operator, batch and partition when a task failed
    /// `max_attempts` times, or when lost shuffle outputs could not be rebuilt in as many
    /// tries; [`Error::NotRunning`] when no executor is left.
    pub async fn run_job(
        &self,
        job: &JobSpec,
        launcher: &dyn TaskLauncher,
    ) -> Result<Vec<TaskOutput>> {
        self.run_job_with_info(job, launcher).await.0
    }

    /// Runs `job` as [`run_job`](DagScheduler::run_job) does, and describes how it ran: its
    /// stages with their tasks, launched copies, retries and speculative copies.
    pub async fn run_job_with_info(
        &self,
        job: &JobSpec,
        launcher: &dyn TaskLauncher,
    ) -> (Result<Vec<TaskOutput>>, JobInfo) {
        let started = Instant::now();
        let mut stages = Vec::new();
        let job_id = self.next_job.fetch_add(1, Ordering::Relaxed);
        let result = self
            .run_job_stages(job_id, job, launcher, &mut stages)
            .await;
        let info = JobInfo {
            id: job_id,
            output_op: job.output_op,
            batch_time: job.batch_time,
            operator: job.op.to_string(),
            stages,
            duration: started.elapsed(),
            failure: result.as_ref().err().map(|e| e.to_string()),
        };
        (result, info)
    }

    /// Runs ahead the map stages of batch `batch_time` that do not depend on a batch still
    /// running (see [`independent_map_stages`]) for `rdd`, the RDD an output operation of
    /// that batch will receive: the D-Streams paper's timestep pipelining. The batch's job
    /// later finds their map outputs complete and skips them. Returns how many stages ran
    /// to completion.
    ///
    /// Failures are not reported: the job reruns what is missing and reports its own. A task
    /// that fails on every attempt here gets its attempts again in the job (both count in
    /// [`SchedulerMetrics::task_retries`](crate::scheduler::SchedulerMetrics)).
    pub async fn run_map_stages_ahead(
        &self,
        rdd: &Arc<dyn RddBase>,
        batch_time: Time,
        launcher: &dyn TaskLauncher,
    ) -> usize {
        let job_id = self.next_job.fetch_add(1, Ordering::Relaxed);
        let _unregister = Unregister(&self.registry, job_id);
        let is_available = |dep: &dyn ShuffleMap| self.is_available(dep);
        let is_cached = |meta: &RddMeta| is_cached(launcher, meta);
        let stages = independent_map_stages(rdd, batch_time, &is_available, &is_cached);
        let job = JobSpec {
            rdd: rdd.clone(),
            func: Arc::new(move |_, _| {
                Err(Error::Internal(
                    "map stages run ahead have no result stage".into(),
                ))
            }),
            op: rdd.meta().op(),
            batch_time: Some(batch_time),
            output_op: None,
        };
        self.register(job_id, &job, &stages);
        let mut ran = 0;
        for stage in &stages {
            let mut info = stage_info(stage, &job);
            match self
                .run_stage(job_id, &job, stage, launcher, &mut info)
                .await
            {
                Ok(_) => {
                    self.counters.stage_pipelined();
                    ran += 1;
                }
                Err(_) => {
                    debug!(batch = %batch_time, "A map stage run ahead failed; its job reruns it.");
                    break;
                }
            }
        }
        ran
    }

    async fn run_job_stages(
        &self,
        job_id: JobId,
        job: &JobSpec,
        launcher: &dyn TaskLauncher,
        infos: &mut Vec<StageInfo>,
    ) -> Result<Vec<TaskOutput>> {
        let _unregister = Unregister(&self.registry, job_id);
        let is_available = |dep: &dyn ShuffleMap| self.is_available(dep);
        let is_cached = |meta: &RddMeta| is_cached(launcher, meta);
        let mut next_stage = 0;
        let mut resubmits = 0;
        'plan: loop {
            let stages = plan_stages(&job.rdd, next_stage, &is_available, &is_cached);
            next_stage += stages.len() as u32;
            debug!(job = job_id, stages = stages.len(), op = %job.op, "Job planned.");
            self.register(job_id, job, &stages);
            let mut results = None;
            for stage in &stages {
                let mut info = stage_info(stage, job);
                let stage_started = Instant::now();
                let outcome = self
                    .run_stage(job_id, job, stage, launcher, &mut info)
                    .await;
                info.duration = stage_started.elapsed();
                infos.push(info);
                match outcome {
                    Ok(out) => results = out,
                    Err(StageFailure::FetchFailed(shuffle, map)) => {
                        resubmits += 1;
                        if resubmits >= self.max_attempts {
                            return Err(Error::Task {
                                batch_time: job.batch_time,
                                operator: stage.rdd.meta().op().to_string(),
                                partition: map,
                                attempts: resubmits,
                                message: format!("shuffle {shuffle} output of map partition {map} was lost repeatedly"),
                            });
                        }
                        warn!(%shuffle, map, "Shuffle output lost; rerunning its map stage.");
                        self.counters.stage_resubmitted();
                        // As Spark on a fetch failure: what the executor that held the
                        // output held is presumed gone too, so it is all rerun in one go.
                        match self.map_outputs.location(shuffle, map) {
                            Some(e) => self.map_outputs.remove_executor(e),
                            None => self.map_outputs.unregister(shuffle, map),
                        }
                        continue 'plan;
                    }
                    Err(StageFailure::Failed(e)) => return Err(e),
                }
            }
            return results
                .ok_or_else(|| Error::Internal("job ended without a result stage".into()));
        }
    }

    /// Whether all of `dep`'s map outputs are registered (its map stage can be skipped).
    fn is_available(&self, dep: &dyn ShuffleMap) -> bool {
        self.map_outputs
            .is_complete(dep.shuffle_id(), dep.parent().meta().num_partitions())
    }

    /// Registers `stages` of `job` under `job_id`, for executors to resolve their tasks.
    fn register(&self, job_id: JobId, job: &JobSpec, stages: &[Stage]) {
        for stage in stages {
            let runnable = match &stage.kind {
                StageKind::ShuffleMap(dep) => StageRunnable::ShuffleMap {
                    dep: dep.clone(),
                    op: stage.rdd.meta().op(),
                },
                StageKind::Result => StageRunnable::Result {
                    func: job.func.clone(),
                    op: job.op,
                },
            };
            self.registry.register(job_id, stage.id, runnable);
        }
    }

    /// Runs the missing tasks of `stage`; for the result stage, returns its outputs.
    ///
    /// A partition is done when its first copy finishes; a speculative copy (see
    /// [`Speculation`]) or a copy that outlived its executor is then ignored.
    async fn run_stage(
        &self,
        job_id: JobId,
        job: &JobSpec,
        stage: &Stage,
        launcher: &dyn TaskLauncher,
        info: &mut StageInfo,
    ) -> Result<Option<Vec<TaskOutput>>, StageFailure> {
        let num_tasks = stage.num_tasks();
        let (kind, partitions, shuffle) = match &stage.kind {
            StageKind::ShuffleMap(dep) => (
                TaskKind::ShuffleMap,
                self.map_outputs.missing(dep.shuffle_id(), num_tasks),
                Some(dep.shuffle_id()),
            ),
            StageKind::Result => (TaskKind::Result, (0..num_tasks).collect(), None),
        };
        let mut results: Vec<Option<TaskOutput>> = Vec::new();
        if kind == TaskKind::Result {
            results.resize_with(num_tasks, || None);
        }
        let to_run = partitions.len();
        info.tasks = to_run;
        let mut pending: VecDeque<(usize, u32)> = partitions.into_iter().map(|p| (p, 0)).collect();
        let mut running = FuturesUnordered::new();
        let mut load: HashMap<ExecutorId, usize> = HashMap::new();
        // Per unfinished partition: its running copies (executor, start, attempt).
        let mut copies: HashMap<usize, Vec<(ExecutorId, Instant, u32)>> = HashMap::new();
        let mut done: HashSet<usize> = HashSet::new();
        let mut speculated: HashSet<usize> = HashSet::new();
        let mut durations: Vec<Duration> = Vec::new();
        let mut tick: Option<LocalBoxFuture<'static, ()>> = None;
        let start = |e: ExecutorId, partition: usize, attempt: u32| {
            let task = TaskDescription {
                job: job_id,
                stage: stage.id,
                partition,
                attempt,
                batch_time: job.batch_time,
                kind,
            };
            let started = Instant::now();
            launcher
                .launch(e, task)
                .map(move |o| (e, partition, attempt, started, o))
        };
        while done.len() < to_run {
            if !pending.is_empty() {
                let executors = launcher.executors();
                if executors.is_empty() && running.is_empty() {
                    return Err(StageFailure::Failed(Error::NotRunning(
                        "no executor is left to run tasks".into(),
                    )));
                }
                // Each task goes to the least-loaded executor (in executor order on ties),
                // preferring a task whose input lives there: spread first, then pipeline.
                while !pending.is_empty() {
                    let load_of = |e: &ExecutorId| load.get(e).copied().unwrap_or(0);
                    let Some(e) = executors
                        .iter()
                        .copied()
                        .filter(|e| load_of(e) < SLOTS_PER_EXECUTOR)
                        .min_by_key(load_of)
                    else {
                        break;
                    };
                    let local = pending
                        .iter()
                        .position(|&(p, _)| stage.preferred_locations(p).contains(&e));
                    let Some((partition, attempt)) = pending.remove(local.unwrap_or(0)) else {
                        break;
                    };
                    *load.entry(e).or_default() += 1;
                    copies
                        .entry(partition)
                        .or_default()
                        .push((e, Instant::now(), attempt));
                    info.launched += 1;
                    running.push(start(e, partition, attempt));
                }
            }
            if running.is_empty() {
                return Err(StageFailure::Failed(Error::Internal(format!(
                    "stage {} has {} unfinished tasks and none running",
                    stage.id,
                    to_run - done.len()
                ))));
            }
            let spec = self.speculation.filter(|_| to_run > 1);
            let step = match spec {
                Some(s) => {
                    let timer = tick.get_or_insert_with(|| launcher.sleep(s.interval));
                    match future::select(running.next(), timer).await {
                        Either::Left((finished, _)) => finished,
                        Either::Right(_) => None,
                    }
                }
                None => running.next().await,
            };
            let Some((e, partition, attempt, started, outcome)) = step else {
                // The speculation timer fired.
                tick = None;
                if let Some(s) = spec {
                    if durations.len() >= s.min_finished(to_run) {
                        let threshold = s.threshold(&mut durations.clone());
                        let slow = slow_tasks(&copies, &done, &speculated, threshold);
                        let executors = launcher.executors();
                        for (partition, runner, attempt) in slow {
                            let load_of = |e: &ExecutorId| load.get(e).copied().unwrap_or(0);
                            let Some(other) = executors
                                .iter()
                                .copied()
                                .filter(|&o| o != runner && load_of(&o) < SLOTS_PER_EXECUTOR)
                                .min_by_key(load_of)
                            else {
                                continue;
                            };
                            debug!(
                                partition,
                                executor = runner,
                                copy_on = other,
                                threshold_ms = threshold.as_millis() as u64,
                                "Task is slow; launching a speculative copy."
                            );
                            self.counters.speculative_task();
                            info.speculative += 1;
                            info.launched += 1;
                            speculated.insert(partition);
                            *load.entry(other).or_default() += 1;
                            copies.entry(partition).or_default().push((
                                other,
                                Instant::now(),
                                attempt,
                            ));
                            running.push(start(other, partition, attempt));
                        }
                    }
                }
                continue;
            };
            if let Some(l) = load.get_mut(&e) {
                *l = l.saturating_sub(1);
            }
            let others_running = match copies.get_mut(&partition) {
                Some(cs) => {
                    if let Some(i) = cs.iter().position(|c| c.0 == e) {
                        cs.remove(i);
                    }
                    !cs.is_empty()
                }
                None => false,
            };
            let finished = done.contains(&partition);
            match outcome {
                TaskOutcome::Result(out) if !finished => {
                    if let Some(slot) = results.get_mut(partition) {
                        *slot = Some(out);
                    }
                    durations.push(started.elapsed());
                    done.insert(partition);
                    copies.remove(&partition);
                }
                TaskOutcome::MapOutput(_) if !finished => {
                    if let Some(s) = shuffle {
                        self.map_outputs.register(s, num_tasks, partition, e);
                    }
                    durations.push(started.elapsed());
                    done.insert(partition);
                    copies.remove(&partition);
                }
                // A slower copy of a finished partition: its result is a duplicate.
                TaskOutcome::Result(_) | TaskOutcome::MapOutput(_) => {}
                TaskOutcome::Failed(_) if finished => {}
                TaskOutcome::Failed(f) => {
                    if let Some((s, map)) = f.fetch_failed {
                        return Err(StageFailure::FetchFailed(s, map));
                    }
                    if others_running {
                        warn!(operator = %f.operator, partition, error = %f.message, "Task copy failed; another copy is still running.");
                        continue;
                    }
                    // A failure a retry cannot change fails the stage at once.
                    if !f.retryable || attempt + 1 >= self.max_attempts {
                        return Err(StageFailure::Failed(Error::Task {
                            batch_time: job.batch_time,
                            operator: f.operator,
                            partition,
                            attempts: attempt + 1,
                            message: f.message,
                        }));
                    }
                    warn!(operator = %f.operator, partition, attempt, error = %f.message, "Task failed; retrying.");
                    self.counters.task_retried();
                    info.retries += 1;
                    pending.push_back((partition, attempt + 1));
                }
                TaskOutcome::ExecutorLost => {
                    if launcher.executor_lost(e) {
                        // News of this loss: what the executor held is gone.
                        self.map_outputs.remove_executor(e);
                    }
                    load.remove(&e);
                    if !finished && !others_running {
                        warn!(
                            executor = e,
                            partition, "Executor lost; its task is rerun elsewhere."
                        );
                        self.counters.task_rerun_after_loss();
                        pending.push_back((partition, attempt));
                    }
                }
            }
        }
        if kind == TaskKind::Result {
            let outputs: Option<Vec<TaskOutput>> = results.into_iter().collect();
            return outputs.map(Some).ok_or_else(|| {
                StageFailure::Failed(Error::Internal(
                    "a result task finished without output".into(),
                ))
            });
        }
        Ok(None)
    }
}

/// The unfinished, not yet speculated partitions whose only copy has run longer than
/// `threshold`, in partition order: `(partition, executor running it, attempt)`.
fn slow_tasks(
    copies: &HashMap<usize, Vec<(ExecutorId, Instant, u32)>>,
    done: &HashSet<usize>,
    speculated: &HashSet<usize>,
    threshold: Duration,
) -> Vec<(usize, ExecutorId, u32)> {
    let mut slow: Vec<(usize, ExecutorId, u32)> = copies
        .iter()
        .filter(|(p, _)| !done.contains(*p) && !speculated.contains(*p))
        .filter_map(|(&p, cs)| match cs.as_slice() {
            [(e, started, attempt)] if started.elapsed() > threshold => Some((p, *e, *attempt)),
            _ => None,
        })
        .collect();
    slow.sort_unstable();
    slow
}

/// Whether every partition of the RDD `meta` describes is cached on some executor (its
/// lineage need not be walked).
fn is_cached(launcher: &dyn TaskLauncher, meta: &RddMeta) -> bool {
    meta.is_cached() && (0..meta.num_partitions()).all(|p| launcher.has_block(&meta.block_id(p)))
}

/// A fresh description of how `stage` of `job` ran, filled in as it runs.
fn stage_info(stage: &Stage, job: &JobSpec) -> StageInfo {
    let (kind, operator) = match stage.kind {
        StageKind::ShuffleMap(_) => ("shuffle map", stage.rdd.meta().op().to_string()),
        StageKind::Result => ("result", job.op.to_string()),
    };
    StageInfo {
        id: stage.id,
        kind: kind.to_string(),
        operator,
        tasks: 0,
        launched: 0,
        retries: 0,
        speculative: 0,
        duration: Duration::ZERO,
    }
}

#[cfg(test)]
#[path = "dag_tests.rs"]
mod tests;
