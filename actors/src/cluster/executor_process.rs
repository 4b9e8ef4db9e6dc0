//! The executor role of a program (Spark's `CoarseGrainedExecutorBackend`): connect to the
//! coordinator, run the map tasks it sends on task threads and the receivers it places
//! here, hold the replicas of other processes' received blocks, serve the blocks they
//! wrote, send heartbeats, and exit when the coordinator stops or goes away.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use parking_lot::Mutex;
use rivulet_framework::block::{Block, BlockData, BlockEncoder, BlockId, BlockInfo, ExecutorId};
use rivulet_framework::cluster_manager::{ENV_COORDINATOR, ENV_SLOT};
use rivulet_framework::config::StreamingConfig;
use rivulet_framework::dstream::{BatchInput, DStreamGraph};
use rivulet_framework::scheduler::{
    run_task, BlockAccess, StageRunnable, TaskContext, TaskDescription, TaskFailure, TaskKind,
    TaskOutcome,
};
use rivulet_framework::time::Time;
use rivulet_framework::{Error, Result};
use tokio::sync::mpsc;
use tracing::{error, info};

use super::process_receivers::ProcessReceivers;
use super::protocol::{self, Attached, BlockReply, RemoteOutcome, ToCoordinator, ToExecutor};
use crate::batch_builder::ReceivedBlockStore;
use crate::supervision::RestartPolicy;
use crate::transport::{BuildId, Connection, Hello, Role, TransportOptions, PROTOCOL_VERSION};

/// How long an executor process waits for a block it asked the coordinator for.
const FETCH_TIMEOUT: Duration = Duration::from_secs(30);
/// How long an executor process keeps trying to reach a coordinator that refuses
/// connections (one not started yet, or restarting).
const CONNECT_FOR: Duration = Duration::from_secs(60);

/// A program started as an executor process: where its coordinator is and which slot it
/// fills. Read from the environment (`RIVULET_EXECUTOR_OF=host:port`,
/// `RIVULET_EXECUTOR_SLOT=n`), which the coordinator's cluster manager sets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecutorRole {
    /// The coordinator's address.
    pub coordinator: String,
    /// The slot this process fills.
    pub slot: usize,
}

impl ExecutorRole {
    /// The role this process was started in, if it is an executor process.
    ///
    /// # Errors
    /// [`Error::Config`] naming the variable when `RIVULET_EXECUTOR_SLOT` is missing or not
    /// a number while `RIVULET_EXECUTOR_OF` is set.
    pub fn from_env() -> Result<Option<ExecutorRole>> {
        let Ok(coordinator) = std::env::var(ENV_COORDINATOR) else {
            return Ok(None);
        };
        let slot = std::env::var(ENV_SLOT)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| {
                Error::Config(format!(
                    "{ENV_COORDINATOR} is set, so this is an executor process, but {ENV_SLOT} is missing or not a number"
                ))
            })?;
        Ok(Some(ExecutorRole { coordinator, slot }))
    }
}

/// Runs this process as executor process `role` for `graph` (the program's own DStream
/// graph, built as the coordinator built it) with `config`'s task threads
/// ([`executors`](StreamingConfig::executors)) and heartbeat timeout. Never returns: the
/// process exits with status 0 when the coordinator stops it, and 1 when the coordinator
/// cannot be reached, refuses it, or goes away (logged naming its address).
pub fn run_executor(graph: DStreamGraph, config: &StreamingConfig, role: ExecutorRole) -> ! {
    let settings = Settings {
        threads: config.get_executors(),
        heartbeat_timeout: config.get_heartbeat_timeout(),
        block_interval: (!config.is_manual_clock()).then(|| config.get_block_interval()),
        policy: RestartPolicy::new(
            config.get_receiver_max_restarts(),
            config.get_receiver_restart_delay(),
        ),
    };
    // Its own thread and runtime: the caller may be inside one (`start` is async).
    let run = move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build();
        match runtime {
            Ok(rt) => match rt.block_on(serve(graph, settings, &role)) {
                Ok(()) => 0,
                Err(e) => {
                    error!(coordinator = %role.coordinator, slot = role.slot, error = %e, "Executor process ends.");
                    1
                }
            },
            Err(e) => {
                error!(error = %e, "Executor process cannot start its runtime.");
                1
            }
        }
    };
    let code = std::thread::Builder::new()
        .name("rivulet-executor-process".into())
        .spawn(run)
        .map_err(|e| error!(error = %e, "Executor process cannot start its thread."))
        .and_then(|t| t.join().map_err(|_| error!("Executor process panicked.")))
        .unwrap_or(1);
    std::process::exit(code)
}

