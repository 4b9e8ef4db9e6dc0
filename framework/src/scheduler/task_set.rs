//! One stage's task set: which of its partitions are pending, running where and at which
//! attempt, and finished; what to launch next; and what a copy's success, failure or lost
//! executor means for the set (Spark: `TaskSetManager`, beside the `DAGScheduler` that
//! [`DagScheduler`](super::DagScheduler) stands for).
//!
//! A [`TaskSet`] holds no executors, futures or clock: `DagScheduler::run_stage` offers it
//! executors, launches the copies it hands back, and reports each copy's outcome by its
//! [`TaskId`], passing the time in. In the order `run_stage` asks:
//!
//! 1. [`TaskSet::offer`]: each pending task goes to the least-loaded executor with a free
//!    slot (on ties, one holding some pending task's input, then executor order),
//!    preferring a task whose input lives there (Spark: `resourceOffer`, without delay
//!    scheduling).
//! 2. A copy's outcome: [`TaskSet::succeeded`] (the first copy of a partition to finish
//!    wins, later ones are duplicates), [`TaskSet::failed`] (retry, wait for another copy,
//!    resubmit a lost map output, or abort), [`TaskSet::lost`] (its executor died: the
//!    partition goes back to pending at the same attempt, as Spark's `executorLost` does
//!    not count it against `spark.task.maxFailures`).
//! 3. When the speculation timer fires: [`TaskSet::speculate`] (Spark:
//!    `checkSpeculatableTasks`).
//!
//! The set is finished when every partition has finished once ([`TaskSet::is_finished`]).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use tracing::{debug, warn};

use crate::block::ExecutorId;
use crate::error::Error;
use crate::rdd::ShuffleId;
use crate::scheduler::{Speculation, TaskFailure};
use crate::time::Time;

/// Tasks in flight per executor: one running, one waiting in its mailbox, so an executor
/// never idles for a round trip between tasks.
pub(crate) const SLOTS_PER_EXECUTOR: usize = 2;

/// Names one launched copy of a task within its set, from 0 in launch order (Spark: the
/// task id `tid`; a partition's attempts and speculative copies each get their own).
pub(crate) type TaskId = u64;

/// A copy of a task the set wants launched: run `partition` as `attempt` on `executor`,
/// and report its outcome under `id`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Launch {
    /// The id to report the copy's outcome under.
    pub(crate) id: TaskId,
    /// Where to run it.
    pub(crate) executor: ExecutorId,
    /// The partition of the stage's RDD it computes.
    pub(crate) partition: usize,
    /// The attempt, from 0 (a speculative copy shares the attempt of the copy it races).
    pub(crate) attempt: u32,
    /// Whether it is a speculative copy of a slow task (see [`Speculation`]).
    pub(crate) speculative: bool,
}

/// What a failed copy means for its set (from [`TaskSet::failed`]).
#[derive(Debug)]
pub(crate) enum FailureAction {
    /// The partition had already finished (a slower copy failed): nothing to do.
    Duplicate,
    /// Another copy of the partition is still running and may yet succeed: wait for it.
    OtherCopyRunning,
    /// The partition is pending again, as its next attempt.
    Retry,
    /// A shuffle input was missing: the set cannot finish until map partition `map` of
    /// `shuffle` is rebuilt, so the caller abandons it and resubmits the map stage (Spark:
    /// `FetchFailed`, which the `TaskSetManager` hands to the `DAGScheduler`).
    Resubmit {
        /// The shuffle whose output is missing.
        shuffle: ShuffleId,
        /// The map partition whose output is missing.
        map: usize,
    },
    /// The set fails with this [`Error::Task`]: the failure was not retryable, or the
    /// partition used its last attempt (Spark: `abort` after `spark.task.maxFailures`).
    Abort(Error),
}

/// What a copy lost with its executor means for its set (from [`TaskSet::lost`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LostCopy {
    /// The executor it ran on.
    pub(crate) executor: ExecutorId,
    /// Whether its partition went back to pending (unfinished, and no other copy running).
    pub(crate) rerun: bool,
}

/// A copy in flight: what it runs, where, and since when.
#[derive(Clone, Copy, Debug)]
struct Running {
    launch: Launch,
    started: Instant,
}

