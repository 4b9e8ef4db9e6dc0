//! The [`Receiver`] trait and its store interface (Spark: `Receiver`, `ReceiverSupervisor.store`).
//!
//! A receiver pulls records from a source and hands them to its [`BlockSink`]. The sink's
//! `store` waits while the receiver's bounded buffer is full: that wait is the backpressure
//! that reaches the source (a socket is not read, an actor sender waits). The runtime's
//! batch builder seals the buffer into blocks every block interval, and the buffer frees
//! room as the batches holding those blocks finish. No record is dropped.
//!
//! Receivers are runtime-agnostic: they may use tokio's I/O types, but never name actix.

mod block_source;
mod buffer;
mod buffer_bound;
mod rate;

pub use block_source::{BlockReplay, BlockSealer, BlockSource, BufferControl, ReceiverCounters};
pub use buffer::{BlockBuffer, BlockSink, ReceiverMetrics, SinkClosed, TryStoreError};
pub use buffer_bound::BufferBound;
pub use rate::PidRateEstimator;

use std::fmt;
use std::future::Future;

use futures::future::BoxFuture;

use crate::block::StreamId;
use crate::data::Data;
use crate::error::BoxError;

/// What a receiver's [`Receiver::receive`] says about its source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    /// More records may come: call `receive` again.
    Continue,
    /// The source is used up (a finite queue, a closed channel): the receiver stops cleanly.
    Finished,
}

/// A receiver's failure. [`is_retryable`](ReceiverError::is_retryable) tells the
/// receiver supervisor whether to restart the receiver (after a backoff) or stop it.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ReceiverError {
    message: String,
    retryable: bool,
    #[source]
    source: Option<BoxError>,
}

impl ReceiverError {
    /// A failure that a restart may heal (a dropped connection, a transient I/O error).
    pub fn retryable(message: impl Into<String>) -> ReceiverError {
        ReceiverError {
            message: message.into(),
            retryable: true,
            source: None,
        }
    }

    /// A failure that a restart cannot heal (a bad address, a missing directory).
    pub fn fatal(message: impl Into<String>) -> ReceiverError {
        ReceiverError {
            message: message.into(),
            retryable: false,
            source: None,
        }
    }

    /// Attaches the underlying error.
    pub fn with_source(mut self, source: impl Into<BoxError>) -> ReceiverError {
        self.source = Some(source.into());
        self
    }

    /// Whether the supervisor should restart the receiver.
    pub fn is_retryable(&self) -> bool {
        self.retryable
    }
}

/// A source of records for one input DStream (Spark: `Receiver`).
///
/// The runtime calls [`on_start`](Receiver::on_start) once, then
/// [`receive`](Receiver::receive) until it returns [`Flow::Finished`], an error, or the
/// context stops; then [`on_stop`](Receiver::on_stop). On a retryable error the receiver
/// supervisor calls `on_stop`, waits its backoff, and starts again with `on_start`.
///
/// `receive` should store a bounded amount (a line, a chunk of lines, one message) and
/// return, so that a stop is noticed; it may be cancelled (dropped) at an `.await` when
/// the context stops, and must then lose nothing it already stored.
///
/// # Examples
/// ```
/// use rivulet_framework::receiver::{BlockSink, Flow, Receiver, ReceiverError};
///
/// /// Emits 0..n, then finishes.
/// struct Counter { next: u64, n: u64 }
///
/// impl Receiver for Counter {
///     type Item = u64;
///     fn name(&self) -> String { format!("counter(0..{})", self.n) }
///     async fn on_start(&mut self) -> Result<(), ReceiverError> { Ok(()) }
///     async fn receive(&mut self, sink: &mut BlockSink<u64>) -> Result<Flow, ReceiverError> {
///         if self.next == self.n { return Ok(Flow::Finished); }
///         sink.store(self.next).await.map_err(|_| ReceiverError::fatal("stopped"))?;
///         self.next += 1;
///         Ok(Flow::Continue)
///     }
/// }
/// ```
pub trait Receiver: Send + 'static {
    /// The record type.
    type Item: Data;

    /// A short name for logs and errors, e.g. `socket 127.0.0.1:9999`.
    fn name(&self) -> String;

    /// Prepares the source (connect, open, snapshot a directory). Must not block the thread.
    ///
    /// # Errors
    /// A [`ReceiverError`]; retryable ones are retried by the supervisor with backoff.
    fn on_start(&mut self) -> impl Future<Output = Result<(), ReceiverError>> + Send;

    /// Receives some records and stores them in `sink`.
    ///
    /// # Errors
    /// A [`ReceiverError`]; retryable ones restart the receiver after a backoff.
    fn receive(
        &mut self,
        sink: &mut BlockSink<Self::Item>,
    ) -> impl Future<Output = Result<Flow, ReceiverError>> + Send;

    /// Releases the source. Called after the last `receive`, also before a restart.
    fn on_stop(&mut self) -> impl Future<Output = ()> + Send {
        async {}
    }

    /// Whether an executor process may run this receiver, as Spark runs every receiver on
    /// an executor (with [`StreamingConfig::receivers_in_executor_processes`]). Say `true` only
    /// when the receiver reaches its input from any process the same way (a socket, a
    /// broker), not through the coordinator's memory (a channel, an actor's mailbox); the
    /// executor process builds this receiver itself, as the program builds it. A receiver
    /// that acknowledges its source once a block is stored ([`BlockSink::store_reliably`])
    /// may say `true` as well: in a process, `store_reliably` returns only once the
    /// coordinator holds the block's replica (and logged it, with the receiver write-ahead
    /// log on), and counts it even if the process dies before its report arrives; a
    /// process lost before that leaves the records unacknowledged, and the source delivers
    /// them again to the receiver's next process (rivulet's MQTT and Redis Streams
    /// receivers say `true`). Default `false`.
    ///
    /// [`StreamingConfig::receivers_in_executor_processes`]: crate::config::StreamingConfig::receivers_in_executor_processes
    fn runs_anywhere(&self) -> bool {
        false
    }
}

