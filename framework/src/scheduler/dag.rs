//! The DAG scheduler: runs a job's stages in order through a [`TaskLauncher`], retrying
//! failed tasks and rerunning lost map outputs (Spark: `DAGScheduler`). Each stage's tasks
//! are a [`TaskSet`] (Spark: `TaskSetManager`), which decides what to launch and what an
//! outcome means; `run_stage` is the loop that launches and waits.
//!
//! With executor processes, a batch's job first runs *cache stages* for the RDDs of the
//! batch that read cached RDDs of earlier batches (state, windows) and that the processes
//! can compute: they are computed and kept there, and the result stage reads them
//! (`materialize_on_processes`). Spark needs no such stage, since it ships the result
//! stage's closure to the executors; rivulet's result functions never leave the
//! coordinator (DESIGN invariant 2), so the part of the result stage's lineage that the
//! processes can regenerate by id is split off and run there. What a lost process held
//! of earlier batches' cached RDDs (a state's partitions) is recovered first, on the
//! surviving processes in parallel, by cache tasks of those batches (`recover`).
//!
//! It is plain async code with no runtime of its own: the actor runtime drives it on the
//! coordinator, [`LocalRunner`](super::LocalRunner) drives it inline.

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
use crate::rdd::{
    computable_remotely, computable_remotely_with, reads_earlier_cache, Dependency, RddBase,
    RddMeta, ShuffleId, ShuffleMap,
};
use crate::scheduler::task_set::{FailureAction, Launch, TaskSet};
use crate::scheduler::{
    independent_map_stages, plan_stages, JobId, JobSpec, MapOutputTracker, SchedulerCounters,
    Speculation, Stage, StageKind, StageRunnable, TaskDescription, TaskKind, TaskOutcome,
    TaskOutput, TaskRegistry,
};
use crate::time::Time;

/// Where a stage's tasks may run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// On any executor, in this process or another: a map stage of a batch whose lineage an
    /// executor process rebuilds from the batch's received blocks alone (see
    /// [`computable_remotely`](crate::rdd::computable_remotely)).
    Anywhere,
    /// On this process's executors only: a result stage (its action's function is a closure
    /// of this process) or a stage whose lineage reads what only this process has (queue
    /// data, state and windows of earlier batches, a polled input's source, a checkpoint).
    InProcess,
    /// On executor processes only, none when there are none: a cache stage, whose point is
    /// to keep what it computes (a stateful stream's state) out of this process.
    Processes,
}