/// The tasks of one stage and their state (Spark: `TaskSetManager`); see the module doc.
///
/// Every launched copy stays known under its [`TaskId`] until its outcome is reported, even
/// once its partition has finished, so that a late copy frees its executor's slot.
#[derive(Debug)]
pub(crate) struct TaskSet {
    /// The batch of the stage's job, for the errors it builds.
    batch_time: Option<Time>,
    /// Attempts a partition gets before the set aborts (at least 1).
    max_attempts: u32,
    /// Speculation settings; `None` when off or when the set has a single task.
    speculation: Option<Speculation>,
    /// How many partitions the set runs.
    num_tasks: usize,
    /// Partitions waiting for an executor, with the attempt they run as, in launch order.
    pending: VecDeque<(usize, u32)>,
    /// Copies launched and not yet reported, by id (so in launch order).
    running: BTreeMap<TaskId, Running>,
    /// Copies in flight per executor (never above [`SLOTS_PER_EXECUTOR`] through `offer`).
    load: HashMap<ExecutorId, usize>,
    /// Partitions whose first copy finished.
    finished: HashSet<usize>,
    /// Partitions that got a speculative copy (at most one each).
    speculated: HashSet<usize>,
    /// How long each finished partition's winning copy ran.
    durations: Vec<Duration>,
    /// The id of the next copy launched.
    next_id: TaskId,
}

impl TaskSet {
    /// A set running `partitions` (all pending at attempt 0, in this order), each given
    /// `max_attempts` attempts (at least 1); its errors name `batch_time`. `speculation`
    /// is dropped for a set of one task: there is no median to compare it with.
    pub(crate) fn new(
        partitions: Vec<usize>,
        max_attempts: u32,
        batch_time: Option<Time>,
        speculation: Option<Speculation>,
    ) -> TaskSet {
        let num_tasks = partitions.len();
        TaskSet {
            batch_time,
            max_attempts: max_attempts.max(1),
            speculation: speculation.filter(|_| num_tasks > 1),
            num_tasks,
            pending: partitions.into_iter().map(|p| (p, 0)).collect(),
            running: BTreeMap::new(),
            load: HashMap::new(),
            finished: HashSet::new(),
            speculated: HashSet::new(),
            durations: Vec::new(),
            next_id: 0,
        }
    }

    /// How many partitions the set runs.
    pub(crate) fn num_tasks(&self) -> usize {
        self.num_tasks
    }

    /// How many partitions have not finished yet.
    pub(crate) fn unfinished(&self) -> usize {
        self.num_tasks - self.finished.len()
    }

    /// Whether every partition has finished.
    pub(crate) fn is_finished(&self) -> bool {
        self.finished.len() >= self.num_tasks
    }

    /// Whether some partition waits for an executor.
    pub(crate) fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// How often to call [`speculate`](TaskSet::speculate); `None` when the set never
    /// speculates.
    pub(crate) fn speculation_interval(&self) -> Option<Duration> {
        self.speculation.map(|s| s.interval)
    }

