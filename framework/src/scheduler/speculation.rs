//! Speculative execution settings and the scheduler's fault counters.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// When a slow task gets a second copy on another executor (Spark: `spark.speculation.*`).
///
/// Once `quantile` of a stage's tasks have finished, a task that has been running longer
/// than `multiplier` × the median duration of the finished ones (and at least
/// `min_runtime`) is launched again on another executor; the first copy to finish wins and
/// the other's result is ignored. Copies are safe because tasks are deterministic (DESIGN
/// invariant 1): two copies of a map task write identical buckets.
#[derive(Clone, Copy, Debug)]
pub struct Speculation {
    /// How many times slower than the median a task must be (Spark:
    /// `spark.speculation.multiplier`, default 1.5).
    pub multiplier: f64,
    /// The fraction of a stage's tasks that must finish first, in `(0, 1]` (Spark:
    /// `spark.speculation.quantile`, default 0.75).
    pub quantile: f64,
    /// Tasks that ran less than this are never speculated (Spark:
    /// `spark.speculation.minTaskRuntime`, default 100 ms).
    pub min_runtime: Duration,
    /// How often running tasks are checked (Spark: `spark.speculation.interval`, default
    /// 100 ms).
    pub interval: Duration,
}

impl Default for Speculation {
    fn default() -> Self {
        Speculation {
            multiplier: 1.5,
            quantile: 0.75,
            min_runtime: Duration::from_millis(100),
            interval: Duration::from_millis(100),
        }
    }
}

// Compared bit for bit so that configs holding it stay `Eq`.
impl PartialEq for Speculation {
    fn eq(&self, other: &Self) -> bool {
        self.multiplier.to_bits() == other.multiplier.to_bits()
            && self.quantile.to_bits() == other.quantile.to_bits()
            && self.min_runtime == other.min_runtime
            && self.interval == other.interval
    }
}

impl Eq for Speculation {}

impl Speculation {
    /// How many of `num_tasks` tasks must finish before any is speculated (Spark:
    /// `floor(quantile × tasks)`, at least 1).
    pub fn min_finished(&self, num_tasks: usize) -> usize {
        ((self.quantile * num_tasks as f64).floor() as usize).max(1)
    }

    /// How long a task may run before it is speculated, given the finished tasks'
    /// durations (`finished` must not be empty; it is reordered).
    pub fn threshold(&self, finished: &mut [Duration]) -> Duration {
        finished.sort_unstable();
        let median = finished
            .get(finished.len() / 2)
            .copied()
            .unwrap_or_default();
        median.mul_f64(self.multiplier).max(self.min_runtime)
    }
}

/// Counts of what the scheduler healed, since start; see [`SchedulerCounters::snapshot`].
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct SchedulerMetrics {
    /// Executors lost (killed, or died) and replaced or dropped.
    pub executors_lost: u64,
    /// Tasks that were running on a lost executor and were launched again elsewhere.
    pub tasks_rerun_after_loss: u64,
    /// Map stages resubmitted because a shuffle output was missing (Spark: `FetchFailed`).
    pub stages_resubmitted: u64,
    /// Speculative copies launched (Spark: `spark.speculation`).
    pub speculative_tasks: u64,
    /// Failed task attempts that were retried (up to `max_task_attempts` per task).
    pub task_retries: u64,
    /// Map stages of a queued batch run to completion while an earlier batch was still
    /// running (timestep pipelining; see `StreamingConfig::pipelining`).
    pub stages_pipelined: u64,
    /// Lost partitions of earlier batches' cached RDDs (a stateful stream's state kept on
    /// an executor process that was lost) recomputed by recovery tasks before the batch
    /// that reads them: on the surviving executor processes in parallel, or read back from
    /// a data checkpoint (see `DagScheduler::run_job`).
    #[serde(default)]
    pub partitions_recovered: u64,
}

/// The live counters behind [`SchedulerMetrics`], shared by the scheduler and the runtime.
#[derive(Debug, Default)]
pub struct SchedulerCounters {
    executors_lost: AtomicU64,
    tasks_rerun_after_loss: AtomicU64,
    stages_resubmitted: AtomicU64,
    speculative_tasks: AtomicU64,
    task_retries: AtomicU64,
    stages_pipelined: AtomicU64,
    partitions_recovered: AtomicU64,
}

impl SchedulerCounters {
    /// Counts an executor loss.
    pub fn executor_lost(&self) {
        self.executors_lost.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn task_rerun_after_loss(&self) {
        self.tasks_rerun_after_loss.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn stage_resubmitted(&self) {
        self.stages_resubmitted.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn speculative_task(&self) {
        self.speculative_tasks.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn task_retried(&self) {
        self.task_retries.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn stage_pipelined(&self) {
        self.stages_pipelined.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn partitions_recovered(&self, n: usize) {
        self.partitions_recovered
            .fetch_add(n as u64, Ordering::Relaxed);
    }
    /// Counters that start at the counts of `metrics` (e.g. a finished run's, read back
    /// from its event log).
    pub fn starting_at(metrics: &SchedulerMetrics) -> SchedulerCounters {
        SchedulerCounters {
            executors_lost: AtomicU64::new(metrics.executors_lost),
            tasks_rerun_after_loss: AtomicU64::new(metrics.tasks_rerun_after_loss),
            stages_resubmitted: AtomicU64::new(metrics.stages_resubmitted),
            speculative_tasks: AtomicU64::new(metrics.speculative_tasks),
            task_retries: AtomicU64::new(metrics.task_retries),
            stages_pipelined: AtomicU64::new(metrics.stages_pipelined),
            partitions_recovered: AtomicU64::new(metrics.partitions_recovered),
        }
    }

    /// The counts now.
    pub fn snapshot(&self) -> SchedulerMetrics {
        SchedulerMetrics {
            executors_lost: self.executors_lost.load(Ordering::Relaxed),
            tasks_rerun_after_loss: self.tasks_rerun_after_loss.load(Ordering::Relaxed),
            stages_resubmitted: self.stages_resubmitted.load(Ordering::Relaxed),
            speculative_tasks: self.speculative_tasks.load(Ordering::Relaxed),
            task_retries: self.task_retries.load(Ordering::Relaxed),
            stages_pipelined: self.stages_pipelined.load(Ordering::Relaxed),
            partitions_recovered: self.partitions_recovered.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_follow_spark_defaults() {
        let s = Speculation::default();
        assert_eq!(s.min_finished(6), 4);
        assert_eq!(s.min_finished(1), 1);
        let ms = Duration::from_millis;
        assert_eq!(s.threshold(&mut [ms(400), ms(200), ms(300)]), ms(450));
        assert_eq!(
            s.threshold(&mut [ms(1), ms(2)]),
            ms(100),
            "min_runtime floor"
        );
    }
}
