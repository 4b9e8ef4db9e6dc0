//! Records per second into a word count from each log source, against the socket path.
//!
//! In one run, for each batch interval (`--batch-ms`, default 100 and 1000) and each input,
//! it times how fast a streaming word count (`flat_map(words) → map((w, 1)) →
//! reduce_by_key`, `--executors` executors) takes in `--lines` lines of the bundled
//! Shakespeare text, from the context's start to the completion of the batch that holds the
//! last line, and checks the summed counts against a plain count of the same lines:
//!
//! - **socket**: `socket_text_stream` from a local TCP server writing as fast as the
//!   receiver reads (the path of Spark's `NetworkWordCount`);
//! - **kafka direct**: the direct stream (`rivulet_kafka::KafkaSource`) over a topic of
//!   `--partitions` partitions loaded beforehand into librdkafka's mock cluster, in this
//!   process;
//! - **kafka receiver**: the same topic through a receiver (a consumer assigned to every
//!   partition, storing what it polls into blocks), as Spark's old receiver-based Kafka
//!   input;
//! - **redis direct**: `RedisStreamSource` over one stream loaded beforehand into a
//!   `redis-server` of the harness's own on 127.0.0.1;
//! - **nats direct**: `rivulet_nats::NatsStreamSource` over one JetStream stream (file
//!   storage) loaded beforehand into a `nats-server -js` of the harness's own on 127.0.0.1;
//! - **mqtt receiver**: `rivulet::receivers::MqttReceiver` (QoS 1, a persistent session)
//!   on a `mosquitto` of the harness's own on 127.0.0.1 (no persistence,
//!   `max_queued_messages 0`, `max_inflight_messages 1000`, as the MQTT tests' broker): MQTT
//!   cannot replay, so each run first makes the receiver's session (subscribed at QoS 1),
//!   then publishes the lines at QoS 1 into it, every one acknowledged by the broker, before
//!   the context starts; the broker then holds them queued for the receiver, which
//!   acknowledges each block once stored. The write-ahead log is off, as for the Kafka
//!   receiver.
//!
//! A server that is not installed (`bash scripts/install-test-tools.sh` installs them) leaves
//! its input out, with a line saying so.
//!
//! Rate control stays at its defaults (backpressure on), and the direct streams have no
//! per-partition cap: a loaded log is drained as fast as the batches take it. Each figure is
//! the median of `--runs` runs; the ratios are to the socket path of the same batch interval.
//!
//! ```text
//! cargo run --release -p rivulet-benches --bin bench_brokers
//! cargo run --release -p rivulet-benches --bin bench_brokers -- --lines 400000 --runs 5
//! ```

use std::collections::HashMap;
use std::net::TcpListener as StdListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use clap::Parser;
use parking_lot::Mutex;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use rivulet::prelude::*;
use rivulet::receivers::{MqttMessage, MqttReceiver, RedisStreamSource};
use rivulet_benches::harness::{example_data, median_f64};
use rivulet_benches::support::{self, words, FeedEnd};
use rivulet_kafka::{send_waiting, KafkaRecord, KafkaSource};
use rivulet_nats::{NatsMessage, NatsStreamSource};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

/// Command-line options.
#[derive(Parser, Debug)]
#[command(about = "Records/s into a word count from Kafka, Redis Streams, NATS, MQTT and a socket")]
struct Args {
    /// Lines per run (the bundled text, repeated as needed); at most 100,000 per Kafka
    /// partition, what librdkafka's mock cluster keeps.
    #[arg(long, default_value_t = 200_000)]
    lines: usize,
    /// Batch intervals to measure, ms.
    #[arg(long, value_delimiter = ',', default_value = "100,1000")]
    batch_ms: Vec<u64>,
    /// Executors.
    #[arg(long, default_value_t = 2)]
    executors: usize,
    /// Partitions of the Kafka topic.
    #[arg(long, default_value_t = 2)]
    partitions: i32,
    /// Only these inputs (`socket`, `kafka-direct`, `kafka-receiver`, `redis-direct`,
    /// `nats-direct`, `mqtt-receiver`);
    /// default: all (the socket's figure is the ratios' base).
    #[arg(long, value_delimiter = ',')]
    inputs: Vec<String>,
    /// Runs per figure (the median is reported).
    #[arg(long, default_value_t = 3)]
    runs: usize,
}

/// The inputs measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Input {
    Socket,
    KafkaDirect,
    KafkaReceiver,
    RedisDirect,
    NatsDirect,
    MqttReceiver,
}

