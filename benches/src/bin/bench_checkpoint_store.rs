//! Harness: the checkpoint directory over a long clean run, and what compaction costs.
//!
//! A `map_with_state` running count over `--keys` keys (default 100,000: about 2 MB of
//! state), `--records` records per batch (4,000), a data checkpoint every
//! `--checkpoint-every` batches (5: every 500 ms at the nominal 100 ms batches), in a
//! checkpoint directory, run for `--batches` batches (10,000) on the manual clock, each batch
//! as fast as it completes. Every `--report-every` batches it prints a `CURVE` line with the
//! directory's size and live bytes (from `StreamingListener::on_checkpoint_store`); at the
//! end a `SUMMARY` with the largest size against the bound max(64 MiB, 8x live), and the
//! processing time of batches during which the store compacted against the others (the
//! compaction's cost: how much later such a batch finishes, and the throughput of those
//! batches over the rest). The final state is checked against a count of the input.
//!
//! ```text
//! cargo run --release -p rivulet-benches --bin bench_checkpoint_store
//! cargo run --release -p rivulet-benches --bin bench_checkpoint_store -- --batches 2000 --compact-floor-mb 4
//! ```

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use parking_lot::Mutex;
use rivulet::framework::checkpoint::{CompactionPolicy, StoreStats};
use rivulet::prelude::*;
use rivulet_benches::harness::pairs_batches;
use rivulet_benches::support::{self, ms, Latencies};

#[derive(Parser, Debug)]
#[command(about = "The checkpoint directory's size over a long run, and compaction's cost")]
struct Args {
    /// Batches to run.
    #[arg(long, default_value_t = 10_000)]
    batches: u32,
    /// Records per batch.
    #[arg(long, default_value_t = 4_000)]
    records: usize,
    /// Distinct keys.
    #[arg(long, default_value_t = 100_000)]
    keys: u64,
    /// A data checkpoint every this many batches.
    #[arg(long, default_value_t = 5)]
    checkpoint_every: u32,
    /// Executors.
    #[arg(long, default_value_t = 2)]
    executors: usize,
    /// Compact above this size (MiB) ...
    #[arg(long, default_value_t = 32)]
    compact_floor_mb: u64,
    /// ... and above this many times the live bytes.
    #[arg(long, default_value_t = 6.0)]
    compact_ratio: f64,
    /// Print a CURVE line every this many batches.
    #[arg(long, default_value_t = 100)]
    report_every: u32,
}

/// The nominal batch interval: batch times and the checkpoint interval are multiples of it.
const BATCH_MS: u64 = 100;
const SEED: u64 = 0x9e37_79b9_7f4a_7c15;

/// Per completed batch: its processing time, and the store's stats after it.
#[derive(Clone, Default)]
struct Record(Arc<Mutex<Vec<(Duration, Option<StoreStats>)>>>);

impl StreamingListener for Record {
    fn on_checkpoint_store(&mut self, stats: &StoreStats) {
        let mut r = self.0.lock();
        r.push((Duration::ZERO, Some(*stats)));
    }
    fn on_batch_completed(&mut self, batch: &BatchInfo) {
        let mut r = self.0.lock();
        // The store's stats come first (from the job thread's metadata checkpoint).
        match r.last_mut() {
            Some(last) if last.0 == Duration::ZERO && last.1.is_some() => {
                last.0 = batch.processing_delay.unwrap_or_default();
            }
            _ => r.push((batch.processing_delay.unwrap_or_default(), None)),
        }
    }
}

const MIB: f64 = (1 << 20) as f64;

