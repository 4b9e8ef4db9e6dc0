//! The messages between the coordinator and an executor process, one per frame of a
//! [`Connection`](crate::transport::Connection). Closures never travel: a task names its
//! shuffle and batch, and the executor finds them in the DStream graph it built itself.

use rivulet_framework::block::{BlockId, BlockInfo, ExecutorId, StreamId};
use rivulet_framework::dstream::{BatchInput, DStreamId, InputReads};
use rivulet_framework::rdd::{MapStatus, ShuffleId};
use rivulet_framework::receiver::ReceiverMetrics;
use rivulet_framework::scheduler::{TaskDescription, TaskFailure, TaskOutcome};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::messages::{ReceiverEvent, SealedBlock};
use crate::transport::{ConnectionReceiver, ConnectionSender, TransportError};

/// Coordinator → executor process.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum ToExecutor {
    /// The answer to [`ToCoordinator::Register`]: the executor id the process runs as, the
    /// run's zero time (ms), with which its graph cuts batches as the coordinator's, and
    /// each stateful stream's state partition count as the coordinator resolved it (a
    /// restored checkpoint's), which the process adopts.
    Welcome {
        executor: ExecutorId,
        zero_time_ms: i64,
        state_partitions: Vec<(DStreamId, usize)>,
    },
    /// Run map task `task`; `input` is its batch's input as the coordinator cut it (its
    /// blocks, all streams, and its polled inputs' splits).
    RunTask {
        req: u64,
        task: TaskDescription,
        input: BatchInput,
    },
    /// Send block `id` back as [`ToCoordinator::Block`].
    FetchBlock { req: u64, id: BlockId },
    /// The answer to [`ToCoordinator::FetchBlock`].
    Block { req: u64, reply: BlockReply },
    /// Drop the shuffle and cached blocks of batches at or before `time_ms`.
    ClearBatches { time_ms: i64 },
    /// Run the receiver of input stream `stream` (of the graph the process built), its
    /// blocks numbered from `next_seq`, its source resumed at `offset` (the newest source
    /// offset of a block the coordinator counted, `BlockSink::resume_offset`), limited to
    /// `rate` records/s (`None`: no limit) and `capacity` records stored and not yet
    /// finished.
    StartReceiver {
        stream: StreamId,
        next_seq: u64,
        offset: Option<Vec<u8>>,
        rate: Option<f64>,
        capacity: usize,
    },
    /// The blocks of receiver `stream` numbered below `next_seq` are stored for good: their
    /// replicas are held, by another process or the coordinator (and the coordinator logged
    /// them, with the receiver write-ahead log on). The receiver may acknowledge its source
    /// for them (`store_reliably` returns).
    BlocksDurable { stream: StreamId, next_seq: u64 },
    /// Seal what receiver `stream` stored into blocks now (the manual clock, and the
    /// stop); answered by [`ToCoordinator::Sealed`].
    SealReceiver { req: u64, stream: StreamId },
    /// Stop receiver `stream`; answered by [`ToCoordinator::ReceiverStopped`] once it
    /// stopped (its last event is sent before).
    StopReceiver { req: u64, stream: StreamId },
    /// Backpressure on receiver `stream`.
    ReceiverControl {
        stream: StreamId,
        control: ReceiverControl,
    },
    /// Drop these received blocks or replicas (no batch needs them any more).
    DropBlocks { ids: Vec<BlockId> },
    /// Hold the replica of block `id`, which another process's receiver stored (its bytes,
    /// as its stream's encoder wrote them, attached); answered by
    /// [`ToCoordinator::ReplicaStored`] once held.
    StoreReplica {
        req: u64,
        id: BlockId,
        bytes: Attached,
    },
    /// The answer to [`ToCoordinator::Heartbeat`]: the coordinator is there (an executor
    /// that hears nothing within the heartbeat timeout exits).
    Heartbeat,
    /// The context stops: exit once this is read.
    Stop,
}