impl Input {
    fn name(self) -> &'static str {
        match self {
            Input::Socket => "socket",
            Input::KafkaDirect => "kafka direct",
            Input::KafkaReceiver => "kafka receiver",
            Input::RedisDirect => "redis direct",
            Input::NatsDirect => "nats direct",
            Input::MqttReceiver => "mqtt receiver",
        }
    }
}

/// Where the loaded logs are.
struct Brokers {
    _kafka: MockCluster<'static, DefaultProducerContext>,
    kafka: String,
    redis: Option<Server>,
    nats: Option<Server>,
    mqtt: Option<Server>,
}

/// A server process of the harness's own on a free 127.0.0.1 port, in a temporary
/// directory, killed on drop.
struct Server {
    child: Child,
    url: String,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `binary` (on PATH or in /usr/sbin) with the arguments `args` gives for a port and
/// a directory (where it may write a configuration file), and waits until the port accepts
/// connections; `None`, with a line saying so, when it cannot be started.
fn start_server(
    binary: &str,
    scheme: &str,
    args: impl FnOnce(u16, &std::path::Path) -> Result<Vec<String>, BoxError>,
) -> Result<Option<Server>, BoxError> {
    let port = StdListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let dir = tempfile::tempdir()?;
    let sbin = std::path::Path::new("/usr/sbin").join(binary);
    let program = if sbin.is_file() { sbin } else { binary.into() };
    let child = match Command::new(&program)
        .args(args(port, dir.path())?)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    {
        Ok(child) => child,
        Err(e) => {
            println!("{binary} not started ({e}): its figures are left out");
            return Ok(None);
        }
    };
    let server = Server {
        child,
        url: format!("{scheme}://127.0.0.1:{port}"),
        port,
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            return Err(format!("{binary} on port {port} did not answer").into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(Some(server))
}

/// Produces `lines` round robin over the topic's `partitions`: librdkafka's mock cluster
/// keeps at most 100,000 records per partition (older ones are deleted, as retention), and
/// the default sticky partitioner piled 155,000 of 200,000 lines into one of two.
fn load_kafka(
    brokers: &str,
    topic: &str,
    partitions: i32,
    lines: &[String],
) -> Result<(), BoxError> {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "20")
        .create()?;
    for (i, line) in lines.iter().enumerate() {
        let partition = i as i32 % partitions.max(1);
        send_waiting(
            &producer,
            BaseRecord::<(), String>::to(topic)
                .partition(partition)
                .payload(line),
        )?;
    }
    producer.flush(Duration::from_secs(120))?;
    Ok(())
}

fn load_redis(url: &str, key: &str, lines: &[String]) -> Result<(), BoxError> {
    let mut connection = redis::Client::open(url)?.get_connection()?;
    for chunk in lines.chunks(5_000) {
        let mut pipe = redis::pipe();
        for line in chunk {
            pipe.cmd("XADD")
                .arg(key)
                .arg("*")
                .arg("line")
                .arg(line)
                .ignore();
        }
        pipe.query::<()>(&mut connection)?;
    }
    Ok(())
}

/// Makes stream `stream` (subject of the same name, file storage), publishes `lines` to it
/// with up to 1,000 acknowledgements outstanding, and waits for them all.
async fn load_nats(url: &str, stream: &str, lines: &[String]) -> Result<(), BoxError> {
    let js = jetstream::new(async_nats::connect(url).await?);
    js.get_or_create_stream(jetstream::stream::Config {
        name: stream.to_string(),
        subjects: vec![stream.to_string()],
        storage: jetstream::stream::StorageType::File,
        ..Default::default()
    })
    .await?;
    for chunk in lines.chunks(1_000) {
        let mut acks = Vec::with_capacity(chunk.len());
        for line in chunk {
            acks.push(js.publish(stream.to_string(), line.clone().into()).await?);
        }
        for ack in acks {
            ack.await?;
        }
    }
    Ok(())
}

/// Makes the persistent session of client `client_id` on the MQTT broker at
/// `127.0.0.1:port`, subscribed to `topic` at QoS 1, then publishes `lines` to `topic` at
/// QoS 1 as another client, and returns once the broker acknowledged every one: the broker
/// then holds them all queued for the session (its `max_queued_messages` is 0, no limit).
async fn load_mqtt(
    port: u16,
    client_id: &str,
    topic: &str,
    lines: &[String],
) -> Result<(), BoxError> {
    let within =
        |what: &'static str| move |_| format!("mqtt 127.0.0.1:{port}: {what} took over 120 s");
    // The session: connect, subscribe, wait for the SUBACK, leave.
    let mut options = MqttOptions::new(client_id, "127.0.0.1", port);
    options.set_clean_session(false);
    let (client, mut events) = AsyncClient::new(options, 10);
    client.subscribe(topic, QoS::AtLeastOnce).await?;
    tokio::time::timeout(Duration::from_secs(120), async {
        loop {
            if let Event::Incoming(Packet::SubAck(_)) = events.poll().await? {
                return Ok::<(), BoxError>(());
            }
        }
    })
    .await
    .map_err(within("subscribing"))??;
    client.disconnect().await?;
    // Until the DISCONNECT is written and the broker closes the connection.
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        while events.poll().await.is_ok() {}
    })
    .await;
    // The lines, up to 1,000 unacknowledged at a time.
    let mut options = MqttOptions::new(format!("{client_id}-publisher"), "127.0.0.1", port);
    options.set_inflight(1_000);
    let (client, mut events) = AsyncClient::new(options, 1_000);
    let publishing = async {
        for line in lines {
            client
                .publish(topic, QoS::AtLeastOnce, false, line.clone())
                .await?;
        }
        Ok::<(), BoxError>(())
    };
    let acknowledged = async {
        let mut acked = 0;
        while acked < lines.len() {
            if let Event::Incoming(Packet::PubAck(_)) = events.poll().await? {
                acked += 1;
            }
        }
        Ok::<(), BoxError>(())
    };
    tokio::time::timeout(Duration::from_secs(600), async {
        tokio::try_join!(publishing, acknowledged)
    })
    .await
    .map_err(within("publishing"))??;
    client.disconnect().await?;
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        while events.poll().await.is_ok() {}
    })
    .await;
    Ok(())
}