    /// Places pending tasks on `executors` at time `now`, as many as free slots allow:
    /// each goes to the least-loaded executor, taking the first pending task whose
    /// `preferred` locations include it, else the oldest pending one: spread first, then
    /// keep input local. Among executors equally loaded, one that holds some pending task's
    /// input picks first, then `executors` order: a stage over blocks this process holds
    /// starts its first (oldest) tasks on the executors that read them without a copy, and
    /// one over blocks an executor process holds starts them there (Spark's
    /// `TaskSetManager` offers tasks by locality level, `PROCESS_LOCAL` first; rivulet waits
    /// for no locality, as Spark with `spark.locality.wait` 0).
    ///
    /// # Errors
    /// [`Error::NotRunning`] when tasks are pending, `executors` is empty and no copy is in
    /// flight: nothing could ever finish the set.
    pub(crate) fn offer(
        &mut self,
        executors: &[ExecutorId],
        preferred: impl Fn(usize) -> Vec<ExecutorId>,
        now: Instant,
    ) -> Result<Vec<Launch>, Error> {
        if !self.pending.is_empty() && executors.is_empty() && self.running.is_empty() {
            return Err(Error::NotRunning("no executor is left to run tasks".into()));
        }
        // Each pending task's preferred executors (in pending order), and how many pending
        // tasks prefer each executor.
        let mut prefs: Vec<Vec<ExecutorId>> =
            self.pending.iter().map(|&(p, _)| preferred(p)).collect();
        let mut local_pending: HashMap<ExecutorId, usize> = HashMap::new();
        for e in prefs.iter().flatten() {
            *local_pending.entry(*e).or_default() += 1;
        }
        let mut launches = Vec::new();
        while !self.pending.is_empty() {
            let holds_input = |e: ExecutorId| local_pending.get(&e).is_some_and(|&n| n > 0);
            let Some(e) = self.least_loaded(executors, None, holds_input) else {
                break;
            };
            let i = prefs.iter().position(|l| l.contains(&e)).unwrap_or(0);
            let Some((partition, attempt)) = self.pending.remove(i) else {
                break;
            };
            for e in prefs.remove(i) {
                if let Some(n) = local_pending.get_mut(&e) {
                    *n -= 1;
                }
            }
            launches.push(self.launch(e, partition, attempt, false, now));
        }
        Ok(launches)
    }

    /// Launches speculative copies at time `now` (Spark: `checkSpeculatableTasks`): once
    /// [`Speculation::min_finished`] partitions have finished, each unfinished partition
    /// not speculated yet whose only copy has run longer than
    /// [`Speculation::threshold`] gets one copy, at the same attempt, on the least-loaded
    /// other executor of `executors` with a free slot (none free: no copy this time).
    /// Returns the copies in partition order; none when speculation is off.
    pub(crate) fn speculate(&mut self, executors: &[ExecutorId], now: Instant) -> Vec<Launch> {
        let Some(s) = self.speculation else {
            return Vec::new();
        };
        if self.durations.len() < s.min_finished(self.num_tasks) {
            return Vec::new();
        }
        let threshold = s.threshold(&mut self.durations.clone());
        let mut copies = Vec::new();
        for (partition, runner, attempt) in self.slow_tasks(threshold, now) {
            let Some(other) = self.least_loaded(executors, Some(runner), |_| false) else {
                continue;
            };
            debug!(
                partition,
                executor = runner,
                copy_on = other,
                threshold_ms = threshold.as_millis() as u64,
                "Task is slow; launching a speculative copy."
            );
            self.speculated.insert(partition);
            copies.push(self.launch(other, partition, attempt, true, now));
        }
        copies
    }

    /// Reports that copy `id` finished at time `now`. Returns the copy if it is its
    /// partition's first to finish (the caller keeps its output), `None` if the partition
    /// had already finished (its output is a duplicate: ignore it) or `id` is unknown.
    pub(crate) fn succeeded(&mut self, id: TaskId, now: Instant) -> Option<Launch> {
        let done = self.report(id)?;
        if !self.finished.insert(done.launch.partition) {
            return None;
        }
        self.durations
            .push(now.saturating_duration_since(done.started));
        Some(done.launch)
    }

    /// Reports that copy `id` failed with `failure`; see [`FailureAction`] for what it
    /// means, decided in this order: a finished partition ignores it, a missing shuffle
    /// input resubmits, another running copy waits, a failure that is not retryable or
    /// ends the last attempt aborts, anything else is retried at the next attempt (after
    /// the tasks already pending). An unknown `id` is a [`FailureAction::Duplicate`].
    pub(crate) fn failed(&mut self, id: TaskId, failure: TaskFailure) -> FailureAction {
        let Some(Running { launch, .. }) = self.report(id) else {
            return FailureAction::Duplicate;
        };
        let Launch {
            partition, attempt, ..
        } = launch;
        if self.finished.contains(&partition) {
            return FailureAction::Duplicate;
        }
        if let Some((shuffle, map)) = failure.fetch_failed {
            return FailureAction::Resubmit { shuffle, map };
        }
        if self.is_running(partition) {
            warn!(operator = %failure.operator, partition, error = %failure.message, "Task copy failed; another copy is still running.");
            return FailureAction::OtherCopyRunning;
        }
        // A failure a retry cannot change fails the set at once.
        if !failure.retryable || attempt + 1 >= self.max_attempts {
            return FailureAction::Abort(Error::Task {
                batch_time: self.batch_time,
                operator: failure.operator,
                partition,
                attempts: attempt + 1,
                message: failure.message,
            });
        }
        warn!(operator = %failure.operator, partition, attempt, error = %failure.message, "Task failed; retrying.");
        self.pending.push_back((partition, attempt + 1));
        FailureAction::Retry
    }

