//! MQTT (the `rumqttc` client, MQTT 3.1.1, against a broker such as mosquitto 2) as a
//! reliable receiver: MQTT cannot replay what a subscriber acknowledged, so the records go
//! through the receiver write-ahead log (`StreamingConfig::receiver_wal(true)`) and are
//! acknowledged only once they are in it (Spark's reliable receiver: a block stored with
//! `store(ArrayBuffer)`, then acknowledged to the source).
//!
//! The protocol, for one connection:
//! 1. Connect with a stable client id and `clean_session = false` (a persistent session): the
//!    broker keeps the subscription and queues QoS 1 messages while the receiver is away.
//! 2. Subscribe at QoS 1 to the topic filter (`$share/<group>/<filter>` with a
//!    [shared group](MqttReceiver::shared_group): the broker gives each message to one member
//!    of the group).
//! 3. Gather the messages that arrived (manual acknowledgements: the client sends no `PUBACK`
//!    by itself) into one block.
//! 4. Store the block with [`store_reliably`](rivulet_framework::receiver::BlockSink::store_reliably),
//!    which returns once it is stored (in the write-ahead log when it is on).
//! 5. Only then send a `PUBACK` for each of its messages; go to 3.
//!
//! A crash before 5 leaves the messages unacknowledged in the broker's session: they are
//! delivered again on the next connection (with the `DUP` flag), so a message stored but
//! not yet acknowledged is counted twice, and none that was acknowledged is lost: at least
//! once, as Spark's reliable receivers. A connection that fails (the broker down at start,
//! gone mid-run, or refusing connections) is a retryable [`ReceiverError`] naming
//! `host:port` and the topic; the receiver supervisor starts the receiver again after its
//! backoff, on a new connection to the same session.
//!
//! # Authentication
//! [`credentials`](MqttReceiver::credentials) sends a user name and password in the
//! `CONNECT` packet. A broker that refuses them (or refuses a client without them), with
//! `CONNACK` return code 4 (bad user name or password) or 5 (not authorized), stops the
//! receiver at once with a fatal error naming `host:port`, the topic and the return code
//! (`the broker refused the connection: not authorized (CONNACK return code 5)`): a restart
//! would send the same credentials. The failed receiver stops the context, as any fatal
//! receiver error does. Nothing was subscribed or acknowledged, so nothing the broker holds
//! for the session is lost. The password appears in no error, name or `Debug` output.
//!
//! The client is driven by a task of its own (rumqttc's event loop must be polled all the
//! time: it sends the pings and the acknowledgements), which forwards the messages to
//! `receive` through a queue of [`max_block`](MqttReceiver::max_block) messages: while the
//! queue is full the task stops reading the connection, and TCP holds the broker back. So
//! the receiver holds about two blocks of messages at most, whatever the broker sends (in
//! our tests mosquitto 2.0.11 sent an MQTT 3.1.1 subscriber 4,000 messages while 40 were
//! acknowledged, its `max_inflight_messages 1000` notwithstanding). Acknowledgements are queued to the task
//! without waiting (an acknowledgement that does not fit is kept and queued on the next
//! call), so the two never wait on each other. rumqttc's event loop writes one queued
//! request per turn, against up to ten packets read: under a flood of messages the
//! `PUBACK`s trail the stored blocks, and a crash then redelivers more (never loses any).
//!
//! Broker settings (mosquitto): it drops, silently, the messages it holds for a session
//! beyond `max_queued_messages` (1000 by default), for a slow subscriber and for one that is
//! away alike: set it to 0 (no limit) or above what an outage can pile up. And it writes
//! its persistence file at a graceful stop and every `autosave_interval` (30 min by
//! default), so a broker that is killed loses what it queued since: what a restart of the
//! broker keeps is the broker's promise, not the receiver's.

use std::fmt;
use std::time::Duration;

use rivulet_framework::receiver::{BlockSink, Flow, Receiver, ReceiverError};
use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, EventLoop, MqttOptions, Packet,
    Publish, QoS, StateError, SubscribeReasonCode,
};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// How long one `receive` waits for a first message before returning (so a stop is
/// noticed).
const IDLE_WAIT: Duration = Duration::from_millis(100);

/// Requests (acknowledgements) the client queues for its event loop task.
const REQUEST_CAPACITY: usize = 4_096;

