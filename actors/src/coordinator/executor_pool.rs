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
    Placement, SchedulerCounters, TaskDescription, TaskLauncher, TaskOutcome, TaskRegistry,
};
use rivulet_framework::{Error, Result};
use tracing::{error, warn};

use crate::block_store::BlockManager;
use crate::cluster::Cluster;
use crate::executor::{Executor, ExecutorHooks};
use crate::messages::RunTask;
use crate::supervision::{RestartPolicy, RestartTracker};

struct Slot {
    addr: Option<Addr<Executor>>,
    /// Taken (stopped) when the executor is lost or the pool stops.
    arbiter: Option<Arbiter>,
    /// Cleared when this incarnation is killed or found dead.
    alive: Arc<AtomicBool>,
}

/// The executors, one per arbiter thread, and the executor processes of a local cluster
/// (ids after the in-process ones), when there is one.
pub(crate) struct ExecutorPool {
    cluster: Option<Arc<Cluster>>,
    slots: RefCell<Vec<Slot>>,
    /// Per executor index, the delay before each task (kept across restarts: a slow
    /// machine stays slow).
    delays_ns: Vec<Arc<AtomicU64>>,
    blocks: Arc<BlockManager>,
    registry: Arc<TaskRegistry>,
    restarts: RefCell<RestartTracker>,
    /// Set when the last executor was given up on: the context must stop with it.
    failure: RefCell<Option<Error>>,
    counters: Arc<SchedulerCounters>,
    /// Whether cache stages run on the executor processes (default), or nowhere (see
    /// `StreamingConfig::state_in_executor_processes`).
    cache_on_processes: std::cell::Cell<bool>,
}

impl ExecutorPool {
    /// Starts `n` executors over `blocks`, resolving tasks through `registry` and counting
    /// losses in `counters`; map tasks that may run anywhere also go to `cluster`'s
    /// executor processes.
    pub(crate) fn start(
        n: usize,
        blocks: Arc<BlockManager>,
        registry: Arc<TaskRegistry>,
        counters: Arc<SchedulerCounters>,
        cluster: Option<Arc<Cluster>>,
    ) -> Rc<ExecutorPool> {
        let pool = ExecutorPool {
            cluster,
            slots: RefCell::new(Vec::with_capacity(n)),
            delays_ns: (0..n).map(|_| Arc::default()).collect(),
            blocks,
            registry,
            restarts: RefCell::new(RestartTracker::new(RestartPolicy::new(10, Duration::ZERO))),
            failure: RefCell::new(None),
            counters,
            cache_on_processes: std::cell::Cell::new(true),
        };
        let slots = (0..n).map(|id| pool.spawn(id)).collect();
        *pool.slots.borrow_mut() = slots;
        Rc::new(pool)
    }