/// A receiver over every partition of a Kafka topic from offset 0 (an offset no longer on
/// the broker is an error, not a silent skip) (what Spark's
/// receiver-based Kafka input did): it polls the consumer without blocking and stores what
/// came in blocks.
struct KafkaReceiver {
    brokers: String,
    topic: String,
    partitions: i32,
    consumer: Option<Arc<BaseConsumer>>,
    received: usize,
}

impl Receiver for KafkaReceiver {
    type Item = String;

    fn name(&self) -> String {
        format!("kafka receiver {} at {}", self.topic, self.brokers)
    }

    async fn on_start(&mut self) -> Result<(), ReceiverError> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
            .set("group.id", "bench_brokers-receiver")
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "error")
            .create()
            .map_err(|e| ReceiverError::fatal(format!("{}: {e}", self.name())))?;
        let mut tpl = TopicPartitionList::new();
        for p in 0..self.partitions {
            tpl.add_partition_offset(&self.topic, p, Offset::Offset(0))
                .map_err(|e| ReceiverError::fatal(e.to_string()))?;
        }
        consumer
            .assign(&tpl)
            .map_err(|e| ReceiverError::fatal(format!("{}: {e}", self.name())))?;
        self.consumer = Some(Arc::new(consumer));
        Ok(())
    }

    async fn receive(&mut self, sink: &mut BlockSink<String>) -> Result<Flow, ReceiverError> {
        let Some(consumer) = self.consumer.clone() else {
            return Err(ReceiverError::fatal("not started"));
        };
        // librdkafka's poll blocks: on a blocking thread, up to 10,000 records or 50 ms.
        let polled = tokio::task::spawn_blocking(move || {
            let mut lines = Vec::new();
            let deadline = Instant::now() + Duration::from_millis(50);
            while lines.len() < 10_000 {
                let left = deadline.saturating_duration_since(Instant::now());
                match consumer.poll(left) {
                    None => break,
                    Some(Err(e)) => return Err(ReceiverError::retryable(e.to_string())),
                    Some(Ok(m)) => lines.push(
                        String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned(),
                    ),
                }
            }
            Ok(lines)
        })
        .await
        .map_err(|e| ReceiverError::fatal(e.to_string()))??;
        if polled.is_empty() {
            return Ok(Flow::Continue);
        }
        self.received += polled.len();
        tracing::debug!("{}: {} records received", self.topic, self.received);
        match sink.store_many(polled).await {
            Ok(()) => {
                tracing::debug!("{}: {} records stored", self.topic, self.received);
                Ok(Flow::Continue)
            }
            Err(_) => Ok(Flow::Finished),
        }
    }
}

/// Reports when `total` records are done (or a batch failed).
struct Watch {
    total: usize,
    done: usize,
    failures: Vec<String>,
    tx: Option<tokio::sync::oneshot::Sender<(Instant, Vec<String>)>>,
}

