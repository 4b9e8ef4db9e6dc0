//! Executor processes (Spark's `local-cluster[N, ...]` and `CoarseGrainedExecutorBackend`):
//! the coordinator's side (`Cluster`) and the executor's ([`run_executor`]).
//!
//! With [`local_cluster(n)`](rivulet_framework::config::StreamingConfig::local_cluster) the
//! coordinator listens on 127.0.0.1, starts `n` processes of its own program in the executor
//! role ([`ExecutorRole`], read from the environment) and waits for each to register over
//! a [`Connection`] (the handshake refuses another build). An executor process builds the
//! same DStream graph (the program's own code, up to `StreamingContext::start`), and runs
//! the map and cache tasks it is sent: a task names its batch and shuffle (or, for a cache
//! task, the RDD it keeps), carries the batch's block allocation and the cached RDDs of
//! earlier batches it reads, and the process generates the batch itself and finds the
//! shuffle or RDD under the same id ([`DStreamGraph::executor_shuffle`],
//! [`DStreamGraph::executor_rdd`]). Closures never travel. A cache task's partition (a
//! stateful stream's state) stays in the process's block store, which reports it
//! (`Cached`); the next batch's task for that partition is placed there.
//!
//! Blocks move on demand, in both directions over the same connection: an executor process
//! fetches the received blocks its map task reads from the coordinator, and the
//! coordinator's in-process executors fetch the shuffle buckets their reduce tasks read from
//! the process that wrote them. Every block is serialized by the encoder chosen where its
//! record type was known ([`BlockEncoder`](rivulet_framework::block::BlockEncoder)).
//!
//! With `StreamingConfig::receivers_in_executor_processes`, receivers
//! that may run anywhere run in the processes (`process_receivers.rs`), driven from here
//! (`remote_receivers.rs`): their blocks stay there, the map tasks reading them are placed
//! there, and each block's replica is kept by a second process, relayed through here, or
//! here when the receiver write-ahead log is on or no other process runs (`replicas.rs`).
//! Their blocks, reports and the processes' losses go through one journal
//! (`received_log.rs`), which adds the blocks to the receiver write-ahead log when it is on
//! before it confirms them to their process (whose receiver may then acknowledge its
//! source) or counts them; a lost process's confirmed blocks that were never reported are
//! counted, and read, from their replicas.
//!
//! A process is lost when its connection breaks or it sends no heartbeat within the
//! [heartbeat timeout](rivulet_framework::config::StreamingConfig::heartbeat_timeout): its
//! running tasks answer `ExecutorLost`, its buckets are forgotten (their map tasks run again
//! from lineage, on the survivors), it is killed if still running, and a new process takes
//! its slot. An executor process whose coordinator goes away exits at once (status 1).

mod executor_process;
mod local_processes;
mod process_receivers;
mod protocol;
mod received_log;
mod remote_receivers;
mod replicas;

#[cfg(test)]
mod tests;

pub use executor_process::{run_executor, ExecutorRole};
pub(crate) use remote_receivers::{ReceiverStart, RemoteBuffer, RemoteReceiver};

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use futures::future::LocalBoxFuture;
use parking_lot::{Condvar, Mutex};
use rivulet_framework::block::{BlockId, ExecutorId, StreamId};
use rivulet_framework::cluster_manager::ClusterManager;
use rivulet_framework::config::ManagedCluster;
use rivulet_framework::dstream::BatchInput;
use rivulet_framework::dstream::DStreamGraph;
use rivulet_framework::rdd::ShuffleId;
use rivulet_framework::scheduler::{SchedulerCounters, TaskDescription, TaskFailure, TaskOutcome};
use rivulet_framework::time::Time;
use rivulet_framework::{Error, Result};
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

use crate::block_store::BlockManager;
use crate::transport::{BuildId, Connection, Hello, Role, TransportOptions, PROTOCOL_VERSION};
use local_processes::LocalProcesses;
use protocol::{Attached, BlockReply, RemoteOutcome, ToCoordinator, ToExecutor};
use received_log::{ReceivedLog, ReceiverEntry};
use remote_receivers::{Inbox, PlacedReceiver, ReceiverRequest};
use replicas::{ReceivedBlock, ReceivedSource};

/// Where the executor processes come from.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Launch {
    /// `n` processes of this program, started by the coordinator on this host.
    Local(usize),
    /// `n` processes started elsewhere, which connect to `listen`.
    Static {
        /// The address to listen on, `ip:port`.
        listen: String,
        /// How many processes to wait for.
        n: usize,
    },
    /// `n` processes placed by a cluster manager.
    Managed(ManagedCluster),
}

impl Launch {
    /// What `config` asks for, if anything.
    pub(crate) fn of(config: &rivulet_framework::config::StreamingConfig) -> Option<Launch> {
        if let Some(managed) = config.get_managed_cluster() {
            return Some(Launch::Managed(managed.clone()));
        }
        if let Some((listen, n)) = config.get_static_cluster() {
            return Some(Launch::Static {
                listen: listen.to_string(),
                n,
            });
        }
        match config.get_local_cluster() {
            0 => None,
            n => Some(Launch::Local(n)),
        }
    }
}

