//! Starting the actors for a DStream graph, and the handle to drive and stop them.

use std::rc::Rc;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use actix::{Actor, Addr, Arbiter};
use rivulet_framework::checkpoint::{BlockLog, Key};
use rivulet_framework::config::StreamingConfig;
use rivulet_framework::dstream::DStreamGraph;
use rivulet_framework::listener::StreamingListener;
use rivulet_framework::receiver::{BufferBound, ReceiverCounters, ReceiverSlot};
use rivulet_framework::scheduler::{
    DagScheduler, MapOutputTracker, SchedulerCounters, SchedulerMetrics, TaskRegistry,
};
use rivulet_framework::time::Time;
use rivulet_framework::{CheckpointError, Error, Result};
use tokio::sync::watch;

use crate::batch_builder::BatchBuilder;
use crate::block_store::BlockManager;
use crate::cluster::{
    Cluster, ExecutorProcess, Launch, ReceiverStart, RemoteBuffer, RemoteReceiver,
};
use crate::coordinator::coordinator_crashed;
use crate::coordinator::{
    ClusterRunner, Coordinator, CoordinatorParts, ExecutorPool, RateControl, ReceiverHandle,
};
use crate::event_log::EventLogWriter;
use crate::listener_bus::ListenerBus;
use crate::messages::{
    AddListener, Advance, CrashCoordinator, KillExecutor, SlowExecutor, StopContext, StopMode,
};
use crate::receiver_supervisor::ReceiverSupervisor;
use crate::supervision::RestartPolicy;
use crate::ui::StatusServer;

/// Where a running context stands.
#[derive(Clone, Debug)]
pub enum Status {
    /// Running; no batch has failed.
    Running,
    /// Running, but a batch failed with this error (the first one); later batches still run.
    Failed(Error),
    /// Stopped: cleanly, or with the error that stopped it.
    Stopped(Option<Error>),
}

/// Starts rivulet's actors.
#[derive(Debug)]
pub struct Runtime;