/// Executor process → coordinator.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum ToCoordinator {
    /// The first message: which local-cluster slot the process fills, its pid and task
    /// threads.
    Register {
        slot: usize,
        pid: u32,
        threads: usize,
    },
    /// What became of [`ToExecutor::RunTask`] `req`, and what the process's tasks read of
    /// the batch's polled inputs since the last report (merged into the batch's report
    /// before the outcome is delivered).
    TaskDone {
        req: u64,
        outcome: RemoteOutcome,
        reads: Vec<InputReads>,
    },
    /// Send block `id` as [`ToExecutor::Block`].
    FetchBlock { req: u64, id: BlockId },
    /// The answer to [`ToExecutor::FetchBlock`].
    Block { req: u64, reply: BlockReply },
    /// Alive (sent every quarter of the heartbeat timeout).
    Heartbeat,
    /// The process now holds cached partition `id` (an RDD block), which the coordinator's
    /// executors may fetch.
    Cached { id: BlockId },
    /// A block a receiver of this process stored (`info`; `continues`: it holds the
    /// beginning of a reliable store that goes on in a later block), and its replica's
    /// bytes (as its stream's encoder wrote them, attached), which the coordinator keeps or
    /// relays to another process; sent before the block is reported. Answered by
    /// [`ToExecutor::BlocksDurable`] once its replica is held for good.
    Received {
        info: BlockInfo,
        continues: bool,
        bytes: Attached,
    },
    /// The answer to [`ToExecutor::StoreReplica`] `req`: the replica of block `id` is held.
    ReplicaStored { req: u64, id: BlockId },
    /// A receiver's builder sealed blocks on its own timer.
    BlocksStored {
        stream: StreamId,
        sealed: SealedBlock,
    },
    /// The answer to [`ToExecutor::SealReceiver`].
    Sealed { req: u64, sealed: SealedBlock },
    /// The answer to [`ToExecutor::StopReceiver`].
    ReceiverStopped { req: u64 },
    /// A receiver of this process started, failed, stopped or gave up.
    ReceiverEvent(ReceiverEvent),
    /// The counters of this process's receivers (sent with each heartbeat).
    ReceiverCounters(Vec<(StreamId, ReceiverMetrics)>),
}

/// Backpressure on a receiver in an executor process: what the coordinator's
/// `BufferControl` calls become.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub(crate) enum ReceiverControl {
    /// Free room for this many records, whose batch finished.
    Release(usize),
    /// Limit stores to this many records per second (`None`: no limit).
    Rate(Option<f64>),
    /// Bound the stored-but-unfinished records at this many.
    Capacity(usize),
}

/// A block asked for: its bytes as its encoder wrote them, `None` when the peer does not
/// hold it, or why it could not be read.
pub(crate) type BlockReply = Result<Option<Attached>, String>;

/// A block's bytes, which travel as a raw frame after the frame of the message that holds
/// them ([`ConnectionSender::send_with_payload`]): the message itself carries only their
/// length. So the encoder's bytes are written to the socket as they are, and read from it
/// into a buffer of their size, instead of being copied into and out of the message's
/// MessagePack.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct Attached {
    len: u64,
    /// Filled by [`recv`] from the frame after the message.
    #[serde(skip)]
    bytes: Vec<u8>,
}

impl Attached {
    /// `bytes`, to be sent after their message.
    pub(crate) fn new(bytes: Vec<u8>) -> Attached {
        Attached {
            len: bytes.len() as u64,
            bytes,
        }
    }

    /// The bytes.
    pub(crate) fn into_vec(self) -> Vec<u8> {
        self.bytes
    }
}

/// A message that may hold an [`Attached`] block.
pub(crate) trait WithAttachment {
    /// The attached block, if the message holds one.
    fn attached(&mut self) -> Option<&mut Attached>;
}

