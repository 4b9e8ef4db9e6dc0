//! Harness: a source 10x faster than the pipeline can process, for `--secs` seconds, with
//! rate control on and then off. Prints, every second, the process's resident memory and the
//! scheduling delay of the last completed batch; at the end the largest scheduling delay of
//! the last half of the run and the records counted against those the source had accepted
//! (nothing is lost: both must be equal once the context stopped gracefully).
//!
//! The pipeline costs `--cost-us` of CPU per record (a busy loop), so it processes about
//! `executors * 1e6 / cost` records/s; the source (`actor_stream`, `send_many` of 1,000
//! events) offers `--overload` times that.
//!
//! ```text
//! cargo run --release -p rivulet-benches --bin bench_overload
//! cargo run --release -p rivulet-benches --bin bench_overload -- --secs 60
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use rivulet::prelude::*;
use rivulet_benches::support;

#[derive(Parser, Debug)]
#[command(about = "Memory and scheduling delay under 10x overload, rate control on and off")]
struct Args {
    /// Seconds of overload per run.
    #[arg(long, default_value_t = 20)]
    secs: u64,
    /// CPU cost per record, in microseconds.
    #[arg(long, default_value_t = 20)]
    cost_us: u64,
    /// How many times faster than processing the source offers records.
    #[arg(long, default_value_t = 10.0)]
    overload: f64,
    /// Executors.
    #[arg(long, default_value_t = 2)]
    executors: usize,
    /// `backpressure_initial_rate` (records/s), bounding the batches before the first
    /// estimate.
    #[arg(long)]
    initial_rate: Option<f64>,
}

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<f64>().ok())
        .map_or(0.0, |pages| pages * 4096.0 / 1048576.0)
}

/// The scheduling delay of each completed batch, in completion order.
#[derive(Clone, Default)]
struct Delays(Arc<Mutex<Vec<Duration>>>);

impl StreamingListener for Delays {
    fn on_batch_completed(&mut self, batch: &BatchInfo) {
        if let Ok(mut d) = self.0.lock() {
            d.push(batch.scheduling_delay.unwrap_or_default());
        }
    }
}

async fn run_once(args: &Args, backpressure: bool) -> Result<(), BoxError> {
    let mut config = StreamingConfig::new()
        .batch_interval(Duration::from_millis(100))
        .executors(args.executors)
        .backpressure(backpressure);
    if let (Some(rate), true) = (args.initial_rate, backpressure) {
        config = config.backpressure_initial_rate(rate);
    }
    let ssc = StreamingContext::new(config)?;
    let (events, source) = ssc.actor_stream::<u64>("overload");
    let cost = Duration::from_micros(args.cost_us);
    let counted = Arc::new(AtomicU64::new(0));
    let c = counted.clone();
    events
        .map(move |x| {
            let start = Instant::now();
            while start.elapsed() < cost {
                std::hint::spin_loop();
            }
            x
        })
        .count()
        .foreach_batch(move |_, n| {
            c.fetch_add(n.iter().sum::<u64>(), Ordering::SeqCst);
        });
    let delays = Delays::default();
    ssc.add_listener(delays.clone());
    ssc.start().await?;
    let capacity = args.executors as f64 * 1e6 / args.cost_us.max(1) as f64;
    let offered = capacity * args.overload;
    println!(
        "rate control {}: processing capacity ~{capacity:.0} records/s, offered {offered:.0}/s for {} s",
        if backpressure { "on" } else { "off" },
        args.secs
    );
    let accepted = Arc::new(AtomicU64::new(0));
    let feeder = {
        let (source, accepted) = (source.clone(), accepted.clone());
        let secs = args.secs;
        actix::spawn(async move {
            let start = Instant::now();
            let mut next = 0u64;
            while start.elapsed() < Duration::from_secs(secs) {
                // Offer at `offered`/s: 1,000 events per chunk, paced by the wall clock.
                let due = (start.elapsed().as_secs_f64() * offered) as u64;
                if next >= due {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    continue;
                }
                let chunk: Vec<u64> = (next..next + 1000).collect();
                if source.send_many(chunk).await.is_err() {
                    break;
                }
                next += 1000;
                accepted.store(next, Ordering::SeqCst);
            }
        })
    };
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(args.secs) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let last = delays
            .0
            .lock()
            .map_err(|_| "poisoned")?
            .last()
            .copied()
            .unwrap_or_default();
        println!(
            "  {:>3} s: RSS {:7.1} MiB, scheduling delay of the last batch {:8.1} ms, accepted {}",
            start.elapsed().as_secs(),
            rss_mib(),
            last.as_secs_f64() * 1000.0,
            accepted.load(Ordering::SeqCst)
        );
    }
    let _ = feeder.await;
    let all = delays.0.lock().map_err(|_| "poisoned")?.clone();
    let worst_late = all[all.len() / 2..]
        .iter()
        .max()
        .copied()
        .unwrap_or_default();
    ssc.stop(StopMode::Graceful).await?;
    let (a, c) = (
        accepted.load(Ordering::SeqCst),
        counted.load(Ordering::SeqCst),
    );
    println!(
        "  largest scheduling delay, second half: {:.0} ms; accepted {a}, counted {c} ({})",
        worst_late.as_secs_f64() * 1000.0,
        if a == c { "none lost" } else { "MISMATCH" }
    );
    if a != c {
        return Err(format!("check failed: accepted {a} events, counted {c}").into());
    }
    Ok(())
}

#[actix::main]
async fn main() -> std::process::ExitCode {
    support::init_tracing();
    let args = Args::parse();
    support::exit_code(
        async {
            run_once(&args, true).await?;
            run_once(&args, false).await
        }
        .await,
    )
}
