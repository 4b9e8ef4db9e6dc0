//! Tasks: what an executor runs, described as data (DESIGN invariant 2).

use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::block::{decode_block, encoder_of, BlockData, BlockEncoder, BlockId, ExecutorId};
use crate::data::Data;
use crate::error::{panic_message, Error};
use crate::rdd::{MapStatus, RddId, ShuffleId};
use crate::scheduler::{JobId, StageRunnable, TaskOutput};
use crate::time::Time;
use crate::trace;

/// Which kind of stage a task belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TaskKind {
    /// Computes a partition and writes its shuffle buckets (Spark: `ShuffleMapTask`).
    ShuffleMap,
    /// Computes a partition and returns the action's value (Spark: `ResultTask`).
    Result,
    /// Computes a partition of an RDD a DStream generated into the executor's block store
    /// (a stateful stream's state where it stays for the next batch); returns nothing.
    Cache,
}

/// One task, named by `(job, stage, partition)`; serializable, holds no closures.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskDescription {
    /// The job.
    pub job: JobId,
    /// The stage within the job.
    pub stage: u32,
    /// The partition of the stage's RDD to compute.
    pub partition: usize,
    /// The attempt, from 0.
    pub attempt: u32,
    /// The batch, if the job belongs to one.
    pub batch_time: Option<Time>,
    /// Map or result task.
    pub kind: TaskKind,
    /// For a map task, its shuffle: what an executor in another process resolves the task
    /// by (shuffle ids are derived from the DStream, batch time and position, so every
    /// process running the program names the same shuffle alike).
    #[serde(default)]
    pub shuffle: Option<ShuffleId>,
    /// For a cache task, the RDD it materializes: what an executor in another process
    /// resolves the task by (RDD ids are derived alike in every process).
    #[serde(default)]
    pub rdd: Option<RddId>,
}

/// Access to block stores from inside a task.
pub trait BlockAccess: Send + Sync {
    /// The block `id`, from this executor's store or another's in this process.
    fn get(&self, id: &BlockId) -> Option<BlockData>;
    /// Stores a block in this executor's store, with the encoder that serves it to other
    /// processes.
    fn put(&self, id: BlockId, data: BlockData, encode: BlockEncoder);
    /// The block `id` from an executor in another process, as its [`BlockEncoder`] wrote
    /// it; `None` when no other process holds it (or there are none: the default).
    ///
    /// # Errors
    /// A transport error naming the peer when the block could not be fetched.
    fn fetch(&self, _id: &BlockId) -> crate::Result<Option<Vec<u8>>> {
        Ok(None)
    }
}

/// What a running task knows: which task it is, and where blocks are (Spark: `TaskContext`).
pub struct TaskContext {
    batch_time: Option<Time>,
    partition: usize,
    attempt: u32,
    executor: ExecutorId,
    blocks: Arc<dyn BlockAccess>,
}

impl TaskContext {
    /// The context of task `task` on executor `executor`.
    pub fn new(
        task: &TaskDescription,
        executor: ExecutorId,
        blocks: Arc<dyn BlockAccess>,
    ) -> TaskContext {
        TaskContext {
            batch_time: task.batch_time,
            partition: task.partition,
            attempt: task.attempt,
            executor,
            blocks,
        }
    }
    /// The batch the task's job belongs to.
    pub fn batch_time(&self) -> Option<Time> {
        self.batch_time
    }
    /// The partition being computed.
    pub fn partition(&self) -> usize {
        self.partition
    }
    /// The attempt, from 0.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }
    /// The executor running the task.
    pub fn executor(&self) -> ExecutorId {
        self.executor
    }
    /// The records of block `id` (a `Vec<X>`): from this process's block stores, else
    /// fetched from an executor in another process; `None` when no store holds it.
    pub(crate) fn get_records<X: Data>(&self, id: &BlockId) -> Option<Result<Arc<Vec<X>>, Error>> {
        if let Some(data) = self.blocks.get(id) {
            return Some(data.downcast::<Vec<X>>().map_err(|_| Error::BlockType(*id)));
        }
        match self.blocks.fetch(id) {
            Ok(Some(bytes)) => Some(decode_block::<X>(id, &bytes).map(Arc::new)),
            Ok(None) => None,
            Err(e) => Some(Err(e)),
        }
    }
    /// Stores `records` as block `id` in this executor's store.
    pub(crate) fn put_records<X: Data>(&self, id: BlockId, records: Arc<Vec<X>>) {
        self.blocks.put(id, records, encoder_of::<X>())
    }
}