impl WithAttachment for ToExecutor {
    fn attached(&mut self) -> Option<&mut Attached> {
        match self {
            ToExecutor::Block {
                reply: Ok(Some(a)), ..
            } => Some(a),
            ToExecutor::StoreReplica { bytes, .. } => Some(bytes),
            _ => None,
        }
    }
}

impl WithAttachment for ToCoordinator {
    fn attached(&mut self) -> Option<&mut Attached> {
        match self {
            ToCoordinator::Block {
                reply: Ok(Some(a)), ..
            } => Some(a),
            ToCoordinator::Received { bytes, .. } => Some(bytes),
            _ => None,
        }
    }
}

/// Sends `message`, then its attached block's bytes as the next frame; returns the bytes
/// of both frames (without length prefixes).
///
/// # Errors
/// As [`ConnectionSender::send_with_payload`].
pub(crate) async fn send<M: Serialize + WithAttachment>(
    sender: &mut ConnectionSender,
    message: &mut M,
) -> Result<usize, TransportError> {
    let bytes = message.attached().map(|a| std::mem::take(&mut a.bytes));
    sender.send_with_payload(message, bytes.as_deref()).await
}

/// The next message and its attached block's bytes, if it holds one; returns it with the
/// bytes of both frames (without length prefixes).
///
/// # Errors
/// As [`ConnectionReceiver::recv`] and [`ConnectionReceiver::recv_payload`].
pub(crate) async fn recv<M: DeserializeOwned + WithAttachment>(
    receiver: &mut ConnectionReceiver,
) -> Result<(M, usize), TransportError> {
    let (mut message, mut bytes) = receiver.recv::<M>().await?;
    if let Some(attached) = message.attached() {
        let len = usize::try_from(attached.len).unwrap_or(usize::MAX);
        attached.bytes = receiver.recv_payload(len).await?;
        bytes += len;
    }
    Ok((message, bytes))
}

/// A map task's outcome as it travels.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum RemoteOutcome {
    /// The map output, whose buckets stay in the executor process's block store.
    MapOutput(MapStatus),
    /// The cache task's partition is in the executor process's block store (reported by
    /// [`ToCoordinator::Cached`] before this).
    Cached,
    /// The task failed.
    Failed {
        operator: String,
        message: String,
        fetch_failed: Option<(ShuffleId, usize)>,
        retryable: bool,
    },
}

impl RemoteOutcome {
    /// What an executor process sends for `outcome`.
    pub(crate) fn from_outcome(outcome: TaskOutcome) -> RemoteOutcome {
        match outcome {
            TaskOutcome::MapOutput(status) => RemoteOutcome::MapOutput(status),
            TaskOutcome::Cached => RemoteOutcome::Cached,
            TaskOutcome::Failed(f) => RemoteOutcome::Failed {
                operator: f.operator,
                message: f.message,
                fetch_failed: f.fetch_failed,
                retryable: f.retryable,
            },
            TaskOutcome::Result(_) => RemoteOutcome::Failed {
                operator: "executor process".into(),
                message: "a result task was sent to an executor process".into(),
                fetch_failed: None,
                retryable: false,
            },
            TaskOutcome::ExecutorLost => RemoteOutcome::Failed {
                operator: "executor process".into(),
                message: "the executor process is stopping".into(),
                fetch_failed: None,
                retryable: true,
            },
        }
    }

    /// The outcome the scheduler sees.
    pub(crate) fn into_outcome(self) -> TaskOutcome {
        match self {
            RemoteOutcome::MapOutput(status) => TaskOutcome::MapOutput(status),
            RemoteOutcome::Cached => TaskOutcome::Cached,
            RemoteOutcome::Failed {
                operator,
                message,
                fetch_failed,
                retryable,
            } => TaskOutcome::Failed(TaskFailure {
                operator,
                message,
                fetch_failed,
                retryable,
            }),
        }
    }
}
