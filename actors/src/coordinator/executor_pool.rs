//! The executors as the DAG scheduler sees them: a [`TaskLauncher`] over executor actors,
//! each on its own arbiter, restarted when one is lost.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::{Actor, Addr, Arbiter};
use futures::future::LocalBoxFuture;
use rivulet_framework::block::{BlockId, ExecutorId};
use rivulet_framework::scheduler::{TaskDescription, TaskLauncher, TaskOutcome, TaskRegistry};
use tracing::{error, warn};

use crate::block_store::BlockManager;
use crate::executor::Executor;
use crate::messages::RunTask;
use crate::supervision::{RestartPolicy, RestartTracker};

struct Slot {
    addr: Option<Addr<Executor>>,
    arbiter: Arbiter,
}

/// The executors, one per arbiter thread.
pub(crate) struct ExecutorPool {
    slots: RefCell<Vec<Slot>>,
    blocks: Arc<BlockManager>,
    registry: Arc<TaskRegistry>,
    restarts: RefCell<RestartTracker>,
}

impl ExecutorPool {
    /// Starts `n` executors over `blocks`, resolving tasks through `registry`.
    pub(crate) fn start(
        n: usize,
        blocks: Arc<BlockManager>,
        registry: Arc<TaskRegistry>,
    ) -> Rc<ExecutorPool> {
        let pool = ExecutorPool {
            slots: RefCell::new(Vec::with_capacity(n)),
            blocks,
            registry,
            restarts: RefCell::new(RestartTracker::new(RestartPolicy::new(10, Duration::ZERO))),
        };
        let slots = (0..n).map(|id| pool.spawn(id)).collect();
        *pool.slots.borrow_mut() = slots;
        Rc::new(pool)
    }

    fn spawn(&self, id: ExecutorId) -> Slot {
        let arbiter = Arbiter::new();
        let (registry, blocks) = (self.registry.clone(), self.blocks.for_executor(id));
        let addr = Executor::start_in_arbiter(&arbiter.handle(), move |_| {
            Executor::new(id, registry, blocks)
        });
        Slot {
            addr: Some(addr),
            arbiter,
        }
    }

    /// Stops every executor's arbiter (each finishes its current task first).
    pub(crate) fn stop(&self) {
        for slot in self.slots.borrow_mut().iter_mut() {
            slot.addr = None;
            slot.arbiter.stop();
        }
    }
}

impl TaskLauncher for ExecutorPool {
    fn executors(&self) -> Vec<ExecutorId> {
        let slots = self.slots.borrow();
        (0..slots.len())
            .filter(|&e| slots[e].addr.as_ref().is_some_and(|a| a.connected()))
            .collect()
    }

    fn launch(
        &self,
        executor: ExecutorId,
        task: TaskDescription,
    ) -> LocalBoxFuture<'static, TaskOutcome> {
        let addr = self
            .slots
            .borrow()
            .get(executor)
            .and_then(|s| s.addr.clone());
        Box::pin(async move {
            match addr {
                // A bounded send: waits while the executor's mailbox is full.
                Some(addr) => addr
                    .send(RunTask(task))
                    .await
                    .unwrap_or(TaskOutcome::ExecutorLost),
                None => TaskOutcome::ExecutorLost,
            }
        })
    }

    fn has_block(&self, id: &BlockId) -> bool {
        self.blocks.contains(id)
    }

    fn executor_lost(&self, executor: ExecutorId) {
        let mut slots = self.slots.borrow_mut();
        let Some(slot) = slots.get_mut(executor) else {
            return;
        };
        if slot.addr.as_ref().is_some_and(|a| a.connected()) {
            return; // already replaced after an earlier report
        }
        slot.arbiter.stop();
        self.blocks.clear_executor(executor);
        if self
            .restarts
            .borrow_mut()
            .on_failure(Instant::now())
            .is_some()
        {
            warn!(
                executor,
                "Executor lost; starting a new one (its blocks are recomputed from lineage)."
            );
            *slot = self.spawn(executor);
        } else {
            error!(executor, "Executor lost too often; running without it.");
            slot.addr = None;
        }
    }
}
