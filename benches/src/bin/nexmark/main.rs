//! Nexmark throughput harness: queries q0, q1, q2, q3, q5, q7 and q8 as DStream programs
//! (`queries.rs`), fed by the `nexmark` crate's event generator (pinned seed, start time
//! and rate) through a [`Receiver`] (`feed.rs`), checked against a single-threaded
//! reference evaluation (`reference.rs`) on every run.
//!
//! ```text
//! CARGO_TARGET_DIR=target cargo run --release -p rivulet-benches --bin nexmark -- --query q5 --events 10000000 --executors 2 --runs 3
//! CARGO_TARGET_DIR=target cargo run --release -p rivulet-benches --bin nexmark -- --query all
//! ```
//!
//! The events are generated up front into memory, grouped by batch (one second of event
//! time per 1 s batch, see `queries.rs`), untimed; so is the reference result, computed
//! once per query and kept as one digest (row count and sum of row hashes) per batch. Each
//! run then builds a context (manual clock; `--executors` executors; for the queries with
//! state or windows, q3, q5, q7 and q8, a checkpoint directory in a fresh temporary
//! directory, so data checkpoints run at their default interval of 10 s = 10 batches and
//! metadata checkpoints after every batch), feeds the events through the receiver as fast
//! as its bounded buffer allows, and times from `start()` to the completion of the last
//! batch (the batch holding the last event, padded to a whole tumbling window). The
//! query's output is digested per partition on the executors (the sink) and compared with
//! the reference per batch: a mismatch fails the run (exit status 1).
//!
//! Options: `--query q0|q1|q2|q3|q5|q7|q8|all` (all), `--events N` (1,000,000),
//! `--event-rate N` events per second of event time, i.e. per batch (100,000),
//! `--executors N` (2), `--runs N` (3), `--receivers N` (1: receivers each storing an equal
//! part of every batch, unioned), `--source clone|move` (clone: each receiver clones its
//! events as it stores them, timed; move: they are copied before the run and moved in, so
//! only the engine is timed), `--ui [ADDR]` (the status page while it runs).
//!
//! Prints, per run, events/s, events/s per core (per executor), the median batch
//! processing time and the three slowest batches and, per query, the medians over the
//! runs. Exit status: 0 done, 1 a failed run or check, 2 a usage error. Figures:
//! `benches/results/nexmark.md`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use nexmark::event::Event;
use parking_lot::Mutex;
use rivulet::prelude::*;
use rivulet_benches::harness;
use rivulet_benches::support;

#[path = "../../../../examples/support/allocator.rs"]
mod allocator;
mod feed;
mod queries;
mod reference;

use queries::{batch_number, batches_to_run, Row};
use reference::PerBatch;

/// The queries, in the order `--query all` runs them.
const QUERIES: [&str; 7] = ["q0", "q1", "q2", "q3", "q5", "q7", "q8"];

/// Command-line options.
#[derive(Parser, Debug)]
#[command(about = "Nexmark q0-q8 on rivulet: throughput, checked against a reference")]
struct Args {
    #[command(flatten)]
    ui: support::UiArgs,
    /// Query to run: q0, q1, q2, q3, q5, q7, q8, or all.
    #[arg(long, default_value = "all", value_parser = parse_query)]
    query: String,
    /// Events to generate (1 person : 3 auctions : 46 bids).
    #[arg(long, default_value_t = 1_000_000, value_parser = parse_events)]
    events: usize,
    /// Events per second of event time, i.e. per 1 s batch (the generator's rate; not how
    /// fast they are fed, which is as fast as backpressure allows).
    #[arg(long, default_value_t = 100_000, value_parser = parse_rate)]
    event_rate: usize,
    /// Executors (task threads) rivulet runs; also the partitions of each shuffle.
    #[arg(long, default_value_t = 2, value_parser = support::parse_executors)]
    executors: usize,
    /// Receivers storing the events, each an equal part of every batch, unioned into one
    /// stream (as Spark users union several receivers to read in parallel).
    #[arg(long, default_value_t = 1, value_parser = parse_receivers)]
    receivers: usize,
    /// How the receiver hands events to rivulet: `clone` each batch's events from the
    /// generated ones as it stores them (timed, as a source makes its records), or `move`
    /// a copy made before the run (untimed; needs memory for a second copy of the events).
    #[arg(long, default_value = "clone", value_parser = ["clone", "move"])]
    source: String,
    /// Runs per query; medians are reported.
    #[arg(long, default_value_t = 3, value_parser = parse_runs)]
    runs: usize,
    /// Turn timestep pipelining on (off by default, as Spark: one batch at a time).
    #[arg(long)]
    pipelining: bool,
}

fn parse_query(s: &str) -> Result<String, String> {
    if s == "all" || QUERIES.contains(&s) {
        Ok(s.to_string())
    } else {
        Err(format!("expected one of {} or all", QUERIES.join(", ")))
    }
}

