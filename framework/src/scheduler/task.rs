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
    /// Blocks `ids` from executors in other processes, each as [`fetch`](Self::fetch)
    /// returns it, in the order of `ids`. An implementation that goes over the network
    /// sends every request before it waits for the first answer, so that the round trips
    /// overlap and the caller works on one block while the next arrive (Spark:
    /// `ShuffleBlockFetcherIterator`'s fetches in flight). Default: one
    /// [`fetch`](Self::fetch) after another, as the iterator is advanced.
    fn fetch_many<'a>(
        &'a self,
        ids: &'a [BlockId],
    ) -> Box<dyn Iterator<Item = crate::Result<Option<Vec<u8>>>> + 'a> {
        Box::new(ids.iter().map(|id| self.fetch(id)))
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
        self.get_many_records(std::slice::from_ref(id))
            .pop()
            .flatten()
    }

    /// The records of blocks `ids`, each as [`get_records`](Self::get_records) finds it,
    /// in the order of `ids`: those this process holds first, then the others fetched all
    /// at once ([`BlockAccess::fetch_many`]), each decoded while the next arrive.
    pub(crate) fn get_many_records<X: Data>(
        &self,
        ids: &[BlockId],
    ) -> Vec<Option<Result<Arc<Vec<X>>, Error>>> {
        let mut found: Vec<Option<Result<Arc<Vec<X>>, Error>>> = ids
            .iter()
            .map(|id| {
                let data = self.blocks.get(id)?;
                Some(data.downcast::<Vec<X>>().map_err(|_| Error::BlockType(*id)))
            })
            .collect();
        let missing: Vec<BlockId> = ids
            .iter()
            .zip(&found)
            .filter(|(_, f)| f.is_none())
            .map(|(id, _)| *id)
            .collect();
        if missing.is_empty() {
            return found;
        }
        let mut fetched = self.blocks.fetch_many(&missing).zip(&missing);
        for slot in found.iter_mut().filter(|f| f.is_none()) {
            let Some((reply, id)) = fetched.next() else {
                break;
            };
            *slot = match reply {
                Ok(Some(bytes)) => Some(decode_block::<X>(id, &bytes).map(Arc::new)),
                Ok(None) => None,
                Err(e) => Some(Err(e)),
            };
        }
        found
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

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use parking_lot::Mutex;

    use super::*;

    /// Holds `local` blocks; "fetches" `remote` ones as their encoded bytes, recording each
    /// call: `fetch` ids one by one, `fetch_many` each batch of ids.
    #[derive(Default)]
    struct TwoProcesses {
        local: HashMap<BlockId, BlockData>,
        remote: HashMap<BlockId, crate::Result<Vec<u8>>>,
        single: Mutex<Vec<BlockId>>,
        batched: Mutex<Vec<Vec<BlockId>>>,
    }

    impl BlockAccess for TwoProcesses {
        fn get(&self, id: &BlockId) -> Option<BlockData> {
            self.local.get(id).cloned()
        }
        fn put(&self, _: BlockId, _: BlockData, _: BlockEncoder) {}
        fn fetch(&self, id: &BlockId) -> crate::Result<Option<Vec<u8>>> {
            self.single.lock().push(*id);
            self.remote.get(id).cloned().transpose()
        }
        fn fetch_many<'a>(
            &'a self,
            ids: &'a [BlockId],
        ) -> Box<dyn Iterator<Item = crate::Result<Option<Vec<u8>>>> + 'a> {
            self.batched.lock().push(ids.to_vec());
            Box::new(
                ids.iter()
                    .map(|id| self.remote.get(id).cloned().transpose()),
            )
        }
    }

    fn input(seq: u64) -> BlockId {
        BlockId::Input { stream: 0, seq }
    }

    fn encoded(records: Vec<u32>) -> Vec<u8> {
        let data: BlockData = Arc::new(records);
        encoder_of::<u32>()(&input(0), &data).expect("u32s encode")
    }

    #[test]
    fn many_records_take_local_blocks_first_and_fetch_the_rest_in_one_go_in_order() {
        let mut blocks = TwoProcesses::default();
        blocks.local.insert(input(1), Arc::new(vec![10u32, 11]));
        blocks
            .remote
            .insert(input(2), Ok(encoded(vec![20, 21, 22])));
        blocks.remote.insert(input(4), Ok(encoded(vec![40])));
        blocks
            .remote
            .insert(input(5), Err(Error::Internal("the process is lost".into())));
        let blocks = Arc::new(blocks);
        let task = TaskDescription {
            job: 0,
            stage: 0,
            partition: 0,
            attempt: 0,
            batch_time: None,
            kind: TaskKind::Result,
            shuffle: None,
            rdd: None,
        };
        let ctx = TaskContext::new(&task, 0, blocks.clone());
        let ids = [input(2), input(1), input(3), input(4), input(5)];
        let found: Vec<Option<Result<Vec<u32>, String>>> = ctx
            .get_many_records::<u32>(&ids)
            .into_iter()
            .map(|f| f.map(|r| r.map(|v| v.to_vec()).map_err(|e| e.to_string())))
            .collect();
        assert_eq!(
            found,
            vec![
                Some(Ok(vec![20, 21, 22])),
                Some(Ok(vec![10, 11])),
                None,
                Some(Ok(vec![40])),
                Some(Err(
                    Error::Internal("the process is lost".into()).to_string()
                )),
            ]
        );
        assert_eq!(
            *blocks.batched.lock(),
            vec![vec![input(2), input(3), input(4), input(5)]],
            "the blocks not held here, asked for together"
        );
        assert!(blocks.single.lock().is_empty());
        // One block goes the same way.
        let one = ctx
            .get_records::<u32>(&input(4))
            .map(|r| r.map(|v| v.to_vec()));
        assert!(matches!(one, Some(Ok(v)) if v == vec![40]));
        assert!(ctx.get_records::<u32>(&input(1)).is_some());
        assert_eq!(
            blocks.batched.lock().len(),
            2,
            "a held block is not fetched"
        );
    }
}
