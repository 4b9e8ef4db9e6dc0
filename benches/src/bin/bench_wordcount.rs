//! End-to-end throughput harness: streaming word count in rivulet against a plain loop.
//!
//! In one run, on the same input held in memory (by default the bundled
//! `examples/data/shakespeare.txt` repeated `--repeat` times), it times
//!
//! - **plain**: one thread applies the word-count closures to every line and counts the words
//!   in one `HashMap<String, u64>` (std's hasher; the same loop with rivulet's Fx hasher is
//!   printed too, for reference);
//! - **rivulet**: an in-memory [`Receiver`] stores the lines in chunks as fast as backpressure
//!   allows into `receiver_stream`, then `flat_map(words) → map((w, 1)) → reduce_by_key`, and
//!   an output that merges each batch's counts into one map, with `--executors` executors and
//!   `--batch-ms` batches on the system clock. Its time runs from `start()` to the completion
//!   of the batch that holds the last line (a listener counts each batch's records).
//!
//! Both apply the same [`words`] function (the examples' shared `support::words`) to an owned
//! copy of each line. A third loop, the **non-allocating** one, hands out each line's words as
//! `&str` views (`support::for_each_word`) and allocates a word only when its map first sees
//! it; `--by-reference` writes the rivulet job that way too (`flat_map_reduce_by_key`), and
//! each run prints rivulet's rate against both loops. The harness fails (non-zero exit) if
//! rivulet's counts, summed over all batches, differ from the plain loop's.
//! It prints input lines, both rates, their ratio, and the median and p99 per-batch
//! processing time; with `--runs N` it repeats everything N times and reports medians.
//!
//! ```text
//! CARGO_TARGET_DIR=/work/target-bench cargo run --release -p rivulet-benches --bin bench_wordcount
//! CARGO_TARGET_DIR=/work/target-bench cargo run --release -p rivulet-benches --bin bench_wordcount -- --block-ms 50 --runs 5
//! ```
//!
//! Defaults: 2M lines (`--repeat 50`), 2 executors, 100 ms batches, 10 ms blocks, 3 runs,
//! transparent huge pages off (`--transparent-huge-pages` keeps them).
//! See `BENCHMARKS.md` for figures and where the time goes.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use parking_lot::Mutex;
use rivulet::prelude::*;
use rivulet_benches::harness::{self, median_f64, process_cpu};
use rivulet_benches::support::{
    self, for_each_word, init_tracing, ms, words, Latencies, SignalStop,
};
use rustc_hash::FxBuildHasher;

#[path = "../../../examples/support/allocator.rs"]
mod allocator;

// `words`: a word is a maximal run of ASCII letters and digits, lowercased. Both the plain
// loop and rivulet's `flat_map` call this one function.

