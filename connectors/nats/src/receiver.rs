//! A JetStream durable pull consumer as a reliable receiver (Spark users write one as a
//! custom reliable receiver). Each step:
//! 1. fetches up to a batch of messages from the durable consumer (waiting at most the
//!    fetch wait for the first ones);
//! 2. stores them with [`store_reliably`](rivulet_framework::receiver::BlockSink::store_reliably),
//!    which returns once their blocks are stored (on executors and, with `receiver_wal` on,
//!    in the write-ahead log);
//! 3. acknowledges each of them (`+ACK`, explicit ack policy) and flushes the acks.
//!
//! A crash or a stop between 1 and 3 leaves the messages unacknowledged: the server delivers
//! them again after the consumer's ack wait, to this receiver or to another one of the same
//! consumer. A stored message is therefore delivered at least once, and a message never
//! stored is never acknowledged: at least once, as Spark's reliable receivers. Several
//! receivers given the same durable name share the consumer: each fetch takes messages no
//! other receiver holds unacknowledged.
//!
//! The durable consumer is made on the first start when missing, delivering the stream from
//! its first message; an existing one is joined as it is (its configuration is the server's).
//! Every call to the server runs on the receiver's own runtime (see the crate docs), never
//! on the receiver's actor thread.
//!
//! A server that cannot be reached is a retryable error: the receiver supervisor restarts
//! the receiver after its backoff, logging the reason, up to `receiver_restarts` times. A
//! server that refuses the URL's credentials (or requires some and got none) stops the
//! receiver with a fatal error saying `authentication failed` and naming the server (without
//! the credentials): a restart would send the same ones. Nothing was fetched, so nothing is
//! lost; the failed receiver stops the context.

use std::fmt;
use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy, PullConsumer};
use async_nats::jetstream::{self, Message};
use futures::StreamExt;
use rivulet_framework::receiver::{BlockSink, Flow, Receiver, ReceiverError};

use crate::runtime::{ClientRuntime, Connection, REQUEST_TIMEOUT};
use crate::NatsMessage;

/// A receiver reading a JetStream stream through a durable pull consumer with explicit acks
/// (see the module docs); give it to `StreamingContext::receiver_stream`.
///
/// # Example
/// ```no_run
/// use rivulet_nats::NatsConsumerReceiver;
/// let receiver = NatsConsumerReceiver::new("nats://127.0.0.1:4222", "lines", "wordcount")?;
/// # Ok::<(), rivulet_framework::Error>(())
/// ```
pub struct NatsConsumerReceiver {
    connection: Connection,
    runtime: ClientRuntime,
    stream: String,
    durable: String,
    batch: usize,
    fetch_wait: Duration,
    ack_wait: Duration,
    consumer: Option<PullConsumer>,
}

impl fmt::Debug for NatsConsumerReceiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsConsumerReceiver")
            .field("server", &self.connection.server)
            .field("stream", &self.stream)
            .field("durable", &self.durable)
            .field("batch", &self.batch)
            .field("fetch_wait", &self.fetch_wait)
            .field("ack_wait", &self.ack_wait)
            .finish_non_exhaustive()
    }
}

impl NatsConsumerReceiver {
    /// A receiver of stream `stream` on the server at `server` (`nats://host:port`, or with
    /// credentials `nats://user:password@host:port` or `nats://token@host:port`) through
    /// the durable consumer `durable`: batches of 1,000 messages, a fetch waiting at most
    /// 200 ms, and (when it makes the consumer) an ack wait of 30 s.
    ///
    /// # Errors
    /// [`Error::Config`](rivulet_framework::Error::Config) when the client's runtime cannot
    /// be made.
    pub fn new(
        server: &str,
        stream: &str,
        durable: &str,
    ) -> rivulet_framework::Result<NatsConsumerReceiver> {
        let runtime = ClientRuntime::new().map_err(|e| {
            rivulet_framework::Error::Config(format!(
                "nats {server}: cannot start the client's runtime: {e}"
            ))
        })?;
        Ok(NatsConsumerReceiver {
            connection: Connection::new(server),
            runtime,
            stream: stream.to_string(),
            durable: durable.to_string(),
            batch: 1_000,
            fetch_wait: Duration::from_millis(200),
            ack_wait: Duration::from_secs(30),
            consumer: None,
        })
    }

    /// Fetches at most `messages` messages per step (at least 1; default 1,000).
    pub fn batch(mut self, messages: usize) -> Self {
        self.batch = messages.max(1);
        self
    }

    /// How long the server holds a delivered message for its ack before it delivers it again
    /// (JetStream's `ack_wait`, default 30 s); applies when this receiver makes the consumer.
    pub fn ack_wait(mut self, wait: Duration) -> Self {
        self.ack_wait = wait;
        self
    }

