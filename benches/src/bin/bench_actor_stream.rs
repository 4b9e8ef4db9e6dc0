//! Harness: events per second through `actor_stream` from 1, 4 and 16 sender tasks into an
//! incremental windowed count, as a ratio to the socket path (`socket_text_stream`) carrying
//! the same records, in one run.
//!
//! The records are the words of the bundled Shakespeare text, repeated to `--events`. Each
//! path runs the same pipeline (`(word, 1)`, `reduce_by_key_and_window_inv` over 1 s sliding
//! every 100 ms batch) with default settings (rate control on) until every record has been
//! processed; the figure is records / seconds from start to the batch that completed the
//! last record. Every run checks that exactly `--events` records were processed.
//!
//! ```text
//! cargo run --release -p rivulet-benches --bin bench_actor_stream
//! cargo run --release -p rivulet-benches --bin bench_actor_stream -- --events 2000000 --repeat 3
//! ```

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use rivulet::prelude::*;
use rivulet_benches::harness;
use rivulet_benches::support;
use tokio::sync::oneshot;

#[derive(Parser, Debug)]
#[command(about = "actor_stream events/s from 1, 4 and 16 senders vs the socket path")]
struct Args {
    /// Text whose words are the records.
    #[arg(long, default_value = "examples/data/shakespeare.txt")]
    input: PathBuf,
    /// Records per run.
    #[arg(long, default_value_t = 1_000_000)]
    events: usize,
    /// Runs of each path (medians are printed).
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Executors.
    #[arg(long, default_value_t = 2)]
    executors: usize,
}

/// Signals once `total` records were processed.
struct Done {
    total: usize,
    seen: usize,
    tx: Option<oneshot::Sender<Instant>>,
}

impl StreamingListener for Done {
    fn on_batch_completed(&mut self, batch: &BatchInfo) {
        self.seen += batch.num_records;
        if self.seen >= self.total {
            if let Some(tx) = self.tx.take() {
                let _ = tx.send(Instant::now());
            }
        }
    }
}

fn context(args: &Args) -> Result<StreamingContext> {
    StreamingContext::new(
        StreamingConfig::new()
            .batch_interval(Duration::from_millis(100))
            .executors(args.executors),
    )
}

/// The pipeline; returns the records counted (from the per-batch word counts).
fn pipeline(words: DStream<String>) -> Result<Arc<Mutex<u64>>> {
    let counted = Arc::new(Mutex::new(0u64));
    let sink = counted.clone();
    let pairs = words.map(|w| (w, 1u64));
    pairs.count().foreach_batch(move |_, n| {
        if let Ok(mut c) = sink.lock() {
            *c += n.iter().sum::<u64>();
        }
    });
    pairs
        .reduce_by_key_and_window_inv(
            |a, b| a + b,
            |a, b| a - b,
            Duration::from_secs(1),
            Duration::from_millis(100),
        )?
        .count()
        .foreach_batch(|_, _| {});
    Ok(counted)
}

/// Runs until `records` were processed; returns records/s.
async fn measure(
    ssc: StreamingContext,
    counted: Arc<Mutex<u64>>,
    records: usize,
    feed: impl std::future::Future<Output = Result<(), BoxError>>,
) -> Result<f64, BoxError> {
    let (tx, rx) = oneshot::channel();
    ssc.add_listener(Done {
        total: records,
        seen: 0,
        tx: Some(tx),
    });
    ssc.start().await?;
    let start = Instant::now();
    feed.await?;
    let end = tokio::time::timeout(Duration::from_secs(300), rx).await??;
    ssc.stop(StopMode::Graceful).await?;
    let n = *counted.lock().map_err(|_| "poisoned")?;
    if n != records as u64 {
        return Err(format!("check failed: counted {n} records, sent {records}").into());
    }
    Ok(records as f64 / (end - start).as_secs_f64())
}

async fn socket(args: &Args, lines: Arc<Vec<Vec<u8>>>, records: usize) -> Result<f64, BoxError> {
    let ssc = context(args)?;
    let (port, server) = support::spawn_server(lines, 0, support::FeedEnd::KeepOpen).await?;
    let counted = pipeline(ssc.socket_text_stream("127.0.0.1", port))?;
    let rate = measure(ssc, counted, records, async { Ok(()) }).await;
    server.abort();
    rate
}

async fn actors(args: &Args, words: Arc<Vec<String>>, senders: usize) -> Result<f64, BoxError> {
    let ssc = context(args)?;
    let (stream, source) = ssc.actor_stream::<String>("words");
    let counted = pipeline(stream)?;
    let records = words.len();
    let feed = async move {
        let tasks: Vec<_> = (0..senders)
            .map(|s| {
                let (source, words) = (source.clone(), words.clone());
                actix::spawn(async move {
                    for w in words.iter().skip(s).step_by(senders) {
                        source.send(w.clone()).await?;
                    }
                    Ok::<(), SendError<String>>(())
                })
            })
            .collect();
        for t in tasks {
            t.await.map_err(|e| format!("sender task: {e}"))??;
        }
        Ok::<(), BoxError>(())
    };
    measure(ssc, counted, records, feed).await
}

#[actix::main]
async fn main() -> std::process::ExitCode {
    support::init_tracing();
    support::exit_code(run(Args::parse()).await)
}

async fn run(args: Args) -> Result<(), BoxError> {
    let text = std::fs::read_to_string(&args.input)
        .map_err(|e| format!("--input {}: {e}", args.input.display()))?;
    let all: Vec<String> = text
        .lines()
        .flat_map(|l| support::words(l.to_string()))
        .collect();
    if all.is_empty() {
        return Err(format!("--input {}: no words", args.input.display()).into());
    }
    let words: Vec<String> = all.iter().cycle().take(args.events).cloned().collect();
    let lines: Arc<Vec<Vec<u8>>> = Arc::new(words.iter().map(|w| w.as_bytes().to_vec()).collect());
    let words = Arc::new(words);
    println!(
        "{} records (words, one per line on the socket), {} executors, 100 ms batches, {} runs each",
        args.events, args.executors, args.repeat
    );
    let mut socket_rates = Vec::new();
    let mut actor_rates: Vec<(usize, Vec<f64>)> = vec![(1, vec![]), (4, vec![]), (16, vec![])];
    for run in 0..args.repeat {
        let s = socket(&args, lines.clone(), args.events).await?;
        socket_rates.push(s);
        let mut line = format!("run {}: socket {:.0}/s", run + 1, s);
        for (senders, rates) in &mut actor_rates {
            let r = actors(&args, words.clone(), *senders).await?;
            line.push_str(&format!(
                " | actor_stream x{senders} {r:.0}/s ({:.2}x)",
                r / s
            ));
            rates.push(r);
        }
        println!("{line}");
    }
    let s = harness::median_f64(&socket_rates);
    println!("median socket: {s:.0} records/s");
    for (senders, rates) in actor_rates {
        let r = harness::median_f64(&rates);
        println!(
            "median actor_stream, {senders:>2} senders: {r:.0} records/s = {:.2}x the socket path",
            r / s
        );
    }
    Ok(())
}
