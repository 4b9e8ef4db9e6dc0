//! Harness: what fault tolerance costs and how fast it heals, on a `map_with_state` running
//! sum over a large state (default 1,000,000 keys, 10,000 records per 100 ms batch, 2
//! executors, manual clock so every batch is timed alone).
//!
//! 1. **Checkpoint cost:** total processing time of the same batches with data checkpoints
//!    every `--checkpoint-every` batches (default 100 = 10 s, Spark's default interval at
//!    100 ms batches) into a sled directory, against a run whose interval lies beyond the
//!    run; printed as the ratio off / on (throughput on over off).
//! 2. **Executor loss:** `kill_executor(0)`, then the processing time of the next batch (the
//!    lost state partitions are recomputed from the newest checkpoint) against the median
//!    batch.
//! 3. **Restart:** the sled run is restarted with `get_or_create`: the time from the call to
//!    the first completed batch (state read back from sled, later batches recomputed).
//! 4. **Executor loss on the system clock:** the same program at 100 ms batches in real
//!    time (checkpoints every 10 s into memory); after 3 s `kill_executor(0)`; the time from
//!    the kill until a batch cut after it completed with its scheduling delay under one
//!    batch interval (the pipeline is on time again), and the largest scheduling delay.
//!
//! Every run checks the final state's sum against the number of records sent.
//!
//! ```text
//! cargo run --release -p rivulet-benches --bin bench_recovery
//! cargo run --release -p rivulet-benches --bin bench_recovery -- --keys 100000 --batches 300
//! ```

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use rivulet::prelude::*;
use rivulet_benches::harness::{pairs_batches, BatchTimings};
use rivulet_benches::support::{self, ms, Latencies};

#[derive(Parser, Debug)]
#[command(about = "Checkpoint cost, executor-loss and restart times of a large map_with_state")]
struct Args {
    #[command(flatten)]
    ui: support::UiArgs,
    /// Keys in the initial state.
    #[arg(long, default_value_t = 1_000_000)]
    keys: u64,
    /// Records per batch.
    #[arg(long, default_value_t = 10_000)]
    touched: usize,
    /// Batches per run.
    #[arg(long, default_value_t = 200)]
    batches: u32,
    /// Data checkpoint interval, in batches.
    #[arg(long, default_value_t = 100)]
    checkpoint_every: u32,
    /// Executors.
    #[arg(long, default_value_t = 2)]
    executors: usize,
}

const SEED: u64 = 0x2545_F491_4F6C_DD1D;
const BATCH: Duration = Duration::from_millis(100);

type Total = Arc<Mutex<u64>>;

/// The program: a running sum per key from an initial state of zeros, checkpointed every
/// `every` batches; the state's total is recorded every batch.
fn build(ssc: &StreamingContext, args: &Args, every: u32, total: &Total) -> Result<()> {
    let partitions = args.executors * 2;
    let initial = ssc.parallelize((0..args.keys).map(|k| (k, 0u64)).collect(), partitions);
    let input = pairs_batches(args.batches * 2 + 2, args.touched, args.keys, SEED, 1u64);
    let spec = StateSpec::function(|_: &u64, v: Option<u64>, s: &mut State<u64>| {
        let sum = s.get().copied().unwrap_or(0) + v.unwrap_or(0);
        s.update(sum);
        sum
    })
    .initial_state(initial)
    .num_partitions(partitions);
    let mapped = ssc.queue_stream(input).map_with_state(spec);
    mapped.checkpoint(BATCH * every);
    let sink = total.clone();
    mapped.foreach_rdd(move |rdd, _| {
        // The records of the batch: each carries its key's new sum; count them.
        let n = rdd.count()?;
        *sink.lock().map_err(|_| "poisoned")? += n;
        Ok(())
    });
    Ok(())
}

fn config(args: &Args) -> StreamingConfig {
    support::base_config()
        .batch_interval(BATCH)
        .executors(args.executors)
        .manual_clock(true)
}

/// Runs `batches` batches; returns the per-batch processing times.
async fn run(ssc: &StreamingContext, batches: u32) -> Result<Vec<Duration>, BoxError> {
    let timings = BatchTimings::new();
    ssc.add_listener(timings.clone());
    ssc.start().await?;
    support::print_ui_url(ssc);
    ssc.advance(batches).await?;
    Ok(timings.take())
}

fn sum(d: &[Duration]) -> Duration {
    d.iter().sum()
}