/// Command-line options.
#[derive(Parser, Debug)]
#[command(about = "Word-count throughput: rivulet against a plain single-threaded loop")]
struct Args {
    #[command(flatten)]
    ui: support::UiArgs,
    /// How many times the input text is repeated in memory (50: 2M lines of Shakespeare,
    /// twenty batches' worth at 100 ms batches, so the run reaches a steady state).
    #[arg(long, default_value_t = 50)]
    repeat: usize,
    /// Text file to count, one record per line (default: the bundled Shakespeare text).
    #[arg(long)]
    input: Option<PathBuf>,
    /// Executors (task threads) rivulet runs.
    #[arg(long, default_value_t = 2)]
    executors: usize,
    /// Batch interval in milliseconds.
    #[arg(long, default_value_t = 100)]
    batch_ms: u64,
    /// Block interval in milliseconds. A batch's input has one partition per block (per
    /// receiver), so this sets how many executors share a batch; 10 ms gives ten blocks per
    /// 100 ms batch (rivulet's default would be batch / (2 × executors)).
    #[arg(long, default_value_t = 10)]
    block_ms: u64,
    /// Lines the receiver stores per `store_many` call.
    #[arg(long, default_value_t = 1024)]
    chunk: usize,
    /// Lines per second the receiver stores; 0 stores as fast as backpressure allows.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Never yield the receiver's thread between chunks (see `MemoryLines`).
    #[arg(long)]
    no_yield: bool,
    /// Least bound on each receiver's stored-but-unfinished lines (default: rivulet's
    /// default; the bound grows with the measured processing rate, see
    /// `receiver_buffer_time`).
    #[arg(long)]
    buffer_records: Option<usize>,
    /// Receivers reading the input in parallel, each a contiguous slice of the lines, as
    /// one stream (`receiver_streams`); `--rate` is split among them.
    #[arg(long, default_value_t = 1, value_parser = support::parse_executors)]
    receivers: usize,
    /// Repeat the whole measurement N times and report medians.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Keep transparent huge pages on, as the allocator asks for them (by default they are
    /// turned off for this process and its executor processes: see
    /// `allocator::disable_transparent_huge_pages`).
    #[arg(long)]
    transparent_huge_pages: bool,
    /// With `--local-cluster`: SIGKILL the first executor process this many ms after the
    /// start, and report the time from the kill until a batch submitted after it completed
    /// with a scheduling delay under one batch interval (batches on time again). Use with a
    /// `--rate` the cluster sustains.
    #[arg(long, value_name = "MS")]
    kill_process_after_ms: Option<u64>,
    /// Keep a running total per word (`map_with_state` after the batch's `reduce_by_key`,
    /// emitting each counted word's total): the state lives on the executor processes with
    /// `--local-cluster` (`--state-in-coordinator` keeps it in the coordinator).
    #[arg(long)]
    stateful: bool,
    /// Partitions of the shuffles (rivulet's default: every task thread of the run, the
    /// executor processes' included).
    #[arg(long)]
    default_parallelism: Option<usize>,
    /// Timestep pipelining (`StreamingConfig::pipelining`): the next queued batch's map
    /// stages run while a batch's result stage runs.
    #[arg(long)]
    pipelining: bool,
    /// Count with `flat_map_reduce_by_key` over `&str` views of each line
    /// (`support::for_each_word`): records read by reference out of their blocks, a word
    /// allocated only when a map task first sees it. By default the job is written the plain
    /// way, `flat_map(words) → map → reduce_by_key`.
    #[arg(long)]
    by_reference: bool,
}

/// Every completed batch with the instant it completed.
#[derive(Clone, Default)]
struct Completions(Arc<Mutex<Vec<(BatchInfo, Instant)>>>);

impl StreamingListener for Completions {
    fn on_batch_completed(&mut self, batch: &BatchInfo) {
        self.0.lock().push((batch.clone(), Instant::now()));
    }
}

impl Completions {
    /// Prints how long after the kill at `at` (`wall` on the system clock) the first batch
    /// submitted after it completed with a scheduling delay under `batch`.
    fn report_recovery(&self, at: Instant, wall: std::time::SystemTime, batch: Duration) {
        let done = self.0.lock();
        let on_time = done
            .iter()
            .filter(|(b, _)| b.submission_time >= wall)
            .find(|(b, _)| b.scheduling_delay.unwrap_or_default() < batch)
            .map(|(_, t)| t.saturating_duration_since(at));
        let worst = done
            .iter()
            .filter(|(b, _)| b.submission_time >= wall)
            .filter_map(|(b, _)| b.scheduling_delay)
            .max()
            .unwrap_or_default();
        match on_time {
            Some(d) => println!(
                "       executor process SIGKILLed: batches on time again {:.0} ms after the kill (largest scheduling delay after it {:.1} ms)",
                ms(d),
                ms(worst)
            ),
            None => println!("       executor process SIGKILLed: no batch was on time after the kill"),
        }
    }
}

/// The non-allocating loop: each line's words as `&str` views (`for_each_word`), looked up
/// by reference in an Fx map and allocated only when new.
fn plain_count_by_reference(lines: &[String]) -> usize {
    let mut counts: HashMap<String, u64, FxBuildHasher> = HashMap::default();
    for line in lines {
        for_each_word(line, |w| match counts.get_mut(w) {
            Some(n) => *n += 1,
            None => {
                counts.insert(w.to_string(), 1);
            }
        });
    }
    counts.len()
}