impl fmt::Debug for TaskContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskContext")
            .field("batch_time", &self.batch_time)
            .field("partition", &self.partition)
            .field("attempt", &self.attempt)
            .field("executor", &self.executor)
            .finish()
    }
}

/// Why a task failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskFailure {
    /// The operator that failed and its call site.
    pub operator: String,
    /// The error or panic message.
    pub message: String,
    /// Set when a shuffle input was missing: the map output to rebuild.
    pub fetch_failed: Option<(ShuffleId, usize)>,
    /// Whether running the task again may succeed (see [`Error::is_retryable`]); a failure
    /// that is not retryable fails its stage at once.
    pub retryable: bool,
}

/// What became of a task.
pub enum TaskOutcome {
    /// A result task's output.
    Result(TaskOutput),
    /// A map task's status; its buckets are in the executor's block store.
    MapOutput(MapStatus),
    /// A cache task's partition is in the executor's block store.
    Cached,
    /// The task failed (an error or a panic in user code).
    Failed(TaskFailure),
    /// The executor died or stopped before answering.
    ExecutorLost,
}

impl fmt::Debug for TaskOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TaskOutcome::Result(_) => f.write_str("Result(..)"),
            TaskOutcome::MapOutput(s) => f.debug_tuple("MapOutput").field(s).finish(),
            TaskOutcome::Cached => f.write_str("Cached"),
            TaskOutcome::Failed(e) => f.debug_tuple("Failed").field(e).finish(),
            TaskOutcome::ExecutorLost => f.write_str("ExecutorLost"),
        }
    }
}

/// Runs one task, turning errors and panics into [`TaskOutcome::Failed`] that name the
/// operator whose user function failed.
pub fn run_task(stage: &StageRunnable, task: &TaskDescription, ctx: &TaskContext) -> TaskOutcome {
    trace::take();
    let result = catch_unwind(AssertUnwindSafe(|| match stage {
        StageRunnable::ShuffleMap { dep, .. } => dep
            .run_map_task(task.partition, ctx)
            .map(TaskOutcome::MapOutput),
        StageRunnable::Result { func, .. } => func(task.partition, ctx).map(TaskOutcome::Result),
        StageRunnable::Cache { rdd, .. } => match rdd.meta().materialize(task.partition, ctx) {
            Some(done) => done.map(|_| TaskOutcome::Cached),
            None => Err(Error::Internal(format!(
                "RDD {} was not generated by a DStream: it cannot be materialized by id",
                rdd.meta().id()
            ))),
        },
    }));
    let traced = trace::take();
    let failure = |operator: String, message: String, retryable: bool| {
        TaskOutcome::Failed(TaskFailure {
            operator,
            message,
            fetch_failed: None,
            retryable,
        })
    };
    match result {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(Error::FetchFailed {
            shuffle,
            map_partition,
        })) => TaskOutcome::Failed(TaskFailure {
            operator: stage.op().to_string(),
            message: format!(
                "shuffle {shuffle}: output of map partition {map_partition} is missing"
            ),
            fetch_failed: Some((shuffle, map_partition)),
            retryable: true,
        }),
        Ok(Err(e)) => failure(stage.op().to_string(), e.to_string(), e.is_retryable()),
        Err(payload) => failure(
            traced.unwrap_or(stage.op()).to_string(),
            format!("panicked: {}", panic_message(&*payload)),
            true,
        ),
    }
}