#[actix::main]
async fn main() -> Result<(), BoxError> {
    support::init_tracing();
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    let ssc = StreamingContext::new(
        StreamingConfig::new()
            .app_name("bench_checkpoint_store")
            .batch_interval(Duration::from_millis(BATCH_MS))
            .executors(args.executors)
            .manual_clock(true)
            .checkpoint_dir(dir.path().join("ckpt"))
            .checkpoint_compaction(CompactionPolicy {
                floor_bytes: args.compact_floor_mb << 20,
                max_ratio: args.compact_ratio,
            }),
    )?;
    let input = pairs_batches(args.batches, args.records, args.keys, SEED, 1u64);
    let mut expected: HashMap<u64, u64> = HashMap::new();
    for (k, v) in input.iter().flatten() {
        *expected.entry(*k).or_default() += v;
    }
    let spec = StateSpec::function(|_: &u64, v: Option<u64>, state: &mut State<u64>| {
        let sum = state.get().copied().unwrap_or(0) + v.unwrap_or(0);
        state.update(sum);
        sum
    });
    let mapped = ssc.queue_stream(input).map_with_state(spec);
    mapped.checkpoint(Duration::from_millis(
        BATCH_MS * u64::from(args.checkpoint_every),
    ));
    mapped.foreach_rdd(|rdd, _| {
        rdd.count()?;
        Ok(())
    });
    let last_state: Arc<Mutex<Vec<(u64, u64)>>> = Arc::default();
    let sink = last_state.clone();
    let last = Time::from_ms((BATCH_MS * u64::from(args.batches)) as i64);
    mapped.state_snapshots().foreach_rdd(move |rdd, t| {
        if t == last {
            *sink.lock() = rdd.collect()?;
        }
        Ok(())
    });
    let record = Record::default();
    ssc.add_listener(record.clone());
    println!(
        "SETUP batches={} records_per_batch={} keys={} checkpoint_every={} executors={} compact_floor_mb={} compact_ratio={}",
        args.batches, args.records, args.keys, args.checkpoint_every, args.executors, args.compact_floor_mb, args.compact_ratio
    );
    ssc.start().await?;
    let started = std::time::Instant::now();
    let mut done = 0;
    while done < args.batches {
        let n = args.report_every.min(args.batches - done);
        ssc.advance(n).await?;
        done += n;
        let r = record.0.lock();
        if let Some(stats) = r.iter().rev().find_map(|(_, s)| *s) {
            let size = stats.size_bytes.unwrap_or(0) as f64;
            println!(
                "CURVE batch={done} size_mib={:.2} live_mib={:.2} ratio={:.2} compactions={}",
                size / MIB,
                stats.live_bytes as f64 / MIB,
                size / stats.live_bytes.max(1) as f64,
                stats.compactions
            );
        }
    }
    let wall = started.elapsed();
    ssc.stop(StopMode::Graceful).await?;

    let records = record.0.lock().clone();
    let (mut with, mut without) = (Latencies::new(), Latencies::new());
    let (mut compactions, mut max_size, mut worst) = (0, 0u64, 0.0f64);
    for (took, stats) in &records {
        let Some(stats) = stats else { continue };
        let size = stats.size_bytes.unwrap_or(0);
        max_size = max_size.max(size);
        let bound = (64u64 << 20).max(8 * stats.live_bytes);
        worst = worst.max(size as f64 / bound as f64);
        if stats.compactions > compactions {
            compactions = stats.compactions;
            with.record(*took);
        } else {
            without.record(*took);
        }
    }
    println!(
        "SUMMARY batches={} wall_s={:.1} max_size_mib={:.2} worst_size_over_bound={:.3} compactions={} \
         median_batch_ms={:.2} p99_batch_ms={:.2} max_batch_ms={:.2} \
         compacting_batch_median_ms={:.2} compacting_batch_max_ms={:.2} \
         throughput_compacting_over_not={:.3} interval_ms={BATCH_MS}",
        args.batches,
        wall.as_secs_f64(),
        max_size as f64 / MIB,
        worst,
        compactions,
        ms(without.quantile(0.5)),
        ms(without.quantile(0.99)),
        ms(without.max()),
        ms(with.quantile(0.5)),
        ms(with.max()),
        if with.is_empty() { 1.0 } else { ms(without.quantile(0.5)) / ms(with.quantile(0.5)) },
    );
    let state: HashMap<u64, u64> = last_state.lock().iter().copied().collect();
    if state != expected {
        return Err(format!(
            "check failed: the final state has {} keys, the input {}",
            state.len(),
            expected.len()
        )
        .into());
    }
    println!(
        "Check OK: the final state equals a count of the input ({} keys).",
        state.len()
    );
    if worst > 1.0 {
        return Err(format!("the directory outgrew its bound ({worst:.2}x)").into());
    }
    Ok(())
}