/// The plain loop: the same closures as the rivulet job on one thread, one map.
fn plain_count<S: BuildHasher + Default>(lines: &[String]) -> HashMap<String, u64, S> {
    let mut counts: HashMap<String, u64, S> = HashMap::default();
    for line in lines {
        for w in words(line.clone()) {
            *counts.entry(w).or_insert(0) += 1;
        }
    }
    counts
}

/// Stores lines held in memory into its sink, `chunk` at a time (at most `rate` lines/s
/// unless `rate` is 0), then finishes.
///
/// After each chunk it yields its thread, as a receiver reading real I/O does (tokio's
/// sockets and files yield when their cooperative budget runs out). Without that (`--no-yield`)
/// its receive loop never returns `Pending` while the buffer has room, and the batch builder
/// that shares the receiver's arbiter thread cannot seal a block until the buffer is full.
struct MemoryLines {
    lines: Arc<Vec<String>>,
    /// The first line of this receiver's slice not stored yet, and the end of the slice.
    next: usize,
    end: usize,
    /// Where the slice starts (for the rate).
    first: usize,
    chunk: usize,
    rate: u64,
    yield_each_chunk: bool,
    started: tokio::time::Instant,
}

impl Receiver for MemoryLines {
    type Item = String;

    fn name(&self) -> String {
        format!("memory(lines {}..{})", self.next, self.end)
    }

    async fn on_start(&mut self) -> Result<(), ReceiverError> {
        self.started = tokio::time::Instant::now();
        Ok(())
    }

    /// `true`: every process of the bench reads the same corpus into memory, so an
    /// executor process (`--local-cluster N --receivers-in-processes`) stores the same
    /// lines the coordinator would.
    fn runs_anywhere(&self) -> bool {
        true
    }

    async fn receive(&mut self, sink: &mut BlockSink<String>) -> Result<Flow, ReceiverError> {
        let end = (self.next + self.chunk).min(self.end);
        if self.next == end {
            return Ok(Flow::Finished);
        }
        if self.rate > 0 {
            let sent = self.next - self.first;
            let due = Duration::from_secs_f64(sent as f64 / self.rate as f64);
            tokio::time::sleep_until(self.started + due).await;
        }
        let chunk = self.lines[self.next..end].to_vec();
        sink.store_many(chunk).await.map_err(|_| {
            ReceiverError::fatal("the context stopped before all lines were stored")
        })?;
        self.next = end;
        if self.yield_each_chunk {
            tokio::task::yield_now().await;
        }
        Ok(Flow::Continue)
    }
}

/// What the listener saw once the last line's batch completed.
#[derive(Debug)]
struct Finished {
    /// When the batch holding the last line completed.
    at: Instant,
    /// Processing time of each batch that held records.
    processing: Vec<Duration>,
    /// Batches completed, empty ones included.
    batches: usize,
    /// When the first batch with records started processing.
    first_started: Option<Instant>,
    /// Failed output operations, as `batch <time>: <operator>: <error>`.
    failures: Vec<String>,
}

/// Counts completed records and reports when all `total` lines are done (or a batch failed).
struct Watch {
    total: usize,
    done: usize,
    batches: usize,
    processing: Vec<Duration>,
    first_started: Option<Instant>,
    failures: Vec<String>,
    tx: Option<tokio::sync::oneshot::Sender<Finished>>,
}

impl StreamingListener for Watch {
    fn on_batch_started(&mut self, batch: &BatchInfo) {
        if batch.num_records > 0 && self.first_started.is_none() {
            self.first_started = Some(Instant::now());
        }
    }

    fn on_batch_completed(&mut self, batch: &BatchInfo) {
        self.batches += 1;
        self.done += batch.num_records;
        if batch.num_records > 0 {
            self.processing
                .push(batch.processing_delay.unwrap_or_default());
        }
        for (op, error) in &batch.failures {
            self.failures
                .push(format!("batch {}: {op}: {error}", batch.batch_time));
        }
        if self.done >= self.total || !self.failures.is_empty() {
            if let Some(tx) = self.tx.take() {
                let _ = tx.send(Finished {
                    at: Instant::now(),
                    processing: std::mem::take(&mut self.processing),
                    batches: self.batches,
                    first_started: self.first_started,
                    failures: std::mem::take(&mut self.failures),
                });
            }
        }
    }
}

