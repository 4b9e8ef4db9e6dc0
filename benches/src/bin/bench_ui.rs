//! Harness: what the status server costs. Runs the same word count over `--batches` manual-
//! clock batches (default 100,000, each `--words` words) with the UI off and on (port 0, a
//! poller fetching the batch list and `/metrics` every 100 ms while it runs), and prints the
//! time ratio (throughput with the UI over without, same run) and, with the UI on, the
//! resident memory every tenth of the run: with the default retention (1,000 batches) it
//! must stay flat. Checks the word total in both runs.
//!
//! ```text
//! cargo run --release -p rivulet-benches --bin bench_ui
//! cargo run --release -p rivulet-benches --bin bench_ui -- --batches 20000
//! ```

use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use rivulet::prelude::*;
use rivulet_benches::support;

#[derive(Parser, Debug)]
#[command(
    about = "Throughput with the status server on over off, and its memory over many batches"
)]
struct Args {
    /// Batches per run.
    #[arg(long, default_value_t = 100_000)]
    batches: u32,
    /// Words per batch.
    #[arg(long, default_value_t = 200)]
    words: usize,
}

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<f64>().ok())
        .map_or(0.0, |pages| pages * 4096.0 / 1048576.0)
}

/// GETs `path` from `addr` (HTTP/1.0, connection closed by the server); the body's length.
fn get(addr: &str, path: &str) -> std::io::Result<usize> {
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut body = Vec::new();
    s.read_to_end(&mut body)?;
    Ok(body.len())
}

async fn run_once(args: &Args, ui: bool) -> Result<Duration, BoxError> {
    let mut config = StreamingConfig::new()
        .batch_interval(Duration::from_millis(100))
        .executors(2)
        .manual_clock(true);
    if ui {
        config = config.ui_address("127.0.0.1:0");
    }
    let ssc = StreamingContext::new(config)?;
    // Batch k holds `words` words; queue_stream holds each batch's records, so the input is
    // made per batch from a small vocabulary instead of kept in memory.
    let words = args.words;
    let (events, source) = ssc.actor_stream::<String>("words");
    let total = Arc::new(AtomicU64::new(0));
    let t = total.clone();
    events
        .map(|w| (w, 1u64))
        .reduce_by_key(|a, b| a + b)
        .foreach_batch(move |_, counts| {
            t.fetch_add(counts.iter().map(|(_, n)| n).sum::<u64>(), Ordering::SeqCst);
        });
    ssc.start().await?;
    let stop_polling = Arc::new(AtomicBool::new(false));
    let poller = ssc.ui_url().map(|url| {
        let addr = url
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        let stop = stop_polling.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let _ = get(&addr, "/api/v1/streaming/batches");
                let _ = get(&addr, "/metrics");
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    });
    let step = (args.batches / 10).max(1);
    let start = Instant::now();
    for k in 0..args.batches {
        let batch: Vec<String> = (0..words)
            .map(|i| format!("w{}", (k as usize * 7 + i) % 500))
            .collect();
        source.send_many(batch).await.map_err(|e| e.to_string())?;
        ssc.advance(1).await?;
        if ui && (k + 1) % step == 0 {
            println!(
                "  UI on, after {:>6} batches: RSS {:.1} MiB",
                k + 1,
                rss_mib()
            );
        }
    }
    let elapsed = start.elapsed();
    stop_polling.store(true, Ordering::Relaxed);
    if let Some(p) = poller {
        let _ = p.join();
    }
    ssc.stop(StopMode::Graceful).await?;
    let expected = u64::from(args.batches) * words as u64;
    let got = total.load(Ordering::SeqCst);
    if got != expected {
        return Err(format!("check failed: counted {got} words, sent {expected}").into());
    }
    Ok(elapsed)
}

#[actix::main]
async fn main() -> std::process::ExitCode {
    support::init_tracing();
    let args = Args::parse();
    support::exit_code(
        async {
            println!(
                "{} batches of {} words, 2 executors, manual clock",
                args.batches, args.words
            );
            let off = run_once(&args, false).await?;
            println!("UI off: {:.1} s", off.as_secs_f64());
            let on = run_once(&args, true).await?;
            println!("UI on (polled every 100 ms): {:.1} s", on.as_secs_f64());
            println!(
                "throughput with the UI on / off = {:.3}",
                off.as_secs_f64() / on.as_secs_f64().max(1e-9)
            );
            Ok(())
        }
        .await,
    )
}
