//! A log pipeline from Kafka to Kafka: reads Apache access log lines from a topic with the
//! direct stream, counts each batch's requests per status code, and writes the counts to
//! another topic **exactly once** (`save_to_kafka_exactly_once`: one Kafka transaction per
//! batch with the offsets it read). Lines that do not parse (line 8,899 of the bundled log
//! has a truncated user agent) are counted under the key `unparsed` and reported, never
//! fatal. At the end it reads the output topic back with a `read_committed` consumer and
//! checks that the counts add up to an independent pass over the input file (exit 0 when
//! equal, 1 when not, 2 for a usage error).
//!
//! ```text
//! cargo run --release -p rivulet-kafka --example kafka_log_pipeline
//! cargo run --release -p rivulet-kafka --example kafka_log_pipeline -- --brokers 127.0.0.1:9092 \
//!     --checkpoint-dir ckpt --idle-exit-secs 5
//! ```
//!
//! Without `--brokers` it loads the bundled `examples/data/apache_access.log` (10,000 lines)
//! into an embedded cluster (librdkafka's mock cluster, in this process) and stops once
//! every line was counted. With `--brokers` it reads what is in the topic (loading `--input`
//! first unless `--no-load`), and with `--checkpoint-dir` it restarts from its checkpoint
//! (`StreamingContext::get_or_create`): killed and started again, it neither loses nor
//! publishes twice a batch's counts. `--serve-mock-cluster` only serves a mock cluster with
//! the topics on 127.0.0.1 (printing `brokers HOST:PORT`) until killed: the crash test's
//! broker, a process apart from the job it kills.

#[path = "../../../examples/log_analytics/parse.rs"]
#[allow(dead_code)]
mod parse;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use parking_lot::Mutex;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::mocking::MockCluster;
use rdkafka::{Offset, TopicPartitionList};
use rivulet::prelude::*;
use rivulet_kafka::{
    produce_lines, save_to_kafka_exactly_once, ExactlyOnce, KafkaRecord, KafkaSink, KafkaSource,
    BATCH_HEADER,
};

#[derive(Parser, Debug)]
#[command(about = "Apache log lines from Kafka, status counts per batch to Kafka, exactly once")]
struct Args {
    /// The cluster, host:port[,host:port...]; default: an embedded mock cluster.
    #[arg(long)]
    brokers: Option<String>,
    /// The topic of log lines.
    #[arg(long, default_value = "access")]
    topic: String,
    /// The topic the per-batch counts go to (its progress records: OUT_TOPIC.progress).
    #[arg(long, default_value = "status_counts")]
    out_topic: String,
    /// Partitions of the log topic, when this program creates it (embedded or served).
    #[arg(long, default_value_t = 3)]
    partitions: i32,
    /// The log to load, and to check the counts against.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/data/apache_access.log"))]
    input: PathBuf,
    /// Do not load `--input` (something else produces the lines).
    #[arg(long)]
    no_load: bool,
    /// The batch interval, ms.
    #[arg(long, default_value_t = 500)]
    batch_ms: u64,
    /// Records per second per partition a batch reads at most.
    #[arg(long, default_value_t = 2_000.0)]
    max_rate_per_partition: f64,
    /// Keep checkpoints here and restart from them.
    #[arg(long)]
    checkpoint_dir: Option<PathBuf>,
    /// Stop after this many seconds without a new line (once some arrived); default: stop
    /// once the output accounts for every line of `--input`.
    #[arg(long)]
    idle_exit_secs: Option<u64>,
    /// Only serve a mock cluster with the topics on 127.0.0.1 until killed.
    #[arg(long, conflicts_with = "brokers")]
    serve_mock_cluster: bool,
}

/// The key a line's request is counted under: its status code, or `unparsed`.
fn status_key(line: &str) -> String {
    match parse::parse(line) {
        Ok(record) => record.status.to_string(),
        Err(_) => "unparsed".to_string(),
    }
}

/// The requests per key in `lines`, one pass, no streaming: what the output must add up to.
fn independent_counts(lines: &[String]) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for line in lines {
        *counts.entry(status_key(line)).or_insert(0) += 1;
    }
    counts
}

/// What the output topic holds, read back.
struct ReadBack {
    /// The committed counts summed per status, each batch's count of a status once.
    sums: BTreeMap<String, u64>,
    /// Records of a batch and status seen before (the last copy counts).
    written_again: usize,
}