/// One MQTT message, as the broker delivered it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MqttMessage {
    /// The topic it was published to (not the filter, nor the `$share/...` prefix).
    pub topic: String,
    /// Its payload, as bytes (need not be UTF-8).
    pub payload: Vec<u8>,
    /// The broker's `DUP` flag: delivered before and not acknowledged then, so possibly a
    /// record already counted.
    pub redelivered: bool,
    /// The broker's `RETAIN` flag: the topic's retained message, sent at subscription.
    pub retained: bool,
}

impl MqttMessage {
    /// The payload as text; `None` when it is not UTF-8.
    pub fn text(&self) -> Option<&str> {
        std::str::from_utf8(&self.payload).ok()
    }
}

/// A receiver of the messages published to an MQTT topic filter, at QoS 1, acknowledged
/// only once stored (see the module docs); give it to `StreamingContext::receiver_stream`
/// with the receiver write-ahead log on.
///
/// # Example
/// ```
/// use rivulet_framework::receiver::Receiver;
/// use rivulet_receivers::MqttReceiver;
///
/// let receiver = MqttReceiver::new("127.0.0.1", 1883, "sensors/+/lines", "wordcount-1")?
///     .shared_group("wordcount")?;
/// assert_eq!(
///     receiver.name(),
///     "mqtt $share/wordcount/sensors/+/lines at 127.0.0.1:1883 as wordcount-1"
/// );
/// # Ok::<(), rivulet_framework::Error>(())
/// ```
pub struct MqttReceiver {
    host: String,
    port: u16,
    topic: String,
    client_id: String,
    group: Option<String>,
    keep_alive: Duration,
    connect_timeout: Duration,
    max_message_bytes: usize,
    max_block: usize,
    /// The user name and password sent in `CONNECT`, if any.
    credentials: Option<(String, String)>,
    connection: Option<Connection>,
}

impl fmt::Debug for MqttReceiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MqttReceiver")
            .field("broker", &format_args!("{}:{}", self.host, self.port))
            .field("topic", &self.topic)
            .field("client_id", &self.client_id)
            .field("group", &self.group)
            .field("user", &self.credentials.as_ref().map(|(user, _)| user))
            .field("connected", &self.connection.is_some())
            .finish_non_exhaustive()
    }
}

/// What the event loop task forwards.
enum Delivery {
    ConnAck,
    SubAck(Vec<SubscribeReasonCode>),
    Publish(Publish),
    /// The connection failed; the task has ended.
    Failed(ConnectionError),
}

/// One connection: the client (for acknowledgements), what its event loop task forwards,
/// the messages received but not yet stored, and those stored whose acknowledgement did not
/// fit the client's queue yet.
struct Connection {
    client: AsyncClient,
    deliveries: mpsc::Receiver<Delivery>,
    task: JoinHandle<()>,
    gathered: Vec<Publish>,
    /// Stored messages to acknowledge, without their payload (the `PUBACK` needs only the
    /// packet id and the QoS).
    to_ack: std::collections::VecDeque<Publish>,
    /// Whether the broker's `CONNACK` came.
    connected: bool,
    /// Whether the broker's `SUBACK` came.
    subscribed: bool,
}

