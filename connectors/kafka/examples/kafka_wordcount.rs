//! Word count over a Kafka topic with the direct stream (Spark's `DirectKafkaWordCount`):
//! loads the bundled text into a topic with a producer, counts its words with a running
//! count as the batches read it, and ends with a check against an independent count of the
//! same text (exit 0 when equal, 1 when not, 2 for a usage error).
//!
//! ```text
//! cargo run --release -p rivulet-kafka --example kafka_wordcount
//! cargo run --release -p rivulet-kafka --example kafka_wordcount -- --brokers 127.0.0.1:9092 --topic lines
//! ```
//!
//! Without `--brokers` it runs on an embedded cluster: librdkafka's mock cluster, in this
//! process, speaking Kafka's protocol on 127.0.0.1.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use parking_lot::Mutex;
use rdkafka::mocking::MockCluster;
use rivulet::prelude::*;
use rivulet_kafka::{produce_lines, KafkaRecord, KafkaSource};

#[derive(Parser, Debug)]
#[command(about = "Word count over a Kafka topic with the direct stream")]
struct Args {
    /// The cluster, host:port[,host:port...]; default: an embedded mock cluster.
    #[arg(long)]
    brokers: Option<String>,
    /// The topic the text is loaded into and read from.
    #[arg(long, default_value = "lines")]
    topic: String,
    /// Partitions of the topic, when the embedded cluster creates it.
    #[arg(long, default_value_t = 3)]
    partitions: i32,
    /// The text to load.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/data/shakespeare.txt"))]
    input: PathBuf,
    /// The batch interval, ms.
    #[arg(long, default_value_t = 500)]
    batch_ms: u64,
    /// Records per second per partition a batch reads at most.
    #[arg(long, default_value_t = 20_000.0)]
    max_rate_per_partition: f64,
}

fn words(line: &str) -> Vec<String> {
    line.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_ascii_lowercase)
        .collect()
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
    match run(args).await {
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

async fn run(args: Args) -> Result<bool, BoxError> {
    let text = std::fs::read_to_string(&args.input)
        .map_err(|e| Error::Config(format!("--input {}: {e}", args.input.display())))?;
    let lines: Vec<String> = text.lines().map(str::to_string).collect();
    // The embedded cluster lives as long as this function.
    let embedded = match &args.brokers {
        Some(_) => None,
        None => {
            let cluster = MockCluster::new(1)?;
            cluster.create_topic(&args.topic, args.partitions, 1)?;
            Some(cluster)
        }
    };
    let brokers = match (&args.brokers, &embedded) {
        (Some(b), _) => b.clone(),
        (None, Some(cluster)) => cluster.bootstrap_servers(),
        (None, None) => unreachable!("an embedded cluster without --brokers"),
    };
    println!(
        "Loading {} ({} lines) into topic {} at {brokers}{}",
        args.input.display(),
        lines.len(),
        args.topic,
        if embedded.is_some() {
            " (embedded mock cluster)"
        } else {
            ""
        }
    );
    produce_lines(&brokers, &args.topic, &lines)?;

    let ssc = StreamingContext::new(
        StreamingConfig::new()
            .app_name("kafka_wordcount")
            .batch_interval(Duration::from_millis(args.batch_ms)),
    )?;
    let direct = ssc.direct_stream(
        KafkaSource::new(&brokers, [args.topic.clone()]).group("kafka_wordcount"),
        DirectOptions::default().max_rate_per_partition(args.max_rate_per_partition),
    );
    let counts = direct
        .stream()
        .flat_map(|r: KafkaRecord| words(r.text().unwrap_or_default()))
        .map(|w| (w, 1u64))
        .update_state_by_key(|vs: Vec<u64>, s: Option<u64>| {
            Some(s.unwrap_or(0) + vs.iter().sum::<u64>())
        });
    let read = Arc::new(AtomicU64::new(0));
    let last: Arc<Mutex<Vec<(String, u64)>>> = Arc::default();
    let (seen, ranges, total, final_counts) = (
        read.clone(),
        direct.clone(),
        lines.len() as u64,
        last.clone(),
    );
    let done = Arc::new(tokio::sync::Notify::new());
    let notify = done.clone();
    counts.foreach_rdd(move |rdd, t| {
        let n: u64 = ranges
            .offset_ranges(t)
            .unwrap_or_default()
            .iter()
            .map(|r| r.count())
            .sum();
        let so_far = seen.fetch_add(n, Ordering::SeqCst) + n;
        let mut all = rdd.collect()?;
        all.sort_by(|(wa, ca), (wb, cb)| cb.cmp(ca).then_with(|| wa.cmp(wb)));
        let top: Vec<String> = all
            .iter()
            .take(5)
            .map(|(w, c)| format!("{w}:{c}"))
            .collect();
        println!(
            "batch {t}: {n} records ({so_far}/{total}); top 5: {}",
            top.join(" ")
        );
        *final_counts.lock() = all;
        if so_far >= total {
            notify.notify_one();
        }
        Ok(())
    });
    ssc.start().await?;
    tokio::select! {
        _ = done.notified() => {}
        failed = ssc.await_termination() => {
            failed?;
        }
    }
    ssc.stop(StopMode::Graceful).await?;

    let mut expected = BTreeMap::new();
    for w in lines.iter().flat_map(|l| words(l)) {
        *expected.entry(w).or_insert(0u64) += 1;
    }
    let mut got = last.lock().clone();
    got.sort();
    let expected: Vec<(String, u64)> = expected.into_iter().collect();
    if expected.is_empty() {
        println!(
            "Check FAILED: nothing to check: {} holds no words",
            args.input.display()
        );
        return Ok(false);
    }
    if got == expected {
        println!(
            "Check: the running count of {} distinct words equals an independent count of the input: OK",
            expected.len()
        );
        Ok(true)
    } else {
        println!(
            "Check FAILED: {} distinct words counted, {} expected",
            got.len(),
            expected.len()
        );
        Ok(false)
    }
}
