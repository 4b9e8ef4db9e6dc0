//! [`ActorSource`]: a handle that actors, tasks and threads send events into a DStream with
//! (Spark: `actorStream`, removed from Spark in 2.0).

use std::fmt;
use std::sync::Arc;

use actix::{Actor, AtomicResponse, Context, Handler, Message, Recipient, WrapFuture};
use rivulet_framework::data::Data;
use rivulet_framework::receiver::{BlockBuffer, BufferControl, SinkClosed, TryStoreError};

/// One event for an [`ActorSource`]'s actor (`recipient.send(Event(x)).await`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event<T>(pub T);

impl<T: Send + 'static> Message for Event<T> {
    type Result = Result<(), SendError<T>>;
}

/// The stream stopped: the events were not stored (they are handed back).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("actor stream `{stream}` has stopped: events not stored")]
pub struct SendError<T> {
    /// The stream's name.
    pub stream: String,
    /// The events not stored.
    pub events: T,
}

/// `?` on a send in a function returning rivulet's `Result`: the stream has stopped
/// ([`Error::NotRunning`](rivulet_framework::Error::NotRunning), naming the stream). The
/// events are dropped with the error; match on the [`SendError`] to get them back.
impl<T> From<SendError<T>> for rivulet_framework::Error {
    fn from(e: SendError<T>) -> Self {
        rivulet_framework::Error::NotRunning(format!(
            "actor stream `{}` has stopped: events not stored",
            e.stream
        ))
    }
}

/// Why [`ActorSource::try_send`] did not take an event; carries it back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrySendError<T> {
    /// The stream is backpressured: its buffer is full. Try later, or `send` to wait.
    #[error("the actor stream is full (backpressure)")]
    Full(T),
    /// The stream has stopped.
    #[error("the actor stream has stopped")]
    Closed(T),
}

/// A cheap, cloneable handle that sends events into one DStream (made by
/// `StreamingContext::actor_stream`). Every event a send accepted (`Ok`) is in exactly one
/// batch: the one whose interval it was stored in. Many senders may share it.
///
/// * [`send`](ActorSource::send) waits while the stream is backpressured (its receiver
///   buffer, bounded in records, is full until earlier batches finish);
/// * [`try_send`](ActorSource::try_send) never waits and hands the event back when full;
/// * [`send_many`](ActorSource::send_many) stores a vector of events at once;
/// * [`recipient`](ActorSource::recipient) is an actix `Recipient<Event<T>>` over a bounded
///   mailbox: an actor's `recipient.send(Event(x)).await` waits the same way.
pub struct ActorSource<T: Send + 'static> {
    name: Arc<str>,
    buffer: Arc<BlockBuffer<T>>,
    recipient: Recipient<Event<T>>,
}

impl<T: Send + 'static> Clone for ActorSource<T> {
    fn clone(&self) -> Self {
        ActorSource {
            name: self.name.clone(),
            buffer: self.buffer.clone(),
            recipient: self.recipient.clone(),
        }
    }
}

impl<T: Send + 'static> fmt::Debug for ActorSource<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ActorSource")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// Events an [`ActorSource`]'s actor holds in its mailbox before senders wait.
const MAILBOX: usize = 256;

impl<T: Data> ActorSource<T> {
    /// A source storing into `buffer`, the buffer of the stream named `name`; starts its
    /// forwarding actor on the current arbiter.
    ///
    /// # Panics
    /// Outside an actix `System` (there is no arbiter to start the actor on).
    pub fn new(name: impl Into<String>, buffer: Arc<BlockBuffer<T>>) -> ActorSource<T> {
        let name: Arc<str> = Arc::from(name.into());
        let forwarder = Forwarder {
            name: name.clone(),
            buffer: buffer.clone(),
        };
        ActorSource {
            name,
            buffer,
            recipient: forwarder.start().recipient(),
        }
    }

    fn closed<U>(&self, events: U) -> SendError<U> {
        SendError {
            stream: self.name.to_string(),
            events,
        }
    }

    /// Stores `event`, waiting while the stream is backpressured.
    ///
    /// # Errors
    /// [`SendError`] with the event once the stream has stopped (never hangs then).
    pub async fn send(&self, event: T) -> Result<(), SendError<T>> {
        self.buffer
            .store(event)
            .await
            .map_err(|SinkClosed(e)| self.closed(e))
    }

    /// Stores `events` in order, waiting for room as needed.
    ///
    /// # Errors
    /// [`SendError`] with the events not stored once the stream has stopped (a prefix may
    /// have been stored).
    pub async fn send_many(&self, events: Vec<T>) -> Result<(), SendError<Vec<T>>> {
        self.buffer
            .store_many(events)
            .await
            .map_err(|SinkClosed(e)| self.closed(e))
    }

    /// Stores `event` if there is room now.
    ///
    /// # Errors
    /// [`TrySendError::Full`] (backpressure) or [`TrySendError::Closed`], with the event.
    pub fn try_send(&self, event: T) -> Result<(), TrySendError<T>> {
        self.buffer.try_store(event).map_err(|e| match e {
            TryStoreError::Full(e) => TrySendError::Full(e),
            TryStoreError::Closed(e) => TrySendError::Closed(e),
        })
    }

    /// The actix recipient of this source: `recipient.send(Event(x)).await` waits while its
    /// bounded mailbox (256 events) is full, which it is while the stream is backpressured.
    pub fn recipient(&self) -> Recipient<Event<T>> {
        self.recipient.clone()
    }

    /// The rate limit rate control set on this stream, in events per second (`None`: no
    /// limit yet). `send` waits for it; `try_send` reports `Full` past it.
    pub fn rate_limit(&self) -> Option<f64> {
        BufferControl::rate(&*self.buffer)
    }

    /// The stream's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// The actor behind [`ActorSource::recipient`]: stores one event at a time, in mailbox order.
struct Forwarder<T> {
    name: Arc<str>,
    buffer: Arc<BlockBuffer<T>>,
}

impl<T: Data> Actor for Forwarder<T> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(MAILBOX);
    }
}

impl<T: Data> Handler<Event<T>> for Forwarder<T> {
    type Result = AtomicResponse<Self, Result<(), SendError<T>>>;

    fn handle(&mut self, Event(event): Event<T>, _: &mut Context<Self>) -> Self::Result {
        let (buffer, name) = (self.buffer.clone(), self.name.clone());
        // Atomic: the next event waits until this one is stored, so order is kept and a
        // full buffer fills the mailbox, which makes senders wait.
        AtomicResponse::new(Box::pin(
            async move {
                buffer
                    .store(event)
                    .await
                    .map_err(|SinkClosed(e)| SendError {
                        stream: name.to_string(),
                        events: e,
                    })
            }
            .into_actor(self),
        ))
    }
}