#[actix::main]
async fn main() -> Result<(), BoxError> {
    support::init_tracing();
    let args = Args::parse();
    args.ui.install();
    let root = tempfile_dir()?;
    let expected = u64::from(args.batches) * args.touched as u64;
    println!(
        "map_with_state over {} keys, {} records/batch, {} batches, {} executors; data checkpoint every {} batches",
        args.keys, args.touched, args.batches, args.executors, args.checkpoint_every
    );

    // 1. Checkpoints beyond the run (off) and at the interval, into sled (on); off first.
    let mut totals = Vec::new();
    for (name, every) in [("off", args.batches * 10), ("on", args.checkpoint_every)] {
        let total: Total = Arc::default();
        let dir = root.join(name);
        let ssc = StreamingContext::get_or_create(&dir, config(&args), |ssc| {
            build(ssc, &args, every, &total)
        })?;
        let times = run(&ssc, args.batches).await?;
        let counted = *total.lock().map_err(|_| "poisoned")?;
        if counted != expected {
            return Err(
                format!("checkpoints {name}: counted {counted} records, sent {expected}").into(),
            );
        }
        let latencies: Latencies = times.iter().copied().collect();
        println!(
            "checkpoints {name:>3}: {:.0} ms for {} batches (median {:.2} ms, max {:.1} ms)",
            ms(sum(&times)),
            times.len(),
            ms(latencies.quantile(0.5)),
            ms(latencies.max()),
        );
        totals.push(sum(&times));
        if name == "on" {
            // 2. Executor loss: kill executor 0, time the next batch.
            let timings = BatchTimings::new();
            ssc.add_listener(timings.clone());
            ssc.kill_executor(0).await?;
            ssc.advance(1).await?;
            let after = timings.take().pop().unwrap_or_default();
            println!(
                "executor loss: the batch after kill_executor(0) took {:.1} ms ({:.1}x the median batch)",
                ms(after),
                ms(after) / ms(latencies.quantile(0.5)).max(1e-9)
            );
        }
        ssc.stop(StopMode::Graceful).await?;
    }
    println!(
        "checkpoint cost: throughput with checkpoints on / off = {:.2}",
        totals[0].as_secs_f64() / totals[1].as_secs_f64().max(1e-9)
    );

    // 3. Restart from the "on" directory: time to the first completed batch.
    let total: Total = Arc::default();
    let started = Instant::now();
    let ssc = StreamingContext::get_or_create(root.join("on"), config(&args), |ssc| {
        build(ssc, &args, args.checkpoint_every, &total)
    })?;
    let restored = ssc.restored_batch();
    ssc.start().await?;
    support::print_ui_url(&ssc);
    ssc.advance(1).await?;
    let first = started.elapsed();
    ssc.stop(StopMode::Graceful).await?;
    println!(
        "restart: restored after batch {restored:?}; first batch completed {:.0} ms after get_or_create",
        ms(first)
    );
    std::fs::remove_dir_all(&root)?;

    // 4. Executor loss under the system clock.
    let total: Total = Arc::default();
    let ssc = StreamingContext::new(
        StreamingConfig::new()
            .batch_interval(BATCH)
            .executors(args.executors),
    )?;
    build(&ssc, &args, 100, &total)?;
    let completions = Completions::default();
    ssc.add_listener(completions.clone());
    ssc.start().await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let killed = Instant::now();
    let killed_wall = std::time::SystemTime::now();
    ssc.kill_executor(0).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    ssc.stop(StopMode::Now).await?;
    let done = completions.0.lock().map_err(|_| "poisoned")?.clone();
    let after: Vec<&(BatchInfo, Instant)> = done
        .iter()
        .filter(|(b, _)| b.submission_time >= killed_wall)
        .collect();
    let on_time = after
        .iter()
        .find(|(b, _)| b.scheduling_delay.unwrap_or_default() < BATCH)
        .map(|(_, at)| at.duration_since(killed));
    let worst = done
        .iter()
        .filter_map(|(b, _)| b.scheduling_delay)
        .max()
        .unwrap_or_default();
    match on_time {
        Some(d) => println!(
            "executor loss, system clock: on time again {:.0} ms after kill_executor(0) (largest scheduling delay {:.1} ms; {} batches)",
            ms(d),
            ms(worst),
            done.len()
        ),
        None => println!("executor loss, system clock: no batch was on time after the kill"),
    }
    Ok(())
}

/// Every completed batch with the instant it completed.
#[derive(Clone, Default)]
struct Completions(Arc<Mutex<Vec<(BatchInfo, Instant)>>>);

impl StreamingListener for Completions {
    fn on_batch_completed(&mut self, batch: &BatchInfo) {
        if let Ok(mut c) = self.0.lock() {
            c.push((batch.clone(), Instant::now()));
        }
    }
}

/// A fresh directory under the system's temporary directory.
fn tempfile_dir() -> Result<std::path::PathBuf, BoxError> {
    let dir = std::env::temp_dir().join(format!("rivulet-bench-recovery-{}", std::process::id()));
    if Path::new(&dir).exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    Ok(dir)
}
