//! Jobs, stages and tasks (Spark: `DAGScheduler`, `TaskSetManager`, `MapOutputTracker`).
//!
//! An action on an RDD submits a [`JobSpec`] to the context's [`JobRunner`]. The
//! [`DagScheduler`] cuts the job's lineage into stages at shuffle dependencies
//! ([`plan_stages`]), runs each stage's tasks through a [`TaskLauncher`] (the actor runtime's
//! executors, or [`LocalRunner`] in one thread), retries failed tasks, reruns map stages whose
//! outputs were lost, and returns the result stage's outputs in partition order. Within a
//! stage, a task set (`task_set.rs`, Spark's `TaskSetManager`) decides what runs where and
//! what each task's outcome means; the scheduler launches and waits.
//!
//! Tasks are data ([`TaskDescription`], serde): an in-process executor resolves
//! `(job, stage)` through the [`TaskRegistry`] to the closures, which stay in the program's
//! DStream graph; an executor process resolves a map task by its shuffle id in the batch
//! its own copy of the graph generates. A stage's [`Placement`] says which executors may
//! run it: only a map stage [computable remotely](crate::rdd::computable_remotely) may
//! leave the process.

mod dag;
mod job;
mod local;
mod map_outputs;
mod registry;
mod speculation;
mod stage;
mod task;
mod task_set;

pub use dag::{DagScheduler, Placement, TaskLauncher};
pub use job::{current_output_op, JobId, JobRunner, JobSpec, ResultFn, TaskOutput};
pub use local::{LocalRunner, MemoryBlockStore};
pub use map_outputs::MapOutputTracker;
pub use registry::{StageRunnable, TaskRegistry};
pub use speculation::{SchedulerCounters, SchedulerMetrics, Speculation};
pub use stage::{independent_map_stages, plan_stages, Stage, StageKind};
pub use task::{
    run_task, BlockAccess, TaskContext, TaskDescription, TaskFailure, TaskKind, TaskOutcome,
};

pub(crate) use job::{ensure_can_block, GenerationGuard, OutputOpGuard};