/// A count option in `min..=max` (at most 10^8, so it fits a `usize`).
fn parse_count(s: &str, min: u64, max: u64, what: &str) -> Result<usize, String> {
    support::parse_bounded(s, min, max, what).map(|n| n as usize)
}

fn parse_events(s: &str) -> Result<usize, String> {
    parse_count(s, 1, 100_000_000, "events")
}

fn parse_rate(s: &str) -> Result<usize, String> {
    parse_count(s, 1, 10_000_000, "events per second of event time")
}

fn parse_receivers(s: &str) -> Result<usize, String> {
    parse_count(s, 1, 64, "receivers")
}

fn parse_runs(s: &str) -> Result<usize, String> {
    parse_count(s, 1, 1000, "runs")
}

/// A batch's output summarized: row count and the wrapping sum of the rows' fingerprints
/// (order-independent, so partitions may be digested separately and added).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Digest {
    rows: u64,
    sum: u64,
}

impl Digest {
    fn of<'a, R: Row + 'a>(rows: impl IntoIterator<Item = &'a R>) -> Digest {
        rows.into_iter()
            .fold(Digest::default(), |d, r| d.add_row(r))
    }

    fn add_row<R: Row>(self, r: &R) -> Digest {
        Digest {
            rows: self.rows + 1,
            sum: self.sum.wrapping_add(r.fingerprint()),
        }
    }

    fn add(self, o: Digest) -> Digest {
        Digest {
            rows: self.rows + o.rows,
            sum: self.sum.wrapping_add(o.sum),
        }
    }
}

/// Digests per 1-based batch number; batches without rows are absent.
type Digests = BTreeMap<usize, Digest>;

fn digests<R: Row>(rows: &PerBatch<R>) -> Digests {
    rows.iter()
        .map(|(&k, rows)| (k, Digest::of(rows)))
        .collect()
}

/// The reference result of `query`, digested.
fn reference_digests(query: &str, slices: &[Vec<Event>], batches: usize) -> Digests {
    match query {
        // q0's reference is the identity: digest the events where they are.
        "q0" => slices
            .iter()
            .enumerate()
            .filter(|(_, events)| !events.is_empty())
            .map(|(i, events)| (i + 1, Digest::of(events)))
            .collect(),
        "q1" => digests(&reference::q1(slices)),
        "q2" => digests(&reference::q2(slices)),
        "q3" => digests(&reference::q3(slices)),
        "q5" => digests(&reference::q5(slices, batches)),
        "q7" => digests(&reference::q7(slices, batches)),
        _ => digests(&reference::q8(slices, batches)),
    }
}

/// One run's figures.
#[derive(Debug)]
struct RunResult {
    wall: Duration,
    processing: Vec<Duration>,
}

/// Runs `query` once over `slices` and checks its output against `want`.
async fn run_query<R: Row>(
    args: &Args,
    name: &str,
    slices: &Arc<Vec<Vec<Event>>>,
    want: &Digests,
    build: fn(&DStream<Event>) -> Result<DStream<R>>,
) -> Result<RunResult, BoxError> {
    let largest = slices.iter().map(Vec::len).max().unwrap_or(0);
    let base = support::base_config().app_name(format!("nexmark {name}"));
    let mut config = feed::config(base, args.executors, largest).pipelining(args.pipelining);
    let stateful = matches!(name, "q3" | "q5" | "q7" | "q8");
    let dir = tempfile::tempdir().map_err(|e| format!("creating a temporary directory: {e}"))?;
    if stateful {
        config = config.checkpoint_dir(dir.path().join("checkpoint"));
    }
    let ssc = StreamingContext::new(config)?;
    let events = if args.source == "move" {
        feed::Events::Owned(slices.as_ref().clone())
    } else {
        feed::Events::shared(slices.clone())
    };
    let (events, driver) = feed::nexmark_stream(&ssc, events, args.receivers)?;
    let got: Arc<Mutex<Digests>> = Arc::default();
    let sink = got.clone();
    build(&events)?
        .map_partitions(|rows| std::iter::once(rows.fold(Digest::default(), |d, r| d.add_row(&r))))
        .foreach_batch(move |t, parts| {
            let d = parts.into_iter().fold(Digest::default(), Digest::add);
            if d.rows > 0 {
                let mut got = sink.lock();
                *got.entry(batch_number(t)).or_default() = d;
            }
        });
    let timings = harness::BatchTimings::new();
    ssc.add_listener(timings.clone());
    let batches = batches_to_run(slices.len());
    let started = Instant::now();
    ssc.start().await?;
    support::print_ui_url(&ssc);
    let signals = support::SignalStop::install(&ssc)?;
    let ran = driver.run(&ssc, batches).await;
    let wall = started.elapsed();
    if signals.interrupted() {
        return Err("stopped on a signal".into());
    }
    ran?;
    ssc.stop(StopMode::Graceful).await?;
    let got = std::mem::take(&mut *got.lock());
    check(name, want, &got)?;
    Ok(RunResult {
        wall,
        processing: timings.take(),
    })
}