/// How long the coordinator waits for every executor process to register at start.
const REGISTER_TIMEOUT: Duration = Duration::from_secs(60);
/// How many times one slot's process may be replaced: past that the slot stays empty (the
/// others and the in-process executors carry on).
const MAX_REPLACEMENTS: u32 = 10;
/// How long a block fetch may take before it fails (the peer is then presumed gone).
const FETCH_TIMEOUT: Duration = Duration::from_secs(30);

/// An executor process as the status line and the examples show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecutorProcess {
    /// The executor id its tasks run as (after the in-process executors' ids).
    pub executor: ExecutorId,
    /// Its operating-system process id, once it registered.
    pub pid: Option<u32>,
    /// Whether it is connected now.
    pub alive: bool,
    /// How many of its incarnations were lost so far.
    pub losses: u64,
    /// Map tasks its slot's processes completed (all incarnations).
    pub map_tasks: u64,
    /// Cache tasks its slot's processes completed (all incarnations): partitions of a
    /// stateful stream's RDDs computed and kept there (see `DagScheduler`'s cache stages).
    pub cache_tasks: u64,
    /// Cached partitions lost with its slot's processes (recomputed from lineage when a
    /// batch needs them).
    pub cached_lost: u64,
    /// Bytes of frames sent to its slot's processes (tasks, blocks, control), without
    /// the 4-byte length prefixes.
    pub bytes_sent: u64,
    /// Bytes of frames received from them.
    pub bytes_received: u64,
    /// The input streams whose receivers are placed on this slot (see
    /// `StreamingConfig::receivers_in_executor_processes`), in stream order.
    pub receivers: Vec<StreamId>,
    /// Replicas of other processes' received blocks its current process holds now (with
    /// the receiver write-ahead log off, each block a process's receiver stores is
    /// replicated on the next process).
    pub replicas: usize,
}

/// One slot of the cluster: the process in it now, if connected.
#[derive(Default)]
struct Peer {
    out: Option<mpsc::UnboundedSender<ToExecutor>>,
    /// Wakes the connection's reader to close it when the process is lost.
    kick: Option<Arc<tokio::sync::Notify>>,
    pid: Option<u32>,
    addr: Option<SocketAddr>,
    last_seen: Option<Instant>,
    /// Incarnations connected so far; a loss names the one it ends.
    generation: u64,
    losses: u64,
    /// Losses the scheduler was told of (see [`Cluster::report_lost`]).
    reported: u64,
    map_tasks: u64,
    cache_tasks: u64,
    cached_lost: u64,
    bytes_sent: u64,
    bytes_received: u64,
}

struct PendingTask {
    slot: usize,
    reply: oneshot::Sender<TaskOutcome>,
    output: Option<(ShuffleId, u32)>,
    /// The task's batch, whose input reports its reads go to.
    batch: Option<Time>,
}

#[derive(Default)]
struct State {
    peers: Vec<Peer>,
    next_req: u64,
    tasks: HashMap<u64, PendingTask>,
    fetches: HashMap<u64, (usize, std::sync::mpsc::Sender<BlockReply>)>,
    /// Which slot holds each map output written by an executor process.
    outputs: HashMap<(ShuffleId, u32), usize>,
    /// Which slot holds each cached partition an executor process computed.
    cached: HashMap<BlockId, usize>,
    /// The receivers placed on the processes.
    receivers: HashMap<StreamId, PlacedReceiver>,
    /// Seal and stop requests to the processes' receivers, waiting for an answer.
    receiver_requests: HashMap<u64, ReceiverRequest>,
    /// Each block the processes' receivers stored: the slot and incarnation holding it, and
    /// where its replica is.
    received: HashMap<BlockId, ReceivedBlock>,
    stopping: bool,
    /// Registered connections still open (their reader has not ended).
    connections: usize,
}

impl State {
    /// Whether incarnation `generation` of `slot` is the one connected now (not lost).
    fn is_current(&self, slot: usize, generation: u64) -> bool {
        self.peers
            .get(slot)
            .is_some_and(|p| p.out.is_some() && p.generation == generation)
    }
}

/// The coordinator's executor processes.
pub(crate) struct Cluster {
    first_id: ExecutorId,
    state: Mutex<State>,
    registered: Condvar,
    blocks: Weak<BlockManager>,
    /// The coordinator's graph, for batches' allocations and the zero time; dropped at stop
    /// (the graph's runner holds the block manager, which holds this cluster).
    graph: Mutex<Option<DStreamGraph>>,
    counters: Arc<SchedulerCounters>,
    timeout: Duration,
    /// Who places the processes; none for a static cluster (they are started elsewhere).
    manager: Option<Arc<dyn ClusterManager>>,
    /// The address the processes are told to connect to.
    advertised: String,
    /// The address the coordinator listens on.
    listening: SocketAddr,
    /// Replacements so far, per slot.
    replacements: Mutex<Vec<u32>>,
    io: Mutex<Option<(tokio::runtime::Handle, std::thread::JoinHandle<()>)>>,
    shutdown: Mutex<Option<oneshot::Sender<()>>>,
    /// Where the processes' receivers report (set once the coordinator exists).
    inbox: Mutex<Option<Inbox>>,
    /// The journal of the processes' receivers' blocks (started with the inbox).
    received_log: std::sync::OnceLock<ReceivedLog>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("first_id", &self.first_id)
            .field("processes", &self.state.lock().peers.len())
            .finish()
    }
}

