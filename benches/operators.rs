//! Criterion micro-benches of rivulet's RDD operators on real text, each beside a plain
//! single-threaded loop doing the same per-record work, so the ratio is the framework's cost.
//!
//! Input: the bundled `examples/data/shakespeare.txt` (40,000 lines), read once at start.
//! RDDs run on [`local_context`]: every task of a job runs inline, one after the other, on
//! the bench thread, through the same DAG scheduler, stage split and shuffle code as the actor
//! runtime but without actors. The figures are therefore the **per-core** cost of the
//! operators (2 or 4 partitions only change how the work is cut, not how many cores run it).
//!
//! - `narrow`: a fused narrow pipeline, `flat_map(words) → filter → map`, then `count`.
//! - `reduce_by_key`: a hash shuffle with map-side combine over `(word, 1)` pairs.
//! - `wordcount`: lines → `flat_map(words) → map((w, 1)) → reduce_by_key`, the per-core work
//!   of one batch of `benches/src/bin/bench_wordcount.rs`; and the same count by reference,
//!   `flat_map_reduce_by_key` over `for_each_word`'s `&str` views, beside the non-allocating
//!   loop (an Fx map looked up by `&str`, a word allocated only when new).
//! - `job_overhead`: the fixed cost of a job on 4 records (throughput here is jobs).
//!
//! Records are cloned out of the input RDD (its partitions are shared, immutable `Vec`s), so
//! the plain loops clone each input record too. Throughput is in input records: lines for
//! `narrow` and `wordcount`, `(word, 1)` pairs for `reduce_by_key`.
//!
//! ```text
//! CARGO_TARGET_DIR=/work/target-bench cargo bench -p rivulet-benches --bench operators
//! ```

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{
    criterion_group, criterion_main, BatchSize, BenchmarkGroup, Criterion, Throughput,
};
use rivulet::framework::rdd::{Rdd, RddContext};
use rivulet::framework::testing::local_context;
use rivulet_benches::support::for_each_word;
use rustc_hash::FxHashMap;

/// Partition counts measured for the RDD benches.
const PARTITIONS: [usize; 2] = [2, 4];

/// A word is a maximal run of ASCII letters and digits, lowercased (as the examples count).
fn words(line: String) -> Vec<String> {
    line.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_ascii_lowercase)
        .collect()
}

/// The filter of the narrow pipeline: words longer than three bytes.
fn long(word: &str) -> bool {
    word.len() > 3
}

/// The map of the narrow pipeline: a word's length.
fn len(word: String) -> u64 {
    word.len() as u64
}

/// The lines of the bundled Shakespeare text.
///
/// # Panics
/// If the file cannot be read: the bench cannot run without its input.
fn shakespeare() -> Vec<String> {
    let path = rivulet_benches::harness::example_data("shakespeare.txt");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    text.lines().map(str::to_string).collect()
}

/// Every `(word, 1)` pair of `lines`, in order.
fn word_pairs(lines: &[String]) -> Vec<(String, u64)> {
    lines
        .iter()
        .cloned()
        .flat_map(words)
        .map(|w| (w, 1u64))
        .collect()
}

/// A fresh local context with `data` in `partitions` partitions. The context's block store
/// keeps every shuffle output it ever wrote, so shuffle benches take a fresh one per
/// iteration (built outside the timed closure) to keep memory flat.
fn input<T: rivulet::framework::data::Data>(
    data: &[T],
    partitions: usize,
) -> (Arc<RddContext>, Rdd<T>) {
    let ctx = local_context(partitions);
    let rdd = ctx.parallelize(data.to_vec(), partitions);
    (ctx, rdd)
}

/// Short measurements: the machine has 2 shared cores; the whole run stays under 2 minutes.
fn short(group: &mut BenchmarkGroup<'_, WallTime>) {
    group
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
}

/// Measures the fused narrow pipeline `flat_map → filter → map → count` on an RDD of lines
/// (built outside the timed closure), and the same closures in a plain iterator chain.
fn narrow(c: &mut Criterion) {
    let lines = shakespeare();
    let mut group = c.benchmark_group("operators::narrow");
    short(&mut group);
    group.throughput(Throughput::Elements(lines.len() as u64));
    group.bench_function("plain_loop", |b| {
        b.iter(|| {
            let n = black_box(&lines)
                .iter()
                .cloned()
                .flat_map(words)
                .filter(|w| long(w))
                .map(len)
                .count();
            black_box(n)
        })
    });
    for p in PARTITIONS {
        let (_ctx, rdd) = input(&lines, p);
        group.bench_function(format!("partitions_{p}"), |b| {
            b.iter(|| {
                let n = rdd.flat_map(words).filter(|w| long(w)).map(len).count();
                black_box(n.expect("the local job runs"))
            })
        });
    }
    group.finish();
}

