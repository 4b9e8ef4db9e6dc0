//! The executors as the DAG scheduler sees them: a [`TaskLauncher`] over executor actors,
//! each on its own arbiter, restarted when one is lost (or killed on purpose).

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::{Actor, Addr, Arbiter};
use futures::future::LocalBoxFuture;
use rivulet_framework::block::{BlockId, ExecutorId};
use rivulet_framework::scheduler::{
    SchedulerCounters, TaskDescription, TaskLauncher, TaskOutcome, TaskRegistry,
};
use rivulet_framework::{Error, Result};
use tracing::{error, warn};

use crate::block_store::BlockManager;
use crate::executor::{Executor, ExecutorHooks};
use crate::messages::RunTask;
use crate::supervision::{RestartPolicy, RestartTracker};

struct Slot {
    addr: Option<Addr<Executor>>,
    arbiter: Arbiter,
    /// Cleared when this incarnation is killed or found dead.
    alive: Arc<AtomicBool>,
}

/// The executors, one per arbiter thread.
pub(crate) struct ExecutorPool {
    slots: RefCell<Vec<Slot>>,
    /// Per executor index, the delay before each task (kept across restarts: a slow
    /// machine stays slow).
    delays_ns: Vec<Arc<AtomicU64>>,
    blocks: Arc<BlockManager>,
    registry: Arc<TaskRegistry>,
    restarts: RefCell<RestartTracker>,
    counters: Arc<SchedulerCounters>,
}

impl ExecutorPool {
    /// Starts `n` executors over `blocks`, resolving tasks through `registry` and counting
    /// losses in `counters`.
    pub(crate) fn start(
        n: usize,
        blocks: Arc<BlockManager>,
        registry: Arc<TaskRegistry>,
        counters: Arc<SchedulerCounters>,
    ) -> Rc<ExecutorPool> {
        let pool = ExecutorPool {
            slots: RefCell::new(Vec::with_capacity(n)),
            delays_ns: (0..n).map(|_| Arc::default()).collect(),
            blocks,
            registry,
            restarts: RefCell::new(RestartTracker::new(RestartPolicy::new(10, Duration::ZERO))),
            counters,
        };
        let slots = (0..n).map(|id| pool.spawn(id)).collect();
        *pool.slots.borrow_mut() = slots;
        Rc::new(pool)
    }

    fn spawn(&self, id: ExecutorId) -> Slot {
        let arbiter = Arbiter::new();
        let alive = Arc::new(AtomicBool::new(true));
        let hooks = ExecutorHooks {
            alive: alive.clone(),
            delay_ns: self.delays_ns.get(id).cloned().unwrap_or_default(),
        };
        let registry = self.registry.clone();
        let blocks = self.blocks.for_executor_while(id, alive.clone());
        let addr = Executor::start_in_arbiter(&arbiter.handle(), move |_| {
            Executor::new(id, registry, blocks).with_hooks(hooks)
        });
        Slot {
            addr: Some(addr),
            arbiter,
            alive,
        }
    }

    /// Stops every executor's arbiter (each finishes its current task first).
    pub(crate) fn stop(&self) {
        for slot in self.slots.borrow_mut().iter_mut() {
            slot.addr = None;
            slot.arbiter.stop();
        }
    }

    fn out_of_range(&self, what: &str, executor: ExecutorId) -> Error {
        let n = self.delays_ns.len();
        Error::Config(format!(
            "{what}({executor}): there is no executor {executor}; this context has {n} executor(s), numbered 0 to {}",
            n.saturating_sub(1)
        ))
    }

    /// Kills executor `executor` as a crash outside a task would: its arbiter stops, its
    /// block store is cleared, tasks running or queued on it answer `ExecutorLost`; then a
    /// new executor takes its place (under the restart limit).
    ///
    /// # Errors
    /// [`Error::Config`] naming the index and the executor count when it is out of range.
    pub(crate) fn kill(&self, executor: ExecutorId) -> Result<()> {
        let mut slots = self.slots.borrow_mut();
        let Some(slot) = slots.get_mut(executor) else {
            drop(slots);
            return Err(self.out_of_range("kill_executor", executor));
        };
        warn!(executor, "Killing executor (fault injection).");
        self.replace(executor, slot);
        Ok(())
    }

    /// Makes executor `executor` sleep `delay` before each task (`Duration::ZERO`: no delay).
    ///
    /// # Errors
    /// [`Error::Config`] naming the index and the executor count when it is out of range.
    pub(crate) fn slow(&self, executor: ExecutorId, delay: Duration) -> Result<()> {
        let Some(d) = self.delays_ns.get(executor) else {
            return Err(self.out_of_range("slow_executor", executor));
        };
        d.store(
            u64::try_from(delay.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        Ok(())
    }

    /// Takes the lost executor in `slot` down for good (its arbiter, its blocks) and starts
    /// a replacement, unless executors were lost too often.
    fn replace(&self, executor: ExecutorId, slot: &mut Slot) {
        slot.alive.store(false, Ordering::Release);
        slot.arbiter.stop();
        slot.addr = None;
        self.blocks.clear_executor(executor);
        self.counters.executor_lost();
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

    fn executor_lost(&self, executor: ExecutorId) -> bool {
        let mut slots = self.slots.borrow_mut();
        let Some(slot) = slots.get_mut(executor) else {
            return false;
        };
        if slot.addr.is_none() || slot.addr.as_ref().is_some_and(|a| a.connected()) {
            return false; // already replaced (or given up on) after an earlier report or a kill
        }
        self.replace(executor, slot);
        true
    }

    fn sleep(&self, duration: Duration) -> LocalBoxFuture<'static, ()> {
        Box::pin(tokio::time::sleep(duration))
    }
}