/// Sums the committed counts in `topic` (all partitions): key = status, value = count, the
/// batch in the `rivulet-batch-ms` header. A broker that implements transactions shows this
/// `read_committed` consumer each batch's records once; one without transaction isolation
/// (librdkafka's mock cluster) also shows what a killed run's open transaction had sent
/// before the batch was written again, so each batch's count of a status is taken once: its
/// last copy.
fn read_back(brokers: &str, topic: &str) -> Result<ReadBack, BoxError> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "kafka_log_pipeline-check")
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "false")
        .create()?;
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let mut ends = BTreeMap::new();
    let mut tpl = TopicPartitionList::new();
    for t in metadata.topics().iter().filter(|t| t.name() == topic) {
        for p in t.partitions() {
            let (low, high) = consumer.fetch_watermarks(topic, p.id(), Duration::from_secs(10))?;
            if high > low {
                ends.insert(p.id(), high);
                tpl.add_partition_offset(topic, p.id(), Offset::Offset(low))?;
            }
        }
    }
    let mut counts: BTreeMap<(String, String), u64> = BTreeMap::new();
    let mut written_again = 0;
    if ends.is_empty() {
        return Ok(ReadBack {
            sums: BTreeMap::new(),
            written_again,
        });
    }
    consumer.assign(&tpl)?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ends.is_empty() {
        if Instant::now() > deadline {
            return Err(
                format!("reading {topic} back: partitions {ends:?} not read to their end").into(),
            );
        }
        match consumer.poll(Duration::from_millis(200)) {
            None => {
                // Transaction markers hold the last offsets: the position tells.
                let position = consumer.position()?;
                ends.retain(|p, end| {
                    !matches!(position.find_partition(topic, *p).map(|e| e.offset()),
                        Some(Offset::Offset(at)) if at >= *end)
                });
            }
            Some(Err(e)) => return Err(format!("reading {topic} back: {e}").into()),
            Some(Ok(m)) => {
                let key = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
                let value = std::str::from_utf8(m.payload().unwrap_or_default())?;
                let n: u64 = value
                    .parse()
                    .map_err(|e| format!("{topic} offset {}: count {value:?}: {e}", m.offset()))?;
                let batch = m
                    .headers()
                    .and_then(|h| h.iter().find(|h| h.key == BATCH_HEADER))
                    .and_then(|h| h.value)
                    .map(|v| String::from_utf8_lossy(v).into_owned())
                    .ok_or_else(|| {
                        format!("{topic} offset {}: no {BATCH_HEADER} header", m.offset())
                    })?;
                // The last copy of a batch's count of a status stands.
                if counts.insert((batch, key), n).is_some() {
                    written_again += 1;
                }
                if m.offset() + 1 >= ends.get(&m.partition()).copied().unwrap_or(i64::MAX) {
                    ends.remove(&m.partition());
                }
            }
        }
    }
    let mut sums = BTreeMap::new();
    for ((_, key), n) in counts {
        *sums.entry(key).or_insert(0) += n;
    }
    Ok(ReadBack {
        sums,
        written_again,
    })
}

fn serve(args: &Args) -> Result<(), BoxError> {
    let cluster = MockCluster::new(1)?;
    cluster.create_topic(&args.topic, args.partitions, 1)?;
    cluster.create_topic(&args.out_topic, 1, 1)?;
    cluster.create_topic(&format!("{}.progress", args.out_topic), 1, 1)?;
    println!("brokers {}", cluster.bootstrap_servers());
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

#[actix::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let args = Args::parse();
    let result = if args.serve_mock_cluster {
        serve(&args).map(|()| true)
    } else {
        run(args).await
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(
                if matches!(e.downcast_ref::<Error>(), Some(Error::Config(_))) {
                    2
                } else {
                    1
                },
            )
        }
    }
}

/// The pipeline: lines from `topic`, per-batch status counts to `out_topic`, exactly once.
fn build(ssc: &StreamingContext, brokers: &str, args: &Args, seen: Arc<Mutex<Instant>>) {
    let direct = ssc.direct_stream(
        KafkaSource::new(brokers, [args.topic.clone()]).group("kafka_log_pipeline"),
        DirectOptions::default().max_rate_per_partition(args.max_rate_per_partition),
    );
    let counts = direct
        .stream()
        .map(|r: KafkaRecord| match r.text() {
            Some(line) => status_key(line),
            None => "unparsed".to_string(),
        })
        .count_by_value();
    let ranges = direct.clone();
    counts.foreach_rdd(move |rdd, t| {
        let read: u64 = ranges
            .offset_ranges(t)
            .unwrap_or_default()
            .iter()
            .map(|r| r.count())
            .sum();
        if read > 0 {
            *seen.lock() = Instant::now();
            let mut counts = rdd.collect()?;
            counts.sort();
            let shown: Vec<String> = counts.iter().map(|(k, n)| format!("{k}:{n}")).collect();
            println!("batch {t}: {read} lines; {}", shown.join(" "));
        }
        Ok(())
    });
    let sink = ExactlyOnce::new(
        KafkaSink::new(brokers, &args.out_topic),
        "kafka_log_pipeline",
    );
    save_to_kafka_exactly_once(&counts, &direct, sink, |(status, n)| {
        (Some(status.as_bytes().to_vec()), n.to_string().into_bytes())
    });
}