/// Sends tasks to executors and reports their outcomes (the actor runtime's executor pool,
/// or a test's fake).
pub trait TaskLauncher {
    /// The executors that can take tasks of a stage placed as `placement` now.
    fn executors(&self, placement: Placement) -> Vec<ExecutorId>;
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

/// Why a stage stopped before finishing.
enum StageFailure {
    /// A task found map partition `.1` of shuffle `.0` missing: rerun its map stage.
    FetchFailed(ShuffleId, usize),
    /// The stage (and so its job) failed with this error.
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
                .run_stage(job_id, &job, stage, None, launcher, &mut info)
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
        if let Some(t) = job.batch_time {
            self.materialize_on_processes(job_id, job, t, launcher, infos, &mut next_stage)
                .await;
        }
        'plan: loop {
            let stages = plan_stages(&job.rdd, next_stage, &is_available, &is_cached);
            next_stage += stages.len() as u32;
            debug!(job = job_id, stages = stages.len(), op = %job.op, "Job planned.");
            self.register(job_id, job, &stages);
            let mut results = None;
            for stage in &stages {
                match self
                    .run_stage_described(job_id, job, stage, None, launcher, infos)
                    .await
                {
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

    /// Before a job of batch `t` runs its result stage (and map stages that cannot leave
    /// this process) here: each RDD they would compute which reads a cached RDD of an
    /// earlier batch (a stateful stream's previous state, a window's earlier batches), and
    /// which executor processes can compute from the batch's input and the block stores
    /// ([`computable_remotely_with`]), is marked cached and computed on the processes by a
    /// cache stage, which keeps it there: a stream's state stays in the processes from
    /// batch to batch, as Spark's executors keep a state RDD's blocks, and the result stage
    /// reads the materialized partitions (fetched: the output's records, not the state). A
    /// cache stage gets one attempt per task; when it fails, the result stage computes what
    /// is missing here from lineage, so it never fails the job.
    ///
    /// First, what a lost executor process held of those earlier cached RDDs is recovered
    /// ([`recover`](Self::recover)), so that the batch's state is computed on the processes
    /// again at once.
    async fn materialize_on_processes(
        &self,
        job_id: JobId,
        job: &JobSpec,
        t: Time,
        launcher: &dyn TaskLauncher,
        infos: &mut Vec<StageInfo>,
        next_stage: &mut u32,
    ) {
        if launcher.executors(Placement::Processes).is_empty() {
            return;
        }
        let is_cached = |meta: &RddMeta| is_cached(launcher, meta);
        let has_block = |id: &BlockId| launcher.has_block(id);
        let lost = lost_earlier(&job.rdd, t, &is_cached, &has_block);
        if !lost.is_empty() {
            self.run_recovery_map_stages(job_id, job, &lost, launcher, infos, next_stage)
                .await;
        }
        for (lost, missing) in lost {
            // What reads a partition not recovered fails in its turn (the block is missing)
            // and is left to the result stage too.
            self.recover(job_id, job, &lost, &missing, launcher, infos, next_stage)
                .await;
        }
        let is_available = |dep: &dyn ShuffleMap| self.is_available(dep);
        for target in materializable(&job.rdd, t, &is_available, &is_cached) {
            // Here too: the result stage reads its partitions from the block stores.
            target.meta().mark_cached();
            if !self
                .run_cache_stages(
                    job_id, job, &target, None, &is_cached, launcher, infos, next_stage,
                )
                .await
            {
                debug!(batch = %t, rdd = %target.meta().id(), "A cache stage failed; the result stage computes what it left.");
            }
        }
    }

    /// Runs, all at once, the map stages that recovering `lost` ([`lost_earlier`]) needs and
    /// that read no other missing shuffle: typically each lost batch's shuffle of its new
    /// records before its state, independent of one another, which [`recover`](Self::recover)
    /// would otherwise run one batch after another. What fails here is left to `recover`,
    /// which plans again and runs what is still missing.
    async fn run_recovery_map_stages(
        &self,
        job_id: JobId,
        job: &JobSpec,
        lost: &[(Arc<dyn RddBase>, Vec<usize>)],
        launcher: &dyn TaskLauncher,
        infos: &mut Vec<StageInfo>,
        next_stage: &mut u32,
    ) {
        let is_available = |dep: &dyn ShuffleMap| self.is_available(dep);
        let mut shuffles = std::collections::HashSet::new();
        let mut ready: Vec<(JobSpec, Stage)> = Vec::new();
        for (rdd, _) in lost {
            let Some(t) = rdd.meta().id().batch_time() else {
                continue;
            };
            let leaves = |m: &RddMeta| read_as_stand_in(m, t);
            for mut stage in plan_stages(rdd, 0, &is_available, &leaves) {
                let StageKind::ShuffleMap(dep) = &stage.kind else {
                    continue;
                };
                if stage.parents.is_empty() && shuffles.insert(dep.shuffle_id()) {
                    stage.id = *next_stage;
                    *next_stage += 1;
                    let spec = job_of_batch(job, rdd, t);
                    self.register(job_id, &spec, std::slice::from_ref(&stage));
                    ready.push((spec, stage));
                }
            }
        }
        let mut described: Vec<StageInfo> = ready.iter().map(|(j, s)| stage_info(s, j)).collect();
        let runs = ready
            .iter()
            .zip(described.iter_mut())
            .map(|((spec, stage), info)| async move {
                self.run_stage_timed(job_id, spec, stage, None, launcher, info)
                    .await
                    .is_ok()
            });
        let ran = future::join_all(runs).await;
        debug!(
            stages = ran.len(),
            failed = ran.iter().filter(|ok| !**ok).count(),
            "Recovery map stages ran."
        );
        infos.extend(described);
    }

    /// Recomputes partitions `missing` of `lost`, a cached RDD of an earlier batch whose
    /// executor process was lost, as the D-Streams paper's parallel recovery: a cache stage
    /// of `lost`'s own batch recomputes them on the surviving executor processes in
    /// parallel, from that batch's input and the partitions of earlier cached RDDs they
    /// read (recovered first: [`lost_earlier`] lists the oldest first). An RDD without
    /// lineage (a data checkpoint read back, a queue's batch) is restored into this
    /// process's block store, from which the processes fetch it. Returns `false` when it
    /// cannot be recovered there (its lineage reads what only this process has, or a task
    /// failed): the result stage then recomputes what its batch needs here.
    #[allow(clippy::too_many_arguments)]
    async fn recover(
        &self,
        job_id: JobId,
        job: &JobSpec,
        lost: &Arc<dyn RddBase>,
        missing: &[usize],
        launcher: &dyn TaskLauncher,
        infos: &mut Vec<StageInfo>,
        next_stage: &mut u32,
    ) -> bool {
        let meta = lost.meta();
        let Some(t) = meta.id().batch_time() else {
            return false;
        };
        // As the executor process sees the batch: each cached RDD of an earlier batch is a
        // stand-in, read from the block stores (whose partitions needed were recovered).
        let leaves = |m: &RddMeta| read_as_stand_in(m, t);
        let restorable = meta.dependencies().is_empty();
        if !meta.is_generated() || !(restorable || computable_remotely_with(&**lost, t, &leaves)) {
            debug!(batch = %t, rdd = %meta.id(), ?missing, "Lost cached partitions left to the result stage.");
            return false;
        }
        let earlier = job_of_batch(job, lost, t);
        let recovered = self
            .run_cache_stages(
                job_id,
                &earlier,
                lost,
                Some(missing),
                &leaves,
                launcher,
                infos,
                next_stage,
            )
            .await;
        if recovered {
            debug!(batch = %t, rdd = %meta.id(), ?missing, "Lost cached partitions recovered.");
            self.counters.partitions_recovered(missing.len());
        }
        recovered
    }

    /// Plans and runs the stages that compute `target`'s missing partitions for `job` (those
    /// of `only`, if given): map stages of missing shuffle outputs, down to RDDs for which
    /// `leaves` holds, then a cache stage whose tasks keep the partitions in their
    /// executors' block stores. Returns whether all ran.
    #[allow(clippy::too_many_arguments)]
    async fn run_cache_stages(
        &self,
        job_id: JobId,
        job: &JobSpec,
        target: &Arc<dyn RddBase>,
        only: Option<&[usize]>,
        leaves: &dyn Fn(&RddMeta) -> bool,
        launcher: &dyn TaskLauncher,
        infos: &mut Vec<StageInfo>,
        next_stage: &mut u32,
    ) -> bool {
        let is_available = |dep: &dyn ShuffleMap| self.is_available(dep);
        let mut stages = plan_stages(target, *next_stage, &is_available, leaves);
        *next_stage += stages.len() as u32;
        if let Some(last) = stages.last_mut() {
            last.kind = StageKind::Cache;
        }
        self.register(job_id, job, &stages);
        for stage in &stages {
            let outcome = self
                .run_stage_described(job_id, job, stage, only, launcher, infos)
                .await;
            if outcome.is_err() {
                return false;
            }
        }
        true
    }

    /// Runs `stage` as [`run_stage`](Self::run_stage) does and adds how it ran, with its
    /// duration, to `infos`.
    async fn run_stage_described(
        &self,
        job_id: JobId,
        job: &JobSpec,
        stage: &Stage,
        only: Option<&[usize]>,
        launcher: &dyn TaskLauncher,
        infos: &mut Vec<StageInfo>,
    ) -> Result<Option<Vec<TaskOutput>>, StageFailure> {
        let mut info = stage_info(stage, job);
        let outcome = self
            .run_stage_timed(job_id, job, stage, only, launcher, &mut info)
            .await;
        infos.push(info);
        outcome
    }

    /// Runs `stage` as [`run_stage`](Self::run_stage) does and records its duration in
    /// `info`.
    async fn run_stage_timed(
        &self,
        job_id: JobId,
        job: &JobSpec,
        stage: &Stage,
        only: Option<&[usize]>,
        launcher: &dyn TaskLauncher,
        info: &mut StageInfo,
    ) -> Result<Option<Vec<TaskOutput>>, StageFailure> {
        let started = Instant::now();
        let outcome = self
            .run_stage(job_id, job, stage, only, launcher, info)
            .await;
        info.duration = started.elapsed();
        outcome
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
                StageKind::Cache => StageRunnable::Cache {
                    rdd: stage.rdd.clone(),
                    op: stage.rdd.meta().op(),
                },
            };
            self.registry.register(job_id, stage.id, runnable);
        }
    }

