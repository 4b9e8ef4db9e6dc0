//! Where executors find the closures of the tasks they are sent: `(job, stage)` → stage.
//!
//! In one process this is a shared map filled by the DAG scheduler. An executor process
//! does not use it: it resolves a map task by its shuffle id in the batch its own DStream
//! graph generates ([`DStreamGraph::executor_shuffle`](crate::dstream::DStreamGraph::executor_shuffle)),
//! and result tasks never leave the coordinator (DESIGN invariant 2).

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::error::OpInfo;
use crate::rdd::ShuffleMap;
use crate::scheduler::{JobId, ResultFn};

/// What a stage's tasks run.
#[derive(Clone)]
pub enum StageRunnable {
    /// Map tasks of a shuffle.
    ShuffleMap {
        /// The shuffle dependency.
        dep: Arc<dyn ShuffleMap>,
        /// The operator that shuffles.
        op: OpInfo,
    },
    /// Result tasks of an action.
    Result {
        /// The action's per-partition function.
        func: Arc<ResultFn>,
        /// The action.
        op: OpInfo,
    },
}

impl StageRunnable {
    /// The operator the stage is named after.
    pub fn op(&self) -> OpInfo {
        match self {
            StageRunnable::ShuffleMap { op, .. } | StageRunnable::Result { op, .. } => *op,
        }
    }
}

impl fmt::Debug for StageRunnable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StageRunnable::ShuffleMap { dep, op } => {
                write!(f, "ShuffleMap({}, {op})", dep.shuffle_id())
            }
            StageRunnable::Result { op, .. } => write!(f, "Result({op})"),
        }
    }
}

/// The stages of running jobs, by `(job, stage)`.
#[derive(Default)]
pub struct TaskRegistry {
    stages: Mutex<HashMap<(JobId, u32), StageRunnable>>,
}

impl TaskRegistry {
    /// An empty registry.
    pub fn new() -> Arc<TaskRegistry> {
        Arc::new(TaskRegistry::default())
    }

    /// Makes `stage` of `job` runnable.
    pub fn register(&self, job: JobId, stage: u32, runnable: StageRunnable) {
        self.stages.lock().insert((job, stage), runnable);
    }

    /// The stage, if its job is still running.
    pub fn get(&self, job: JobId, stage: u32) -> Option<StageRunnable> {
        self.stages.lock().get(&(job, stage)).cloned()
    }

    /// Forgets all stages of `job`.
    pub fn remove_job(&self, job: JobId) {
        self.stages.lock().retain(|(j, _), _| *j != job);
    }
}

impl fmt::Debug for TaskRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.stages.lock().len();
        f.debug_struct("TaskRegistry").field("stages", &n).finish()
    }
}