impl Cluster {
    /// Starts (or, for a static cluster, waits for) the executor processes `launch` says,
    /// whose executor ids follow the `first_id` in-process executors, and waits until each
    /// registered.
    ///
    /// # Errors
    /// [`Error::Config`] when the listener cannot be bound or this program cannot be
    /// started again; [`Error::Crashed`] naming the slots that did not register within
    /// 60 s (the processes it started are killed).
    pub(crate) fn start(
        launch: Launch,
        first_id: ExecutorId,
        blocks: &Arc<BlockManager>,
        graph: DStreamGraph,
        counters: Arc<SchedulerCounters>,
        timeout: Duration,
    ) -> Result<Arc<Cluster>> {
        let (listen, n, advertise_host, manager): (
            &str,
            usize,
            Option<&str>,
            Option<Arc<dyn ClusterManager>>,
        ) = match &launch {
            Launch::Local(n) => (
                "127.0.0.1:0",
                *n,
                None,
                Some(Arc::new(LocalProcesses::new(*n))),
            ),
            Launch::Static { listen, n } => (listen.as_str(), *n, None, None),
            Launch::Managed(m) => (
                m.listen.as_str(),
                m.n,
                Some(m.advertise_host.as_str()),
                Some(m.manager.clone()),
            ),
        };
        let listener = std::net::TcpListener::bind(listen)
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .map_err(|e| {
                Error::Config(format!(
                    "executor processes: cannot listen on {listen}: {e}"
                ))
            })?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::Config(format!("executor processes: {e}")))?;
        let advertised = match advertise_host {
            Some(host) => format!("{host}:{}", addr.port()),
            None => addr.to_string(),
        };
        let cluster = Arc::new(Cluster {
            first_id,
            state: Mutex::new(State {
                peers: (0..n).map(|_| Peer::default()).collect(),
                ..State::default()
            }),
            registered: Condvar::new(),
            blocks: Arc::downgrade(blocks),
            graph: Mutex::new(Some(graph)),
            counters,
            timeout,
            manager,
            advertised,
            listening: addr,
            replacements: Mutex::new(vec![0; n]),
            io: Mutex::new(None),
            shutdown: Mutex::new(None),
            inbox: Mutex::new(None),
            received_log: std::sync::OnceLock::new(),
        });
        let (shutdown_tx, shutdown_rx) = oneshot::channel();
        *cluster.shutdown.lock() = Some(shutdown_tx);
        let (handle_tx, handle_rx) = std::sync::mpsc::channel();
        let io_cluster = Arc::downgrade(&cluster);
        let thread = std::thread::Builder::new()
            .name("rivulet-cluster-io".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = handle_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                let _ = handle_tx.send(Ok(rt.handle().clone()));
                rt.block_on(io_main(io_cluster, listener, shutdown_rx));
            })
            .map_err(|e| {
                Error::Config(format!("local_cluster: cannot start its I/O thread: {e}"))
            })?;
        let handle = handle_rx
            .recv()
            .map_err(|e| e.to_string())
            .and_then(|r| r)
            .map_err(|e| Error::Config(format!("local_cluster: cannot start its runtime: {e}")))?;
        *cluster.io.lock() = Some((handle, thread));
        if let Some(manager) = &cluster.manager {
            for slot in 0..n {
                if let Err(e) = manager.start_executor(slot, &cluster.advertised) {
                    cluster.stop();
                    return Err(e);
                }
            }
        }
        cluster.wait_registered(n)?;
        info!(processes = n, listening = %cluster.listening, advertised = %cluster.advertised, "Executor processes registered.");
        Ok(cluster)
    }

    fn wait_registered(&self, n: usize) -> Result<()> {
        let deadline = Instant::now() + REGISTER_TIMEOUT;
        let mut state = self.state.lock();
        loop {
            // A process that registered and was lost since counts: the loss is handled as any
            // other (a local cluster replaces it).
            let missing: Vec<usize> = (0..n).filter(|&s| state.peers[s].generation == 0).collect();
            if missing.is_empty() {
                return Ok(());
            }
            let exited: Vec<String> = self
                .ended(&missing)
                .into_iter()
                .map(|(s, why)| format!("slot {s}: {why}"))
                .collect();
            let timed_out = Instant::now() >= deadline;
            if timed_out || !exited.is_empty() {
                drop(state);
                self.stop();
                let reason = if exited.is_empty() {
                    format!(
                        "executor process slot(s) {missing:?} did not register within {} s; see their log lines above",
                        REGISTER_TIMEOUT.as_secs()
                    )
                } else {
                    format!("executor process(es) exited before registering ({}); see their log lines above", exited.join("; "))
                };
                return Err(Error::Crashed {
                    component: "the executor processes".into(),
                    reason,
                });
            }
            let _ = self
                .registered
                .wait_for(&mut state, Duration::from_millis(50));
        }
    }

    /// The executor processes, in slot order.
    pub(crate) fn processes(&self) -> Vec<ExecutorProcess> {
        let state = self.state.lock();
        state
            .peers
            .iter()
            .enumerate()
            .map(|(slot, p)| ExecutorProcess {
                executor: self.first_id + slot,
                pid: p.pid,
                alive: p.out.is_some(),
                losses: p.losses,
                map_tasks: p.map_tasks,
                cache_tasks: p.cache_tasks,
                cached_lost: p.cached_lost,
                bytes_sent: p.bytes_sent,
                bytes_received: p.bytes_received,
                receivers: {
                    let mut streams: Vec<StreamId> = state
                        .receivers
                        .iter()
                        .filter(|(_, r)| r.slot == slot)
                        .map(|(s, _)| *s)
                        .collect();
                    streams.sort_unstable();
                    streams
                },
                replicas: Cluster::replicas_held(&state, slot),
            })
            .collect()
    }

    /// Whether `executor` is one of this cluster's.
    pub(crate) fn owns(&self, executor: ExecutorId) -> bool {
        executor
            .checked_sub(self.first_id)
            .is_some_and(|s| s < self.state.lock().peers.len())
    }

    /// The executor ids of the processes connected now.
    pub(crate) fn alive(&self) -> Vec<ExecutorId> {
        let state = self.state.lock();
        (0..state.peers.len())
            .filter(|&s| state.peers[s].out.is_some())
            .map(|s| self.first_id + s)
            .collect()
    }

    /// Sends map task `task` to `executor`'s process; resolves with its outcome
    /// (`ExecutorLost` when the process is or becomes lost first).
    pub(crate) fn launch(
        &self,
        executor: ExecutorId,
        task: TaskDescription,
    ) -> LocalBoxFuture<'static, TaskOutcome> {
        let lost = || -> LocalBoxFuture<'static, TaskOutcome> {
            Box::pin(futures::future::ready(TaskOutcome::ExecutorLost))
        };
        let slot = executor - self.first_id;
        let input = task
            .batch_time
            .and_then(|t| {
                self.graph
                    .lock()
                    .as_ref()
                    .map(|g| g.batch_input(t, task.rdd))
            })
            .unwrap_or_else(|| Ok(BatchInput::default()));
        let input = match input {
            Ok(input) => input,
            Err(e) => {
                return Box::pin(futures::future::ready(TaskOutcome::Failed(TaskFailure {
                    operator: "executor processes".into(),
                    message: format!("the task's batch input cannot be sent: {e}"),
                    fetch_failed: None,
                    retryable: false,
                })))
            }
        };
        let output = task.shuffle.map(|s| (s, task.partition as u32));
        let (reply, rx) = oneshot::channel();
        let mut state = self.state.lock();
        let req = state.next_req;
        state.next_req += 1;
        let Some(out) = state.peers.get(slot).and_then(|p| p.out.clone()) else {
            return lost();
        };
        state.tasks.insert(
            req,
            PendingTask {
                slot,
                reply,
                output,
                batch: task.batch_time,
            },
        );
        drop(state);
        if out.send(ToExecutor::RunTask { req, task, input }).is_err() {
            self.state.lock().tasks.remove(&req);
            return lost();
        }
        Box::pin(async move { rx.await.unwrap_or(TaskOutcome::ExecutorLost) })
    }

    /// The executor process holding block `id`: a partition one of its tasks cached, or a
    /// block its receiver stored (while it is the incarnation that stored it).
    pub(crate) fn location(&self, id: &BlockId) -> Option<ExecutorId> {
        if let BlockId::Rdd { .. } = id {
            let state = self.state.lock();
            let slot = state.cached.get(id).copied()?;
            return state.peers[slot]
                .out
                .is_some()
                .then_some(self.first_id + slot);
        }
        self.received_location(id)
    }

    /// Block `id` from the executor process that holds it (blocking the calling task
    /// thread): a shuffle bucket from the process that wrote it, a cached partition from the
    /// process that reported it; `None` when none holds it (no round trip then).
    ///
    /// # Errors
    /// [`Error::Internal`] naming the process and its address when the fetch failed (it was
    /// lost, or answered nothing within 30 s).
    pub(crate) fn fetch(&self, id: &BlockId) -> Result<Option<Vec<u8>>> {
        self.request(id).wait(self)
    }

    /// Blocks `ids` as [`fetch`](Self::fetch) returns each, in order; every request is sent
    /// before the first answer is awaited, so their round trips and the processes' encoding
    /// overlap (Spark: `ShuffleBlockFetcherIterator`'s fetches in flight). The iterator
    /// blocks the calling task thread until the next answer in order arrives.
    pub(crate) fn fetch_many<'a>(
        &'a self,
        ids: &[BlockId],
    ) -> impl Iterator<Item = Result<Option<Vec<u8>>>> + 'a {
        let requests: Vec<BlockRequest> = ids.iter().map(|id| self.request(id)).collect();
        requests.into_iter().map(move |r| r.wait(self))
    }

    /// Sends the request for block `id` to the process that holds it, if one does.
    fn request(&self, id: &BlockId) -> BlockRequest {
        let state = self.state.lock();
        let slot = match id {
            BlockId::Input { .. } => match Cluster::received_source(&state, id) {
                // Its replica is here: no round trip.
                ReceivedSource::Bytes(bytes) => return BlockRequest::Done(Ok(Some(bytes))),
                ReceivedSource::Process(slot) => Some(slot),
                ReceivedSource::Nowhere => None,
            },
            BlockId::Shuffle { shuffle, map, .. } => state.outputs.get(&(*shuffle, *map)).copied(),
            BlockId::Rdd { .. } => state.cached.get(id).copied(),
        };
        drop(state);
        match slot {
            Some(slot) => self.request_from(slot, id),
            None => BlockRequest::Done(Ok(None)),
        }
    }

    /// Sends the request for block `id` to the process in `slot`.
    fn request_from(&self, slot: usize, id: &BlockId) -> BlockRequest {
        let mut state = self.state.lock();
        let peer = &state.peers[slot];
        let (Some(out), addr) = (peer.out.clone(), peer.addr) else {
            return BlockRequest::Done(Ok(None));
        };
        let req = state.next_req;
        state.next_req += 1;
        let (tx, rx) = std::sync::mpsc::channel();
        state.fetches.insert(req, (slot, tx));
        drop(state);
        let sent = BlockRequest::Sent {
            id: *id,
            req,
            executor: self.first_id + slot,
            addr,
            answer: rx,
        };
        if out.send(ToExecutor::FetchBlock { req, id: *id }).is_err() {
            self.state.lock().fetches.remove(&req);
            return BlockRequest::Done(Err(sent.failed("the process is lost".into())));
        }
        sent
    }

    /// Whether the loss of `executor` is news to the scheduler (its map outputs must be
    /// forgotten): once per lost incarnation.
    pub(crate) fn report_lost(&self, executor: ExecutorId) -> bool {
        let mut state = self.state.lock();
        let Some(peer) = state.peers.get_mut(executor - self.first_id) else {
            return false;
        };
        let news = peer.losses > peer.reported;
        peer.reported = peer.losses;
        news
    }

    /// Kills `executor`'s process (SIGKILL): a real crash, detected as any other.
    ///
    /// # Errors
    /// [`Error::Config`] when the slot runs no process.
    pub(crate) fn kill(&self, executor: ExecutorId) -> Result<()> {
        let slot = executor - self.first_id;
        match &self.manager {
            Some(manager) => manager.kill_executor(slot),
            None => Err(Error::Config(format!(
                "kill_executor: executor process slot {slot} is started elsewhere (a static cluster), not by this coordinator"
            ))),
        }
    }

    /// Of `slots`, those whose process ended, with why.
    fn ended(&self, slots: &[usize]) -> Vec<(usize, String)> {
        self.manager
            .as_ref()
            .map(|m| m.ended(slots))
            .unwrap_or_default()
    }

    /// Replaces slot `slot`'s lost process through the manager (which ends it first if it
    /// still runs: cut off, not dead), up to the replacement limit.
    fn replace(&self, slot: usize) {
        let Some(manager) = &self.manager else {
            return;
        };
        let count = {
            let mut replacements = self.replacements.lock();
            replacements[slot] += 1;
            replacements[slot]
        };
        if count > MAX_REPLACEMENTS {
            tracing::error!(slot, manager = manager.name(), "Executor process lost too often ({MAX_REPLACEMENTS} replacements); running without it.");
            return;
        }
        if let Err(e) = manager.start_executor(slot, &self.advertised) {
            tracing::error!(slot, manager = manager.name(), error = %e, "Cannot replace a lost executor process.");
        }
    }

    /// Tells every process to drop the blocks of batches at or before `time_ms`.
    pub(crate) fn remove_batches_up_to(&self, time_ms: i64) {
        let mut state = self.state.lock();
        state.outputs.retain(|(s, _), _| s.0.time_ms > time_ms);
        state
            .cached
            .retain(|id, _| id.rdd_time_ms().is_none_or(|t| t > time_ms));
        for peer in &state.peers {
            if let Some(out) = &peer.out {
                let _ = out.send(ToExecutor::ClearBatches { time_ms });
            }
        }
    }

    /// Stops every process (asks, then kills what is left after 5 s) and the I/O thread.
    pub(crate) fn stop(&self) {
        {
            let mut state = self.state.lock();
            state.stopping = true;
            // Waiting seal and stop requests answer nothing (their senders dropped), and
            // waiting fetches fail now rather than after their timeout (a copy of a lost
            // replica would hold the I/O thread's runtime, which waits for it, at its end).
            state.receiver_requests.clear();
            for (_, (_, tx)) in state.fetches.drain() {
                let _ = tx.send(Err("the context stops".into()));
            }
            self.inbox.lock().take();
            for peer in &mut state.peers {
                if let Some(out) = peer.out.take() {
                    let _ = out.send(ToExecutor::Stop);
                }
            }
        }
        // Each process reads its `Stop` and closes its connection; wait for that (the I/O
        // thread must not end before the `Stop`s are written), then for the processes.
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut state = self.state.lock();
        while state.connections > 0 {
            if self.registered.wait_until(&mut state, deadline).timed_out() {
                warn!(
                    open = state.connections,
                    "Executor processes did not close their connections within 5 s of the stop."
                );
                break;
            }
        }
        drop(state);
        if let Some(manager) = &self.manager {
            manager.stop_all(Duration::from_secs(5));
        }
        self.graph.lock().take();
        if let Some(tx) = self.shutdown.lock().take() {
            let _ = tx.send(());
        }
        if let Some((_, thread)) = self.io.lock().take() {
            let _ = thread.join();
        }
    }

    /// Whether the processes' received blocks go to the receiver write-ahead log.
    fn wal_on(&self) -> bool {
        self.received_log.get().is_some_and(ReceivedLog::logs)
    }

    /// Takes slot `slot`'s incarnation `generation` as lost: fails what waits on it, forgets
    /// its map outputs, copies again the replicas it held, kills its process and starts a
    /// new one.
    fn lose(self: &Arc<Self>, slot: usize, generation: u64, reason: &str) {
        let mut state = self.state.lock();
        let peer = &mut state.peers[slot];
        if peer.generation != generation || peer.out.is_none() {
            return;
        }
        peer.out = None;
        if let Some(kick) = peer.kick.take() {
            // Closes the connection: a cut-off process must not hold it open for ever.
            kick.notify_one();
        }
        peer.losses += 1;
        let (pid, addr) = (peer.pid, peer.addr);
        let stopping = state.stopping;
        let tasks: Vec<PendingTask> = state
            .tasks
            .extract_if(|_, t| t.slot == slot)
            .map(|(_, t)| t)
            .collect();
        let fetches: Vec<_> = state
            .fetches
            .extract_if(|_, (s, _)| *s == slot)
            .map(|(_, f)| f)
            .collect();
        state.outputs.retain(|_, s| *s != slot);
        let before = state.cached.len();
        state.cached.retain(|_, s| *s != slot);
        state.peers[slot].cached_lost += (before - state.cached.len()) as u64;
        let lost_replicas = Cluster::lose_replicas(&mut state, slot, generation);
        // After the blocks and reports the process sent before: its receivers' blocks are
        // counted once those are logged.
        self.journal(ReceiverEntry::Lost { slot }, None);
        drop(state);
        for task in tasks {
            let _ = task.reply.send(TaskOutcome::ExecutorLost);
        }
        for (_, tx) in fetches {
            let _ = tx.send(Err(format!("the process was lost: {reason}")));
        }
        if stopping {
            return;
        }
        self.copy_replicas(lost_replicas);
        self.counters.executor_lost();
        warn!(
            executor = self.first_id + slot,
            pid,
            peer = ?addr,
            reason,
            "Executor process lost; its map outputs are recomputed from lineage and a new process takes its place."
        );
        self.replace(slot);
    }

    /// Replaces the processes that exited before they registered (a replacement that died
    /// at once, or was killed while starting).
    fn replace_exited(&self) {
        let waiting: Vec<usize> = {
            let state = self.state.lock();
            if state.stopping {
                return;
            }
            (0..state.peers.len())
                .filter(|&s| state.peers[s].out.is_none())
                .collect()
        };
        for (slot, why) in self.ended(&waiting) {
            warn!(
                slot,
                why, "Executor process exited before it registered; starting another."
            );
            self.replace(slot);
        }
    }

    fn hello() -> Hello {
        Hello {
            protocol: PROTOCOL_VERSION,
            build: BuildId::current().clone(),
            role: Role::Coordinator,
            name: format!("coordinator (pid {})", std::process::id()),
        }
    }

    /// Serves block `id` to an executor process: from the in-process stores, or relayed
    /// from the process that wrote it.
    fn serve_block(&self, id: &BlockId) -> BlockReply {
        let Some(blocks) = self.blocks.upgrade() else {
            return Err("the context stopped".into());
        };
        let bytes = match blocks.encoded(id) {
            Ok(Some(bytes)) => Ok(Some(bytes)),
            Ok(None) => self.fetch(id).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        bytes.map(|b| b.map(Attached::new))
    }
}