impl StreamingListener for Watch {
    fn on_batch_completed(&mut self, batch: &BatchInfo) {
        self.done += batch.num_records;
        for (op, error) in &batch.failures {
            self.failures
                .push(format!("batch {}: {op}: {error}", batch.batch_time));
        }
        if self.done >= self.total || !self.failures.is_empty() {
            if let Some(tx) = self.tx.take() {
                let _ = tx.send((Instant::now(), std::mem::take(&mut self.failures)));
            }
        }
    }
}

/// One run: the word count over `input`; its records/s after checking its counts.
async fn run(
    args: &Args,
    batch_ms: u64,
    input: Input,
    brokers: &Brokers,
    topic: &str,
    lines: &Arc<Vec<String>>,
    expected: &HashMap<String, u64>,
) -> Result<f64, BoxError> {
    let config = support::base_config()
        .app_name("bench_brokers")
        .batch_interval(Duration::from_millis(batch_ms))
        .executors(args.executors);
    let ssc = StreamingContext::new(config)?;
    let mut server = None;
    let text: DStream<String> = match input {
        Input::Socket => {
            let bytes: Vec<Vec<u8>> = lines.iter().map(|l| l.as_bytes().to_vec()).collect();
            let (port, task) = support::spawn_server(Arc::new(bytes), 0, FeedEnd::KeepOpen).await?;
            server = Some(task);
            ssc.socket_text_stream("127.0.0.1", port)
        }
        Input::KafkaDirect => ssc
            .direct_stream(
                KafkaSource::new(&brokers.kafka, [topic.to_string()]),
                DirectOptions::default(),
            )
            .stream()
            .map(|r: KafkaRecord| r.text().unwrap_or_default().to_string()),
        Input::KafkaReceiver => ssc.receiver_stream(KafkaReceiver {
            brokers: brokers.kafka.clone(),
            topic: topic.to_string(),
            partitions: args.partitions,
            consumer: None,
            received: 0,
        }),
        Input::RedisDirect => {
            let url = &brokers.redis.as_ref().ok_or("no redis-server")?.url;
            ssc.direct_stream(
                RedisStreamSource::new(url, [topic])?,
                DirectOptions::default(),
            )
            .stream()
            .map(|e| e.text("line").unwrap_or_default().to_string())
        }
        Input::NatsDirect => {
            let url = &brokers.nats.as_ref().ok_or("no nats-server")?.url;
            ssc.direct_stream(
                NatsStreamSource::new(url, [topic])?,
                DirectOptions::default(),
            )
            .stream()
            .map(|m: NatsMessage| m.text().unwrap_or_default().to_string())
        }
        Input::MqttReceiver => {
            let port = brokers.mqtt.as_ref().ok_or("no mosquitto")?.port;
            // The session `load_mqtt` made and filled for this run.
            ssc.receiver_stream(MqttReceiver::new("127.0.0.1", port, topic, topic)?)
                .map(|m: MqttMessage| m.text().unwrap_or_default().to_string())
        }
    };
    let totals: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
    let sink = totals.clone();
    text.flat_map(words)
        .map(|w| (w, 1u64))
        .reduce_by_key(|a, b| a + b)
        .foreach_batch(move |_, batch| {
            let mut totals = sink.lock();
            for (w, n) in batch {
                *totals.entry(w).or_insert(0) += n;
            }
        });
    let (tx, rx) = tokio::sync::oneshot::channel();
    ssc.add_listener(Watch {
        total: lines.len(),
        done: 0,
        failures: Vec::new(),
        tx: Some(tx),
    });
    let started = Instant::now();
    ssc.start().await?;
    let (at, failures) = tokio::select! {
        seen = rx => seen.map_err(|_| "the listener was dropped before the last batch")?,
        result = ssc.await_termination() => {
            result?;
            return Err("the context stopped before the last batch".into());
        }
    };
    ssc.stop(StopMode::Now).await?;
    if let Some(task) = server {
        task.abort();
    }
    if !failures.is_empty() {
        return Err(format!("batches failed: {}", failures.join("; ")).into());
    }
    if *totals.lock() != *expected {
        return Err(format!("{}: the counts differ from a plain count", input.name()).into());
    }
    Ok(lines.len() as f64 / (at - started).as_secs_f64())
}