/// A receiver with its sink, with the record type erased, as the runtime drives it.
pub trait DynReceiver: Send {
    /// The receiver's name.
    fn name(&self) -> String;
    /// See [`Receiver::on_start`].
    fn on_start(&mut self) -> BoxFuture<'_, Result<(), ReceiverError>>;
    /// See [`Receiver::receive`].
    fn receive(&mut self) -> BoxFuture<'_, Result<Flow, ReceiverError>>;
    /// See [`Receiver::on_stop`].
    fn on_stop(&mut self) -> BoxFuture<'_, ()>;
    /// See [`Receiver::runs_anywhere`].
    fn runs_anywhere(&self) -> bool;
}

struct Bound<R: Receiver> {
    receiver: R,
    sink: BlockSink<R::Item>,
}

impl<R: Receiver> DynReceiver for Bound<R> {
    fn name(&self) -> String {
        self.receiver.name()
    }
    fn on_start(&mut self) -> BoxFuture<'_, Result<(), ReceiverError>> {
        Box::pin(self.receiver.on_start())
    }
    fn receive(&mut self) -> BoxFuture<'_, Result<Flow, ReceiverError>> {
        let Bound { receiver, sink } = self;
        Box::pin(receiver.receive(sink))
    }
    fn on_stop(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(self.receiver.on_stop())
    }
    fn runs_anywhere(&self) -> bool {
        self.receiver.runs_anywhere()
    }
}

/// One receiver of a graph, ready for the runtime: the receiver bound to its sink, and the
/// buffer the batch builder seals blocks from.
pub struct ReceiverSlot {
    /// The input stream it feeds.
    pub stream: StreamId,
    /// The receiver and its sink.
    pub receiver: Box<dyn DynReceiver>,
    /// The receiver's buffer, for sealing blocks and freeing room.
    pub source: std::sync::Arc<dyn BlockSource>,
}

impl ReceiverSlot {
    /// Binds `receiver` to a new buffer of `capacity` records, in blocks of at most
    /// `max_block` records, for stream `stream`.
    pub fn new<R: Receiver>(
        stream: StreamId,
        receiver: R,
        capacity: usize,
        max_block: usize,
    ) -> ReceiverSlot {
        let buffer = std::sync::Arc::new(
            BlockBuffer::<R::Item>::new(stream, capacity).with_max_block(max_block),
        );
        ReceiverSlot::with_buffer(stream, receiver, buffer)
    }

    /// Binds `receiver` to `buffer` (which others may also store into) for stream `stream`.
    pub fn with_buffer<R: Receiver>(
        stream: StreamId,
        receiver: R,
        buffer: std::sync::Arc<BlockBuffer<R::Item>>,
    ) -> ReceiverSlot {
        let sink = BlockSink::new(buffer.clone());
        ReceiverSlot {
            stream,
            receiver: Box::new(Bound { receiver, sink }),
            source: buffer,
        }
    }
}

impl fmt::Debug for ReceiverSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReceiverSlot")
            .field("stream", &self.stream)
            .field("receiver", &self.receiver.name())
            .finish()
    }
}
