//! Word count over a NATS JetStream stream with the direct stream (Spark's
//! `DirectKafkaWordCount`, on JetStream): publishes the bundled text into a stream (each line
//! one message, every publish acknowledged by the server), counts its words with a running
//! count as the batches read the stream's sequences, and ends with a check against an
//! independent count of the same text (exit 0 when equal, 1 when not, 2 for a usage error).
//!
//! It needs a server with JetStream on; Debian's `nats-server` (installed by
//! `bash scripts/install-test-tools.sh`) starts with:
//!
//! ```text
//! nats-server -js -a 127.0.0.1 -p 4222 -sd /tmp/nats-data &
//! cargo run --release -p rivulet-nats --example nats_wordcount -- --server nats://127.0.0.1:4222
//! ```
//!
//! The stream (`--stream`, on subject `--subject`, file storage) is made when missing. The
//! count reads from the first sequence this run published to the last, so a stream that
//! already holds messages does not change the result.
//!
//! The restartable job: with `--no-load` it counts what something else publishes (the whole
//! stream, from its first message), with `--checkpoint-dir` it restarts from its checkpoint
//! (`StreamingContext::get_or_create`), and with `--idle-exit-secs N` it stops once no new
//! message came for N seconds; `--final-state FILE` writes the final counts
//! (`word<TAB>count`). Killed and started again with the same command, it neither loses nor
//! counts twice a message: the process-kill test (`tests/recovery_nats_kill.rs`) does that.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, stream};
use clap::Parser;
use parking_lot::Mutex;
use rivulet::prelude::*;
use rivulet_nats::{NatsMessage, NatsStreamSource, StartSequence};

#[derive(Parser, Debug)]
#[command(about = "Word count over a NATS JetStream stream with the direct stream")]
struct Args {
    /// The server, nats://HOST:PORT (JetStream on: `nats-server -js`).
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    server: String,
    /// The stream the text is published into and read from.
    #[arg(long, default_value = "lines")]
    stream: String,
    /// The subject the lines are published to (the stream's subject when it is made here).
    #[arg(long, default_value = "lines")]
    subject: String,
    /// The text to publish and to check the counts against.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/data/shakespeare.txt"))]
    input: PathBuf,
    /// Do not publish `--input` (something else publishes it); count the whole stream.
    #[arg(long)]
    no_load: bool,
    /// The batch interval, ms.
    #[arg(long, default_value_t = 500)]
    batch_ms: u64,
    /// Messages per second a batch reads at most.
    #[arg(long, default_value_t = 40_000.0)]
    max_rate_per_partition: f64,
    /// Keep checkpoints here and restart from them.
    #[arg(long)]
    checkpoint_dir: Option<PathBuf>,
    /// How often the running count is written to the checkpoint, ms (default: every 10 s,
    /// as Spark); a shorter interval keeps the lineage a restart recomputes short.
    #[arg(long)]
    checkpoint_interval_ms: Option<u64>,
    /// Stop after this many seconds without a new message (once some arrived); default:
    /// stop once every line published (or, with `--no-load`, as many as `--input` has)
    /// was counted.
    #[arg(long)]
    idle_exit_secs: Option<u64>,
    /// Write the final counts here, one `word<TAB>count` per line.
    #[arg(long)]
    final_state: Option<PathBuf>,
}

fn words(line: &str) -> Vec<String> {
    line.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_ascii_lowercase)
        .collect()
}

/// Makes the stream when missing, publishes every line and waits for the server's acks;
/// returns the sequences of the first and the last line.
async fn load(args: &Args, lines: &[String]) -> Result<(u64, u64), BoxError> {
    let client = async_nats::connect(args.server.as_str())
        .await
        .map_err(|e| format!("nats {}: cannot connect: {e}", args.server))?;
    let js = jetstream::new(client);
    js.get_or_create_stream(stream::Config {
        name: args.stream.clone(),
        subjects: vec![args.subject.clone()],
        storage: stream::StorageType::File,
        ..Default::default()
    })
    .await
    .map_err(|e| format!("nats {}: stream {}: {e}", args.server, args.stream))?;
    let (mut first, mut last) = (None, 0);
    // Up to 1,000 publishes in flight, then their acks.
    for chunk in lines.chunks(1_000) {
        let mut acks = Vec::with_capacity(chunk.len());
        for line in chunk {
            acks.push(
                js.publish(args.subject.clone(), line.clone().into())
                    .await?,
            );
        }
        for ack in acks {
            let ack = ack
                .await
                .map_err(|e| format!("publishing to {}: {e}", args.subject))?;
            first.get_or_insert(ack.sequence);
            last = ack.sequence;
        }
    }
    let first = first
        .ok_or_else(|| Error::Config(format!("--input {}: no lines", args.input.display())))?;
    Ok((first, last))
}