#[actix::main]
async fn main() -> Result<(), BoxError> {
    support::init_tracing_with("warn");
    let args = Args::parse();
    let text = std::fs::read_to_string(example_data("shakespeare.txt"))?;
    let all: Vec<&str> = text.lines().collect();
    let lines: Arc<Vec<String>> = Arc::new(
        all.iter()
            .cycle()
            .take(args.lines)
            .map(|l| l.to_string())
            .collect(),
    );
    let mut expected: HashMap<String, u64> = HashMap::new();
    for w in lines.iter().flat_map(|l| words(l.clone())) {
        *expected.entry(w).or_insert(0) += 1;
    }
    if expected.is_empty() {
        return Err("nothing to check: --lines gives no words to count".into());
    }
    let cluster = MockCluster::new(1)?;
    let kafka = cluster.bootstrap_servers();
    let redis = start_server("redis-server", "redis", |port, dir| {
        let (port, dir) = (port.to_string(), dir.display().to_string());
        Ok([
            "--bind",
            "127.0.0.1",
            "--port",
            &port,
            "--save",
            "",
            "--dir",
            &dir,
        ]
        .map(String::from)
        .to_vec())
    })?;
    let nats = start_server("nats-server", "nats", |port, dir| {
        let (port, dir) = (port.to_string(), dir.display().to_string());
        Ok(["-js", "-a", "127.0.0.1", "-p", &port, "-sd", &dir]
            .map(String::from)
            .to_vec())
    })?;
    let mqtt = start_server("mosquitto", "mqtt", |port, dir| {
        // As the MQTT tests' broker: no limit on what a session queues (mosquitto drops
        // messages past 1000 by default, silently), 1000 unacknowledged messages in flight
        // (20 by default). Started as root, mosquitto 2 would switch to the `mosquitto`
        // user; ignored when not root.
        let config = dir.join("mosquitto.conf");
        std::fs::write(
            &config,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n\
                 max_queued_messages 0\nmax_inflight_messages 1000\nuser root\n"
            ),
        )?;
        Ok(vec!["-c".to_string(), config.display().to_string()])
    })?;
    let brokers = Brokers {
        _kafka: cluster,
        kafka,
        redis,
        nats,
        mqtt,
    };
    let mut inputs = vec![Input::Socket, Input::KafkaDirect, Input::KafkaReceiver];
    if brokers.redis.is_some() {
        inputs.push(Input::RedisDirect);
    }
    if brokers.nats.is_some() {
        inputs.push(Input::NatsDirect);
    }
    if brokers.mqtt.is_some() {
        inputs.push(Input::MqttReceiver);
    }
    if !args.inputs.is_empty() {
        inputs.retain(|i| args.inputs.iter().any(|n| *n == i.name().replace(' ', "-")));
    }
    println!(
        "{} lines per run, {} executors, {} Kafka partitions, median of {} runs",
        lines.len(),
        args.executors,
        args.partitions,
        args.runs
    );
    for &batch_ms in &args.batch_ms {
        let mut socket = None;
        for &input in &inputs {
            let mut rates = Vec::new();
            for run_no in 0..args.runs {
                // A fresh topic or stream per run, loaded before the context starts.
                let topic = format!(
                    "lines-{batch_ms}-{}-{run_no}",
                    input.name().replace(' ', "-")
                );
                let loading = Instant::now();
                match input {
                    Input::KafkaDirect | Input::KafkaReceiver => {
                        brokers._kafka.create_topic(&topic, args.partitions, 1)?;
                        load_kafka(&brokers.kafka, &topic, args.partitions, &lines)?;
                    }
                    Input::RedisDirect => {
                        let url = &brokers.redis.as_ref().ok_or("no redis-server")?.url;
                        load_redis(url, &topic, &lines)?;
                    }
                    Input::NatsDirect => {
                        let url = &brokers.nats.as_ref().ok_or("no nats-server")?.url;
                        load_nats(url, &topic, &lines).await?;
                    }
                    Input::MqttReceiver => {
                        let port = brokers.mqtt.as_ref().ok_or("no mosquitto")?.port;
                        load_mqtt(port, &topic, &topic, &lines).await?;
                    }
                    Input::Socket => {}
                }
                tracing::info!("{topic}: loaded in {:?}", loading.elapsed());
                rates.push(run(&args, batch_ms, input, &brokers, &topic, &lines, &expected).await?);
            }
            let median = median_f64(&rates);
            if input == Input::Socket {
                socket = Some(median);
            }
            let ratio = socket.map(|s| median / s).unwrap_or(f64::NAN);
            let all: Vec<String> = rates.iter().map(|r| format!("{r:.0}")).collect();
            println!(
                "batch {batch_ms:>5} ms  {:<15} {median:>10.0} records/s  {ratio:>5.2}x socket  (runs: {})",
                input.name(),
                all.join(", ")
            );
        }
    }
    Ok(())
}
