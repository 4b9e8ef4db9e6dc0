//! Fault injection through the coordinator, so that the scheduler's view (executor pool,
//! map outputs) learns of a killed executor at once, not on the next failed task.

use actix::{Context, Handler};
use rivulet_framework::Result;
use tracing::info;

use super::Coordinator;
use crate::messages::{KillExecutor, SlowExecutor};

impl Handler<KillExecutor> for Coordinator {
    type Result = Result<()>;

    fn handle(
        &mut self,
        KillExecutor(executor): KillExecutor,
        _: &mut Context<Self>,
    ) -> Result<()> {
        self.pool.kill(executor)?;
        // Its shuffle outputs went with its store: the next job that needs them reruns
        // their map tasks; a reduce task that asks for one now gets FetchFailed.
        self.dag.map_outputs().remove_executor(executor);
        info!(parent: &self.span, executor, "Executor killed; a new one took its place.");
        Ok(())
    }
}

impl Handler<SlowExecutor> for Coordinator {
    type Result = Result<()>;

    fn handle(&mut self, msg: SlowExecutor, _: &mut Context<Self>) -> Result<()> {
        self.pool.slow(msg.executor, msg.delay)
    }
}