/// Fails naming the first batches whose digests differ.
fn check(query: &str, want: &Digests, got: &Digests) -> Result<(), BoxError> {
    if want == got {
        return Ok(());
    }
    let mut diffs: Vec<String> = want
        .keys()
        .chain(got.keys())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .filter(|k| want.get(k) != got.get(k))
        .map(|k| {
            let rows = |d: Option<&Digest>| d.map_or(0, |d| d.rows);
            format!(
                "batch {k}: reference {} rows, rivulet {} rows",
                rows(want.get(k)),
                rows(got.get(k))
            )
        })
        .collect();
    let n = diffs.len();
    diffs.truncate(5);
    Err(format!(
        "MISMATCH: {query}'s output differs from the reference in {n} batches, e.g. {}",
        diffs.join("; ")
    )
    .into())
}

/// Runs `query` `--runs` times; returns the median events/s.
async fn bench(args: &Args, query: &str, slices: &Arc<Vec<Vec<Event>>>) -> Result<f64, BoxError> {
    let batches = batches_to_run(slices.len());
    let t = Instant::now();
    let want = reference_digests(query, slices, batches);
    let rows: u64 = want.values().map(|d| d.rows).sum();
    println!(
        "{query}: reference {rows} rows in {} batches ({:.1} s, untimed)",
        want.len(),
        t.elapsed().as_secs_f64()
    );
    let total = args.events as f64;
    let mut rates = Vec::new();
    for run in 1..=args.runs {
        let r = match query {
            "q0" => run_query(args, query, slices, &want, |e| Ok(queries::q0(e))).await,
            "q1" => run_query(args, query, slices, &want, |e| Ok(queries::q1(e))).await,
            "q2" => run_query(args, query, slices, &want, |e| Ok(queries::q2(e))).await,
            "q3" => run_query(args, query, slices, &want, |e| Ok(queries::q3(e))).await,
            "q5" => run_query(args, query, slices, &want, queries::q5).await,
            "q7" => run_query(args, query, slices, &want, queries::q7).await,
            _ => run_query(args, query, slices, &want, queries::q8).await,
        }
        .map_err(|e| format!("{query}, run {run}: {e}"))?;
        let rate = total / r.wall.as_secs_f64().max(1e-9);
        let p50 = r
            .processing
            .iter()
            .copied()
            .collect::<support::Latencies>()
            .quantile(0.5);
        // Batches complete in order, so the i-th time is batch i + 1's.
        let mut slowest: Vec<(usize, Duration)> = r
            .processing
            .iter()
            .copied()
            .enumerate()
            .map(|(i, d)| (i + 1, d))
            .collect();
        slowest.sort_by_key(|&(_, d)| std::cmp::Reverse(d));
        let slowest: Vec<String> = slowest
            .iter()
            .take(3)
            .map(|(k, d)| format!("batch {k} {:.1} ms", support::ms(*d)))
            .collect();
        println!(
            "{query} run {run}: {} events in {:.0} ms = {rate:.0} events/s = {:.0} events/s per \
             core ({} executors); {} batches, processing median {:.1} ms, slowest {}; output \
             matches the reference ({rows} rows)",
            args.events,
            support::ms(r.wall),
            rate / args.executors as f64,
            args.executors,
            r.processing.len(),
            support::ms(p50),
            slowest.join(", "),
        );
        rates.push(rate);
    }
    Ok(harness::median_f64(&rates))
}

async fn run(args: Args) -> Result<(), BoxError> {
    args.ui.install();
    let t = Instant::now();
    let slices = Arc::new(queries::generate(args.events, args.event_rate));
    println!(
        "nexmark: {} events ({} per second of event time: {} batches of 1 s, run as {}), \
         generated in {:.1} s (untimed); {} executors, {} runs per query, {} receivers, \
         source: {}",
        args.events,
        args.event_rate,
        slices.len(),
        batches_to_run(slices.len()),
        t.elapsed().as_secs_f64(),
        args.executors,
        args.runs,
        args.receivers,
        args.source
    );
    let selected: Vec<&str> = if args.query == "all" {
        QUERIES.to_vec()
    } else {
        vec![args.query.as_str()]
    };
    let mut medians = Vec::new();
    for query in selected {
        medians.push((query, bench(&args, query, &slices).await?));
    }
    println!(
        "--- medians over {} runs, {} executors ---",
        args.runs, args.executors
    );
    for (query, rate) in medians {
        println!(
            "{query}: {rate:.0} events/s, {:.0} events/s per core",
            rate / args.executors as f64
        );
    }
    Ok(())
}

#[actix::main]
async fn main() -> std::process::ExitCode {
    support::init_tracing();
    support::exit_code(run(Args::parse()).await)
}
