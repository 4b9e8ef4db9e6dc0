//! [`LocalRunner`]: runs jobs inline on the calling thread with one in-memory block store,
//! through the same DAG scheduler as the actor runtime. For doc tests, unit tests and tools
//! that need RDDs without actors.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use futures::future::LocalBoxFuture;
use parking_lot::Mutex;

use crate::block::{BlockData, BlockId, ExecutorId};
use crate::error::Result;
use crate::scheduler::{
    run_task, BlockAccess, DagScheduler, JobRunner, JobSpec, MapOutputTracker, TaskContext,
    TaskDescription, TaskFailure, TaskLauncher, TaskOutcome, TaskOutput, TaskRegistry,
};

/// A block store in one `Mutex<HashMap>`.
#[derive(Default)]
pub struct MemoryBlockStore {
    blocks: Mutex<HashMap<BlockId, BlockData>>,
}

impl MemoryBlockStore {
    /// How many blocks it holds.
    pub fn len(&self) -> usize {
        self.blocks.lock().len()
    }
    /// Whether it holds no block.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Drops every block (as if the executor were lost).
    pub fn clear(&self) {
        self.blocks.lock().clear();
    }
    /// Drops block `id` and returns it, if held.
    pub fn remove(&self, id: &BlockId) -> Option<BlockData> {
        self.blocks.lock().remove(id)
    }
}

impl BlockAccess for MemoryBlockStore {
    fn get(&self, id: &BlockId) -> Option<BlockData> {
        self.blocks.lock().get(id).cloned()
    }
    fn put(&self, id: BlockId, data: BlockData, _encode: crate::block::BlockEncoder) {
        self.blocks.lock().insert(id, data);
    }
}

impl fmt::Debug for MemoryBlockStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryBlockStore")
            .field("blocks", &self.len())
            .finish()
    }
}

/// Runs every task inline on the calling thread, as executor 0.
#[derive(Debug)]
pub struct LocalRunner {
    dag: DagScheduler,
    registry: Arc<TaskRegistry>,
    store: Arc<MemoryBlockStore>,
}

impl LocalRunner {
    /// A runner giving each task `max_attempts` attempts.
    pub fn new(max_attempts: u32) -> LocalRunner {
        let registry = TaskRegistry::new();
        LocalRunner {
            dag: DagScheduler::new(
                registry.clone(),
                Arc::new(MapOutputTracker::new()),
                max_attempts,
            ),
            registry,
            store: Arc::new(MemoryBlockStore::default()),
        }
    }

    /// The block store its tasks use.
    pub fn store(&self) -> &Arc<MemoryBlockStore> {
        &self.store
    }
}

struct Inline<'a>(&'a LocalRunner);

impl TaskLauncher for Inline<'_> {
    fn executors(&self, _: crate::scheduler::Placement) -> Vec<ExecutorId> {
        vec![0]
    }
    fn launch(
        &self,
        executor: ExecutorId,
        task: TaskDescription,
    ) -> LocalBoxFuture<'static, TaskOutcome> {
        let outcome = match self.0.registry.get(task.job, task.stage) {
            Some(stage) => run_task(
                &stage,
                &task,
                &TaskContext::new(&task, executor, self.0.store.clone()),
            ),
            None => TaskOutcome::Failed(TaskFailure {
                operator: "scheduler".into(),
                message: format!("job {} stage {} is not registered", task.job, task.stage),
                fetch_failed: None,
                retryable: true,
            }),
        };
        Box::pin(std::future::ready(outcome))
    }
    fn has_block(&self, id: &BlockId) -> bool {
        self.0.store.get(id).is_some()
    }
    fn executor_lost(&self, _executor: ExecutorId) -> bool {
        false
    }
}

impl JobRunner for LocalRunner {
    fn run_job(&self, job: JobSpec) -> Result<Vec<TaskOutput>> {
        futures::executor::block_on(self.dag.run_job(&job, &Inline(self)))
    }
}
