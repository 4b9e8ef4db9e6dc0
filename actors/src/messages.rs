//! The messages between rivulet's actors, one struct each. Commands are imperative
//! (`RunTask`), notifications past tense (`BlocksStored`).

use actix::Message;
use rivulet_framework::block::{BlockInfo, StreamId};
use rivulet_framework::listener::{ReceiverInfo, StreamingListener};
use rivulet_framework::scheduler::{JobSpec, TaskDescription, TaskOutcome, TaskOutput};
use rivulet_framework::Result;
use tokio::sync::oneshot;

/// Runs one task on an executor (Spark: `LaunchTask`); answers with its outcome.
#[derive(Debug, Message)]
#[rtype(result = "TaskOutcome")]
pub struct RunTask(pub TaskDescription);

/// Seals a receiver's buffered records into blocks now (manual clock, stop); answers with
/// the blocks' infos and the number of blocks sealed so far.
#[derive(Debug, Message)]
#[rtype(result = "SealedBlock")]
pub struct SealBlock;

/// The answer to [`SealBlock`].
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct SealedBlock {
    /// The blocks just sealed, in order (none if nothing was stored).
    pub blocks: Vec<BlockInfo>,
    /// Blocks this builder has sealed in all (including this one).
    pub sealed_total: u64,
}

/// A batch builder sealed blocks on its block-interval timer and stored them on executors
/// (Spark: `AddBlock`, for all of one seal's blocks). The same report the answer to
/// [`SealBlock`] gives, so that blocks reach the coordinator one way.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct BlocksStored {
    /// The receiver's input stream.
    pub stream: StreamId,
    /// The blocks and the builder's count.
    pub sealed: SealedBlock,
}

/// Runs a job on the executors (Spark: `JobSubmitted`); answers with its outputs.
#[derive(Debug, Message)]
#[rtype(result = "Result<Vec<TaskOutput>>")]
pub struct SubmitJob(pub JobSpec);

/// Advances the manual clock by this many batches, running each to completion; answers
/// with the first batch failure, after all of them ran.
#[derive(Debug, Message)]
#[rtype(result = "Result<()>")]
pub struct Advance(pub u32);

/// Generates the next batch on the manual clock; answers with a receiver of its outcome.
#[derive(Debug, Message)]
#[rtype(result = "oneshot::Receiver<Result<()>>")]
pub(crate) struct ManualTick;

/// How to stop a streaming context.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopMode {
    /// Stop receiving, put every record already received into a batch, process the
    /// batches already cut, then stop; no batch is cut after the last received block is in
    /// one, so a stream not fed by receivers (a queue, a `transform` over static RDDs) stops
    /// too (Spark: `stop(stopGracefully = true)`, whose job generator stops its timer then).
    /// Unlike Spark, the last batch does not wait for its tick: once nothing else runs it is
    /// cut at once, with the time it would have had, so a stop under a long batch interval
    /// takes the time the records need, not up to an interval.
    Graceful,
    /// Stop now; batches not yet processed are dropped (Spark: `stop()`).
    Now,
}

/// Stops the streaming context; answers when it has stopped.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct StopContext(pub StopMode);

/// Makes the coordinator die abruptly, as a panic in it would: it stops without a clean stop
/// and without reporting a final status (a fault drill: `RuntimeHandle::crash_coordinator`).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) struct CrashCoordinator;

/// Stops a receiver; answers when its `on_stop` has run.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct StopReceiver;

/// A receiver started, failed, stopped, or failed past its restart limit.
#[derive(Debug, Message, serde::Serialize, serde::Deserialize)]
#[rtype(result = "()")]
pub enum ReceiverEvent {
    /// Started (also after a restart).
    Started(ReceiverInfo),
    /// Failed; a restart follows.
    Failed(ReceiverInfo),
    /// Stopped for good: finished, or stopped by the context.
    Stopped(ReceiverInfo),
    /// Failed past its restart limit: the context stops with this error.
    GaveUp(ReceiverInfo),
    /// Lost input (records truncated or dropped) since its last report; at most one per
    /// second per receiver, the metrics holding the totals.
    InputLost(ReceiverInfo),
}

/// Kills an executor, as a crash outside a task would (fault injection for tests and
/// drills; Spark has no message for it: `SparkContext.killExecutor` comes closest). The
/// coordinator marks it lost, forgets its map outputs, clears its block store and starts a
/// replacement; answers once that is done, or with an error for an unknown executor.
#[derive(Debug, Message)]
#[rtype(result = "Result<()>")]
pub struct KillExecutor(pub usize);

/// Makes an executor sleep this long before each task, a straggler for speculation tests
/// and benches (`Duration::ZERO` clears it); answers with an error for an unknown executor.
#[derive(Debug, Message)]
#[rtype(result = "Result<()>")]
pub struct SlowExecutor {
    /// The executor's index, from 0.
    pub executor: usize,
    /// The delay before each of its tasks.
    pub delay: std::time::Duration,
}

/// Adds a listener.
#[derive(Message)]
#[rtype(result = "()")]
pub struct AddListener(pub Box<dyn StreamingListener>);

impl std::fmt::Debug for AddListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AddListener(..)")
    }
}

/// A batch builder could not write a block to the receiver write-ahead log: the context
/// stops with this error (the block is still processed in memory until then).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct WalFailed(pub rivulet_framework::Error);