impl Runtime {
    /// Starts the coordinator, one executor per configured core, and a batch builder and
    /// supervisor per receiver of `graph`, then returns a handle. Must be called inside an
    /// actix `System`. Under the system clock the first batch is cut at the next multiple
    /// of the batch interval; under the manual clock, batches run on [`RuntimeHandle::advance`].
    ///
    /// # Errors
    /// [`Error::Config`] for an invalid `config`; [`Error::Graph`] for an invalid graph.
    pub fn start(
        graph: DStreamGraph,
        config: &StreamingConfig,
        listeners: Vec<Box<dyn StreamingListener>>,
    ) -> Result<RuntimeHandle> {
        config.validate()?;
        let manual = config.is_manual_clock();
        graph.set_checkpoint_interval(config.get_checkpoint_interval());
        // A graph restored from a checkpoint keeps the zero time of the run it continues.
        let zero = if let Some(zero) = graph.zero_time() {
            zero
        } else if manual {
            Time::ZERO
        } else {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64);
            let zero = Time::from_ms(now).floor(config.get_batch_interval());
            announce_first_batch(now, zero, config.get_batch_interval());
            zero
        };
        let slots = graph.start(zero)?;
        let executors = config.get_executors();
        let blocks = BlockManager::new(executors);
        let wal = config
            .get_receiver_wal()
            .then(|| BlockLog::new(graph.rdd_context().checkpoint_store().clone()));
        match &wal {
            Some(wal) => {
                graph.set_block_log(wal.clone());
                replay_wal(&graph, &slots, wal, &blocks)?;
            }
            None => {
                // Without the log the blocks of the run before are gone, but their numbers
                // are still named by restored batches: new blocks are numbered after them.
                for position in graph
                    .restored_checkpoint()
                    .map(|c| c.receivers.clone())
                    .unwrap_or_default()
                {
                    if let Some(slot) = slots.iter().find(|s| s.stream == position.stream) {
                        slot.source.resume_at(position.next_seq, None);
                    }
                }
            }
        }
        // Each receiver starts at the initial rate (capped at the maximum), or the maximum.
        let max_rate = config.get_max_rate_per_receiver();
        let initial_rate = match (config.get_backpressure_initial_rate(), max_rate) {
            (Some(i), Some(m)) => Some(i.min(m)),
            (i, m) => i.or(m),
        };
        for slot in &slots {
            slot.source.set_rate(initial_rate);
        }
        // Direct streams start at the initial rate under backpressure; each caps its
        // partitions with its own maximum.
        if config.get_backpressure() {
            for stream in graph.rate_controlled_inputs() {
                graph.set_input_rate(stream, config.get_backpressure_initial_rate());
            }
        }
        let buffer_bound = BufferBound::new(
            config.get_receiver_buffer_records(),
            config.get_receiver_buffer_time(),
            config.get_receiver_buffer_max_records(),
        );
        let rate_control = match config.get_backpressure() {
            true => Some(RateControl::new(config.get_batch_interval(), max_rate)?),
            false => None,
        };
        let registry = TaskRegistry::new();
        let dag = Rc::new(
            DagScheduler::new(
                registry.clone(),
                Arc::new(MapOutputTracker::new()),
                config.get_max_task_attempts(),
            )
            .with_speculation(config.get_speculation()),
        );
        let counters = dag.counters().clone();
        // The receivers that run on the executor processes, and the coordinator's side of
        // their buffers (bound to the cluster once it started).
        let remote = ReceiverStart::of(config, &slots);
        let remote_buffers: Vec<Arc<RemoteBuffer>> = remote
            .iter()
            .map(|r| Arc::new(RemoteBuffer::new(r)))
            .collect();
        let remote_buffer = |stream| remote_buffers.iter().find(|b| b.stream() == stream);
        let mut bus = ListenerBus::default();
        let ui = match config.get_ui_address() {
            Some(address) => {
                let sources = slots
                    .iter()
                    .map(|s| match remote_buffer(s.stream) {
                        Some(b) => (s.stream, b.clone() as Arc<dyn ReceiverCounters>),
                        None => (s.stream, s.source.clone() as Arc<dyn ReceiverCounters>),
                    })
                    .collect();
                let (server, listener) = StatusServer::start(
                    address,
                    config,
                    graph.describe(),
                    counters.clone(),
                    sources,
                )?;
                bus.add(listener);
                Some(server)
            }
            None => None,
        };
        let event_log = match config.get_event_log_dir() {
            Some(dir) => {
                let (writer, listener) =
                    EventLogWriter::start(dir, config, graph.describe(), counters.clone())?;
                bus.add(listener);
                Some(Arc::new(writer))
            }
            None => None,
        };
        if graph.restored_batch().is_none() && config.get_checkpoint_dir().is_some() {
            // A first checkpoint before the first batch: a restart after an early kill
            // resumes this run (e.g. the files a file stream ignored at start stay ignored,
            // and those that arrived since are read) instead of starting anew.
            graph.write_metadata_checkpoint(zero)?;
        }
        let cluster = match Launch::of(config) {
            None => None,
            Some(launch) => {
                let cluster = Cluster::start(
                    launch,
                    executors,
                    &blocks,
                    graph.clone(),
                    counters.clone(),
                    config.get_heartbeat_timeout(),
                )?;
                blocks.set_cluster(cluster.clone());
                Some(cluster)
            }
        };
        let weak_cluster = cluster.as_ref().map(Arc::downgrade);
        if let Some(cluster) = &weak_cluster {
            for buffer in &remote_buffers {
                buffer.bind(cluster.clone());
            }
        }
        let pool_cluster = cluster.clone();
        let state_in_processes = config.get_state_in_executor_processes();
        let pool_counters = counters.clone();
        let runner_blocks = blocks.clone();
        let (status, status_rx) = watch::channel(Status::Running);
        let block_interval = (!manual).then(|| config.get_block_interval());
        let policy = RestartPolicy::new(
            config.get_receiver_max_restarts(),
            config.get_receiver_restart_delay(),
        );
        for l in listeners {
            bus.add(l);
        }
        let app_name = config.get_app_name().to_string();
        // Polled inputs' cuts are recorded only where a restart can read them.
        let input_cuts = config.get_checkpoint_dir().is_some() && graph.has_polled_inputs();
        let pipelining = config.get_pipelining();
        let coordinator_graph = graph.clone();
        let processes_wal = wal.clone();
        let coordinator = Coordinator::create(move |ctx| {
            let me: Addr<Coordinator> = actix::AsyncContext::address(ctx);
            let receivers = slots
                .into_iter()
                .map(|slot| {
                    let placed = remote_buffers.iter().find(|b| b.stream() == slot.stream);
                    if let (Some(buffer), Some(cluster)) = (placed, &weak_cluster) {
                        let stream = slot.stream;
                        let handle = RemoteReceiver::new(stream, cluster.clone()).start();
                        return ReceiverHandle {
                            stream,
                            supervisor: handle.clone().recipient(),
                            builder: handle.recipient(),
                            source: buffer.clone(),
                            arbiter: None,
                            reported: 0,
                            sealed_total: 0,
                        };
                    }
                    let arbiter = Arbiter::new();
                    let (stream, source) = (slot.stream, slot.source.clone());
                    let (b_source, b_blocks, b_me) = (source.clone(), blocks.clone(), me.clone());
                    let b_wal = wal.clone();
                    let builder = BatchBuilder::start_in_arbiter(&arbiter.handle(), move |_| {
                        let builder = BatchBuilder::new(
                            b_source,
                            b_blocks,
                            b_me.clone().recipient(),
                            block_interval,
                        );
                        match b_wal {
                            Some(wal) => builder.with_wal(wal, b_me.recipient()),
                            None => builder,
                        }
                    });
                    let (s_source, s_me, receiver) = (source.clone(), me.clone(), slot.receiver);
                    let supervisor =
                        ReceiverSupervisor::start_in_arbiter(&arbiter.handle(), move |_| {
                            ReceiverSupervisor::new(
                                stream,
                                receiver,
                                s_source,
                                s_me.recipient(),
                                policy,
                            )
                        });
                    ReceiverHandle {
                        stream,
                        supervisor: supervisor.recipient(),
                        builder: builder.recipient(),
                        source,
                        arbiter: Some(arbiter),
                        reported: 0,
                        sealed_total: 0,
                    }
                })
                .collect();
            Coordinator::new(CoordinatorParts {
                rate_control,
                buffer_bound,
                wal: wal.clone(),
                input_cuts,
                graph: coordinator_graph,
                manual,
                pipelining,
                dag,
                pool: {
                    let pool = ExecutorPool::start(
                        executors,
                        blocks.clone(),
                        registry,
                        pool_counters,
                        pool_cluster,
                    );
                    pool.set_cache_on_processes(state_in_processes);
                    pool
                },
                blocks,
                receivers,
                listeners: bus,
                status,
                app_name,
            })
        });
        if let (Some(cluster), false) = (&cluster, remote.is_empty()) {
            let journal = cluster.set_coordinator(
                coordinator.clone().recipient(),
                coordinator.clone().recipient(),
                processes_wal,
                coordinator.clone().recipient(),
            );
            if let Err(e) = journal {
                cluster.stop();
                return Err(e);
            }
            cluster.place_receivers(remote);
        }
        graph.rdd_context().set_runner(Arc::new(ClusterRunner {
            coordinator: coordinator.clone().recipient(),
            blocks: runner_blocks,
        }));
        Ok(RuntimeHandle {
            coordinator,
            status: status_rx,
            manual,
            counters,
            ui,
            event_log,
            cluster,
        })
    }
}