/// One rivulet run's figures.
#[derive(Debug)]
struct RivuletRun {
    wall: Duration,
    to_first_batch: Option<Duration>,
    batches: usize,
    processing: Vec<Duration>,
    counts: HashMap<String, u64>,
    /// Bytes of frames to and from the executor processes (`--local-cluster`), all slots.
    cluster_bytes: u64,
}

/// Runs the streaming word count over `lines` and returns its figures and summed counts;
/// `None` when a signal stopped it (see `SignalStop`).
async fn rivulet_count(
    args: &Args,
    lines: Arc<Vec<String>>,
) -> Result<Option<RivuletRun>, BoxError> {
    let total = lines.len();
    let mut config = support::base_config()
        .app_name("bench_wordcount")
        .batch_interval(Duration::from_millis(args.batch_ms))
        .block_interval(Duration::from_millis(args.block_ms))
        .executors(args.executors)
        .pipelining(args.pipelining);
    if let Some(n) = args.buffer_records {
        config = config.receiver_buffer_records(n);
    }
    if let Some(n) = args.default_parallelism {
        config = config.default_parallelism(n);
    }
    let ssc = StreamingContext::new(config)?;
    let totals: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
    let sink = totals.clone();
    let n = args.receivers;
    let receivers: Vec<MemoryLines> = (0..n)
        .map(|i| {
            let (first, end) = (total * i / n, total * (i + 1) / n);
            MemoryLines {
                lines: lines.clone(),
                next: first,
                end,
                first,
                chunk: args.chunk.max(1),
                rate: args.rate.div_ceil(n as u64),
                yield_each_chunk: !args.no_yield,
                started: tokio::time::Instant::now(),
            }
        })
        .collect();
    let lines = ssc.receiver_streams(receivers)?;
    let counts = if args.by_reference {
        lines.flat_map_reduce_by_key(
            |line: &String, counts| for_each_word(line, |w| counts.add(w, 1u64)),
            |a, b| a + b,
        )
    } else {
        lines
            .flat_map(words)
            .map(|w| (w, 1u64))
            .reduce_by_key(|a, b| a + b)
    };
    if args.stateful {
        // Each batch emits the running totals of its words: the last one seen is the total.
        let spec = StateSpec::function(|w: &String, n: Option<u64>, total: &mut State<u64>| {
            let sum = total.get().copied().unwrap_or(0) + n.unwrap_or(0);
            total.update(sum);
            (w.clone(), sum)
        });
        counts.map_with_state(spec).foreach_batch(move |_, batch| {
            let mut totals = sink.lock();
            for (w, n) in batch {
                totals.insert(w, n);
            }
        });
    } else {
        counts.foreach_batch(move |_, batch| {
            let mut totals = sink.lock();
            for (w, n) in batch {
                *totals.entry(w).or_insert(0) += n;
            }
        });
    }
    let (tx, rx) = tokio::sync::oneshot::channel();
    ssc.add_listener(Watch {
        total,
        done: 0,
        batches: 0,
        processing: Vec::new(),
        first_started: None,
        failures: Vec::new(),
        tx: Some(tx),
    });
    let completions = Completions::default();
    ssc.add_listener(completions.clone());
    let started = Instant::now();
    ssc.start().await?;
    support::print_ui_url(&ssc);
    let signals = SignalStop::install(&ssc)?;
    let killed = match (args.kill_process_after_ms, ssc.executor_processes().first()) {
        (Some(after), Some(victim)) => {
            tokio::time::sleep(Duration::from_millis(after)).await;
            let at = (Instant::now(), std::time::SystemTime::now());
            ssc.kill_executor(victim.executor).await?;
            Some(at)
        }
        _ => None,
    };
    let finished = tokio::select! {
        seen = rx => seen.map_err(|_| "the listener was dropped before the last batch")?,
        result = ssc.await_termination() => {
            result?;
            if signals.interrupted() {
                return Ok(None);
            }
            return Err("the context stopped before the last batch".into());
        }
    };
    ssc.stop(StopMode::Graceful).await?;
    if let Some((at, wall)) = killed {
        completions.report_recovery(at, wall, Duration::from_millis(args.batch_ms));
    }
    let cluster_bytes = ssc
        .executor_processes()
        .iter()
        .map(|p| p.bytes_sent + p.bytes_received)
        .sum();
    if !finished.failures.is_empty() {
        return Err(format!("batches failed: {}", finished.failures.join("; ")).into());
    }
    let counts = std::mem::take(&mut *totals.lock());
    Ok(Some(RivuletRun {
        wall: finished.at - started,
        to_first_batch: finished
            .first_started
            .map(|t| t.saturating_duration_since(started)),
        batches: finished.batches,
        processing: finished.processing,
        counts,
        cluster_bytes,
    }))
}