    /// Runs the missing tasks of `stage` (of a cache stage, those of partitions `only` if
    /// given); for the result stage, returns its outputs.
    ///
    /// The stage's [`TaskSet`] decides what runs where and what each outcome means; this
    /// loop launches what it asks for, waits for the next outcome or the speculation timer,
    /// and does what the set's decisions need outside it: outputs, map output locations,
    /// lost executors, counters.
    async fn run_stage(
        &self,
        job_id: JobId,
        job: &JobSpec,
        stage: &Stage,
        only: Option<&[usize]>,
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
            StageKind::Cache => {
                let mut missing = missing_partitions(launcher, stage.rdd.meta());
                if let Some(only) = only {
                    missing.retain(|p| only.contains(p));
                }
                (TaskKind::Cache, missing, None)
            }
        };
        let placement = match (&stage.kind, job.batch_time) {
            (StageKind::ShuffleMap(dep), Some(t)) if computable_remotely(&*dep.parent(), t) => {
                Placement::Anywhere
            }
            // Its data is here: a data checkpoint read back, a queue's batch.
            (StageKind::Cache, _) if stage.rdd.meta().dependencies().is_empty() => {
                Placement::InProcess
            }
            (StageKind::Cache, _) => Placement::Processes,
            _ => Placement::InProcess,
        };
        let rdd = (kind == TaskKind::Cache).then(|| stage.rdd.meta().id());
        // A cache task that fails leaves its partition to the result stage: no retries.
        let attempts = if kind == TaskKind::Cache {
            1
        } else {
            self.max_attempts
        };
        let mut set = TaskSet::new(partitions, attempts, job.batch_time, self.speculation);
        info.tasks = set.num_tasks();
        let mut results: Vec<Option<TaskOutput>> = Vec::new();
        if kind == TaskKind::Result {
            results.resize_with(num_tasks, || None);
        }
        let mut running = FuturesUnordered::new();
        let mut tick: Option<LocalBoxFuture<'static, ()>> = None;
        let start = |t: Launch, info: &mut StageInfo| {
            info.launched += 1;
            if t.speculative {
                self.counters.speculative_task();
                info.speculative += 1;
            }
            let task = TaskDescription {
                job: job_id,
                stage: stage.id,
                partition: t.partition,
                attempt: t.attempt,
                batch_time: job.batch_time,
                kind,
                shuffle,
                rdd,
            };
            launcher.launch(t.executor, task).map(move |o| (t.id, o))
        };
        while !set.is_finished() {
            if set.has_pending() {
                let preferred = |p| stage.preferred_locations(p);
                let launches = set
                    .offer(&launcher.executors(placement), preferred, Instant::now())
                    .map_err(StageFailure::Failed)?;
                running.extend(launches.into_iter().map(|t| start(t, info)));
            }
            if running.is_empty() {
                return Err(StageFailure::Failed(Error::Internal(format!(
                    "stage {} has {} unfinished tasks and none running",
                    stage.id,
                    set.unfinished()
                ))));
            }
            let step = match set.speculation_interval() {
                Some(interval) => {
                    let timer = tick.get_or_insert_with(|| launcher.sleep(interval));
                    match future::select(running.next(), timer).await {
                        Either::Left((finished, _)) => finished,
                        Either::Right(_) => None,
                    }
                }
                None => running.next().await,
            };
            let Some((id, outcome)) = step else {
                // The speculation timer fired.
                tick = None;
                let copies = set.speculate(&launcher.executors(placement), Instant::now());
                running.extend(copies.into_iter().map(|t| start(t, info)));
                continue;
            };
            match outcome {
                TaskOutcome::Result(out) => {
                    if let Some(won) = set.succeeded(id, Instant::now()) {
                        if let Some(slot) = results.get_mut(won.partition) {
                            *slot = Some(out);
                        }
                    }
                }
                TaskOutcome::Cached => {
                    set.succeeded(id, Instant::now());
                }
                TaskOutcome::MapOutput(_) => {
                    if let (Some(won), Some(s)) = (set.succeeded(id, Instant::now()), shuffle) {
                        self.map_outputs
                            .register(s, num_tasks, won.partition, won.executor);
                    }
                }
                TaskOutcome::Failed(f) => match set.failed(id, f) {
                    FailureAction::Duplicate | FailureAction::OtherCopyRunning => {}
                    FailureAction::Retry => {
                        self.counters.task_retried();
                        info.retries += 1;
                    }
                    FailureAction::Resubmit { shuffle, map } => {
                        return Err(StageFailure::FetchFailed(shuffle, map));
                    }
                    FailureAction::Abort(e) => return Err(StageFailure::Failed(e)),
                },
                TaskOutcome::ExecutorLost => {
                    if let Some(lost) = set.lost(id) {
                        if launcher.executor_lost(lost.executor) {
                            // News of this loss: what the executor held is gone.
                            self.map_outputs.remove_executor(lost.executor);
                        }
                        if lost.rerun {
                            self.counters.task_rerun_after_loss();
                        }
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

/// Whether every partition of the RDD `meta` describes is cached on some executor (its
/// lineage need not be walked).
fn is_cached(launcher: &dyn TaskLauncher, meta: &RddMeta) -> bool {
    meta.is_cached() && (0..meta.num_partitions()).all(|p| launcher.has_block(&meta.block_id(p)))
}

/// `job`'s output and action run over `rdd` of batch `t`: how a stage recovering an
/// earlier batch's RDD is registered and placed (its tasks name that batch).
fn job_of_batch(job: &JobSpec, rdd: &Arc<dyn RddBase>, t: Time) -> JobSpec {
    JobSpec {
        rdd: rdd.clone(),
        func: job.func.clone(),
        op: job.op,
        batch_time: Some(t),
        output_op: job.output_op,
    }
}

/// Whether an executor process generating batch `t` reads the RDD `meta` describes through
/// a stand-in (a cached RDD of an earlier batch) rather than computing it.
fn read_as_stand_in(meta: &RddMeta, t: Time) -> bool {
    meta.is_cached() && meta.id().batch_time().is_some_and(|b| b < t)
}

/// The partitions of the RDD `meta` describes that no executor's block store holds.
fn missing_partitions(launcher: &dyn TaskLauncher, meta: &RddMeta) -> Vec<usize> {
    (0..meta.num_partitions())
        .filter(|&p| !launcher.has_block(&meta.block_id(p)))
        .collect()
}

/// The cached RDDs of batches before `t` in the lineage of `rdd` with partitions that no
/// block store holds any more (an executor process holding them was lost) and that
/// computing `rdd` needs, each with those partitions, after the ones it reads itself (the
/// previous state before the state reading it). An executor process never recomputes them
/// from lineage (it has a stand-in for each: see [`computable_remotely_with`]), so they are
/// recovered before batch `t`'s cache stages run.
///
/// Which partitions are needed follows the narrow dependencies: partition `p` of an RDD
/// partitioned by key as its parent reads the parent's partition `p` (as Spark's
/// `OneToOneDependency` for co-partitioned RDDs), so a lost state partition needs only the
/// same partition of the states before it, back to a data checkpoint; any other dependency
/// needs every partition of its parent. `has_block` says whether a block store holds a
/// block.
fn lost_earlier(
    rdd: &Arc<dyn RddBase>,
    t: Time,
    is_cached: &dyn Fn(&RddMeta) -> bool,
    has_block: &dyn Fn(&BlockId) -> bool,
) -> Vec<(Arc<dyn RddBase>, Vec<usize>)> {
    use std::collections::{BTreeSet, HashMap, HashSet};
    // The lineage down to fully cached RDDs of earlier batches, each after its parents.
    fn visit(
        r: &Arc<dyn RddBase>,
        t: Time,
        is_cached: &dyn Fn(&RddMeta) -> bool,
        seen: &mut HashSet<crate::rdd::RddId>,
        order: &mut Vec<Arc<dyn RddBase>>,
    ) {
        let meta = r.meta();
        let earlier = meta.id().batch_time().is_some_and(|b| b < t);
        if !seen.insert(meta.id()) || earlier && is_cached(meta) {
            return;
        }
        for dep in meta.dependencies() {
            visit(&dep.parent(), t, is_cached, seen, order);
        }
        order.push(r.clone());
    }
    let mut order = Vec::new();
    visit(rdd, t, is_cached, &mut HashSet::new(), &mut order);
    let all = |m: &RddMeta| (0..m.num_partitions()).collect::<BTreeSet<usize>>();
    let mut needed: HashMap<crate::rdd::RddId, BTreeSet<usize>> = HashMap::new();
    needed.insert(rdd.meta().id(), all(rdd.meta()));
    let mut lost = HashMap::new();
    // From `rdd` towards its parents: what each RDD must compute of its parents.
    for r in order.iter().rev() {
        let meta = r.meta();
        let Some(mut computes) = needed.remove(&meta.id()) else {
            continue;
        };
        if read_as_stand_in(meta, t) {
            computes.retain(|&p| !has_block(&meta.block_id(p)));
            if !computes.is_empty() {
                lost.insert(meta.id(), computes.iter().copied().collect::<Vec<_>>());
            }
        }
        if computes.is_empty() {
            continue;
        }
        for dep in meta.dependencies() {
            let parent = dep.parent();
            let pm = parent.meta();
            let reads = match dep {
                Dependency::Narrow(_)
                    if meta.partitioner().is_some() && meta.partitioner() == pm.partitioner() =>
                {
                    computes.clone()
                }
                _ => all(pm),
            };
            needed.entry(pm.id()).or_default().extend(reads);
        }
    }
    order
        .into_iter()
        .filter_map(|r| {
            let missing = lost.remove(&r.meta().id())?;
            Some((r, missing))
        })
        .collect()
}

/// The RDDs in the lineage of `rdd` (down to fully cached ones, and across shuffles whose
/// map outputs are missing) that a cache stage should compute on executor processes for
/// batch `t`: generated by a DStream for `t`, reading a cached RDD of an earlier batch, and
/// computable there; the first such on each path from `rdd` (what they read is computed in
/// their tasks). Across a shuffle: a map stage over a stateful stream's output (which
/// reads the state) runs in this process, and reads the materialized partitions.
fn materializable(
    rdd: &Arc<dyn RddBase>,
    t: Time,
    is_available: &dyn Fn(&dyn ShuffleMap) -> bool,
    is_cached: &dyn Fn(&RddMeta) -> bool,
) -> Vec<Arc<dyn RddBase>> {
    let mut found = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut stack = vec![rdd.clone()];
    while let Some(r) = stack.pop() {
        let meta = r.meta();
        if !seen.insert(meta.id()) || is_cached(meta) {
            continue;
        }
        if meta.is_generated()
            && meta.id().batch_time() == Some(t)
            && reads_earlier_cache(&*r, t, is_cached)
            && computable_remotely_with(&*r, t, is_cached)
        {
            found.push(r);
            continue;
        }
        for dep in meta.dependencies() {
            match dep {
                Dependency::Narrow(parent) => stack.push(parent.clone()),
                Dependency::Shuffle(map) if !is_available(&**map) => stack.push(map.parent()),
                Dependency::Shuffle(_) => {}
            }
        }
    }
    found
}

/// A fresh description of how `stage` of `job` ran, filled in as it runs.
fn stage_info(stage: &Stage, job: &JobSpec) -> StageInfo {
    let (kind, operator) = match stage.kind {
        StageKind::ShuffleMap(_) => ("shuffle map", stage.rdd.meta().op().to_string()),
        StageKind::Result => ("result", job.op.to_string()),
        StageKind::Cache => ("cache", stage.rdd.meta().op().to_string()),
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
