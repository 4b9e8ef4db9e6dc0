//! [`Executor`]: runs tasks, one at a time, on its own arbiter thread (Spark: `Executor`).
//! User code runs under `catch_unwind` inside [`run_task`], so a panic fails the task, not
//! the thread.

use std::sync::Arc;

use actix::{Actor, Context, Handler, MessageResult};
use rivulet_framework::block::ExecutorId;
use rivulet_framework::scheduler::{
    run_task, BlockAccess, TaskContext, TaskFailure, TaskOutcome, TaskRegistry,
};
use tracing::debug_span;

use crate::messages::RunTask;

/// Tasks an executor's mailbox holds: the scheduler keeps at most two in flight each.
const MAILBOX: usize = 4;

/// Runs tasks against the shared block stores, as executor `id`.
pub struct Executor {
    id: ExecutorId,
    registry: Arc<TaskRegistry>,
    blocks: Arc<dyn BlockAccess>,
}

impl Executor {
    /// Executor `id`, resolving tasks through `registry` and reading/writing `blocks`.
    pub fn new(
        id: ExecutorId,
        registry: Arc<TaskRegistry>,
        blocks: Arc<dyn BlockAccess>,
    ) -> Executor {
        Executor {
            id,
            registry,
            blocks,
        }
    }
}

impl std::fmt::Debug for Executor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executor").field("id", &self.id).finish()
    }
}

impl Actor for Executor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(MAILBOX);
    }
}

impl Handler<RunTask> for Executor {
    type Result = MessageResult<RunTask>;

    fn handle(&mut self, RunTask(task): RunTask, _: &mut Context<Self>) -> Self::Result {
        let _span = debug_span!(
            "task",
            executor = self.id,
            job = task.job,
            stage = task.stage,
            partition = task.partition
        )
        .entered();
        let outcome = match self.registry.get(task.job, task.stage) {
            Some(stage) => run_task(
                &stage,
                &task,
                &TaskContext::new(&task, self.id, self.blocks.clone()),
            ),
            // The job ended (failed or stopped) while this task waited in the mailbox.
            None => TaskOutcome::Failed(TaskFailure {
                operator: "executor".into(),
                message: format!("job {} is no longer running", task.job),
                fetch_failed: None,
            }),
        };
        MessageResult(outcome)
    }
}
