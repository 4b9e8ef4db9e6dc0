//! Harness: memory of long-running stateful pipelines. Runs `--batches` (default 10,000)
//! manual-clock batches of `--records` random `(key, 1)` records over `--keys` keys through
//! `update_state_by_key` (running sum) and an incremental `reduce_by_key_and_window` with a
//! zero filter (window 30 batches), both checkpointed at the default interval, and prints
//! the process's resident memory (from `/proc/self/statm`) every tenth of the run: flat
//! means lineage, remembered RDDs, blocks and checkpoints are all bounded. Checks at the end
//! that the state's total equals the records sent.
//!
//! ```text
//! cargo run --release -p rivulet-benches --bin bench_memory
//! ```

use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Parser;
use rivulet::prelude::*;
use rivulet_benches::harness::pairs_batches;
use rivulet_benches::support;

#[derive(Parser, Debug)]
#[command(about = "Resident memory of stateful and windowed pipelines over many batches")]
struct Args {
    #[command(flatten)]
    ui: support::UiArgs,
    /// Batches to run.
    #[arg(long, default_value_t = 10_000)]
    batches: u32,
    /// Records per batch.
    #[arg(long, default_value_t = 1_000)]
    records: usize,
    /// Distinct keys.
    #[arg(long, default_value_t = 10_000)]
    keys: u64,
}

/// Resident set size in MiB, or `None` where `/proc` is absent.
fn rss_mib() -> Option<f64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: f64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096.0 / (1024.0 * 1024.0))
}

#[actix::main]
async fn main() -> Result<(), BoxError> {
    support::init_tracing();
    let args = Args::parse();
    args.ui.install();
    let batch = Duration::from_millis(100);
    let ssc = StreamingContext::new(
        support::base_config()
            .batch_interval(batch)
            .executors(2)
            .manual_clock(true),
    )?;
    let pairs = ssc.queue_stream(pairs_batches(
        args.batches,
        args.records,
        args.keys,
        7,
        1i64,
    ));
    let total = Arc::new(Mutex::new(0i64));
    let sink = total.clone();
    let last = Time::from_ms(100 * i64::from(args.batches));
    pairs
        .update_state_by_key(|vs: Vec<i64>, s: Option<i64>| {
            Some(s.unwrap_or(0) + vs.iter().sum::<i64>())
        })
        .foreach_rdd(move |rdd, t| {
            if t == last {
                *sink.lock().map_err(|_| "poisoned")? =
                    rdd.map(|(_, v)| v).reduce(|a, b| a + b)?.unwrap_or(0);
            }
            Ok(())
        });
    let spec = WindowReduce::new(|a: i64, b| a + b)
        .inverse(|a, b| a - b)
        .filter(|(_, v)| *v != 0);
    pairs
        .reduce_by_key_and_window_with(spec, batch * 30, batch)?
        .foreach_rdd(|rdd, _| {
            rdd.count()?;
            Ok(())
        });
    ssc.start().await?;
    support::print_ui_url(&ssc);
    println!(
        "{} batches of {} records over {} keys: update_state_by_key + inverse window (30 batches)",
        args.batches, args.records, args.keys
    );
    let step = (args.batches / 10).max(1);
    let mut done = 0;
    while done < args.batches {
        let n = step.min(args.batches - done);
        ssc.advance(n).await?;
        done += n;
        match rss_mib() {
            Some(rss) => println!("after {done:>6} batches: RSS {rss:.1} MiB"),
            None => println!("after {done:>6} batches: RSS unknown (no /proc)"),
        }
    }
    ssc.stop(StopMode::Now).await?;
    let sum = *total.lock().map_err(|_| "poisoned")?;
    let sent = i64::from(args.batches) * args.records as i64;
    if sum != sent {
        return Err(format!("check failed: state total {sum}, records sent {sent}").into());
    }
    println!("Check OK: the state's total equals the {sent} records sent.");
    Ok(())
}