async fn run(args: Args) -> Result<bool, BoxError> {
    let text = std::fs::read_to_string(&args.input)
        .map_err(|e| Error::Config(format!("--input {}: {e}", args.input.display())))?;
    let lines: Vec<String> = text.lines().map(str::to_string).collect();
    let expected = independent_counts(&lines);
    let embedded = match &args.brokers {
        Some(_) => None,
        None => {
            let cluster = MockCluster::new(1)?;
            cluster.create_topic(&args.topic, args.partitions, 1)?;
            cluster.create_topic(&args.out_topic, 1, 1)?;
            cluster.create_topic(&format!("{}.progress", args.out_topic), 1, 1)?;
            Some(cluster)
        }
    };
    let brokers = match (&args.brokers, &embedded) {
        (Some(b), _) => b.clone(),
        (None, Some(cluster)) => cluster.bootstrap_servers(),
        (None, None) => unreachable!("an embedded cluster without --brokers"),
    };
    if !args.no_load {
        println!(
            "Loading {} ({} lines) into topic {} at {brokers}",
            args.input.display(),
            lines.len(),
            args.topic
        );
        produce_lines(&brokers, &args.topic, &lines)?;
    }
    let config = StreamingConfig::new()
        .app_name("kafka_log_pipeline")
        .batch_interval(Duration::from_millis(args.batch_ms));
    let seen = Arc::new(Mutex::new(Instant::now()));
    let ssc = match &args.checkpoint_dir {
        Some(dir) => {
            let ssc = StreamingContext::get_or_create(dir, config, |ssc| {
                build(ssc, &brokers, &args, seen.clone());
                Ok(())
            })?;
            if let Some(report) = ssc.restore_report() {
                println!(
                    "Restored from checkpoint {}: continuing after batch {}.",
                    dir.display(),
                    report.checkpoint.batch_time_ms
                );
            }
            ssc
        }
        None => {
            let ssc = StreamingContext::new(config)?;
            build(&ssc, &brokers, &args, seen.clone());
            ssc
        }
    };
    ssc.start().await?;
    println!(
        "Counting status codes from topic {} into {}.",
        args.topic, args.out_topic
    );
    let total: u64 = expected.values().sum();
    let out_topic = args.out_topic.clone();
    let check_brokers = brokers.clone();
    let done = async {
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            match args.idle_exit_secs {
                Some(secs) => {
                    if seen.lock().elapsed() >= Duration::from_secs(secs) {
                        println!("No new lines for {secs} s: stopping.");
                        return;
                    }
                }
                None => {
                    let (b, t) = (check_brokers.clone(), out_topic.clone());
                    let sums = tokio::task::spawn_blocking(move || read_back(&b, &t)).await;
                    if let Ok(Ok(read)) = sums {
                        if read.sums.values().sum::<u64>() >= total {
                            return;
                        }
                    }
                }
            }
        }
    };
    tokio::select! {
        () = done => {}
        failed = ssc.await_termination() => {
            failed?;
        }
    }
    ssc.stop(StopMode::Graceful).await?;

    let (b, t) = (brokers.clone(), args.out_topic.clone());
    let read = tokio::task::spawn_blocking(move || read_back(&b, &t)).await??;
    if read.written_again > 0 {
        println!(
            "{} record(s) of batches written again after a crash, counted once (the last copy).",
            read.written_again
        );
    }
    let got = read.sums;
    if let Some(n) = got.get("unparsed") {
        println!("{n} line(s) did not parse (counted under `unparsed`).");
    }
    if expected.is_empty() {
        println!(
            "Check FAILED: nothing to check: {} holds no lines",
            args.input.display()
        );
        return Ok(false);
    }
    if got == expected {
        println!(
            "Check: the committed counts of {} status codes in {} add up to an independent count of the {total} lines: OK",
            expected.len(),
            args.out_topic
        );
        Ok(true)
    } else {
        println!("Check FAILED: committed counts {got:?}, expected {expected:?}");
        Ok(false)
    }
}
