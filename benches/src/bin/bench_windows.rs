//! Harness: the per-batch cost of `reduce_by_key_and_window` with an inverse function stays
//! flat as the window grows, while the form without inverse grows with the window.
//!
//! For each window length (in slides) and each form, runs a manual-clock context with 2
//! executors over generated batches of `(key, 1)` pairs, fills the window, then measures the
//! processing time of the next batches (from `BatchInfo::processing_delay`) and prints the
//! median and p90, and the ratio of the largest window to the smallest.
//!
//! ```text
//! cargo run --release -p rivulet-benches --bin bench_windows
//! cargo run --release -p rivulet-benches --bin bench_windows -- --windows 10,100 --records 20000 --keys 1000
//! ```

use std::time::Duration;

use clap::Parser;
use rivulet::prelude::*;
use rivulet_benches::harness::{pairs_batches, BatchTimings};
use rivulet_benches::support::{self, ms, Latencies, SignalStop};

#[derive(Parser, Debug)]
#[command(
    about = "Per-batch cost of windowed reduce, with and without inverse, as the window grows"
)]
struct Args {
    #[command(flatten)]
    ui: support::UiArgs,
    /// Window lengths to compare, in slides (= batches).
    #[arg(long, value_delimiter = ',', default_value = "10,100")]
    windows: Vec<u32>,
    /// Records per batch.
    #[arg(long, default_value_t = 20_000)]
    records: usize,
    /// Distinct keys.
    #[arg(long, default_value_t = 1_000)]
    keys: u64,
    /// Batches measured after the window is full.
    #[arg(long, default_value_t = 20)]
    measure: u32,
    /// Executors.
    #[arg(long, default_value_t = 2)]
    executors: usize,
}

/// The seed of the input generator ([`pairs_batches`]), fixed so every run sees the same
/// input.
const SEED: u64 = 0x9E37_79B9_7F4A_7C15;

/// Median and p90 of the measured batches' processing time, for one window and form.
/// `None` when a signal stopped the run (see `SignalStop`).
async fn run(
    args: &Args,
    window: u32,
    inverse: bool,
) -> Result<Option<(Duration, Duration)>, BoxError> {
    let batch = Duration::from_millis(100);
    let ssc = StreamingContext::new(
        support::base_config()
            .batch_interval(batch)
            .executors(args.executors)
            .manual_clock(true),
    )?;
    let pairs = ssc.queue_stream(pairs_batches(
        window + args.measure,
        args.records,
        args.keys,
        SEED,
        1i64,
    ));
    let windowed = if inverse {
        pairs.reduce_by_key_and_window_inv(|a, b| a + b, |a, b| a - b, batch * window, batch)?
    } else {
        pairs.reduce_by_key_and_window(|a, b| a + b, batch * window, batch)?
    };
    windowed.foreach_rdd(|rdd, _| {
        rdd.count()?;
        Ok(())
    });
    let timings = BatchTimings::new();
    ssc.add_listener(timings.clone());
    ssc.start().await?;
    support::print_ui_url(&ssc);
    let signals = SignalStop::install(&ssc)?;
    let advanced = ssc.advance(window + args.measure).await;
    if signals.interrupted() {
        return Ok(None);
    }
    advanced?;
    ssc.stop(StopMode::Now).await?;
    let all = timings.take();
    let measured: Latencies = all[window as usize..].iter().copied().collect();
    Ok(Some((measured.quantile(0.5), measured.quantile(0.9))))
}

#[actix::main]
async fn main() -> Result<(), BoxError> {
    let args = Args::parse();
    args.ui.install();
    println!(
        "reduce_by_key_and_window: {} records/batch over {} keys, {} executors, slide = batch = 100 ms, {} batches measured",
        args.records, args.keys, args.executors, args.measure
    );
    for inverse in [true, false] {
        let form = if inverse {
            "with inverse   "
        } else {
            "without inverse"
        };
        let mut medians = Vec::new();
        for &w in &args.windows {
            let Some((median, p90)) = run(&args, w, inverse).await? else {
                println!("Stopped on a signal: results above are for the finished runs only.");
                return Ok(());
            };
            println!(
                "{form} window {w:>4} slides: median {:>8.2} ms/batch, p90 {:>8.2} ms",
                ms(median),
                ms(p90)
            );
            medians.push(median);
        }
        if let (Some(first), Some(last)) = (medians.first(), medians.last()) {
            println!(
                "{form} ratio window {} / window {}: {:.2}x",
                args.windows[args.windows.len() - 1],
                args.windows[0],
                ms(*last) / ms(*first)
            );
        }
    }
    Ok(())
}
