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
use rivulet_framework::Error;
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
    /// Set when the last executor was given up on: the context must stop with it.
    failure: RefCell<Option<Error>>,
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
            failure: RefCell::new(None),
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

    /// The error to stop the context with, once, after the last executor was given up on.
    pub(crate) fn take_failure(&self) -> Option<Error> {
        self.failure.borrow_mut().take()
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
            if slots.iter().all(|s| s.addr.is_none()) {
                let policy = self.restarts.borrow().policy();
                *self.failure.borrow_mut() = Some(Error::Crashed {
                    component: "the executors".into(),
                    reason: format!(
                        "lost {} times within {} s, past the restart limit of {} restarts; \
                         executor {executor}, the last one left, was not replaced",
                        policy.max_restarts + 1,
                        policy.period.as_secs(),
                        policy.max_restarts,
                    ),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Marks executor `e` as gone (its actor stopped) and reports its loss.
    fn lose(pool: &ExecutorPool, e: ExecutorId) {
        pool.slots.borrow_mut()[e].addr = None;
        pool.executor_lost(e);
    }

    #[actix::test]
    async fn losing_every_executor_past_the_restart_limit_is_an_error_naming_the_count() {
        let pool = ExecutorPool::start(2, BlockManager::new(2), TaskRegistry::new());
        // The pool's policy: 10 restarts within 60 s, shared by its executors.
        for _ in 0..10 {
            lose(&pool, 0);
            assert_eq!(pool.executors(), vec![0, 1], "replaced");
        }
        assert!(pool.take_failure().is_none());
        // The 11th loss is past the limit: executor 0 is not replaced, but 1 is still there.
        lose(&pool, 0);
        assert_eq!(pool.executors(), vec![1]);
        assert!(pool.take_failure().is_none(), "an executor is left");
        // Then the last one goes: the pool gives up, once.
        lose(&pool, 1);
        assert!(pool.executors().is_empty());
        let error = pool.take_failure().expect("no executor is left");
        let msg = error.to_string();
        assert!(
            msg.starts_with("the executors stopped unexpectedly"),
            "{msg}"
        );
        assert!(msg.contains("lost 11 times within 60 s"), "{msg}");
        assert!(msg.contains("limit of 10 restarts"), "{msg}");
        assert!(msg.contains("executor 1"), "{msg}");
        assert!(pool.take_failure().is_none(), "reported once");
        pool.stop();
    }
}