impl Connection {
    /// Queues as many acknowledgements as the client takes now, oldest first.
    fn queue_acks(&mut self) -> Result<(), rumqttc::ClientError> {
        while let Some(publish) = self.to_ack.front() {
            match self.client.try_ack(publish) {
                Ok(()) => {
                    self.to_ack.pop_front();
                }
                Err(rumqttc::ClientError::TryRequest(_)) => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What a refusing `CONNACK` return code means (MQTT 3.1.1, section 3.2.2.3), with the code.
fn refusal(code: ConnectReturnCode) -> String {
    let (number, meaning) = match code {
        ConnectReturnCode::Success => (0, "accepted"),
        ConnectReturnCode::RefusedProtocolVersion => (1, "unacceptable protocol version"),
        ConnectReturnCode::BadClientId => (2, "client identifier rejected"),
        ConnectReturnCode::ServiceUnavailable => (3, "server unavailable"),
        ConnectReturnCode::BadUserNamePassword => (4, "bad user name or password"),
        ConnectReturnCode::NotAuthorized => (5, "not authorized"),
    };
    format!("{meaning} (CONNACK return code {number})")
}

/// Polls `events` until the connection fails or nobody listens, forwarding what `receive`
/// needs; waits (reading nothing more) while `to` is full.
async fn drive(mut events: EventLoop, to: mpsc::Sender<Delivery>) {
    loop {
        let delivery = match events.poll().await {
            Ok(Event::Incoming(Packet::Publish(p))) => Delivery::Publish(p),
            Ok(Event::Incoming(Packet::ConnAck(_))) => Delivery::ConnAck,
            Ok(Event::Incoming(Packet::SubAck(s))) => Delivery::SubAck(s.return_codes),
            Ok(_) => continue,
            Err(e) => {
                let _ = to.send(Delivery::Failed(e)).await;
                return;
            }
        };
        if to.send(delivery).await.is_err() {
            return;
        }
    }
}

impl MqttReceiver {
    /// A receiver of topic filter `topic` (`+` and `#` wildcards allowed) on the broker at
    /// `host:port`, in the persistent session of client `client_id`: keep the id stable
    /// across restarts (the session, and what it queued, belongs to it) and unique among the
    /// broker's clients (a second connection with the same id takes the session over).
    /// Defaults: keep-alive 30 s, connection timeout 5 s, payloads up to 1 MiB, blocks of at
    /// most 10,000 messages.
    ///
    /// # Errors
    /// [`Error::Config`](rivulet_framework::Error::Config) when the filter is not a valid
    /// MQTT topic filter or the client id is empty.
    pub fn new(
        host: &str,
        port: u16,
        topic: &str,
        client_id: &str,
    ) -> rivulet_framework::Result<MqttReceiver> {
        if !rumqttc::valid_filter(topic) {
            return Err(rivulet_framework::Error::Config(format!(
                "mqtt topic filter `{topic}`: not a valid filter (empty, or a `+` or `#` that is not a whole level, or a `#` not last)"
            )));
        }
        if client_id.is_empty() {
            return Err(rivulet_framework::Error::Config(
                "mqtt client id: empty (a persistent session needs a stable id)".into(),
            ));
        }
        Ok(MqttReceiver {
            host: host.to_string(),
            port,
            topic: topic.to_string(),
            client_id: client_id.to_string(),
            group: None,
            keep_alive: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            max_message_bytes: (1 << 20) + (64 << 10),
            max_block: 10_000,
            credentials: None,
            connection: None,
        })
    }

    /// Subscribes as a member of shared subscription group `group` (`$share/<group>/<topic>`,
    /// MQTT 5's shared subscriptions, which mosquitto 2 also gives MQTT 3.1.1 clients): each
    /// message goes to one receiver of the group, so several receivers (each with its own
    /// client id) split the topic's messages between them.
    ///
    /// # Errors
    /// [`Error::Config`](rivulet_framework::Error::Config) when the name is empty or holds
    /// `/`, `+` or `#`.
    pub fn shared_group(mut self, group: &str) -> rivulet_framework::Result<MqttReceiver> {
        if group.is_empty() || group.contains(['/', '+', '#']) {
            return Err(rivulet_framework::Error::Config(format!(
                "mqtt shared subscription group `{group}`: must be non-empty, without `/`, `+` or `#`"
            )));
        }
        self.group = Some(group.to_string());
        Ok(self)
    }

    /// Pings the broker after `keep_alive` without traffic (whole seconds, at least 1 s;
    /// default 30 s); the broker drops the connection after 1.5 times it without a packet.
    pub fn keep_alive(mut self, keep_alive: Duration) -> Self {
        self.keep_alive = keep_alive.max(Duration::from_secs(1));
        self
    }

    /// How long connecting (TCP and the broker's `CONNACK`) and subscribing may take before
    /// the attempt fails as retryable (whole seconds, at least 1 s; default 5 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout.max(Duration::from_secs(1));
        self
    }

    /// The largest message accepted, in bytes of its payload, topic and packet id (the
    /// `PUBLISH` packet's remaining length; default 1 MiB + 64 KiB: a 1 MiB payload with any
    /// topic). A larger one stops the receiver with a fatal error naming the limit: it would
    /// otherwise be delivered again, and fail again, forever. It stays unacknowledged on the
    /// broker.
    pub fn max_message_bytes(mut self, bytes: usize) -> Self {
        self.max_message_bytes = bytes.max(1);
        self
    }

    /// Stores at most `messages` messages per block (default 10,000): acknowledgements wait
    /// for the whole block. Also the length of the queue between the client's task and
    /// `receive`: the receiver holds at most about twice this many messages.
    pub fn max_block(mut self, messages: usize) -> Self {
        self.max_block = messages.max(1);
        self
    }

    /// Connects as user `user` with password `password` (MQTT's user name and password in
    /// `CONNECT`, e.g. mosquitto's `password_file`); default: no credentials. A broker that
    /// refuses them stops the receiver with a fatal error naming the broker and the
    /// `CONNACK` return code (see the module docs). Without TLS (this build has none) the
    /// password crosses the network in clear.
    pub fn credentials(mut self, user: &str, password: &str) -> Self {
        self.credentials = Some((user.to_string(), password.to_string()));
        self
    }

    /// The filter subscribed to: the topic, or `$share/<group>/<topic>`.
    fn filter(&self) -> String {
        match &self.group {
            Some(group) => format!("$share/{group}/{}", self.topic),
            None => self.topic.clone(),
        }
    }

    fn error(&self, what: &str, e: impl fmt::Display) -> ReceiverError {
        ReceiverError::retryable(format!(
            "mqtt {}:{} topic {}: {what}: {e}",
            self.host,
            self.port,
            self.filter()
        ))
    }

    fn fatal(&self, what: impl fmt::Display) -> ReceiverError {
        ReceiverError::fatal(format!(
            "mqtt {}:{} topic {}: {what}",
            self.host,
            self.port,
            self.filter()
        ))
    }

    /// The error for a failed connection: fatal when a restart cannot help (the broker
    /// refused the client's identity or credentials, or a message is over the size limit),
    /// retryable otherwise.
    fn connection_error(&self, e: ConnectionError, connected: bool) -> ReceiverError {
        match &e {
            ConnectionError::ConnectionRefused(
                code @ (ConnectReturnCode::BadClientId
                | ConnectReturnCode::BadUserNamePassword
                | ConnectReturnCode::NotAuthorized
                | ConnectReturnCode::RefusedProtocolVersion),
            ) => self.fatal(format!(
                "the broker refused the connection: {}",
                refusal(*code)
            )),
            ConnectionError::MqttState(StateError::Deserialization(
                rumqttc::Error::PayloadSizeLimitExceeded(n),
            )) => self.fatal(format!(
                "a message of {n} bytes is larger than max_message_bytes ({}); it is left unacknowledged on the broker",
                self.max_message_bytes
            )),
            _ if connected => self.error("the connection failed", e),
            _ => self.error("cannot connect", e),
        }
    }

    /// Waits for the next delivery, at most until `deadline`; `None` at the deadline.
    async fn next(
        &mut self,
        deadline: tokio::time::Instant,
    ) -> Result<Option<Delivery>, ReceiverError> {
        let Some(connection) = self.connection.as_mut() else {
            return Err(self.error("not connected", "the receiver was not started"));
        };
        match tokio::time::timeout_at(deadline, connection.deliveries.recv()).await {
            Err(_) => Ok(None),
            Ok(Some(Delivery::Failed(e))) => {
                let connected = connection.connected;
                self.connection = None;
                Err(self.connection_error(e, connected))
            }
            Ok(Some(delivery)) => Ok(Some(delivery)),
            Ok(None) => {
                self.connection = None;
                Err(self.error("the connection failed", "its event loop ended"))
            }
        }
    }

    /// Keeps a message for the next block, and notes a `CONNACK` or a `SUBACK`.
    ///
    /// # Errors
    /// A fatal error when the broker refused the subscription.
    fn keep(&mut self, delivery: Delivery) -> Result<(), ReceiverError> {
        let Some(connection) = self.connection.as_mut() else {
            return Ok(());
        };
        match delivery {
            Delivery::Publish(p) => connection.gathered.push(p),
            Delivery::ConnAck => connection.connected = true,
            Delivery::SubAck(codes) => {
                if codes.contains(&SubscribeReasonCode::Failure) {
                    self.connection = None;
                    return Err(self.fatal("the broker refused the subscription"));
                }
                connection.subscribed = true;
            }
            Delivery::Failed(_) => {}
        }
        Ok(())
    }
}

impl Receiver for MqttReceiver {
    type Item = MqttMessage;

    fn name(&self) -> String {
        format!(
            "mqtt {} at {}:{} as {}",
            self.filter(),
            self.host,
            self.port,
            self.client_id
        )
    }

    /// `true`: any process reaches the broker the same way, and the session is the client
    /// id's, not the connection's. In an executor process the messages are acknowledged
    /// once the coordinator confirmed their block; a process lost before leaves them in the
    /// session, which the receiver's next process resumes (the broker delivers them again).
    fn runs_anywhere(&self) -> bool {
        true
    }

    /// Connects, resuming the client's session, and subscribes; messages the session held
    /// may arrive before the subscription is confirmed and are kept for the first block.
    async fn on_start(&mut self) -> Result<(), ReceiverError> {
        self.connection = None;
        let mut options = MqttOptions::new(&self.client_id, &self.host, self.port);
        options
            .set_clean_session(false)
            .set_manual_acks(true)
            .set_keep_alive(Duration::from_secs(self.keep_alive.as_secs().max(1)))
            // Incoming: checked against the packet's remaining length. Outgoing: acknowledgements,
            // the subscription and pings only.
            .set_max_packet_size(self.max_message_bytes, 64 * 1024);
        if let Some((user, password)) = &self.credentials {
            options.set_credentials(user.as_str(), password.as_str());
        }
        let (client, mut events) = AsyncClient::new(options, REQUEST_CAPACITY);
        let mut network = events.network_options();
        network.set_connection_timeout(self.connect_timeout.as_secs().max(1));
        events.set_network_options(network);
        client
            .try_subscribe(self.filter(), QoS::AtLeastOnce)
            .map_err(|e| self.error("cannot subscribe", e))?;
        let (to, deliveries) = mpsc::channel(self.max_block);
        let task = tokio::spawn(drive(events, to));
        self.connection = Some(Connection {
            client,
            deliveries,
            task,
            gathered: Vec::new(),
            to_ack: std::collections::VecDeque::new(),
            connected: false,
            subscribed: false,
        });
        // A little more than the client's own connect timeout, then the subscription.
        let deadline = tokio::time::Instant::now() + self.connect_timeout * 2;
        loop {
            let (connected, subscribed, gathered) =
                self.connection.as_ref().map_or((false, false, 0), |c| {
                    (c.connected, c.subscribed, c.gathered.len())
                });
            // A session's backlog may come before the SUBACK: at a block's worth, go on (a
            // refused subscription then fails a later `receive`).
            if connected && (subscribed || gathered >= self.max_block) {
                break;
            }
            match self.next(deadline).await? {
                None if connected => {
                    return Err(self.error("cannot subscribe", "no SUBACK in time"));
                }
                None => return Err(self.error("cannot connect", "no CONNACK in time")),
                Some(delivery) => self.keep(delivery)?,
            }
        }
        tracing::debug!(receiver = %self.name(), "Subscribed.");
        Ok(())
    }

    /// Gathers the messages that arrived (waiting up to 100 ms for a first one), at most
    /// [`max_block`](MqttReceiver::max_block) or, under backpressure, what the rate admits in
    /// 200 ms (`BlockSink::store_size`), stores them as one block with `store_reliably`, then
    /// acknowledges them.
    ///
    /// # Cancel safety
    /// A cancelled call acknowledged nothing it had not stored; messages it gathered and did
    /// not store are kept for the next call, or delivered again on the next connection.
    async fn receive(&mut self, sink: &mut BlockSink<MqttMessage>) -> Result<Flow, ReceiverError> {
        if let Some(connection) = self.connection.as_mut() {
            if let Err(e) = connection.queue_acks() {
                self.connection = None;
                return Err(self.error("cannot acknowledge", e));
            }
        }
        // Under backpressure, a block of what the rate admits (see `BlockSink::store_size`).
        let limit = sink.store_size(self.max_block);
        let gathered = self.connection.as_ref().map_or(0, |c| c.gathered.len());
        if gathered == 0 {
            let deadline = tokio::time::Instant::now() + IDLE_WAIT;
            match self.next(deadline).await? {
                Some(delivery) => self.keep(delivery)?,
                None => return Ok(Flow::Continue),
            }
        }
        // What else already arrived, without waiting.
        let now = tokio::time::Instant::now();
        loop {
            let full = self
                .connection
                .as_ref()
                .is_none_or(|c| c.gathered.len() >= limit);
            if full {
                break;
            }
            // A failure drops what was gathered: unacknowledged, it is delivered again on
            // the next connection.
            match self.next(now).await? {
                Some(delivery) => self.keep(delivery)?,
                None => break,
            }
        }
        let Some(connection) = self.connection.as_mut() else {
            return Err(self.error("not connected", "the connection was dropped"));
        };
        // What is over the limit stays gathered for the next call.
        let rest = connection
            .gathered
            .split_off(limit.min(connection.gathered.len()));
        let block = std::mem::replace(&mut connection.gathered, rest);
        if block.is_empty() {
            return Ok(Flow::Continue);
        }
        let messages: Vec<MqttMessage> = block
            .iter()
            .map(|p| MqttMessage {
                topic: p.topic.clone(),
                payload: p.payload.to_vec(),
                redelivered: p.dup,
                retained: p.retain,
            })
            .collect();
        tracing::trace!(
            messages = messages.len(),
            "Storing a block of MQTT messages."
        );
        if sink.store_reliably(messages).await.is_err() {
            // Stopping before the block was stored: not acknowledged, delivered again.
            return Ok(Flow::Finished);
        }
        // The block is stored: acknowledge it, without its payloads.
        connection.to_ack.extend(block.into_iter().map(|p| {
            let mut ack = Publish::new("", p.qos, Vec::new());
            ack.pkid = p.pkid;
            ack
        }));
        if let Err(e) = connection.queue_acks() {
            // Stored, not acknowledged: delivered again on the next connection.
            self.connection = None;
            return Err(self.error("cannot acknowledge", e));
        }
        Ok(Flow::Continue)
    }

    /// Disconnects after the acknowledgements queued so far were sent (the session stays
    /// on the broker), waiting at most one second.
    async fn on_stop(&mut self) {
        let Some(mut connection) = self.connection.take() else {
            return;
        };
        let _ = connection.queue_acks();
        if connection.client.try_disconnect().is_ok() {
            // The task ends when the broker closes the connection after the DISCONNECT.
            let _ = tokio::time::timeout(Duration::from_secs(1), &mut connection.task).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_reads_as_text_only_when_utf8() {
        let mut m = MqttMessage {
            topic: "t".into(),
            payload: b"to be".to_vec(),
            redelivered: false,
            retained: false,
        };
        assert_eq!(m.text(), Some("to be"));
        m.payload = vec![0xff, b'a'];
        assert_eq!(m.text(), None);
    }

    #[test]
    fn filters_and_groups_are_checked() {
        for bad in ["", "a/#/b", "a+/b", "a/b#"] {
            let e = MqttReceiver::new("h", 1, bad, "c").expect_err(bad);
            assert!(e.to_string().contains("not a valid filter"), "{e}");
        }
        assert!(
            MqttReceiver::new("h", 1, "a/+/b/#", "").is_err(),
            "empty id"
        );
        let r = MqttReceiver::new("h", 1, "a/+/b/#", "c").unwrap();
        assert_eq!(r.filter(), "a/+/b/#");
        for bad in ["", "g/h", "g+", "#"] {
            assert!(
                MqttReceiver::new("h", 1, "t", "c")
                    .unwrap()
                    .shared_group(bad)
                    .is_err(),
                "{bad:?}"
            );
        }
        let shared = r.shared_group("g").unwrap();
        assert_eq!(shared.filter(), "$share/g/a/+/b/#");
        assert_eq!(shared.name(), "mqtt $share/g/a/+/b/# at h:1 as c");
    }

    /// Nothing listens on the port: the start fails as retryable, naming the broker and the
    /// topic.
    #[tokio::test]
    async fn a_refused_connection_is_retryable_and_names_broker_and_topic() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap();
        let mut r = MqttReceiver::new("127.0.0.1", port, "words", "c").unwrap();
        let e = r.on_start().await.expect_err("nothing listens");
        assert!(e.is_retryable(), "{e}");
        let text = e.to_string();
        assert!(
            text.contains(&format!("mqtt 127.0.0.1:{port} topic words: ")),
            "{text}"
        );
    }
}