    /// Reports that copy `id` was lost with its executor. The executor's slots are all
    /// freed at once (a replacement starts empty; copies still reported from it later
    /// free nothing more). An unfinished partition with no other copy running goes back to
    /// pending at the same attempt: a loss is not the task's failure. `None` when `id` is
    /// unknown.
    pub(crate) fn lost(&mut self, id: TaskId) -> Option<LostCopy> {
        let Running { launch, .. } = self.report(id)?;
        self.load.remove(&launch.executor);
        let partition = launch.partition;
        let rerun = !self.finished.contains(&partition) && !self.is_running(partition);
        if rerun {
            warn!(
                executor = launch.executor,
                partition, "Executor lost; its task is rerun elsewhere."
            );
            self.pending.push_back((partition, launch.attempt));
        }
        Some(LostCopy {
            executor: launch.executor,
            rerun,
        })
    }

    /// Records copy `partition`/`attempt` as launched on `executor` at `now`.
    fn launch(
        &mut self,
        executor: ExecutorId,
        partition: usize,
        attempt: u32,
        speculative: bool,
        now: Instant,
    ) -> Launch {
        let launch = Launch {
            id: self.next_id,
            executor,
            partition,
            attempt,
            speculative,
        };
        self.next_id += 1;
        *self.load.entry(executor).or_default() += 1;
        self.running.insert(
            launch.id,
            Running {
                launch,
                started: now,
            },
        );
        launch
    }

    /// Forgets copy `id` (its outcome arrived) and frees its slot; `None` if unknown.
    fn report(&mut self, id: TaskId) -> Option<Running> {
        let copy = self.running.remove(&id)?;
        if let Some(l) = self.load.get_mut(&copy.launch.executor) {
            *l = l.saturating_sub(1);
        }
        Some(copy)
    }

    /// Whether some copy of `partition` is still in flight.
    fn is_running(&self, partition: usize) -> bool {
        self.running
            .values()
            .any(|r| r.launch.partition == partition)
    }

    /// The executor of `executors` with the fewest copies in flight and a free slot, other
    /// than `except`; on ties, one for which `first` holds, then the first in `executors`
    /// order.
    fn least_loaded(
        &self,
        executors: &[ExecutorId],
        except: Option<ExecutorId>,
        first: impl Fn(ExecutorId) -> bool,
    ) -> Option<ExecutorId> {
        let load_of = |e: &ExecutorId| self.load.get(e).copied().unwrap_or(0);
        executors
            .iter()
            .copied()
            .filter(|&e| Some(e) != except && load_of(&e) < SLOTS_PER_EXECUTOR)
            .min_by_key(|e| (load_of(e), !first(*e)))
    }

    /// The unfinished, not yet speculated partitions whose only copy has run longer than
    /// `threshold` at `now`, in partition order: `(partition, executor running it,
    /// attempt)`.
    fn slow_tasks(&self, threshold: Duration, now: Instant) -> Vec<(usize, ExecutorId, u32)> {
        let mut copies: BTreeMap<usize, Vec<&Running>> = BTreeMap::new();
        for r in self.running.values() {
            copies.entry(r.launch.partition).or_default().push(r);
        }
        copies
            .into_iter()
            .filter(|(p, _)| !self.finished.contains(p) && !self.speculated.contains(p))
            .filter_map(|(p, cs)| match cs.as_slice() {
                [r] if now.saturating_duration_since(r.started) > threshold => {
                    Some((p, r.launch.executor, r.launch.attempt))
                }
                _ => None,
            })
            .collect()
    }
}

#[cfg(test)]
#[path = "task_set_tests.rs"]
mod tests;