/// Replays the receivers' write-ahead log after a restart (step 5 of its protocol, see
/// [`rivulet_framework::checkpoint`]): puts every block a batch may still need back into the
/// block stores (on its primary executor and a replica, as the batch builder places them),
/// gives the graph the allocations only the log recorded, and resumes each receiver after
/// its last block and at its newest offset. The graph's block tracker learns every block
/// put back, and queues those no batch has yet for the next batch, in order.
fn replay_wal(
    graph: &DStreamGraph,
    slots: &[ReceiverSlot],
    wal: &BlockLog,
    blocks: &BlockManager,
) -> Result<()> {
    let restored = graph.restored_checkpoint();
    let replay = wal.replay(restored.as_deref())?;
    let dir = graph.rdd_context().checkpoint_store().location();
    let (mut replayed, mut unallocated) = (Vec::new(), Vec::new());
    for entry in &replay.blocks {
        let logged = &entry.block;
        let key = logged.key();
        let Some(slot) = slots.iter().find(|s| s.stream == logged.stream) else {
            return Err(CheckpointError::Corrupt {
                dir,
                key: key.to_string(),
                reason: format!(
                    "the program has no receiver for input stream {}",
                    logged.stream
                ),
            }
            .into());
        };
        let (data, _) = slot
            .source
            .decode_block(&logged.data, &dir, &Key::to_string(&key))?;
        let info = logged.info();
        blocks.put_replicated(info.id, data, slot.source.block_encoder());
        if entry.batch.is_none() {
            unallocated.push(info.clone());
        }
        replayed.push(info);
    }
    graph.restore_allocations(replay.allocations.clone());
    for slot in slots {
        if let Some((next_seq, offset)) = replay.positions.get(&slot.stream) {
            slot.source.resume_at(*next_seq, offset.clone());
        }
    }
    if !replayed.is_empty() || replay.deleted > 0 || replay.unfinished > 0 {
        tracing::info!(
            blocks = replayed.len(),
            new_blocks = unallocated.len(),
            records = replayed.iter().map(|b| b.num_records).sum::<usize>(),
            deleted_done_blocks = replay.deleted,
            unfinished_store_blocks = replay.unfinished,
            after = ?graph.restored_batch(),
            "Replayed received blocks from the write-ahead log."
        );
    }
    graph.add_replayed_blocks(&replayed, unallocated);
    Ok(())
}

