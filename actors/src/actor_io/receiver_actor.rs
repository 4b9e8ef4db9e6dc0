//! A user-written actix actor as a supervised receiver (Spark: `ActorReceiver` with
//! `ActorHelper.store`): the actor gets an [`ActorSink`] and stores what it receives; the
//! receiver supervisor restarts it with backoff when it panics or stops.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use actix::{Actor, Addr, Arbiter, Context};
use rivulet_framework::data::Data;
use rivulet_framework::receiver::{
    BlockSink, Flow, Receiver, ReceiverError, SinkClosed, TryStoreError,
};

/// How a receiver actor stores records into its stream (Spark: `ActorHelper.store`).
/// Cloneable; `store` waits while the stream is backpressured.
pub struct ActorSink<T> {
    sink: BlockSink<T>,
}

impl<T> Clone for ActorSink<T> {
    fn clone(&self) -> Self {
        ActorSink {
            sink: self.sink.clone(),
        }
    }
}

impl<T> fmt::Debug for ActorSink<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ActorSink").finish_non_exhaustive()
    }
}

impl<T: Data> ActorSink<T> {
    /// Stores one record, waiting while the stream is backpressured.
    ///
    /// # Errors
    /// [`SinkClosed`] with the record once the context is stopping.
    pub async fn store(&mut self, record: T) -> Result<(), SinkClosed<T>> {
        self.sink.store(record).await
    }

    /// Stores one record if there is room now (for handlers that must not wait).
    ///
    /// # Errors
    /// [`TryStoreError::Full`] (backpressure) or [`TryStoreError::Closed`], with the record.
    pub fn try_store(&self, record: T) -> Result<(), TryStoreError<T>> {
        self.sink.try_store(record)
    }

    /// Stores records in order, waiting for room as needed.
    ///
    /// # Errors
    /// [`SinkClosed`] with the records not stored once the context is stopping.
    pub async fn store_many(&mut self, records: Vec<T>) -> Result<(), SinkClosed<Vec<T>>> {
        self.sink.store_many(records).await
    }
}

/// How often the receiver checks that its actor is alive.
const WATCH: Duration = Duration::from_millis(20);

/// A receiver whose records come from a user actor made by `make(sink)` on its own arbiter
/// (`StreamingContext::actor_receiver_stream`). When the actor stops or panics (which takes
/// its arbiter down), the receiver fails with a retryable error: the supervisor restarts it
/// (a new actor from `make`) with backoff, and past its restart limit the context stops
/// with an error naming it.
pub struct ActorReceiver<T, A: Actor, F> {
    name: String,
    make: Arc<F>,
    running: Option<(Addr<A>, Arbiter)>,
    _records: PhantomData<fn() -> T>,
}

impl<T, A: Actor, F> fmt::Debug for ActorReceiver<T, A, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ActorReceiver")
            .field("name", &self.name)
            .field("running", &self.running.is_some())
            .finish()
    }
}

impl<T, A, F> ActorReceiver<T, A, F>
where
    T: Data,
    A: Actor<Context = Context<A>>,
    F: Fn(ActorSink<T>) -> A + Send + Sync + 'static,
{
    /// A receiver named `name` whose actor is `make(sink)`.
    pub fn new(name: impl Into<String>, make: F) -> Self {
        ActorReceiver {
            name: name.into(),
            make: Arc::new(make),
            running: None,
            _records: PhantomData,
        }
    }
}

impl<T, A, F> Receiver for ActorReceiver<T, A, F>
where
    T: Data,
    A: Actor<Context = Context<A>>,
    F: Fn(ActorSink<T>) -> A + Send + Sync + 'static,
{
    type Item = T;

    fn name(&self) -> String {
        self.name.clone()
    }

    async fn on_start(&mut self) -> Result<(), ReceiverError> {
        Ok(())
    }

    /// Starts the actor (the first time, and after each restart), then waits while it runs.
    ///
    /// # Errors
    /// A retryable [`ReceiverError`] naming the actor when it stopped or panicked.
    async fn receive(&mut self, sink: &mut BlockSink<T>) -> Result<Flow, ReceiverError> {
        if self.running.is_none() {
            let arbiter = Arbiter::new();
            let (make, sink) = (self.make.clone(), ActorSink { sink: sink.clone() });
            let addr = A::start_in_arbiter(&arbiter.handle(), move |_| make(sink));
            self.running = Some((addr, arbiter));
        }
        loop {
            let alive = self.running.as_ref().is_some_and(|(a, _)| a.connected());
            if !alive {
                self.running = None;
                return Err(ReceiverError::retryable(format!(
                    "receiver actor `{}` stopped or panicked",
                    self.name
                )));
            }
            tokio::time::sleep(WATCH).await;
        }
    }

    /// Stops the actor's arbiter.
    async fn on_stop(&mut self) {
        if let Some((_, arbiter)) = self.running.take() {
            arbiter.stop();
        }
    }
}