/// A block asked of an executor process, or what the coordinator knew without asking.
enum BlockRequest {
    Done(Result<Option<Vec<u8>>>),
    Sent {
        id: BlockId,
        req: u64,
        executor: ExecutorId,
        addr: Option<SocketAddr>,
        answer: std::sync::mpsc::Receiver<BlockReply>,
    },
}

impl BlockRequest {
    /// The answer, waiting at most [`FETCH_TIMEOUT`] for it.
    fn wait(self, cluster: &Cluster) -> Result<Option<Vec<u8>>> {
        let answer = match &self {
            BlockRequest::Done(_) => None,
            BlockRequest::Sent { answer, .. } => Some(answer.recv_timeout(FETCH_TIMEOUT)),
        };
        match (self, answer) {
            (BlockRequest::Done(r), _) => r,
            (sent, Some(Ok(reply))) => reply
                .map(|b| b.map(|b| b.into_vec()))
                .map_err(|e| sent.failed(e)),
            (sent, _) => {
                if let BlockRequest::Sent { req, .. } = &sent {
                    cluster.state.lock().fetches.remove(req);
                }
                Err(sent.failed(format!("no answer within {} s", FETCH_TIMEOUT.as_secs())))
            }
        }
    }

    /// The error of a failed fetch, naming the block, the process and its address.
    fn failed(&self, reason: String) -> Error {
        match self {
            BlockRequest::Sent {
                id, executor, addr, ..
            } => Error::Internal(format!(
                "fetching block {id} from executor process {executor} at {}: {reason}",
                addr.map_or("?".to_string(), |a| a.to_string())
            )),
            BlockRequest::Done(_) => Error::Internal(reason),
        }
    }
}