/// Drives a started runtime: advance the manual clock, add listeners, stop, wait.
#[derive(Clone, Debug)]
pub struct RuntimeHandle {
    coordinator: Addr<Coordinator>,
    status: watch::Receiver<Status>,
    manual: bool,
    counters: Arc<SchedulerCounters>,
    ui: Option<StatusServer>,
    event_log: Option<Arc<EventLogWriter>>,
    cluster: Option<Arc<Cluster>>,
}

impl RuntimeHandle {
    /// The executor processes of the local or static cluster, in slot order (empty without
    /// one):
    /// their executor ids, pids, whether each is connected and how often its slot lost one.
    pub fn executor_processes(&self) -> Vec<ExecutorProcess> {
        self.cluster
            .as_ref()
            .map(|c| c.processes())
            .unwrap_or_default()
    }

    /// Runs the next `batches` batches on the manual clock, each to completion.
    ///
    /// # Errors
    /// [`Error::Config`] under the system clock; the first failed batch's error (all
    /// `batches` still run); [`Error::NotRunning`] once stopped.
    pub async fn advance(&self, batches: u32) -> Result<()> {
        if !self.manual {
            return Err(Error::Config(
                "advance needs the manual clock (StreamingConfig::manual_clock)".into(),
            ));
        }
        self.coordinator
            .send(Advance(batches))
            .await
            .map_err(|_| self.not_running())?
    }

    /// [`Error::NotRunning`] saying why the coordinator is gone.
    fn not_running(&self) -> Error {
        match self.status() {
            Status::Stopped(Some(e)) => {
                Error::NotRunning(format!("the streaming context has stopped: {e}"))
            }
            _ => Error::NotRunning("the streaming context has stopped".into()),
        }
    }

    /// Adds a listener; it sees events from now on.
    ///
    /// # Errors
    /// [`Error::NotRunning`] once stopped.
    pub async fn add_listener(&self, listener: Box<dyn StreamingListener>) -> Result<()> {
        self.coordinator
            .send(AddListener(listener))
            .await
            .map_err(|_| Error::NotRunning("the streaming context has stopped".into()))
    }

    /// Adds a listener without waiting (a control message); it sees events from then on.
    pub fn add_listener_now(&self, listener: Box<dyn StreamingListener>) {
        self.coordinator.do_send(AddListener(listener));
    }

    /// Stops the context (see [`StopMode`]) and returns once it has stopped: every executor
    /// and receiver thread has ended (a task running at a `Now` stop finishes first), so what
    /// they held, the checkpoint directory above all, is released. Stopping a stopped context
    /// does nothing.
    ///
    /// # Errors
    /// [`Error::Crashed`] when the context did not stop cleanly because the coordinator died
    /// (before or during this stop).
    pub async fn stop(&self, mode: StopMode) -> Result<()> {
        // A closed mailbox means it already stopped, cleanly or not.
        let _ = self.coordinator.send(StopContext(mode)).await;
        // The stop is over once its threads are joined and the status says so; a status
        // sender dropped first (a crash) ends the wait too, and `status` reports it.
        let _ = self
            .status
            .clone()
            .wait_for(|s| matches!(s, Status::Stopped(_)))
            .await;
        if let Some(ui) = &self.ui {
            ui.stop().await;
        }
        if let Some(log) = &self.event_log {
            log.closed().await;
        }
        match self.status() {
            Status::Stopped(Some(e @ Error::Crashed { .. })) => Err(e),
            _ => Ok(()),
        }
    }

    /// Makes the coordinator die abruptly, as a panic in it would: it stops without its stop
    /// sequence and without reporting a final status. A hook for tests and chaos drills, to
    /// check that such a death is escalated: the context stops, [`status`](Self::status)
    /// reports [`Status::Stopped`] with [`Error::Crashed`], and
    /// [`await_termination`](Self::await_termination) returns that error.
    ///
    /// # Errors
    /// [`Error::NotRunning`] if the context has already stopped.
    pub async fn crash_coordinator(&self) -> Result<()> {
        self.coordinator
            .send(CrashCoordinator)
            .await
            .map_err(|_| self.not_running())
    }

