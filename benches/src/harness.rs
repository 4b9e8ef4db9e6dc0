//! What only the benchmark harnesses use, beyond the examples' [`support`](crate::support): a
//! listener collecting each batch's processing time, a deterministic batch generator, the
//! median of a few runs, the process's CPU time, and the paths of the bundled data and of the
//! examples' binaries.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use rivulet::prelude::*;

/// A listener that records each completed batch's processing time
/// (`BatchInfo::processing_delay`; zero if unknown), in completion order.
///
/// Clones share the same record: add one clone to the context with `add_listener` and read
/// the times through another with [`BatchTimings::take`].
#[derive(Clone, Default)]
pub struct BatchTimings(Arc<Mutex<Vec<Duration>>>);

impl BatchTimings {
    /// An empty record.
    pub fn new() -> BatchTimings {
        BatchTimings::default()
    }

    /// The processing times recorded so far, one per completed batch in completion order,
    /// leaving the record empty. The lock (`parking_lot`) does not poison: a panic while
    /// recording leaves the times recorded before it, and they are returned.
    pub fn take(&self) -> Vec<Duration> {
        std::mem::take(&mut *self.0.lock())
    }
}

impl StreamingListener for BatchTimings {
    fn on_batch_completed(&mut self, batch: &BatchInfo) {
        self.0
            .lock()
            .push(batch.processing_delay.unwrap_or_default());
    }
}

/// `n` batches of `records` pairs `(key, value)` each, with keys in `0..keys` drawn by
/// `fastrand` seeded with `seed`, so every run with the same arguments sees the same input.
/// Every pair holds a clone of `value`.
///
/// # Panics
/// If `keys` is 0 while `n` and `records` are not.
pub fn pairs_batches<V: Clone>(
    n: u32,
    records: usize,
    keys: u64,
    seed: u64,
    value: V,
) -> Vec<Vec<(u64, V)>> {
    let mut rng = fastrand::Rng::with_seed(seed);
    (0..n)
        .map(|_| {
            (0..records)
                .map(|_| (rng.u64(..keys), value.clone()))
                .collect()
        })
        .collect()
}

/// The median of `xs` (the lower middle for an even count); NaN if empty.
pub fn median_f64(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len().saturating_sub(1) / 2)
        .copied()
        .unwrap_or(f64::NAN)
}

/// CPU time (user + system, all threads) the whole process used so far, from
/// `/proc/self/stat` (Linux; 10 ms resolution at the usual 100 ticks/s); `None` where that
/// file is not available.
pub fn process_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces) start at field 3 (state);
    // utime and stime are fields 14 and 15, in clock ticks.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let fields: Vec<&str> = rest.split(' ').collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

/// The bundled input file `name` (in the repository's `examples/data/`).
pub fn example_data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/data")
        .join(name)
}

/// The binary of the example `name` of the `rivulet` package, built in the same profile as
/// the running harness: `target/<profile>/examples/<name>`, beside the harness's own
/// `target/<profile>/<harness>`.
///
/// # Errors
/// When it is missing, saying how to build it.
pub fn example_binary(name: &str) -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let bin = exe.with_file_name("examples").join(name);
    if bin.exists() {
        Ok(bin)
    } else {
        Err(format!(
            "{} is missing: run `cargo build --release --example {name}` first",
            bin.display()
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::support::Latencies;

    use super::median_f64;

    #[test]
    fn latencies_read_quantiles_by_nearest_rank_to_three_significant_digits() {
        let none = Latencies::new();
        assert!(none.is_empty());
        assert_eq!(none.quantile(0.5), Duration::ZERO);

        let ms: Latencies = [4, 1, 3, 2]
            .map(Duration::from_millis)
            .into_iter()
            .collect();
        assert_eq!(ms.len(), 4);
        // The lower middle of an even count; 1.0 the maximum, 0.0 the minimum (to 0.1 %).
        let close = |d: Duration, want_ms: u64| {
            let want = Duration::from_millis(want_ms);
            assert!(d >= want && d <= want + want / 1000, "{d:?} vs {want:?}");
        };
        close(ms.quantile(0.5), 2);
        close(ms.quantile(0.75), 3);
        close(ms.max(), 4);
        close(ms.quantile(0.0), 1);

        // Microseconds below 2,048 are exact; far larger values grow the histogram.
        let mut us = Latencies::new();
        us.extend((1..=100).map(Duration::from_micros));
        assert_eq!(us.quantile(0.99), Duration::from_micros(99));
        us.record(Duration::from_secs(3600));
        close(us.max(), 3_600_000);
    }

    #[test]
    fn median_of_runs_is_the_lower_middle() {
        assert_eq!(median_f64(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median_f64(&[4.0, 1.0, 3.0, 2.0]), 2.0);
        assert!(median_f64(&[]).is_nan());
    }
}