/// What one run shares with its pipeline's output operation.
#[derive(Clone, Default)]
struct Progress {
    /// Messages read by this run's batches.
    read: Arc<AtomicU64>,
    /// The highest stream sequence a batch read up to.
    until: Arc<AtomicU64>,
    /// The running counts after the last batch.
    counts: Arc<Mutex<Vec<(String, u64)>>>,
    /// When a batch last read a message.
    seen: Arc<Mutex<Option<Instant>>>,
    /// Whether this run finished a batch yet.
    first_done: Arc<AtomicBool>,
}

fn build(
    ssc: &StreamingContext,
    args: &Args,
    start: StartSequence,
    progress: &Progress,
) -> Result<()> {
    let source = NatsStreamSource::new(&args.server, [args.stream.clone()])?.start_at(start);
    let direct = ssc.direct_stream(
        source,
        DirectOptions::default().max_rate_per_partition(args.max_rate_per_partition),
    );
    let counts = direct
        .stream()
        .flat_map(|m: NatsMessage| words(m.text().unwrap_or_default()))
        .map(|w| (w, 1u64))
        .update_state_by_key(|vs: Vec<u64>, s: Option<u64>| {
            Some(s.unwrap_or(0) + vs.iter().sum::<u64>())
        });
    let (ranges, progress) = (direct.clone(), progress.clone());
    counts.foreach_rdd(move |rdd, t| {
        let ranges = ranges.offset_ranges(t).unwrap_or_default();
        let n: u64 = ranges.iter().map(|r| r.count()).sum();
        if let Some(until) = ranges.iter().map(|r| r.until).max() {
            progress.until.fetch_max(until, Ordering::SeqCst);
        }
        let so_far = progress.read.fetch_add(n, Ordering::SeqCst) + n;
        let mut all = rdd.collect()?;
        all.sort_by(|(wa, ca), (wb, cb)| cb.cmp(ca).then_with(|| wa.cmp(wb)));
        // Every batch that read messages, and the first of each run (restored and at work).
        if n > 0 || !progress.first_done.swap(true, Ordering::SeqCst) {
            if n > 0 {
                *progress.seen.lock() = Some(Instant::now());
            }
            let top: Vec<String> = all
                .iter()
                .take(5)
                .map(|(w, c)| format!("{w}:{c}"))
                .collect();
            println!(
                "batch {t}: {n} messages ({so_far} this run); top 5: {}",
                top.join(" ")
            );
        }
        *progress.counts.lock() = all;
        Ok(())
    });
    Ok(())
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
    let (start, last) = if args.no_load {
        (StartSequence::Earliest, None)
    } else {
        println!(
            "Publishing {} ({} lines) to stream {} at {}",
            args.input.display(),
            lines.len(),
            args.stream,
            args.server
        );
        let (first, last) = load(&args, &lines).await?;
        (StartSequence::Sequence(first), Some(last))
    };

    let mut config = StreamingConfig::new()
        .app_name("nats_wordcount")
        .batch_interval(Duration::from_millis(args.batch_ms));
    if let Some(ms) = args.checkpoint_interval_ms {
        config = config.checkpoint_interval(Duration::from_millis(ms));
    }
    let progress = Progress::default();
    let ssc = match &args.checkpoint_dir {
        Some(dir) => {
            let ssc = StreamingContext::get_or_create(dir, config, |ssc| {
                build(ssc, &args, start, &progress)
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
            build(&ssc, &args, start, &progress)?;
            ssc
        }
    };
    ssc.start().await?;
    println!(
        "Counting words from stream {} at {}.",
        args.stream, args.server
    );
    let total = lines.len() as u64;
    let done = async {
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            match (args.idle_exit_secs, last) {
                (Some(secs), _) => {
                    if progress
                        .seen
                        .lock()
                        .is_some_and(|at| at.elapsed() >= Duration::from_secs(secs))
                    {
                        println!("No new messages for {secs} s: stopping.");
                        return;
                    }
                }
                (None, Some(last)) => {
                    if progress.until.load(Ordering::SeqCst) >= last {
                        return;
                    }
                }
                (None, None) => {
                    if progress.read.load(Ordering::SeqCst) >= total {
                        return;
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

    let mut got = progress.counts.lock().clone();
    got.sort();
    if let Some(path) = &args.final_state {
        let text: String = got.iter().map(|(w, n)| format!("{w}\t{n}\n")).collect();
        std::fs::write(path, text).map_err(|e| format!("--final-state {}: {e}", path.display()))?;
    }
    let mut expected = BTreeMap::new();
    for w in lines.iter().flat_map(|l| words(l)) {
        *expected.entry(w).or_insert(0u64) += 1;
    }
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
        let lost = expected
            .iter()
            .filter(|e| !got.contains(e))
            .take(3)
            .collect::<Vec<_>>();
        println!(
            "Check FAILED: {} distinct words counted, {} expected; e.g. expected {lost:?}",
            got.len(),
            expected.len()
        );
        Ok(false)
    }
}
