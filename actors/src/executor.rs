//! [`Executor`]: runs tasks, one at a time, on its own arbiter thread (Spark: `Executor`).
//! User code runs under `catch_unwind` inside [`run_task`], so a panic fails the task, not
//! the thread.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::{Actor, Context, Handler, MessageResult};
use rivulet_framework::block::ExecutorId;
use rivulet_framework::scheduler::{
    run_task, BlockAccess, TaskContext, TaskFailure, TaskOutcome, TaskRegistry,
};
use tracing::debug_span;

use crate::messages::RunTask;

/// Tasks an executor's mailbox holds: the scheduler keeps at most two in flight each.
const MAILBOX: usize = 4;

/// Fault injection for one executor: whether it is alive, and how long it sleeps before
/// each task (a straggler). Shared with the executor pool, which sets them.
#[derive(Clone, Debug)]
pub(crate) struct ExecutorHooks {
    /// Cleared when the executor is killed: its tasks then answer `ExecutorLost`.
    pub(crate) alive: Arc<AtomicBool>,
    /// Nanoseconds to sleep before each task; 0 for none.
    pub(crate) delay_ns: Arc<AtomicU64>,
}

impl ExecutorHooks {
    fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Acquire)
    }
}

/// Runs tasks against the shared block stores, as executor `id`.
pub struct Executor {
    id: ExecutorId,
    registry: Arc<TaskRegistry>,
    blocks: Arc<dyn BlockAccess>,
    hooks: Option<ExecutorHooks>,
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
            hooks: None,
        }
    }

    /// This executor, dying and slowing down as `hooks` say.
    pub(crate) fn with_hooks(mut self, hooks: ExecutorHooks) -> Executor {
        self.hooks = Some(hooks);
        self
    }

    /// Whether a kill has reached this executor: then it answers as a dead one would.
    fn is_killed(&self) -> bool {
        self.hooks.as_ref().is_some_and(|h| !h.is_alive())
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
        let delay_ns = self
            .hooks
            .as_ref()
            .map_or(0, |h| h.delay_ns.load(Ordering::Relaxed));
        if delay_ns > 0 {
            // A straggler on purpose (StreamingContext::slow_executor): blocking this
            // executor's own arbiter thread is the point.
            std::thread::sleep(Duration::from_nanos(delay_ns));
        }
        if self.is_killed() {
            return MessageResult(TaskOutcome::ExecutorLost);
        }
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
                retryable: true,
            }),
        };
        if self.is_killed() {
            // Killed while the task ran: its result dies with the executor.
            return MessageResult(TaskOutcome::ExecutorLost);
        }
        MessageResult(outcome)
    }
}