    /// Whether cache stages may run on the executor processes (`false`: the processes are
    /// offered for no cache stage, so state stays in this process).
    pub(crate) fn set_cache_on_processes(&self, on: bool) {
        self.cache_on_processes.set(on);
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
            arbiter: Some(arbiter),
            alive,
        }
    }

    /// The error to stop the context with, once, after the last executor was given up on.
    pub(crate) fn take_failure(&self) -> Option<Error> {
        self.failure.borrow_mut().take()
    }

    /// Stops every executor's arbiter (each finishes its current task first) and returns
    /// them, for the caller to join their threads (or drop them, to let them end alone).
    #[must_use = "join the returned arbiters, or drop them to let their threads end alone"]
    pub(crate) fn stop(&self) -> Vec<Arbiter> {
        if let Some(cluster) = &self.cluster {
            cluster.stop();
        }
        let mut stopped = Vec::new();
        for slot in self.slots.borrow_mut().iter_mut() {
            slot.addr = None;
            if let Some(arbiter) = slot.arbiter.take() {
                arbiter.stop();
                stopped.push(arbiter);
            }
        }
        stopped
    }

    /// The cluster, if `executor` is one of its processes.
    fn cluster(&self, executor: ExecutorId) -> Option<&Arc<Cluster>> {
        self.cluster.as_ref().filter(|c| c.owns(executor))
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
        if let Some(cluster) = self.cluster(executor) {
            return cluster.kill(executor);
        }
        let mut slots = self.slots.borrow_mut();
        if executor >= slots.len() {
            drop(slots);
            return Err(self.out_of_range("kill_executor", executor));
        }
        warn!(executor, "Killing executor (fault injection).");
        self.replace(executor, &mut slots);
        Ok(())
    }

    /// Makes executor `executor` sleep `delay` before each task (`Duration::ZERO`: no delay).
    ///
    /// # Errors
    /// [`Error::Config`] naming the index and the executor count when it is out of range.
    pub(crate) fn slow(&self, executor: ExecutorId, delay: Duration) -> Result<()> {
        if self.cluster(executor).is_some() {
            return Err(Error::Config(format!(
                "slow_executor({executor}): executor {executor} is an executor process; only in-process executors can be slowed"
            )));
        }
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
    fn replace(&self, executor: ExecutorId, slots: &mut [Slot]) {
        let slot = &mut slots[executor];
        slot.alive.store(false, Ordering::Release);
        if let Some(arbiter) = slot.arbiter.take() {
            arbiter.stop();
        }
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

impl TaskLauncher for ExecutorPool {
    /// The in-process executors alive; for a stage that may run anywhere, the executor
    /// processes first (the task set fills executors in this order when their load and
    /// locality tie), so that map work leaves this process, as a Spark driver runs no
    /// tasks, and the in-process executors take what the processes have no slot for. An
    /// in-process executor that holds a pending task's input (a block a receiver here
    /// stored) still picks before them at equal load: it reads the block without a copy.
    fn executors(&self, placement: Placement) -> Vec<ExecutorId> {
        let slots = self.slots.borrow();
        let local =
            (0..slots.len()).filter(|&e| slots[e].addr.as_ref().is_some_and(|a| a.connected()));
        match (placement, &self.cluster) {
            (Placement::Anywhere, Some(cluster)) => {
                cluster.alive().into_iter().chain(local).collect()
            }
            (Placement::Processes, Some(cluster)) if self.cache_on_processes.get() => {
                cluster.alive()
            }
            (Placement::Processes, _) => Vec::new(),
            (Placement::InProcess, _) | (Placement::Anywhere, None) => local.collect(),
        }
    }

    fn launch(
        &self,
        executor: ExecutorId,
        task: TaskDescription,
    ) -> LocalBoxFuture<'static, TaskOutcome> {
        if let Some(cluster) = self.cluster(executor) {
            return cluster.launch(executor, task);
        }
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
        if let Some(cluster) = self.cluster(executor) {
            return cluster.report_lost(executor);
        }
        let mut slots = self.slots.borrow_mut();
        let Some(slot) = slots.get_mut(executor) else {
            return false;
        };
        if slot.addr.is_none() || slot.addr.as_ref().is_some_and(|a| a.connected()) {
            return false; // already replaced (or given up on) after an earlier report or a kill
        }
        self.replace(executor, &mut slots);
        true
    }

    fn sleep(&self, duration: Duration) -> LocalBoxFuture<'static, ()> {
        Box::pin(tokio::time::sleep(duration))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Loses executor `e` (as `kill_executor` does).
    fn lose(pool: &ExecutorPool, e: ExecutorId) {
        pool.kill(e).unwrap();
    }

    #[actix::test]
    async fn losing_every_executor_past_the_restart_limit_is_an_error_naming_the_count() {
        let pool = ExecutorPool::start(
            2,
            BlockManager::new(2),
            TaskRegistry::new(),
            Arc::default(),
            None,
        );
        // Without executor processes, a cache stage has nowhere to run (the result stage
        // computes in this process).
        assert!(pool.executors(Placement::Processes).is_empty());
        // The pool's policy: 10 restarts within 60 s, shared by its executors.
        for _ in 0..10 {
            lose(&pool, 0);
            assert_eq!(pool.executors(Placement::Anywhere), vec![0, 1], "replaced");
        }
        assert!(pool.take_failure().is_none());
        // The 11th loss is past the limit: executor 0 is not replaced, but 1 is still there.
        lose(&pool, 0);
        assert_eq!(pool.executors(Placement::Anywhere), vec![1]);
        assert!(pool.take_failure().is_none(), "an executor is left");
        // Then the last one goes: the pool gives up, once.
        lose(&pool, 1);
        assert!(pool.executors(Placement::Anywhere).is_empty());
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
        // Both were given up on: nothing is left to stop.
        assert!(pool.stop().is_empty());
    }
}