/// Fails with the first few differences if `got` is not `want`.
fn check_same(want: &HashMap<String, u64>, got: &HashMap<String, u64>) -> Result<(), BoxError> {
    if want == got {
        return Ok(());
    }
    let mut diffs: Vec<String> = want
        .iter()
        .filter(|(w, n)| got.get(*w) != Some(n))
        .map(|(w, n)| format!("{w}: plain {n}, rivulet {:?}", got.get(w)))
        .chain(
            got.iter()
                .filter(|(w, _)| !want.contains_key(*w))
                .map(|(w, n)| format!("{w}: plain none, rivulet {n}")),
        )
        .collect();
    let n = diffs.len();
    diffs.sort();
    diffs.truncate(10);
    Err(format!(
        "MISMATCH: rivulet's counts differ from the plain loop's for {n} words, e.g. {}",
        diffs.join("; ")
    )
    .into())
}

/// Per-run figures, summarized as medians at the end.
#[derive(Debug, Default)]
struct Summary {
    plain: Vec<f64>,
    fx: Vec<f64>,
    rivulet: Vec<f64>,
    ratio: Vec<f64>,
    median: Vec<f64>,
    p99: Vec<f64>,
    cpu_ratio: Vec<f64>,
    by_ref: Vec<f64>,
    by_ref_ratio: Vec<f64>,
}

