//! The DAG scheduler: runs a job's stages in order through a [`TaskLauncher`], retrying
//! failed tasks and rerunning lost map outputs (Spark: `DAGScheduler` + `TaskSetManager`).
//!
//! It is plain async code with no runtime of its own: the actor runtime drives it on the
//! coordinator, [`LocalRunner`](super::LocalRunner) drives it inline.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use futures::future::LocalBoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use futures::FutureExt;
use tracing::{debug, warn};

use crate::block::{BlockId, ExecutorId};
use crate::error::{Error, Result};
use crate::rdd::{RddMeta, ShuffleId, ShuffleMap};
use crate::scheduler::{
    plan_stages, JobId, JobSpec, MapOutputTracker, Stage, StageKind, StageRunnable,
    TaskDescription, TaskKind, TaskOutcome, TaskOutput, TaskRegistry,
};

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
    fn executor_lost(&self, executor: ExecutorId);
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
    next_job: AtomicU64,
}

impl fmt::Debug for DagScheduler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DagScheduler")
            .field("max_attempts", &self.max_attempts)
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
    /// and gives each task `max_attempts` attempts (at least 1).
    pub fn new(
        registry: Arc<TaskRegistry>,
        map_outputs: Arc<MapOutputTracker>,
        max_attempts: u32,
    ) -> Self {
        DagScheduler {
            registry,
            map_outputs,
            max_attempts: max_attempts.max(1),
            next_job: AtomicU64::new(0),
        }
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
        let job_id = self.next_job.fetch_add(1, Ordering::Relaxed);
        let _unregister = Unregister(&self.registry, job_id);
        let is_available = |dep: &dyn ShuffleMap| {
            self.map_outputs
                .is_complete(dep.shuffle_id(), dep.parent().meta().num_partitions())
        };
        let is_cached = |meta: &RddMeta| {
            meta.is_cached()
                && (0..meta.num_partitions()).all(|p| launcher.has_block(&meta.block_id(p)))
        };
        let mut next_stage = 0;
        let mut resubmits = 0;
        'plan: loop {
            let stages = plan_stages(&job.rdd, next_stage, &is_available, &is_cached);
            next_stage += stages.len() as u32;
            debug!(job = job_id, stages = stages.len(), op = %job.op, "Job planned.");
            for stage in &stages {
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
            let mut results = None;
            for stage in &stages {
                match self.run_stage(job_id, job, stage, launcher).await {
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
                        self.map_outputs.unregister(shuffle, map);
                        continue 'plan;
                    }
                    Err(StageFailure::Failed(e)) => return Err(e),
                }
            }
            return results
                .ok_or_else(|| Error::Internal("job ended without a result stage".into()));
        }
    }

    /// Runs the missing tasks of `stage`; for the result stage, returns its outputs.
    async fn run_stage(
        &self,
        job_id: JobId,
        job: &JobSpec,
        stage: &Stage,
        launcher: &dyn TaskLauncher,
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
        let mut pending: VecDeque<(usize, u32)> = partitions.into_iter().map(|p| (p, 0)).collect();
        let mut running = FuturesUnordered::new();
        let mut load: HashMap<ExecutorId, usize> = HashMap::new();
        loop {
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
                    let task = TaskDescription {
                        job: job_id,
                        stage: stage.id,
                        partition,
                        attempt,
                        batch_time: job.batch_time,
                        kind,
                    };
                    *load.entry(e).or_default() += 1;
                    running.push(
                        launcher
                            .launch(e, task)
                            .map(move |o| (e, partition, attempt, o)),
                    );
                }
            }
            let Some((e, partition, attempt, outcome)) = running.next().await else {
                if pending.is_empty() {
                    break;
                }
                continue;
            };
            if let Some(l) = load.get_mut(&e) {
                *l -= 1;
            }
            match outcome {
                TaskOutcome::Result(out) => {
                    if let Some(slot) = results.get_mut(partition) {
                        *slot = Some(out);
                    }
                }
                TaskOutcome::MapOutput(_) => {
                    if let Some(s) = shuffle {
                        self.map_outputs.register(s, num_tasks, partition, e);
                    }
                }
                TaskOutcome::Failed(f) => {
                    if let Some((s, map)) = f.fetch_failed {
                        return Err(StageFailure::FetchFailed(s, map));
                    }
                    if attempt + 1 >= self.max_attempts {
                        return Err(StageFailure::Failed(Error::Task {
                            batch_time: job.batch_time,
                            operator: f.operator,
                            partition,
                            attempts: attempt + 1,
                            message: f.message,
                        }));
                    }
                    warn!(operator = %f.operator, partition, attempt, error = %f.message, "Task failed; retrying.");
                    pending.push_back((partition, attempt + 1));
                }
                TaskOutcome::ExecutorLost => {
                    warn!(
                        executor = e,
                        partition, "Executor lost; its task is rerun elsewhere."
                    );
                    launcher.executor_lost(e);
                    self.map_outputs.remove_executor(e);
                    load.remove(&e);
                    pending.push_back((partition, attempt));
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
