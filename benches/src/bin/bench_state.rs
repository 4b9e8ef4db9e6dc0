//! Harness: `map_with_state` against `update_state_by_key` on a large state where few keys
//! change per batch (default: 1,000,000 keys, 1% touched per batch).
//!
//! Both start from the same initial state RDD and see the same batches of `(key, 1)`
//! records; each keeps a running sum per key and its natural output is consumed
//! (`update_state_by_key` emits the whole state every batch, `map_with_state` one record
//! per input record). Prints the median and p90 of per-batch processing time
//! (`BatchInfo::processing_delay`) after a warm-up, and their ratio, and checks that both
//! end with the same state.
//!
//! ```text
//! cargo run --release -p rivulet-benches --bin bench_state
//! cargo run --release -p rivulet-benches --bin bench_state -- --keys 1000000 --touched 10000 --measure 10
//! ```

use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Parser;
use rivulet::prelude::*;
use rivulet_benches::harness::{pairs_batches, BatchTimings};
use rivulet_benches::support::{self, ms, Latencies, SignalStop};

#[derive(Parser, Debug)]
#[command(about = "map_with_state vs update_state_by_key on a large, mostly idle state")]
struct Args {
    #[command(flatten)]
    ui: support::UiArgs,
    /// Keys in the initial state.
    #[arg(long, default_value_t = 1_000_000)]
    keys: u64,
    /// Records (keys touched) per batch.
    #[arg(long, default_value_t = 10_000)]
    touched: usize,
    /// Warm-up batches (not measured).
    #[arg(long, default_value_t = 3)]
    warmup: u32,
    /// Measured batches.
    #[arg(long, default_value_t = 10)]
    measure: u32,
    /// Executors.
    #[arg(long, default_value_t = 2)]
    executors: usize,
}

/// The seed of the input generator ([`pairs_batches`]: batches of `(key, 1)` over
/// `0..keys`), fixed so every run sees the same input.
const SEED: u64 = 0x2545_F491_4F6C_DD1D;

#[derive(Clone, Copy, PartialEq, Debug)]
enum Op {
    MapWithState,
    UpdateStateByKey,
}

/// Median and p90 of the measured batches, and the sum of all state values at the end.
/// `None` when a signal stopped the run (see `SignalStop`).
async fn run(args: &Args, op: Op) -> Result<Option<(Duration, Duration, u64)>, BoxError> {
    let ssc = StreamingContext::new(
        support::base_config()
            .batch_interval(Duration::from_millis(100))
            .executors(args.executors)
            .manual_clock(true),
    )?;
    let partitions = args.executors * 2;
    let initial = ssc.parallelize((0..args.keys).map(|k| (k, 0u64)).collect(), partitions);
    let pairs = ssc.queue_stream(pairs_batches(
        args.warmup + args.measure,
        args.touched,
        args.keys,
        SEED,
        1u64,
    ));
    let total = Arc::new(Mutex::new(0u64));
    let sink = total.clone();
    let snapshot = match op {
        Op::MapWithState => {
            let spec = StateSpec::function(|_: &u64, v: Option<u64>, state: &mut State<u64>| {
                let sum = state.get().copied().unwrap_or(0) + v.unwrap_or(0);
                state.update(sum);
                sum
            })
            .initial_state(initial)
            .num_partitions(partitions);
            let mapped = pairs.map_with_state(spec);
            mapped.foreach_rdd(|rdd, _| {
                rdd.count()?;
                Ok(())
            });
            mapped.state_snapshots()
        }
        Op::UpdateStateByKey => {
            let state = pairs.update_state_by_key_with_initial(
                |_, _: &u64, vs: Vec<u64>, s: Option<u64>| {
                    Some(s.unwrap_or(0) + vs.iter().sum::<u64>())
                },
                initial,
                partitions,
            );
            state.foreach_rdd(|rdd, _| {
                rdd.count()?;
                Ok(())
            });
            state
        }
    };
    // The final state's total, read once at the last batch (a full scan, not timed with the rest).
    let last = rivulet::framework::time::Time::from_ms(100 * i64::from(args.warmup + args.measure));
    snapshot.foreach_rdd(move |rdd, t| {
        if t == last {
            let sum = rdd.map(|(_, v)| v).reduce(|a, b| a + b)?.unwrap_or(0);
            *sink.lock().map_err(|_| "poisoned")? = sum;
        }
        Ok(())
    });
    let timings = BatchTimings::new();
    ssc.add_listener(timings.clone());
    ssc.start().await?;
    support::print_ui_url(&ssc);
    let signals = SignalStop::install(&ssc)?;
    let advanced = ssc.advance(args.warmup + args.measure).await;
    if signals.interrupted() {
        return Ok(None);
    }
    advanced?;
    ssc.stop(StopMode::Now).await?;
    let all = timings.take();
    let measured: Latencies = all[args.warmup as usize..all.len().saturating_sub(1)]
        .iter()
        .copied()
        .collect();
    let sum = *total.lock().map_err(|_| "poisoned")?;
    Ok(Some((measured.quantile(0.5), measured.quantile(0.9), sum)))
}

#[actix::main]
async fn main() -> Result<(), BoxError> {
    let args = Args::parse();
    args.ui.install();
    println!(
        "state of {} keys, {} records per batch ({:.1}% touched), {} executors, {} batches measured",
        args.keys,
        args.touched,
        100.0 * args.touched as f64 / args.keys as f64,
        args.executors,
        args.measure
    );
    let mut medians = Vec::new();
    let mut sums = Vec::new();
    for op in [Op::MapWithState, Op::UpdateStateByKey] {
        let Some((median, p90, sum)) = run(&args, op).await? else {
            println!("Stopped on a signal: results above are for the finished runs only.");
            return Ok(());
        };
        println!(
            "{op:?}: median {:>9.2} ms/batch, p90 {:>9.2} ms",
            ms(median),
            ms(p90)
        );
        medians.push(median);
        sums.push(sum);
    }
    let expected = u64::from(args.warmup + args.measure) * args.touched as u64;
    if sums.iter().any(|&s| s != expected) {
        return Err(format!(
            "final states differ from the input: sums {sums:?}, expected {expected}"
        )
        .into());
    }
    println!(
        "update_state_by_key / map_with_state: {:.1}x (both end with the same state: sum {expected})",
        ms(medians[1]) / ms(medians[0])
    );
    Ok(())
}