    /// How long one fetch waits for messages when there are none (default 200 ms).
    pub fn fetch_wait(mut self, wait: Duration) -> Self {
        self.fetch_wait = wait;
        self
    }

    fn error(&self, what: impl fmt::Display) -> ReceiverError {
        ReceiverError::retryable(format!(
            "nats {} stream {} consumer {}: {what}",
            self.connection.server, self.stream, self.durable
        ))
    }

    /// Fetches one batch (step 1).
    async fn fetch(&mut self) -> Result<Vec<Message>, ReceiverError> {
        let consumer = self
            .consumer
            .clone()
            .ok_or_else(|| self.error("not started"))?;
        let (batch, wait) = (self.batch, self.fetch_wait);
        let fetched = self
            .runtime
            .run(async move {
                let mut messages = consumer
                    .batch()
                    .max_messages(batch)
                    .expires(wait)
                    .messages()
                    .await
                    .map_err(|e| format!("fetch: {e}"))?;
                let mut out = Vec::new();
                while let Some(message) = messages.next().await {
                    out.push(message.map_err(|e| format!("fetch: {e}"))?);
                }
                Ok::<_, String>(out)
            })
            .await
            .and_then(|r| r);
        fetched.map_err(|e| {
            self.connection.reset();
            self.error(e)
        })
    }

    /// Acknowledges `messages` and flushes the acks to the server (step 3).
    async fn ack(&mut self, messages: Vec<Message>) -> Result<(), ReceiverError> {
        let acked = self
            .runtime
            .run(async move {
                for message in &messages {
                    message.ack().await.map_err(|e| format!("ack: {e}"))?;
                }
                // The acks went out through the client the messages came on.
                match messages.first() {
                    Some(m) => m
                        .context
                        .client()
                        .flush()
                        .await
                        .map_err(|e| format!("ack flush: {e}")),
                    None => Ok(()),
                }
            })
            .await
            .and_then(|r| r);
        acked.map_err(|e| {
            self.connection.reset();
            self.error(e)
        })
    }
}

/// A delivered message as a record.
fn record(stream: &str, message: &Message) -> NatsMessage {
    let (sequence, published_ns) = match message.info() {
        Ok(info) => (
            info.stream_sequence,
            i64::try_from(info.published.unix_timestamp_nanos()).unwrap_or_default(),
        ),
        Err(_) => (0, 0),
    };
    NatsMessage {
        stream: stream.to_string(),
        subject: message.subject.to_string(),
        sequence,
        payload: message.payload.to_vec(),
        published_ns,
    }
}

impl Receiver for NatsConsumerReceiver {
    type Item = NatsMessage;

    fn name(&self) -> String {
        format!(
            "nats consumer {} of stream {} at {}",
            self.durable, self.stream, self.connection.server
        )
    }

    async fn on_start(&mut self) -> Result<(), ReceiverError> {
        let (connection, stream, durable, ack_wait) = (
            self.connection.clone(),
            self.stream.clone(),
            self.durable.clone(),
            self.ack_wait,
        );
        let made = self
            .runtime
            .run(async move {
                let client = connection.client().await.map_err(|f| (f.auth, f.message))?;
                let mut js = jetstream::new(client);
                js.set_timeout(REQUEST_TIMEOUT);
                let stream = js
                    .get_stream(&stream)
                    .await
                    .map_err(|e| (false, format!("cannot read the stream's info: {e}")))?;
                stream
                    .get_or_create_consumer(
                        &durable,
                        pull::Config {
                            durable_name: Some(durable.clone()),
                            deliver_policy: DeliverPolicy::All,
                            ack_policy: AckPolicy::Explicit,
                            ack_wait,
                            ..Default::default()
                        },
                    )
                    .await
                    .map_err(|e| {
                        (
                            false,
                            format!("cannot make or join the durable consumer: {e}"),
                        )
                    })
            })
            .await
            .map_err(|e| (false, e))
            .and_then(|r| r);
        match made {
            Ok(consumer) => {
                self.consumer = Some(consumer);
                Ok(())
            }
            Err((auth, e)) => {
                self.connection.reset();
                let error = self.error(e);
                Err(match auth {
                    true => ReceiverError::fatal(error.to_string()),
                    false => error,
                })
            }
        }
    }

    async fn receive(&mut self, sink: &mut BlockSink<NatsMessage>) -> Result<Flow, ReceiverError> {
        let messages = self.fetch().await?;
        if messages.is_empty() {
            return Ok(Flow::Continue);
        }
        let records = messages.iter().map(|m| record(&self.stream, m)).collect();
        if sink.store_reliably(records).await.is_err() {
            // Stopping before the blocks were stored: not acknowledged, delivered again.
            return Ok(Flow::Finished);
        }
        self.ack(messages).await?;
        Ok(Flow::Continue)
    }

    async fn on_stop(&mut self) {
        self.consumer = None;
    }
}