/// What an executor process takes from the program's configuration.
struct Settings {
    /// Task threads.
    threads: usize,
    heartbeat_timeout: Duration,
    /// Its receivers' block interval (`None` under the manual clock).
    block_interval: Option<Duration>,
    /// Its receivers' restart policy.
    policy: RestartPolicy,
}

/// What a task thread is handed.
struct Job {
    req: u64,
    task: TaskDescription,
    input: BatchInput,
}

/// Connects to the coordinator, retrying for [`CONNECT_FOR`] while it refuses.
async fn connect(role: &ExecutorRole, hello: &Hello) -> Result<Connection> {
    let deadline = tokio::time::Instant::now() + CONNECT_FOR;
    // The process that started this one: a local cluster's coordinator (which says its
    // pid: it may have died before this line), or a supervisor (systemd, a container's
    // init) that stays.
    let parent = std::env::var(super::local_processes::ENV_PARENT)
        .ok()
        .and_then(|p| p.parse().ok())
        .or_else(parent_pid);
    loop {
        match Connection::connect(&role.coordinator, hello, TransportOptions::default()).await {
            Err(crate::transport::TransportError::Connect { .. })
                if tokio::time::Instant::now() < deadline =>
            {
                if parent_pid() != parent {
                    // Its coordinator died before it registered (this process was adopted):
                    // nobody will ever listen, and it must not linger for the full minute.
                    return Err(Error::Crashed {
                        component: format!("the coordinator at {}", role.coordinator),
                        reason: "it went away (the process that started this one ended) before \
                                 this executor process registered"
                            .into(),
                    });
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            connected => return Ok(connected?),
        }
    }
}

/// This process's parent's id (`None` where unknown).
fn parent_pid() -> Option<u32> {
    #[cfg(unix)]
    return Some(std::os::unix::process::parent_id());
    #[cfg(not(unix))]
    None
}

async fn serve(graph: DStreamGraph, settings: Settings, role: &ExecutorRole) -> Result<()> {
    let (threads, timeout) = (settings.threads, settings.heartbeat_timeout);
    let hello = Hello {
        protocol: PROTOCOL_VERSION,
        build: BuildId::current().clone(),
        role: Role::Executor,
        name: format!(
            "executor process {} (pid {})",
            role.slot,
            std::process::id()
        ),
    };
    let mut connection = connect(role, &hello).await?;
    connection
        .send(&ToCoordinator::Register {
            slot: role.slot,
            pid: std::process::id(),
            threads,
        })
        .await?;
    let (executor, zero_time_ms) = match connection.recv::<ToExecutor>().await? {
        ToExecutor::Welcome {
            executor,
            zero_time_ms,
            state_partitions,
        } => {
            graph.adopt_state_partitions(&state_partitions)?;
            (executor, zero_time_ms)
        }
        ToExecutor::Stop => return Ok(()),
        other => {
            return Err(Error::Internal(format!(
                "the coordinator sent {other:?} before its welcome"
            )))
        }
    };
    let receivers = graph.start_as_executor(Time::from_ms(zero_time_ms))?;
    info!(executor, slot = role.slot, threads, coordinator = %role.coordinator, "Executor process running.");
    let peer = connection.peer();
    let (mut sender, mut receiver) = connection.split();
    let (out, mut out_rx) = mpsc::unbounded_channel::<ToCoordinator>();
    let blocks = Arc::new(ProcessBlocks {
        store: DashMap::new(),
        replicas: DashMap::new(),
        out: out.clone(),
        fetches: Mutex::new(HashMap::new()),
        next_req: AtomicU64::new(0),
    });
    let receivers = ProcessReceivers::new(
        receivers,
        out.clone(),
        blocks.clone(),
        settings.block_interval,
        settings.policy,
    );
    let (jobs, job_rx) = std::sync::mpsc::channel::<Job>();
    let job_rx = Arc::new(Mutex::new(job_rx));
    for i in 0..threads.max(1) {
        let (graph, blocks, out, job_rx) =
            (graph.clone(), blocks.clone(), out.clone(), job_rx.clone());
        std::thread::Builder::new()
            .name(format!("rivulet-task-{i}"))
            .spawn(move || loop {
                let job = job_rx.lock().recv();
                let Ok(job) = job else { return };
                let batch = job.task.batch_time;
                let outcome = run_process_task(&graph, executor, &blocks, job.task, job.input);
                let reads = batch.map(|t| graph.take_input_reads(t)).unwrap_or_default();
                let _ = out.send(ToCoordinator::TaskDone {
                    req: job.req,
                    outcome: RemoteOutcome::from_outcome(outcome),
                    reads,
                });
            })
            .map_err(|e| Error::Internal(format!("cannot start a task thread: {e}")))?;
    }
    let writer = async move {
        while let Some(mut message) = out_rx.recv().await {
            protocol::send(&mut sender, &mut message).await?;
        }
        Ok::<(), crate::transport::TransportError>(())
    };
    // The last time the coordinator was heard from: silent past `timeout`, it is gone (a
    // cut link does not close the connection).
    let heard = std::cell::Cell::new(tokio::time::Instant::now());
    let beats = async {
        let mut tick = tokio::time::interval(super::heartbeat_interval(timeout));
        loop {
            tick.tick().await;
            if heard.get().elapsed() > timeout {
                return;
            }
            if out.send(ToCoordinator::Heartbeat).is_err() {
                return;
            }
            receivers.report_counters();
        }
    };
    let reader = async {
        loop {
            let (message, _) = protocol::recv::<ToExecutor>(&mut receiver).await?;
            heard.set(tokio::time::Instant::now());
            match message {
                ToExecutor::RunTask { req, task, input } => {
                    let _ = jobs.send(Job { req, task, input });
                }
                ToExecutor::FetchBlock { req, id } => {
                    let reply = blocks.encoded(&id);
                    let _ = out.send(ToCoordinator::Block { req, reply });
                }
                ToExecutor::Block { req, reply } => blocks.answer(req, reply),
                ToExecutor::ClearBatches { time_ms } => {
                    blocks
                        .store
                        .retain(|id, _| id.rdd_time_ms().is_none_or(|t| t > time_ms));
                }
                ToExecutor::StartReceiver {
                    stream,
                    next_seq,
                    offset,
                    rate,
                    capacity,
                } => receivers.start(stream, (next_seq, offset), rate, capacity),
                ToExecutor::BlocksDurable { stream, next_seq } => {
                    receivers.durable(stream, next_seq)
                }
                ToExecutor::SealReceiver { req, stream } => receivers.seal(req, stream),
                ToExecutor::StopReceiver { req, stream } => receivers.stop(req, stream),
                ToExecutor::ReceiverControl { stream, control } => {
                    receivers.control(stream, control)
                }
                ToExecutor::DropBlocks { ids } => {
                    for id in ids {
                        blocks.store.remove(&id);
                        blocks.replicas.remove(&id);
                    }
                }
                ToExecutor::StoreReplica { req, id, bytes } => {
                    blocks.replicas.insert(id, bytes.into_vec());
                    let _ = out.send(ToCoordinator::ReplicaStored { req, id });
                }
                ToExecutor::Stop => return Ok::<(), crate::transport::TransportError>(()),
                ToExecutor::Welcome { .. } | ToExecutor::Heartbeat => {}
            }
        }
    };
    let ended = tokio::select! {
        r = reader => r,
        r = writer => r.and(Err(crate::transport::TransportError::Closed { peer })),
        () = beats => Err(crate::transport::TransportError::Timeout {
            peer,
            after: timeout,
            what: "the coordinator's heartbeat".into(),
        }),
    };
    match ended {
        Ok(()) => {
            info!(executor, "Executor process stopped by its coordinator.");
            Ok(())
        }
        Err(e) => Err(Error::Crashed {
            component: format!("the coordinator at {peer}"),
            reason: format!("it went away: {e}"),
        }),
    }
}

/// Runs one map or cache task: finds its shuffle or RDD in the batch this process
/// generates, and runs it.
fn run_process_task(
    graph: &DStreamGraph,
    executor: ExecutorId,
    blocks: &Arc<ProcessBlocks>,
    task: TaskDescription,
    input: BatchInput,
) -> TaskOutcome {
    let failed = |message: String| {
        TaskOutcome::Failed(TaskFailure {
            operator: "executor process".into(),
            message,
            fetch_failed: None,
            retryable: false,
        })
    };
    let Some(t) = task.batch_time else {
        return failed(format!("task {task:?} is not a task of a batch"));
    };
    let stage =
        match (task.kind, task.shuffle, task.rdd) {
            (TaskKind::ShuffleMap, Some(shuffle), _) => graph
                .executor_shuffle(t, input, shuffle)
                .map(|dep| StageRunnable::ShuffleMap {
                    op: dep.parent().meta().op(),
                    dep,
                }),
            (TaskKind::Cache, _, Some(id)) => {
                graph
                    .executor_rdd(t, input, id)
                    .map(|rdd| StageRunnable::Cache {
                        op: rdd.meta().op(),
                        rdd,
                    })
            }
            _ => return failed(format!("task {task:?} is not a map or cache task")),
        };
    let stage = match stage {
        Ok(stage) => stage,
        Err(e) => return failed(e.to_string()),
    };
    let access: Arc<dyn BlockAccess> = blocks.clone();
    run_task(&stage, &task, &TaskContext::new(&task, executor, access))
}

/// The executor process's block store; blocks it does not hold are fetched from the
/// coordinator.
struct ProcessBlocks {
    store: DashMap<BlockId, (BlockData, BlockEncoder)>,
    /// The replicas of other processes' received blocks it holds (their encoded bytes).
    replicas: DashMap<BlockId, Vec<u8>>,
    out: mpsc::UnboundedSender<ToCoordinator>,
    fetches: Mutex<HashMap<u64, std::sync::mpsc::Sender<BlockReply>>>,
    next_req: AtomicU64,
}

impl ProcessBlocks {
    /// Block `id` as its encoder writes it, or its replica held here.
    fn encoded(&self, id: &BlockId) -> BlockReply {
        let found = self.store.get(id).map(|b| b.value().clone());
        match found {
            Some((data, encode)) => encode(id, &data)
                .map(|b| Some(Attached::new(b)))
                .map_err(|e| e.to_string()),
            None => Ok(self.replica(id).map(Attached::new)),
        }
    }

    /// The replica of received block `id`, if held here.
    fn replica(&self, id: &BlockId) -> Option<Vec<u8>> {
        self.replicas.get(id).map(|b| b.value().clone())
    }

    fn answer(&self, req: u64, reply: BlockReply) {
        if let Some(tx) = self.fetches.lock().remove(&req) {
            let _ = tx.send(reply);
        }
    }

    /// Asks the coordinator for block `id` (it serves it or relays it from the process
    /// that holds it), unless its replica is held here; the answer is awaited with
    /// [`CoordinatorFetch::wait`].
    fn request(&self, id: &BlockId) -> CoordinatorFetch {
        if let Some(bytes) = self.replica(id) {
            return CoordinatorFetch::Held(bytes);
        }
        let req = self.next_req.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = std::sync::mpsc::channel();
        self.fetches.lock().insert(req, tx);
        if self
            .out
            .send(ToCoordinator::FetchBlock { req, id: *id })
            .is_err()
        {
            self.fetches.lock().remove(&req);
            return CoordinatorFetch::Failed(Error::Internal(
                "the coordinator connection is closed".into(),
            ));
        }
        CoordinatorFetch::Sent {
            id: *id,
            req,
            answer: rx,
        }
    }
}

/// A block asked of the coordinator, or found here as a replica.
enum CoordinatorFetch {
    Held(Vec<u8>),
    Sent {
        id: BlockId,
        req: u64,
        answer: std::sync::mpsc::Receiver<BlockReply>,
    },
    Failed(Error),
}

impl CoordinatorFetch {
    /// The answer, waiting at most [`FETCH_TIMEOUT`] for it.
    fn wait(self, blocks: &ProcessBlocks) -> Result<Option<Vec<u8>>> {
        let (id, req, answer) = match self {
            CoordinatorFetch::Failed(e) => return Err(e),
            CoordinatorFetch::Held(bytes) => return Ok(Some(bytes)),
            CoordinatorFetch::Sent { id, req, answer } => (id, req, answer),
        };
        match answer.recv_timeout(FETCH_TIMEOUT) {
            Ok(reply) => reply.map(|b| b.map(|b| b.into_vec())).map_err(|e| {
                Error::Internal(format!("fetching block {id} from the coordinator: {e}"))
            }),
            Err(_) => {
                blocks.fetches.lock().remove(&req);
                Err(Error::Internal(format!(
                    "fetching block {id} from the coordinator: no answer within {} s",
                    FETCH_TIMEOUT.as_secs()
                )))
            }
        }
    }
}

/// A block a receiver of this process sealed stays here (its map tasks are placed here),
/// and its replica goes to the coordinator, which keeps it or relays it to another process
/// (read from there when this process is lost), logs it (with the write-ahead log on) and
/// confirms it once its replica is held ([`ToExecutor::BlocksDurable`]): only then may the
/// receiver acknowledge its source.
impl ReceivedBlockStore for ProcessBlocks {
    fn put_received(&self, block: Block, encode: BlockEncoder) {
        let Block {
            id,
            data,
            num_records,
            offset,
            continues,
        } = block;
        let stream = match id {
            BlockId::Input { stream, .. } => stream,
            _ => unreachable!("receivers store input blocks only, not {id}"),
        };
        match encode(&id, &data) {
            Ok(bytes) => {
                let info = BlockInfo {
                    id,
                    stream,
                    num_records,
                    offset,
                };
                let _ = self.out.send(ToCoordinator::Received {
                    info,
                    continues,
                    bytes: Attached::new(bytes),
                });
            }
            // Never confirmed: a reliable store waits until the context stops, and its
            // records are not acknowledged.
            Err(e) => {
                error!(block = %id, error = %e, "Cannot encode a received block for its replica; the coordinator will not hold one.")
            }
        }
        self.store.insert(id, (data, encode));
    }

    fn confirms_later(&self) -> bool {
        true
    }
}

impl BlockAccess for ProcessBlocks {
    fn get(&self, id: &BlockId) -> Option<BlockData> {
        self.store.get(id).map(|b| b.value().0.clone())
    }
    fn put(&self, id: BlockId, data: BlockData, encode: BlockEncoder) {
        let cached = matches!(id, BlockId::Rdd { .. });
        self.store.insert(id, (data, encode));
        if cached {
            let _ = self.out.send(ToCoordinator::Cached { id });
        }
    }
    fn fetch(&self, id: &BlockId) -> Result<Option<Vec<u8>>> {
        self.request(id).wait(self)
    }
    fn fetch_many<'a>(
        &'a self,
        ids: &'a [BlockId],
    ) -> Box<dyn Iterator<Item = Result<Option<Vec<u8>>>> + 'a> {
        let requests: Vec<CoordinatorFetch> = ids.iter().map(|id| self.request(id)).collect();
        Box::new(requests.into_iter().map(move |r| r.wait(self)))
    }
}
