//! A job: one action on one RDD (Spark: `ActiveJob`), and who runs it.

use std::any::Any;
use std::cell::Cell;
use std::fmt;
use std::sync::Arc;

use crate::block::{BlockId, ExecutorId};
use crate::error::{Error, OpInfo, Result};
use crate::rdd::RddBase;
use crate::scheduler::TaskContext;
use crate::time::Time;

/// Identifies a job within one process.
pub type JobId = u64;

/// What a result task returns: the action's per-partition value, boxed.
pub type TaskOutput = Box<dyn Any + Send>;

/// The per-partition function of an action: computes partition `p` of the job's RDD and
/// reduces it to the action's partial result.
pub type ResultFn = dyn Fn(usize, &TaskContext) -> Result<TaskOutput> + Send + Sync;

/// A job to run: an RDD, the function to run on each of its partitions, and who asked.
#[derive(Clone)]
pub struct JobSpec {
    /// The RDD whose partitions the result tasks compute.
    pub rdd: Arc<dyn RddBase>,
    /// The per-partition function.
    pub func: Arc<ResultFn>,
    /// The action and its call site, for errors and logs.
    pub op: OpInfo,
    /// The batch this job belongs to, if any.
    pub batch_time: Option<Time>,
    /// The output operation (its index in registration order) whose run submitted the job,
    /// if any: set for actions called on the thread running an output operation (see
    /// [`current_output_op`]).
    pub output_op: Option<usize>,
}

impl fmt::Debug for JobSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobSpec")
            .field("rdd", &self.rdd.meta().id())
            .field("op", &self.op)
            .field("batch_time", &self.batch_time)
            .field("output_op", &self.output_op)
            .finish()
    }
}

/// Runs jobs to completion, blocking the calling thread (Spark: `SparkContext.runJob`).
pub trait JobRunner: Send + Sync {
    /// Runs `job`; returns one output per partition of its RDD, in partition order.
    ///
    /// # Errors
    /// [`Error::Task`] when a task failed on every attempt; [`Error::BlockingAction`] when
    /// called where blocking would deadlock; [`Error::NotRunning`] after stop.
    fn run_job(&self, job: JobSpec) -> Result<Vec<TaskOutput>>;

    /// The executors whose block stores hold block `id` now, or `None` when this runner
    /// does not track where blocks are: the one source of where a received block is (input
    /// RDDs prefer these executors).
    fn block_locations(&self, _id: &BlockId) -> Option<Vec<ExecutorId>> {
        None
    }
}

thread_local! {
    static GENERATING: Cell<bool> = const { Cell::new(false) };
    static OUTPUT_OP: Cell<Option<usize>> = const { Cell::new(None) };
}

/// Marks this thread as running output operation `id` while alive, so that the jobs its
/// actions submit name it ([`JobSpec::output_op`]).
pub(crate) struct OutputOpGuard(Option<usize>);

impl OutputOpGuard {
    pub(crate) fn enter(id: usize) -> OutputOpGuard {
        OutputOpGuard(OUTPUT_OP.with(|o| o.replace(Some(id))))
    }
}

impl Drop for OutputOpGuard {
    fn drop(&mut self) {
        OUTPUT_OP.with(|o| o.set(self.0));
    }
}

/// The output operation running on this thread, if any (`None` on other threads, such as
/// threads a user function spawns itself).
pub fn current_output_op() -> Option<usize> {
    OUTPUT_OP.with(|o| o.get())
}

/// Marks this thread as generating a batch's jobs while alive; actions fail meanwhile.
pub(crate) struct GenerationGuard(bool);

impl GenerationGuard {
    pub(crate) fn enter() -> GenerationGuard {
        GenerationGuard(GENERATING.with(|g| g.replace(true)))
    }
}

impl Drop for GenerationGuard {
    fn drop(&mut self) {
        GENERATING.with(|g| g.set(self.0));
    }
}

/// Fails with [`Error::BlockingAction`] while jobs are being generated on this thread.
pub(crate) fn ensure_can_block(action: &'static str) -> Result<()> {
    if GENERATING.with(|g| g.get()) {
        return Err(Error::BlockingAction(action));
    }
    Ok(())
}