/// The cluster's I/O thread: accepts executor processes and watches their heartbeats.
async fn io_main(
    cluster: Weak<Cluster>,
    listener: std::net::TcpListener,
    shutdown: oneshot::Receiver<()>,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "The local cluster cannot accept executor processes.");
            return;
        }
    };
    let accept = {
        let cluster = cluster.clone();
        async move {
            loop {
                match listener.accept().await {
                    Ok((stream, _)) => {
                        tokio::task::spawn_local(serve(cluster.clone(), stream));
                    }
                    Err(e) => warn!(error = %e, "Cannot accept an executor process."),
                }
            }
        }
    };
    let monitor = async move {
        let Some(timeout) = cluster.upgrade().map(|c| c.timeout) else {
            return;
        };
        let mut tick = tokio::time::interval(timeout / 4);
        loop {
            tick.tick().await;
            let Some(c) = cluster.upgrade() else { return };
            let silent: Vec<(usize, u64)> = {
                let state = c.state.lock();
                state
                    .peers
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| {
                        p.out.is_some() && p.last_seen.is_some_and(|t| t.elapsed() > timeout)
                    })
                    .map(|(s, p)| (s, p.generation))
                    .collect()
            };
            for (slot, generation) in silent {
                c.lose(
                    slot,
                    generation,
                    &format!("no heartbeat within {timeout:?}"),
                );
            }
            c.replace_exited();
        }
    };
    let local = tokio::task::LocalSet::new();
    local
        .run_until(async move {
            tokio::select! {
                _ = accept => {}
                _ = monitor => {}
                _ = shutdown => {}
            }
        })
        .await;
}