/// Parses the options, runs the job, and returns its first error.
#[actix::main]
async fn main() -> Result<(), BoxError> {
    init_tracing();
    let args = Args::parse();
    if !args.transparent_huge_pages {
        allocator::disable_transparent_huge_pages()
            .map_err(|e| format!("turning transparent huge pages off: {e}"))?;
    }
    args.ui.install();
    let path = args
        .input
        .clone()
        .unwrap_or_else(|| harness::example_data("shakespeare.txt"));
    let text =
        std::fs::read_to_string(&path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let one: Vec<&str> = text.lines().collect();
    let lines: Arc<Vec<String>> = Arc::new(
        (0..args.repeat.max(1))
            .flat_map(|_| one.iter().map(|l| l.to_string()))
            .collect(),
    );
    let total = lines.len();
    println!(
        "input: {} x{} = {total} lines; rivulet: {} executors, {} receivers, {} ms batches, \
         {} ms blocks, chunks of {} lines, rate {}{}, {} runs, {} form",
        path.display(),
        args.repeat.max(1),
        args.executors,
        args.receivers,
        args.batch_ms,
        args.block_ms,
        args.chunk,
        if args.rate == 0 {
            "unlimited".to_string()
        } else {
            format!("{} lines/s", args.rate)
        },
        if args.no_yield { ", no yield" } else { "" },
        args.runs.max(1),
        if args.by_reference {
            "by-reference (flat_map_reduce_by_key)"
        } else {
            "plain (flat_map, map, reduce_by_key)"
        }
    );

    if StreamingContext::is_executor_process() {
        // An executor process of `--local-cluster`: no plain loop, straight to the context,
        // whose `start` serves the coordinator and never returns.
        rivulet_count(&args, lines.clone()).await?;
        return Ok(());
    }
    let mut all = Summary::default();
    for run in 1..=args.runs.max(1) {
        let (t, cpu) = (Instant::now(), process_cpu());
        let plain = plain_count::<std::hash::RandomState>(&lines);
        let plain_time = t.elapsed();
        let plain_cpu = process_cpu().zip(cpu).map(|(b, a)| b.saturating_sub(a));
        let t = Instant::now();
        let fx = plain_count::<FxBuildHasher>(&lines);
        let fx_time = t.elapsed();
        std::hint::black_box(fx.len());
        let t = Instant::now();
        let distinct = plain_count_by_reference(&lines);
        let by_ref_time = t.elapsed();
        if distinct != plain.len() {
            return Err(format!(
                "MISMATCH: the non-allocating loop counts {distinct} distinct words, the plain \
                 loop {}",
                plain.len()
            )
            .into());
        }

        let cpu = process_cpu();
        let Some(r) = rivulet_count(&args, lines.clone()).await? else {
            println!("Stopped on a signal: results above are for the finished runs only.");
            return Ok(());
        };
        let rivulet_cpu = process_cpu().zip(cpu).map(|(b, a)| b.saturating_sub(a));
        check_same(&plain, &r.counts)?;

        let rate = |d: Duration| total as f64 / d.as_secs_f64().max(1e-9);
        let (p, rv) = (rate(plain_time), rate(r.wall));
        let processing: Latencies = r.processing.iter().copied().collect();
        let (med, p99) = (processing.quantile(0.5), processing.quantile(0.99));
        let cpu_ratio = rivulet_cpu
            .zip(plain_cpu)
            .map(|(r, p)| r.as_secs_f64() / p.as_secs_f64().max(1e-3));
        let nr = rate(by_ref_time);
        println!(
            "run {run}: plain {:.0} ms = {p:.0} lines/s (Fx hasher: {:.0} ms; non-allocating: \
             {:.0} ms); rivulet {:.0} ms = {rv:.0} lines/s; ratio {:.2}x (to the non-allocating \
             loop {:.2}x); counts agree ({} distinct words)",
            ms(plain_time),
            ms(fx_time),
            ms(by_ref_time),
            ms(r.wall),
            rv / p,
            rv / nr,
            plain.len(),
        );
        println!(
            "       rivulet: first batch with records started at {:.0} ms; {} batches ({} with \
             records), processing median {:.1} ms, p99 {:.1} ms, sum {:.0} ms; CPU {} vs plain {} \
             ({}x)",
            r.to_first_batch.map_or(f64::NAN, ms),
            r.batches,
            r.processing.len(),
            ms(med),
            ms(p99),
            ms(r.processing.iter().sum()),
            rivulet_cpu.map_or("n/a".into(), |d| format!("{:.0} ms", ms(d))),
            plain_cpu.map_or("n/a".into(), |d| format!("{:.0} ms", ms(d))),
            cpu_ratio.map_or("n/a".into(), |x| format!("{x:.2}")),
        );
        if r.cluster_bytes > 0 {
            println!(
                "       executor processes: {} bytes sent and received, {:.1} bytes per line",
                r.cluster_bytes,
                r.cluster_bytes as f64 / total as f64
            );
        }
        all.plain.push(p);
        all.fx.push(rate(fx_time));
        all.by_ref.push(nr);
        all.by_ref_ratio.push(rv / nr);
        all.rivulet.push(rv);
        all.ratio.push(rv / p);
        all.median.push(ms(med));
        all.p99.push(ms(p99));
        all.cpu_ratio.extend(cpu_ratio);
    }
    println!("--- medians over {} runs ---", all.ratio.len());
    println!("input lines:             {total}");
    println!(
        "plain loop:              {:.0} lines/s",
        median_f64(&all.plain)
    );
    println!(
        "plain loop (Fx hasher):  {:.0} lines/s",
        median_f64(&all.fx)
    );
    println!(
        "rivulet, {} executors:    {:.0} lines/s",
        args.executors,
        median_f64(&all.rivulet)
    );
    println!(
        "non-allocating loop:     {:.0} lines/s",
        median_f64(&all.by_ref)
    );
    println!("ratio rivulet/plain:     {:.2}x", median_f64(&all.ratio));
    println!(
        "ratio to non-allocating: {:.2}x",
        median_f64(&all.by_ref_ratio)
    );
    println!(
        "batch processing time:   median {:.1} ms, p99 {:.1} ms",
        median_f64(&all.median),
        median_f64(&all.p99)
    );
    println!(
        "CPU time rivulet/plain:  {:.2}x (all threads, for the same lines)",
        median_f64(&all.cpu_ratio)
    );
    Ok(())
}