/// Measures `reduce_by_key` (map-side combine, hash shuffle, reduce) over the `(word, 1)`
/// pairs of the text, against one `HashMap` (std's SipHash, and Fx as rivulet uses).
fn reduce_by_key(c: &mut Criterion) {
    let lines = shakespeare();
    let pairs = word_pairs(&lines);
    let mut group = c.benchmark_group("operators::reduce_by_key");
    short(&mut group);
    group.throughput(Throughput::Elements(pairs.len() as u64));
    group.bench_function("plain_loop_std_hashmap", |b| {
        b.iter(|| {
            let mut counts: HashMap<String, u64> = HashMap::new();
            for (w, n) in black_box(&pairs).iter().cloned() {
                *counts.entry(w).or_insert(0) += n;
            }
            black_box(counts.len())
        })
    });
    group.bench_function("plain_loop_fx_hashmap", |b| {
        b.iter(|| {
            let mut counts: FxHashMap<String, u64> = FxHashMap::default();
            for (w, n) in black_box(&pairs).iter().cloned() {
                *counts.entry(w).or_insert(0) += n;
            }
            black_box(counts.len())
        })
    });
    for p in PARTITIONS {
        group.bench_function(format!("partitions_{p}"), |b| {
            b.iter_batched(
                || input(&pairs, p),
                |(ctx, rdd)| {
                    let n = rdd.reduce_by_key(|a, b| a + b).count();
                    // Returned, so the context and its shuffle outputs drop outside the timing.
                    (black_box(n.expect("the local job runs")), ctx, rdd)
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

/// Measures one batch's word count, lines → `flat_map(words) → map → reduce_by_key`, against
/// the plain loop of `benches/src/bin/bench_wordcount.rs` (one std `HashMap`).
fn wordcount(c: &mut Criterion) {
    let lines = shakespeare();
    let mut group = c.benchmark_group("operators::wordcount");
    short(&mut group);
    group.throughput(Throughput::Elements(lines.len() as u64));
    group.bench_function("plain_loop", |b| {
        b.iter(|| {
            let mut counts: HashMap<String, u64> = HashMap::new();
            for w in black_box(&lines).iter().cloned().flat_map(words) {
                *counts.entry(w).or_insert(0) += 1;
            }
            black_box(counts.len())
        })
    });
    group.bench_function("non_allocating_loop", |b| {
        b.iter(|| {
            let mut counts: FxHashMap<String, u64> = FxHashMap::default();
            for line in black_box(&lines) {
                for_each_word(line, |w| match counts.get_mut(w) {
                    Some(n) => *n += 1,
                    None => {
                        counts.insert(w.to_string(), 1);
                    }
                });
            }
            black_box(counts.len())
        })
    });
    group.bench_function("by_reference_partitions_2", |b| {
        b.iter_batched(
            || input(&lines, 2),
            |(ctx, rdd)| {
                let n = rdd
                    .flat_map_reduce_by_key(
                        |line: &String, counts| for_each_word(line, |w| counts.add(w, 1u64)),
                        |a, b| a + b,
                    )
                    .count();
                (black_box(n.expect("the local job runs")), ctx, rdd)
            },
            BatchSize::SmallInput,
        )
    });
    group.bench_function("partitions_2", |b| {
        b.iter_batched(
            || input(&lines, 2),
            |(ctx, rdd)| {
                let n = rdd
                    .flat_map(words)
                    .map(|w| (w, 1u64))
                    .reduce_by_key(|a, b| a + b)
                    .count();
                (black_box(n.expect("the local job runs")), ctx, rdd)
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

/// Measures the fixed cost of one job in the local runner (stage planning, task registry,
/// task launch and `catch_unwind`, result collection): `count` (one stage of 2 tasks) and
/// `reduce_by_key` + `count` (a map and a result stage, 2 tasks each) on 4 records.
fn job_overhead(c: &mut Criterion) {
    let pairs: Vec<(String, u64)> = ["a", "b", "a", "c"]
        .iter()
        .map(|w| (w.to_string(), 1))
        .collect();
    let mut group = c.benchmark_group("operators::job_overhead");
    short(&mut group);
    group.throughput(Throughput::Elements(1));
    let (_ctx, rdd) = input(&pairs, 2);
    group.bench_function("count_2_tasks", |b| {
        b.iter(|| black_box(rdd.count().expect("the local job runs")))
    });
    group.bench_function("reduce_by_key_count_4_tasks", |b| {
        b.iter_batched(
            || input(&pairs, 2),
            |(ctx, rdd)| {
                let n = rdd.reduce_by_key(|a, b| a + b).count();
                (black_box(n.expect("the local job runs")), ctx, rdd)
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, narrow, reduce_by_key, wordcount, job_overhead);
criterion_main!(benches);