    /// Waits until the context stops, or a batch fails (Spark: `awaitTermination`).
    ///
    /// # Errors
    /// The first batch failure (the context keeps running), or the error that stopped it:
    /// [`Error::Crashed`] when the coordinator died without a clean stop. Only a clean stop
    /// returns `Ok`.
    pub async fn await_termination(&self) -> Result<()> {
        let mut status = self.status.clone();
        loop {
            match &*status.borrow_and_update() {
                Status::Running => {}
                Status::Failed(e) | Status::Stopped(Some(e)) => return Err(e.clone()),
                Status::Stopped(None) => return Ok(()),
            }
            if status.changed().await.is_err() {
                // The coordinator is gone; a clean stop would have said so first.
                return match self.status() {
                    Status::Stopped(None) => Ok(()),
                    Status::Failed(e) | Status::Stopped(Some(e)) => Err(e),
                    Status::Running => Err(coordinator_crashed()),
                };
            }
        }
    }

    /// Where the context stands now. A coordinator that is gone without having reported a
    /// stop is reported as stopped with [`Error::Crashed`].
    pub fn status(&self) -> Status {
        let status = self.status.borrow().clone();
        let gone = self.status.has_changed().is_err();
        match status {
            Status::Running | Status::Failed(_) if gone => {
                Status::Stopped(Some(coordinator_crashed()))
            }
            status => status,
        }
    }

    /// Kills executor `executor` (from 0) as a crash outside a task would, for tests and
    /// chaos drills: its arbiter stops and its block store is lost; tasks running on it are
    /// rerun elsewhere, lost cached partitions and shuffle outputs are recomputed from
    /// lineage, input blocks are read from their replica. A new executor takes its place
    /// at once (up to 10 losses within 60 s over all executors; past that the context runs
    /// without the executor).
    /// Returns once the coordinator has handled the loss.
    ///
    /// # Errors
    /// [`Error::Config`] naming the index and the executor count when `executor` is out of
    /// range; [`Error::NotRunning`] once stopped.
    pub async fn kill_executor(&self, executor: usize) -> Result<()> {
        self.coordinator
            .send(KillExecutor(executor))
            .await
            .map_err(|_| Error::NotRunning("the streaming context has stopped".into()))?
    }

    /// Makes executor `executor` (from 0) sleep `delay` before each task, blocking its own
    /// thread, to simulate a straggler (tests, benches); `Duration::ZERO` clears it. Tasks
    /// already queued on it are delayed too. The setting survives the executor's restarts.
    ///
    /// # Errors
    /// [`Error::Config`] naming the index and the executor count when `executor` is out of
    /// range; [`Error::NotRunning`] once stopped.
    pub async fn slow_executor(&self, executor: usize, delay: std::time::Duration) -> Result<()> {
        self.coordinator
            .send(SlowExecutor { executor, delay })
            .await
            .map_err(|_| Error::NotRunning("the streaming context has stopped".into()))?
    }

    /// The address the status server bound (see `StreamingConfig::ui_address`), if it is on.
    pub fn ui_address(&self) -> Option<std::net::SocketAddr> {
        self.ui.as_ref().map(StatusServer::address)
    }

    /// What the scheduler has healed since start: executors lost, tasks rerun after a
    /// loss, map stages resubmitted, speculative copies launched.
    pub fn scheduler_metrics(&self) -> SchedulerMetrics {
        self.counters.snapshot()
    }
}

/// A first batch at least this far away is announced at `warn` (else at `info`).
const FAR_FIRST_BATCH: std::time::Duration = std::time::Duration::from_secs(10);

/// Logs when the first batch (at `zero + interval`, aligned to the wall clock) will run, so a
/// long batch interval does not look like a hang.
fn announce_first_batch(now_ms: i64, zero: Time, interval: std::time::Duration) {
    let first_ms = zero.as_ms().saturating_add(interval.as_millis() as i64);
    let wait = std::time::Duration::from_millis(first_ms.saturating_sub(now_ms).max(0) as u64);
    let (first_batch_ms, wait_ms) = (first_ms, wait.as_millis() as u64);
    if wait >= FAR_FIRST_BATCH {
        tracing::warn!(
            first_batch_ms,
            wait_ms,
            "First batch in {} s: batches are cut at multiples of the batch interval on the \
             wall clock.",
            wait.as_secs()
        );
    } else {
        tracing::info!(first_batch_ms, wait_ms, "First batch scheduled.");
    }
}