/// One executor process's connection: registration, then its messages until it breaks.
async fn serve(cluster: Weak<Cluster>, stream: tokio::net::TcpStream) {
    let options = TransportOptions::default();
    let connection = match Connection::accept(stream, &Cluster::hello(), options).await {
        Ok(c) => c,
        Err(e) => {
            warn!(error = %e, "Refused an executor process.");
            return;
        }
    };
    let addr = connection.peer();
    let (mut sender, mut receiver) = connection.split();
    let (slot, pid) = match protocol::recv::<ToCoordinator>(&mut receiver)
        .await
        .map(|(m, _)| m)
    {
        Ok(ToCoordinator::Register { slot, pid, threads }) => {
            info!(slot, pid, threads, peer = %addr, "Executor process registered.");
            (slot, pid)
        }
        Ok(other) => {
            warn!(peer = %addr, message = ?other, "An executor process sent something before registering; refused.");
            return;
        }
        Err(e) => {
            warn!(peer = %addr, error = %e, "An executor process did not register.");
            return;
        }
    };
    let (out, mut out_rx) = mpsc::unbounded_channel::<ToExecutor>();
    let kick = Arc::new(tokio::sync::Notify::new());
    let generation = {
        let Some(c) = cluster.upgrade() else { return };
        let (zero_time_ms, state_partitions) = match c.graph.lock().as_ref() {
            Some(g) => (
                g.zero_time().unwrap_or(Time::ZERO).as_ms(),
                g.state_partitions(),
            ),
            None => (Time::ZERO.as_ms(), Vec::new()),
        };
        let mut state = c.state.lock();
        if state.stopping {
            return;
        }
        let Some(peer) = state.peers.get_mut(slot) else {
            warn!(slot, peer = %addr, "An executor process named a slot this cluster does not have; refused.");
            return;
        };
        if peer.out.is_some() {
            warn!(slot, peer = %addr, "A second executor process for a slot in use; refused.");
            return;
        }
        let _ = out.send(ToExecutor::Welcome {
            executor: c.first_id + slot,
            zero_time_ms,
            state_partitions,
        });
        peer.out = Some(out.clone());
        peer.kick = Some(kick.clone());
        peer.pid = Some(pid);
        peer.addr = Some(addr);
        peer.last_seen = Some(Instant::now());
        peer.generation += 1;
        let generation = peer.generation;
        state.connections += 1;
        // After the loss of the process before: its receivers resume after the blocks
        // counted for it.
        c.journal(ReceiverEntry::Start { slot }, None);
        drop(state);
        c.registered.notify_all();
        generation
    };
    // Counts the connection closed however this function returns.
    struct Open(Weak<Cluster>);
    impl Drop for Open {
        fn drop(&mut self) {
            if let Some(c) = self.0.upgrade() {
                c.state.lock().connections -= 1;
                c.registered.notify_all();
            }
        }
    }
    let _open = Open(cluster.clone());
    let counted = cluster.clone();
    tokio::task::spawn_local(async move {
        while let Some(mut message) = out_rx.recv().await {
            let stop = matches!(message, ToExecutor::Stop);
            let Ok(bytes) = protocol::send(&mut sender, &mut message).await else {
                break;
            };
            if let Some(c) = counted.upgrade() {
                c.state.lock().peers[slot].bytes_sent += bytes as u64;
            }
            if stop {
                break;
            }
        }
    });
    loop {
        let message = tokio::select! {
            m = protocol::recv::<ToCoordinator>(&mut receiver) => m,
            () = kick.notified() => return,
        };
        let Some(c) = cluster.upgrade() else { return };
        let message = match message {
            Ok((m, bytes)) => {
                c.state.lock().peers[slot].bytes_received += bytes as u64;
                m
            }
            Err(e) => {
                c.lose(slot, generation, &e.to_string());
                return;
            }
        };
        if let Some(peer) = c.state.lock().peers.get_mut(slot) {
            if peer.generation == generation {
                peer.last_seen = Some(Instant::now());
            }
        }
        match message {
            ToCoordinator::Heartbeat => {
                let _ = out.send(ToExecutor::Heartbeat);
            }
            ToCoordinator::Cached { id } => {
                c.state.lock().cached.insert(id, slot);
            }
            ToCoordinator::Register { .. } => {}
            ToCoordinator::TaskDone {
                req,
                outcome,
                reads,
            } => {
                let pending = c.state.lock().tasks.remove(&req);
                if let Some(task) = pending {
                    // Before the outcome: the batch's report must hold them when the stage
                    // (and the batch) completes.
                    if let (Some(t), false) = (task.batch, reads.is_empty()) {
                        if let Some(graph) = c.graph.lock().as_ref() {
                            graph.merge_input_reads(t, reads);
                        }
                    }
                    if let (RemoteOutcome::MapOutput(_), Some(output)) = (&outcome, task.output) {
                        let mut state = c.state.lock();
                        state.outputs.insert(output, slot);
                        state.peers[slot].map_tasks += 1;
                    }
                    if let RemoteOutcome::Cached = outcome {
                        c.state.lock().peers[slot].cache_tasks += 1;
                    }
                    let _ = task.reply.send(outcome.into_outcome());
                }
            }
            ToCoordinator::FetchBlock { req, id } => {
                let (served, out) = (c.clone(), out.clone());
                tokio::task::spawn_blocking(move || {
                    let reply = served.serve_block(&id);
                    let _ = out.send(ToExecutor::Block { req, reply });
                });
            }
            ToCoordinator::Block { req, reply } => {
                let waiting = c.state.lock().fetches.remove(&req);
                if let Some((_, tx)) = waiting {
                    let _ = tx.send(reply);
                }
            }
            ToCoordinator::Received {
                info,
                continues,
                bytes,
            } => c.received(slot, generation, info, continues, bytes.into_vec()),
            ToCoordinator::ReplicaStored { req, id } => {
                c.replica_stored(slot, generation, req, id);
            }
            ToCoordinator::BlocksStored { stream, sealed } => {
                c.reported(slot, generation, stream, sealed, None);
            }
            ToCoordinator::Sealed { req, sealed } => {
                let stream = c.state.lock().receiver_requests.get(&req).map(|r| r.stream);
                if let Some(stream) = stream {
                    c.reported(slot, generation, stream, sealed, Some(req));
                }
            }
            ToCoordinator::ReceiverStopped { req } => {
                Cluster::answer_receiver(&mut c.state.lock(), req, None);
            }
            ToCoordinator::ReceiverEvent(event) => c.forward_event(event),
            ToCoordinator::ReceiverCounters(counters) => {
                Cluster::record_counters(&mut c.state.lock(), counters)
            }
        }
    }
}

/// How often a heartbeat is sent, both ways, for a heartbeat `timeout`: a quarter of it.
pub(crate) fn heartbeat_interval(timeout: Duration) -> Duration {
    timeout / 4
}
