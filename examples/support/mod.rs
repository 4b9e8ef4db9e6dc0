//! What the examples share: logging setup and a context built from the usual options; for
//! the file-fed examples, reading an input file into lines, a local TCP line server that
//! plays the file as a live source, the word splitter, and a listener that prints progress
//! and says when every line has been processed; percentiles of durations (`Latencies`, by
//! `hdrhistogram`).
//!
//! Each example includes this module with `#[path = "support/mod.rs"] mod support;`. Cargo
//! does not build it as an example of its own: only `examples/*.rs` and
//! `examples/*/main.rs` are discovered. The benchmark harnesses (`benches/`, package
//! `rivulet-benches`) use it too, as their library's `support` module; what only they use is
//! in `benches/src/harness.rs`.

// Every example uses only part of this module.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::IsTerminal;
use std::num::NonZeroU32;
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use governor::clock::{Clock, Reference};
use governor::nanos::Nanos;
use governor::{Quota, RateLimiter};
use parking_lot::Mutex;
use rivulet::framework::receiver::ReceiverMetrics;
use rivulet::prelude::*;
use rivulet::receivers::{LongLinePolicy, SocketTextReceiver, DEFAULT_MAX_LINE_BYTES};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Installs the `tracing` subscriber that prints log events to stderr (never stdout, which
/// holds the results), filtered by `RUST_LOG` (default: `warn`), with colours only when
/// stderr is a terminal.
///
/// # Panics
/// If a global subscriber was already installed: call it once, at the start of `main`.
pub fn init_tracing() {
    init_tracing_with("warn");
}

/// As [`init_tracing`], with `default` as the filter when `RUST_LOG` is unset (e.g.
/// `warn,rivulet_receivers::socket=info` to show connections).
///
/// # Panics
/// If a global subscriber was already installed.
pub fn init_tracing_with(default: &str) {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default.into()),
        )
        .init();
}

/// A mistake in the command line (exit status 2), with a message naming the option and
/// saying how to fix it.
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// A [`UsageError`], boxed.
pub fn usage(message: impl Into<String>) -> BoxError {
    Box::new(UsageError(message.into()))
}

/// The exit status of an example's run, after printing its error (`Display`, never `Debug`)
/// to stderr: 0 done, 1 a runtime failure, 2 a usage error. With `RUST_LOG=debug` the
/// error's source chain is printed too.
pub fn exit_code(result: Result<(), BoxError>) -> ExitCode {
    let Err(error) = result else {
        return ExitCode::SUCCESS;
    };
    eprintln!("error: {error}");
    if tracing::enabled!(tracing::Level::DEBUG) {
        let mut source = error.source();
        while let Some(e) = source {
            eprintln!("  caused by: {e}");
            source = e.source();
        }
    }
    if let Some(signal) = error.downcast_ref::<StoppedBySignal>() {
        return ExitCode::from(signal.exit_status());
    }
    let usage_error =
        error.is::<UsageError>() || matches!(error.downcast_ref::<Error>(), Some(Error::Config(_)));
    ExitCode::from(if usage_error { 2 } else { 1 })
}

/// A run that a signal stopped before its input was processed: its results are partial.
/// [`exit_code`] turns it into the shell's status for the signal, 128 + its number (130 for
/// SIGINT, 143 for SIGTERM), so that a script never mistakes it for a complete run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoppedBySignal {
    /// `SIGINT` or `SIGTERM`.
    pub name: &'static str,
    /// Its number (2 or 15).
    pub number: u8,
}

impl StoppedBySignal {
    /// 128 + the signal's number.
    pub fn exit_status(self) -> u8 {
        128 + self.number
    }
}

impl std::fmt::Display for StoppedBySignal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "stopped by {} before the end of the input: the results are partial (exit status {})",
            self.name,
            self.exit_status()
        )
    }
}

impl std::error::Error for StoppedBySignal {}

/// The longest batch interval the examples take, in ms: rivulet's maximum, one day.
pub const MAX_BATCH_MS: u64 = 24 * 60 * 60 * 1000;
/// The highest `--rate` the examples take, in lines/s.
pub const MAX_RATE: u64 = 10_000_000;
/// The longest `--max-line-bytes`: 1 GiB.
pub const MAX_LINE_BYTES_LIMIT: usize = 1 << 30;

/// Parses an integer option in `min..=max`, with a message naming the bounds.
pub fn parse_bounded(s: &str, min: u64, max: u64, what: &str) -> Result<u64, String> {
    let n: u64 = s
        .trim()
        .parse()
        .map_err(|_| format!("expected {what}: a whole number from {min} to {max}"))?;
    if n < min || n > max {
        return Err(format!(
            "{n} is out of range: {what} must be from {min} to {max}"
        ));
    }
    Ok(n)
}

/// `--batch-ms`: 1 ..= one day (`MAX_BATCH_MS`).
pub fn parse_batch_ms(s: &str) -> Result<u64, String> {
    parse_bounded(s, 1, MAX_BATCH_MS, "milliseconds (at most one day)")
}

/// `--rate`: 0 (as fast as backpressure allows) ..= `MAX_RATE` lines/s.
pub fn parse_rate(s: &str) -> Result<u64, String> {
    parse_bounded(s, 0, MAX_RATE, "lines per second (0: as fast as possible)")
}

/// How many executors per core the examples accept: more only time-slice the same cores
/// (4,096 executors on 2 cores ran 35 records/s and took 106 s to stop).
pub const MAX_EXECUTORS_PER_CORE: usize = 16;

/// `--executors`: 1 ..= [`MAX_EXECUTORS_PER_CORE`] per core of this machine, and at most
/// rivulet's `MAX_EXECUTORS` (the open-file limit is checked when the context is built).
pub fn parse_executors(s: &str) -> Result<usize, String> {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let max = (cores * MAX_EXECUTORS_PER_CORE).min(rivulet::framework::config::MAX_EXECUTORS);
    parse_bounded(
        s,
        1,
        max as u64,
        &format!(
            "executors ({MAX_EXECUTORS_PER_CORE} per core on this {cores}-core machine, at most \
             {} in all, and what the open-file limit allows)",
            rivulet::framework::config::MAX_EXECUTORS
        ),
    )
    .map(|n| n as usize)
}

/// The longest window or slide the examples take, in seconds: 30 days.
pub const MAX_WINDOW_SECS: u64 = 30 * 24 * 60 * 60;

/// `--window-secs`, `--slide-secs`: 1 ..= [`MAX_WINDOW_SECS`].
pub fn parse_window_secs(s: &str) -> Result<u64, String> {
    parse_bounded(s, 1, MAX_WINDOW_SECS, "seconds (at most 30 days)")
}

/// A count of batches or items (`--window-batches`, `--known-clients`): 1 ..= 1,000,000.
pub fn parse_count(s: &str) -> Result<u64, String> {
    parse_bounded(s, 1, 1_000_000, "a count")
}

/// `--max-line-bytes`: 1 ..= 1 GiB.
pub fn parse_max_line_bytes(s: &str) -> Result<usize, String> {
    parse_bounded(s, 1, MAX_LINE_BYTES_LIMIT as u64, "bytes").map(|n| n as usize)
}

/// How the socket source treats long lines: `--max-line-bytes N --on-long-line POLICY`.
#[derive(clap::Args, Debug, Clone)]
pub struct LineOptions {
    /// Longest line delivered as one record, in bytes.
    #[arg(long, default_value_t = DEFAULT_MAX_LINE_BYTES, value_parser = parse_max_line_bytes)]
    pub max_line_bytes: usize,
    /// What to do with a longer line: truncate, skip, split (into pieces cut at whitespace,
    /// nothing lost) or fail (stop with an error). Without this option long lines are
    /// truncated and the run exits with status 1, as input was lost; so does a line cut
    /// short by the end of its connection. Naming a policy accepts its outcome, and the
    /// example's checks then expect what the policy makes of the input.
    #[arg(long, value_name = "POLICY")]
    pub on_long_line: Option<LongLinePolicy>,
}

impl LineOptions {
    /// The policy in force.
    pub fn policy(&self) -> LongLinePolicy {
        self.on_long_line.unwrap_or_default()
    }

    /// A socket text receiver for `host:port` with these options.
    pub fn receiver(&self, host: &str, port: u16) -> SocketTextReceiver {
        SocketTextReceiver::new(host, port)
            .max_line_bytes(self.max_line_bytes)
            .on_long_line(self.policy())
    }

    /// A socket text stream from 127.0.0.1:`port` with these options (reconnecting forever,
    /// for live feeds).
    pub fn socket_stream(&self, ssc: &StreamingContext, port: u16) -> DStream<String> {
        ssc.receiver_stream(self.receiver("127.0.0.1", port))
    }

    /// A socket text stream from the finite feed at 127.0.0.1:`port` (see [`spawn_server`]
    /// with [`FeedEnd::Close`]): its receiver finishes when the feed closes the connection,
    /// so its final counts cover every byte sent (`SocketTextReceiver::finish_on_close`).
    pub fn feed_stream(&self, ssc: &StreamingContext, port: u16) -> DStream<String> {
        ssc.receiver_stream(self.receiver("127.0.0.1", port).finish_on_close(true))
    }

    /// The records the socket receiver makes of `lines` served one per line under these
    /// options, computed independently of the receiver by rivulet's reference split
    /// (`rivulet::receivers::split_text` on the whole input): what the examples' checks
    /// expect. Under `fail`, the records before the first long line.
    pub fn expected_lines(&self, lines: &[Vec<u8>]) -> Vec<String> {
        let mut input = Vec::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
        for line in lines {
            input.extend_from_slice(line);
            input.push(b'\n');
        }
        rivulet::receivers::split_text(&input, self.max_line_bytes, self.policy()).0
    }

    /// How many records `lines` (as served, one per line) become under these options.
    pub fn expected_records(&self, lines: &[Vec<u8>]) -> usize {
        self.expected_lines(lines).len()
    }
}

/// A listener keeping each receiver's latest metrics (from its started, input-lost, error
/// and stopped events), for the final summary, and saying when the whole input of finite
/// feeds was processed ([`InputReport::input_done`]).
#[derive(Clone, Default)]
pub struct InputReport(Arc<Mutex<ReportState>>);

#[derive(Default)]
struct ReportState {
    /// Each receiver's latest metrics, by name.
    receivers: BTreeMap<String, ReceiverMetrics>,
    /// The receivers that stopped for good.
    stopped: BTreeSet<String>,
    /// Records of completed batches, all input streams together.
    processed: u64,
    /// Signalled once every receiver stopped and every record it stored was processed
    /// (`Ok`), or at the first batch with a failed output (`Err`).
    done: Option<oneshot::Sender<Result<(), String>>>,
}

impl ReportState {
    fn check_done(&mut self) {
        let stored: u64 = self.receivers.values().map(|m| m.records_stored).sum();
        let all_stopped = !self.receivers.is_empty()
            && self
                .receivers
                .keys()
                .all(|name| self.stopped.contains(name));
        if all_stopped && self.processed >= stored {
            if let Some(tx) = self.done.take() {
                let _ = tx.send(Ok(()));
            }
        }
    }
}

impl InputReport {
    /// Nothing reported yet.
    pub fn new() -> InputReport {
        InputReport::default()
    }

    fn record(&self, r: &ReceiverInfo, stopped: bool) {
        let mut state = self.0.lock();
        state.receivers.insert(r.name.clone(), r.metrics);
        if stopped {
            state.stopped.insert(r.name.clone());
        }
        state.check_done();
    }

    /// Fires once every receiver has stopped for good (a finite feed's receiver finishes
    /// when the feed closes: see [`LineOptions::feed_stream`]) and every record they
    /// stored was processed. Then the metrics are final: they cover the whole input, to the
    /// byte (a count read while a receiver still discards the rest of a long line would
    /// not). It fires with an error instead at the first batch whose output failed (the
    /// error names the batch, the output and the cause): a run whose output failed is never
    /// done, even when its records were all processed. One waiter: a second call replaces
    /// the first.
    pub fn input_done(&self) -> oneshot::Receiver<Result<(), String>> {
        let (tx, rx) = oneshot::channel();
        let mut state = self.0.lock();
        state.done = Some(tx);
        state.check_done();
        rx
    }

    /// Prints one line per receiver with its counts: records stored, lines repaired, long
    /// lines truncated, skipped and split (and the cuts inside a word), bytes dropped, and
    /// lines cut short by the end of a connection (`incomplete`).
    ///
    /// # Errors
    /// When a receiver lost input (lines truncated, dropped, or incomplete) and `options`
    /// did not name a long-line policy, which accepts it: the message says what was lost
    /// and which options to use.
    pub fn print_and_check(&self, options: &LineOptions) -> Result<(), BoxError> {
        let report: Vec<(String, ReceiverMetrics)> =
            self.0.lock().receivers.clone().into_iter().collect();
        print_and_check_losses(&report, options)
    }
}

/// Prints one line per input (`Input from NAME: ...`) with its counts: records stored,
/// lines repaired, long lines truncated, skipped and split (and the cuts inside a word),
/// bytes dropped, and lines cut short by the end of a connection (`incomplete`).
///
/// # Errors
/// When an input lost something (lines truncated, dropped, or incomplete) and `options`
/// did not name a long-line policy, which accepts it: the message says what was lost and
/// which options to use.
pub fn print_and_check_losses(
    inputs: &[(String, ReceiverMetrics)],
    options: &LineOptions,
) -> Result<(), BoxError> {
    let mut lost = ReceiverMetrics::default();
    for (name, m) in inputs {
        println!(
            "Input from {name}: {} records stored; {} lines with invalid UTF-8 repaired; \
             long lines (over {} bytes): {} truncated, {} skipped, {} split ({} cuts inside \
             a word); {} bytes dropped; {} incomplete lines (the input ended mid-line)",
            m.records_stored,
            m.malformed,
            options.max_line_bytes,
            m.truncated,
            m.dropped,
            m.split,
            m.words_cut,
            m.dropped_bytes,
            m.incomplete,
        );
        if m.lost_input() {
            lost.truncated += m.truncated;
            lost.dropped += m.dropped;
            lost.dropped_bytes += m.dropped_bytes;
            lost.incomplete += m.incomplete;
        }
    }
    if lost.lost_input() && options.on_long_line.is_none() {
        let mut what = Vec::new();
        if lost.truncated + lost.dropped > 0 {
            what.push(format!(
                "{} truncated and {} skipped line(s) longer than --max-line-bytes {} \
                 ({} bytes dropped)",
                lost.truncated, lost.dropped, options.max_line_bytes, lost.dropped_bytes
            ));
        }
        if lost.incomplete > 0 {
            what.push(format!(
                "{} line(s) cut short by the end of their connection (kept as received)",
                lost.incomplete
            ));
        }
        return Err(format!(
            "input was lost: {} (counts above); raise --max-line-bytes, pass \
             --on-long-line=split to keep every byte of long lines, or name a policy \
             (--on-long-line=truncate, skip or split) to accept the loss",
            what.join("; ")
        )
        .into());
    }
    Ok(())
}

impl StreamingListener for InputReport {
    fn on_batch_completed(&mut self, batch: &BatchInfo) {
        let mut state = self.0.lock();
        if let Some((_, error)) = batch.failures.first() {
            if let Some(tx) = state.done.take() {
                let _ = tx.send(Err(error.to_string()));
            }
        }
        state.processed += batch.num_records as u64;
        state.check_done();
    }
    fn on_receiver_started(&mut self, r: &ReceiverInfo) {
        self.record(r, false);
    }
    fn on_receiver_error(&mut self, r: &ReceiverInfo) {
        self.record(r, false);
    }
    fn on_receiver_stopped(&mut self, r: &ReceiverInfo) {
        self.record(r, true);
    }
    fn on_receiver_input_lost(&mut self, r: &ReceiverInfo) {
        self.record(r, false);
    }
}

/// [`print_and_check_losses`] for the files of a `TextFileSource` watching `dir`, from its
/// [`FileLosses`](rivulet::receivers::FileLosses) totals.
///
/// # Errors
/// As [`print_and_check_losses`].
pub fn print_and_check_file_losses(
    dir: &Path,
    totals: rivulet::receivers::FileTotals,
    options: &LineOptions,
) -> Result<(), BoxError> {
    let c = totals.counts;
    let metrics = ReceiverMetrics {
        records_stored: totals.records,
        malformed: c.malformed,
        truncated: c.truncated,
        dropped: c.dropped,
        dropped_bytes: c.dropped_bytes,
        split: c.split,
        words_cut: c.words_cut,
        incomplete: c.incomplete,
        ..ReceiverMetrics::default()
    };
    let name = format!("{} files in {}", totals.files, dir.display());
    print_and_check_losses(&[(name, metrics)], options)
}

/// A listener keeping what each polled input (a text file stream) read and skipped, from
/// its per-batch reports (`on_polled_input`), for the final summary.
#[derive(Clone, Default)]
pub struct PolledReport(Arc<Mutex<BTreeMap<String, PolledTotals>>>);

/// One polled input's totals.
#[derive(Clone, Debug, Default)]
pub struct PolledTotals {
    /// Files (splits) taken, skipped ones included.
    pub files: usize,
    /// Lines (records) read.
    pub records: usize,
    /// The entries not read: path and reason.
    pub skipped: Vec<SkippedSplit>,
}

impl PolledReport {
    /// Nothing reported yet.
    pub fn new() -> PolledReport {
        PolledReport::default()
    }

    /// The totals so far, by input name.
    pub fn get(&self) -> BTreeMap<String, PolledTotals> {
        self.0.lock().clone()
    }

    /// Prints one line per polled input with its counts, then its skipped entries (the
    /// first 20, then how many more).
    ///
    /// # Errors
    /// When an entry was skipped and `policy` is `None` (the user named no policy to accept
    /// the loss): the message says how many and which option to use.
    pub fn print_and_check(&self, policy: Option<UnreadablePolicy>) -> Result<(), BoxError> {
        const SHOWN: usize = 20;
        let mut skipped = 0;
        for (name, t) in self.get() {
            println!(
                "Files from {name}: {} files, {} lines read, {} entries skipped",
                t.files,
                t.records,
                t.skipped.len()
            );
            for s in t.skipped.iter().take(SHOWN) {
                println!("  skipped {}: {}", s.split, s.reason);
            }
            if t.skipped.len() > SHOWN {
                println!("  ... and {} more", t.skipped.len() - SHOWN);
            }
            skipped += t.skipped.len();
        }
        if skipped > 0 && policy.is_none() {
            return Err(format!(
                "input was lost: {skipped} entries were not read (listed above); fix them and \
                 move them in again, or pass --on-unreadable=skip to accept the loss, or \
                 --on-unreadable=fail to stop at the first one"
            )
            .into());
        }
        Ok(())
    }
}

impl StreamingListener for PolledReport {
    fn on_polled_input(&mut self, input: &PolledInputInfo) {
        let mut all = self.0.lock();
        let t = all.entry(input.name.clone()).or_default();
        t.files += input.splits;
        t.records += input.records;
        t.skipped.extend(input.skipped.iter().cloned());
    }
}

/// The file an example writes into its `--out` directory: the proof that the directory
/// holds an earlier run's output, and the only thing that lets `--overwrite` delete in it.
pub const OUTPUT_MARKER: &str = ".rivulet-output";

/// Prepares an `--out` directory for `example`: creates it, or takes an empty one, and marks
/// it as this example's output (`OUTPUT_MARKER`). A non-empty directory is refused unless
/// `overwrite` and it is provably an earlier output of `example`: it holds the marker naming
/// `example`, and nothing but `batch-*` directories besides. Only then are those removed. So
/// two runs never mix their batches, and no directory the example did not write (`.`, a home
/// directory, a checkout, `/`) is ever deleted. Call it after every input was validated.
///
/// # Errors
/// A [`UsageError`] naming the directory and what it holds; an I/O error naming it if it
/// cannot be read, cleared or marked.
pub fn prepare_out_dir(dir: &Path, overwrite: bool, example: &str) -> Result<(), BoxError> {
    if StreamingContext::is_executor_process() {
        // The coordinator prepared it; an executor process writes no output.
        return Ok(());
    }
    let shown = dir.display();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("--out {shown}: cannot read it: {e}"))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(format!("--out {shown}: cannot read it: {e}").into()),
    };
    let names: Vec<String> = entries
        .iter()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    if !names.is_empty() {
        if !overwrite {
            return Err(usage(format!(
                "--out {shown}: the directory is not empty ({} entries, e.g. {}); pass \
                 --overwrite to replace an earlier {example} output, or choose another directory",
                names.len(),
                names[0]
            )));
        }
        let marker = std::fs::read_to_string(dir.join(OUTPUT_MARKER)).unwrap_or_default();
        let ours = marker.lines().next() == Some(example);
        let foreign: Vec<&String> = names
            .iter()
            .filter(|n| *n != OUTPUT_MARKER && !n.starts_with("batch-"))
            .collect();
        if !ours || !foreign.is_empty() {
            let why = if ours {
                format!(
                    "it also holds {}",
                    foreign
                        .iter()
                        .take(3)
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            } else {
                format!("it has no {OUTPUT_MARKER} file written by {example}")
            };
            return Err(usage(format!(
                "--out {shown}: --overwrite refused: not an earlier {example} output ({why}); \
                 nothing was deleted. Choose an empty or new directory"
            )));
        }
        for entry in entries.iter().filter(|e| e.file_name() != OUTPUT_MARKER) {
            let path = entry.path();
            let removed = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            removed.map_err(|e| format!("--overwrite: cannot remove {}: {e}", path.display()))?;
        }
    }
    std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::write(dir.join(OUTPUT_MARKER), format!("{example}\n")))
        .map_err(|e| format!("--out {shown}: cannot mark it as {example}'s output: {e}"))?;
    Ok(())
}

/// A streaming context named `app_name` with batches of `batch`, and `executors` executors
/// (task threads) if given, else rivulet's default (one per core). Everything else is
/// rivulet's default configuration.
///
/// # Errors
/// The configuration's error (`Error::Config`, boxed), naming the setting: a
/// batch interval under 1 ms or not a whole number of milliseconds, or zero executors.
pub fn context(
    app_name: &str,
    batch: Duration,
    executors: Option<usize>,
) -> Result<StreamingContext, BoxError> {
    let mut config = base_config().app_name(app_name).batch_interval(batch);
    if let Some(n) = executors {
        config = config.executors(n);
    }
    Ok(StreamingContext::new(config)?)
}

/// The `--ui [ADDR]` option every example takes: serve the status page, its JSON API and
/// Prometheus metrics while the example runs (flatten it into the example's clap `Args`,
/// then call [`UiArgs::install`]); and `--ui-linger SECS`, which keeps the page up after the
/// run ends (see [`finish`]).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct UiArgs {
    /// Serve the status page at http://127.0.0.1:4040/ while running (or at ADDR, ip:port;
    /// port 0 picks a free one).
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = "127.0.0.1:4040")]
    pub ui: Option<String>,
    /// With --ui: after the run ends, keep the status page up SECS seconds more, showing the
    /// final state (receivers stopped, every batch done); Ctrl-C exits sooner. Honoured by the
    /// examples that end through `support::finish` (wordcount, network_wordcount,
    /// windowed_wordcount, stateful_wordcount, directory_wordcount), not by the benches.
    #[arg(long, value_name = "SECS", requires = "ui", value_parser = parse_linger)]
    pub ui_linger: Option<Duration>,
    /// Write every listener event of the run to a file in DIR (created if needed), from
    /// which `cargo run --example history -- --event-log DIR` serves the status page after
    /// the run ended (Spark's event log and History Server).
    #[arg(long, value_name = "DIR")]
    pub event_log: Option<std::path::PathBuf>,
    /// Run N executor processes of this program on this host beside the in-process
    /// executors (Spark's `local-cluster[N]`), each with --executors task threads; their
    /// process ids are printed once they registered.
    #[arg(long, value_name = "N", value_parser = parse_local_cluster)]
    pub local_cluster: Option<usize>,
    /// Wait for N executor processes started elsewhere (by systemd, on other hosts: see
    /// deploy/systemd/) that connect to IP:PORT, where this coordinator listens.
    #[arg(long, value_name = "N@IP:PORT", value_parser = parse_static_cluster, conflicts_with = "local_cluster")]
    pub static_cluster: Option<(usize, String)>,
    /// With --local-cluster or --static-cluster: run the receivers that may run anywhere
    /// (the socket, MQTT and Redis Streams group receivers) on the executor processes, as
    /// Spark runs receivers on executors; their blocks stay there and a replica goes to the
    /// coordinator, which adds it to the receiver write-ahead log when that is on.
    #[arg(long)]
    pub receivers_in_processes: bool,
    /// With --local-cluster or --static-cluster: keep stateful streams' state and windows
    /// in the coordinator instead of computing and keeping them on the executor processes.
    #[arg(long)]
    pub state_in_coordinator: bool,
}

fn parse_static_cluster(s: &str) -> Result<(usize, String), String> {
    let (n, listen) = s
        .split_once('@')
        .ok_or_else(|| format!("{s:?}: give N@IP:PORT, e.g. 2@0.0.0.0:7077"))?;
    let n = parse_bounded(n, 1, 64, "executor processes")? as usize;
    listen
        .parse::<std::net::SocketAddr>()
        .map_err(|e| format!("{listen:?} is not IP:PORT: {e}"))?;
    Ok((n, listen.to_string()))
}

fn parse_local_cluster(s: &str) -> Result<usize, String> {
    parse_bounded(s, 1, 64, "executor processes").map(|n| n as usize)
}

fn parse_linger(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if !(0.0..=86_400.0).contains(&secs) {
        return Err(format!("{secs} s: give 0 to 86400 seconds"));
    }
    Ok(Duration::from_secs_f64(secs))
}

static UI_ADDRESS: std::sync::OnceLock<String> = std::sync::OnceLock::new();
static LOCAL_CLUSTER: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
static STATIC_CLUSTER: std::sync::OnceLock<(usize, String)> = std::sync::OnceLock::new();
static RECEIVERS_IN_PROCESSES: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
static STATE_IN_COORDINATOR: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
static UI_LINGER: std::sync::OnceLock<Duration> = std::sync::OnceLock::new();
static EVENT_LOG: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
/// The page's URL, once a context serves it (see [`print_ui_url`]).
static UI_URL: std::sync::OnceLock<String> = std::sync::OnceLock::new();

impl UiArgs {
    /// Makes [`base_config`] (and so [`context`]) serve the UI when `--ui` was given, keep it
    /// up after the stop with `--ui-linger`, and write the event log with `--event-log`.
    pub fn install(&self) {
        if let Some(dir) = &self.event_log {
            let _ = EVENT_LOG.set(dir.clone());
        }
        if let Some(address) = &self.ui {
            let _ = UI_ADDRESS.set(address.clone());
        }
        if let Some(linger) = self.ui_linger.filter(|l| !l.is_zero()) {
            let _ = UI_LINGER.set(linger);
        }
        if let Some(n) = self.local_cluster {
            let _ = LOCAL_CLUSTER.set(n);
        }
        if let Some(cluster) = &self.static_cluster {
            let _ = STATIC_CLUSTER.set(cluster.clone());
        }
        let _ = RECEIVERS_IN_PROCESSES.set(self.receivers_in_processes);
        let _ = STATE_IN_COORDINATOR.set(self.state_in_coordinator);
    }
}

/// rivulet's default configuration, serving the UI when `--ui` was given and writing the
/// event log with `--event-log` (see [`UiArgs`]).
pub fn base_config() -> StreamingConfig {
    let mut config = StreamingConfig::new();
    if let Some(&n) = LOCAL_CLUSTER.get() {
        config = config.local_cluster(n);
    }
    if let Some((n, listen)) = STATIC_CLUSTER.get() {
        config = config.static_cluster(listen.clone(), *n);
    }
    if RECEIVERS_IN_PROCESSES.get() == Some(&true) {
        config = config.receivers_in_executor_processes(true);
    }
    if STATE_IN_COORDINATOR.get() == Some(&true) {
        config = config.state_in_executor_processes(false);
    }
    if let Some(address) = UI_ADDRESS.get() {
        config = config.ui_address(address.clone());
    }
    if let Some(dir) = EVENT_LOG.get() {
        config = config.event_log_dir(dir.clone());
    }
    match UI_LINGER.get() {
        Some(&linger) => config.ui_linger(linger),
        None => config,
    }
}

/// Prints what `--local-cluster`'s executor processes did: per process its map tasks, its
/// cache tasks (state and window partitions computed and kept there) and losses, and the
/// scheduler's recoveries (executors lost, map stages resubmitted). Nothing
/// without executor processes.
pub fn print_cluster_summary(ssc: &StreamingContext) {
    let processes = ssc.executor_processes();
    if processes.is_empty() {
        return;
    }
    for p in &processes {
        let receivers = match p.receivers.is_empty() {
            true => String::new(),
            false => format!(", receivers of streams {:?}", p.receivers),
        };
        println!(
            "Executor process {}: {} map tasks, {} cache tasks, lost {} times{receivers}",
            p.executor, p.map_tasks, p.cache_tasks, p.losses
        );
    }
    if let Some(m) = ssc.scheduler_metrics() {
        println!(
            "Recovery: {} executors lost, {} tasks rerun after a loss, {} map stages resubmitted, \
             {} lost cached partitions recovered",
            m.executors_lost,
            m.tasks_rerun_after_loss,
            m.stages_resubmitted,
            m.partitions_recovered
        );
    }
}

/// Prints, once the context started, `UI: http://127.0.0.1:4040/` when it serves the
/// status page, and `Executor process <id>: pid <pid>` for each executor process of
/// `--local-cluster`.
pub fn print_ui_url(ssc: &StreamingContext) {
    for p in ssc.executor_processes() {
        match p.pid {
            Some(pid) => println!("Executor process {}: pid {pid}", p.executor),
            None => println!("Executor process {}: not running", p.executor),
        }
    }
    if let Some(url) = ssc.ui_url() {
        println!("UI: {url}");
        let _ = UI_URL.set(url);
    }
}

/// Ends an example's `main`: with `--ui-linger SECS` and a status page served, first keeps
/// the process (and so the page, with the run's final state) up for SECS seconds, or until
/// SIGINT or SIGTERM; then [`exit_code`] of `result`. The page's server was told to linger
/// as long by [`base_config`], so the context's stop left it up.
pub async fn finish(result: Result<(), BoxError>) -> ExitCode {
    if let (Some(&linger), Some(url)) = (UI_LINGER.get(), UI_URL.get()) {
        println!(
            "[ui] the run is over; its status page stays at {url} for {} s (Ctrl-C exits now).",
            linger.as_secs_f64()
        );
        match Signals::new() {
            Ok(mut signals) => {
                tokio::select! {
                    _ = tokio::time::sleep(linger) => {}
                    _ = signals.recv() => {}
                }
            }
            Err(_) => tokio::time::sleep(linger).await,
        }
    }
    exit_code(result)
}

/// The lines of the file at `path`, without their newlines (raw bytes: the socket source
/// decodes them).
///
/// # Errors
/// If the file cannot be read, naming it.
pub fn read_lines(path: &Path) -> Result<Vec<Vec<u8>>, BoxError> {
    if path.is_dir() {
        return Err(usage(format!(
            "--input {}: is a directory; give a text file",
            path.display()
        )));
    }
    let text = std::fs::read(path).map_err(|e| -> BoxError {
        let message = format!("--input {}: {e}", path.display());
        // A file the option cannot name is a usage error; a failing disk is not.
        match e.kind() {
            std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied => usage(message),
            _ => message.into(),
        }
    })?;
    if text.is_empty() {
        return Ok(Vec::new());
    }
    let mut lines: Vec<Vec<u8>> = text.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
    if text.ends_with(b"\n") {
        lines.pop(); // the empty remainder after the final newline is not a line
    }
    Ok(lines)
}

/// Calls `f` with each word of `line` ([`words`]' words) as a `&str` view, without
/// allocating per word: a word with no capital letter is borrowed from the line, any other is
/// lowercased into one buffer per line. For `flat_map_reduce_by_key`, whose combiner owns a
/// word only when it first sees it.
pub fn for_each_word(line: &str, f: impl FnMut(&str)) {
    for_each_token(line, |c| c.is_ascii_alphanumeric(), f)
}

/// [`for_each_word`] with words made of the characters `is_word` accepts (maximal runs,
/// ASCII-lowercased).
pub fn for_each_token(line: &str, is_word: impl Fn(char) -> bool, mut f: impl FnMut(&str)) {
    let mut lower = String::new();
    for w in line.split(|c: char| !is_word(c)) {
        if w.is_empty() {
            continue;
        }
        if w.bytes().any(|b| b.is_ascii_uppercase()) {
            lower.clear();
            lower.push_str(w);
            lower.make_ascii_lowercase();
            f(&lower);
        } else {
            f(w);
        }
    }
}

/// A word is a maximal run of ASCII letters and digits, lowercased.
pub fn words(line: String) -> Vec<String> {
    line.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_ascii_lowercase)
        .collect()
}

/// What a line server does after the last line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FeedEnd {
    /// Closes the connection (as `nc host port < file` does) and stops listening: the end
    /// of a finite feed, which lets a receiver that finishes at the close
    /// ([`LineOptions::feed_stream`]) read every byte and report final counts.
    Close,
    /// Keeps the connection open until the process exits, as a live source would.
    KeepOpen,
}

/// Binds a listener on 127.0.0.1 (a free port) and serves `lines` on it (see [`serve`]).
/// Returns the port and the server task; abort the task when done.
///
/// # Errors
/// If the listener cannot be bound.
///
/// Only the coordinator serves: an executor process (which runs this code up to `start`
/// too, and may run the socket receiver, `--receivers-in-processes`) gets the port of its
/// coordinator's server, which the coordinator put in the environment its executor
/// processes inherit (`RIVULET_EXAMPLE_FEED_PORT_<n>` for its `n`th server), and a task
/// that does nothing.
pub async fn spawn_server(
    lines: Arc<Vec<Vec<u8>>>,
    rate: u64,
    end: FeedEnd,
) -> std::io::Result<(u16, JoinHandle<std::io::Result<()>>)> {
    static SERVERS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let key = format!(
        "RIVULET_EXAMPLE_FEED_PORT_{}",
        SERVERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    if StreamingContext::is_executor_process() {
        let port = std::env::var(&key)
            .ok()
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| {
                std::io::Error::other(format!(
                    "{key} is not set: the coordinator's feed server is unknown"
                ))
            })?;
        return Ok((port, actix::spawn(async { Ok(()) })));
    }
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    // Set before `start` starts the executor processes, which inherit it.
    std::env::set_var(&key, port.to_string());
    Ok((port, actix::spawn(serve(listener, lines, rate, end))))
}

/// Sends `lines` to the first client at `rate` lines/s (0: as fast as the client reads),
/// then ends the feed as `end` says.
pub async fn serve(
    listener: TcpListener,
    lines: Arc<Vec<Vec<u8>>>,
    rate: u64,
    end: FeedEnd,
) -> std::io::Result<()> {
    let (mut socket, _) = listener.accept().await?;
    if end == FeedEnd::Close {
        drop(listener);
    }
    send_lines(&mut socket, &lines, rate).await?;
    match end {
        FeedEnd::Close => socket.shutdown().await,
        FeedEnd::KeepOpen => std::future::pending().await,
    }
}

/// Writes `lines`, each followed by `\n`, to `out` at `rate` lines/s (0: as fast as `out`
/// takes them), paced by a GCRA rate limiter (`governor`) on tokio's clock, so the pace is
/// exact over any second after the first and follows tokio's paused clock in tests. Up to
/// 10 ms of lines (`rate / 100`, at least 2) may go in one burst, which keeps the rate exact
/// despite the timer's millisecond resolution (a sleep that ends late is made up).
///
/// # Errors
/// The writer's errors.
pub async fn send_lines<W: AsyncWrite + Unpin>(
    out: &mut W,
    lines: &[Vec<u8>],
    rate: u64,
) -> std::io::Result<()> {
    const FLUSH_BYTES: usize = 64 * 1024;
    let limiter = NonZeroU32::new(u32::try_from(rate).unwrap_or(u32::MAX)).map(|r| {
        let burst = NonZeroU32::new((r.get() / 100).max(2)).unwrap_or(NonZeroU32::MIN);
        RateLimiter::direct_with_clock(Quota::per_second(r).allow_burst(burst), TokioClock)
    });
    let mut buf = Vec::with_capacity(FLUSH_BYTES);
    for line in lines {
        if let Some(limiter) = &limiter {
            while let Err(not_until) = limiter.check() {
                // Send what is due before waiting for the next line's turn.
                if !buf.is_empty() {
                    out.write_all(&buf).await?;
                    buf.clear();
                }
                tokio::time::sleep(not_until.wait_time_from(TokioClock.now())).await;
            }
        }
        buf.extend_from_slice(line);
        buf.push(b'\n');
        if buf.len() >= FLUSH_BYTES {
            out.write_all(&buf).await?;
            buf.clear();
        }
    }
    out.write_all(&buf).await?;
    out.flush().await
}

/// tokio's clock (`tokio::time::Instant`) for `governor`, so pacing follows a paused clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct TokioClock;

/// A `tokio::time::Instant` as a `governor` clock reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct TokioInstant(tokio::time::Instant);

impl std::ops::Add<Nanos> for TokioInstant {
    type Output = TokioInstant;
    fn add(self, d: Nanos) -> TokioInstant {
        TokioInstant(self.0 + Duration::from(d))
    }
}

impl Reference for TokioInstant {
    fn duration_since(&self, earlier: TokioInstant) -> Nanos {
        self.0.saturating_duration_since(earlier.0).into()
    }
    fn saturating_sub(&self, d: Nanos) -> TokioInstant {
        self.0.checked_sub(d.into()).map_or(*self, TokioInstant)
    }
}

impl Clock for TokioClock {
    type Instant = TokioInstant;
    fn now(&self) -> TokioInstant {
        TokioInstant(tokio::time::Instant::now())
    }
}

/// Prints a progress line after each batch.
pub struct Progress {
    total: usize,
    done: usize,
    batches: usize,
    started: Instant,
}

impl Progress {
    /// A listener expecting `total` records (the figure it prints progress against; when
    /// the run is done is [`InputReport::input_done`]'s to say).
    pub fn new(total: usize) -> Progress {
        Progress {
            total,
            done: 0,
            batches: 0,
            started: Instant::now(),
        }
    }
}

impl StreamingListener for Progress {
    fn on_batch_completed(&mut self, batch: &BatchInfo) {
        self.batches += 1;
        self.done += batch.num_records;
        let secs = self.started.elapsed().as_secs_f64().max(1e-9);
        println!(
            "[progress] batch {} done: {} records in {} ms | {} batches, {}/{} records, {:.0} records/s",
            batch.batch_time,
            batch.num_records,
            batch.processing_delay.unwrap_or_default().as_millis(),
            self.batches,
            self.done,
            self.total,
            self.done as f64 / secs,
        );
    }
}

/// How [`run_until_done`] ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// Every record was processed.
    Done,
    /// A signal stopped the context first (see [`SignalStop`]): only part of the input was
    /// processed, so checks against the whole input do not apply. Print what there is, then
    /// return the signal as the run's error: [`exit_code`] makes it 130 or 143.
    Interrupted(StoppedBySignal),
}

/// Waits until `ssc` stops or a batch fails (`StreamingContext::await_termination`); after a
/// failure it stops the context (`StopMode::Now`) before returning the error, so that the
/// program exits after a clean stop and never as if the coordinator had died.
///
/// # Errors
/// The first failed batch's error, or the error that stopped the context.
pub async fn await_termination(ssc: &StreamingContext) -> Result<(), BoxError> {
    let Err(error) = ssc.await_termination().await else {
        return Ok(());
    };
    if let Err(stop) = ssc.stop(StopMode::Now).await {
        // Already stopped by the failure itself: nothing more to stop.
        tracing::debug!(error = %stop, "Stopping after a failure.");
    }
    Err(error.into())
}

/// Starts `ssc` and runs it until `done` fires (the whole input processed, see
/// [`InputReport::input_done`]), then stops it gracefully. SIGINT or SIGTERM stop it earlier (see
/// [`SignalStop`]).
///
/// # Errors
/// The context's errors: an invalid graph at start, the first failed batch (also one whose
/// failure `done` reports, after stopping the context), an error that stopped it; an error
/// if the signal handlers cannot be installed.
pub async fn run_until_done(
    ssc: &StreamingContext,
    done: oneshot::Receiver<Result<(), String>>,
) -> Result<Ending, BoxError> {
    ssc.start().await?;
    print_ui_url(ssc);
    let signals = SignalStop::install(ssc)?;
    tokio::select! {
        finished = done => match finished {
            Ok(Ok(())) => {}
            Ok(Err(failure)) => {
                ssc.stop(StopMode::Now).await?;
                return Err(failure.into());
            }
            // The listener is gone without signalling: the context stopped, maybe failed.
            Err(_) => await_termination(ssc).await?,
        },
        result = await_termination(ssc) => result?,
    }
    ssc.stop(StopMode::Graceful).await?;
    print_cluster_summary(ssc);
    Ok(match signals.signal() {
        Some(signal) => Ending::Interrupted(signal),
        None => Ending::Done,
    })
}

/// Stops a started context on SIGINT (Ctrl-C) or SIGTERM, the way every example stops: the
/// first signal stops it gracefully (`StopMode::Graceful`: the records already received are
/// processed), after which `await_termination` returns and the example prints its summary; a
/// second signal stops it at once (`StopMode::Now`), and one after the stop exits the
/// process (status 130).
///
/// The handlers are installed by [`install`](SignalStop::install) and stay for the process's
/// life (the signals no longer kill it). Listening for a context ends when it stops without
/// a signal, so a program may run several contexts one after the other, each with its own
/// `SignalStop`.
pub struct SignalStop {
    /// The number of the first signal; 0 before one.
    signal: Arc<AtomicU8>,
}

impl SignalStop {
    /// Listens for SIGINT and SIGTERM and stops `ssc` (started) on them, as described above.
    /// Must be called inside the actix `System`.
    ///
    /// # Errors
    /// If the signal handlers cannot be installed.
    pub fn install(ssc: &StreamingContext) -> Result<SignalStop, BoxError> {
        let mut signals =
            Signals::new().map_err(|e| format!("listening for SIGINT and SIGTERM: {e}"))?;
        let signal = Arc::new(AtomicU8::new(0));
        let (ssc, flag) = (ssc.clone(), signal.clone());
        actix::spawn(async move {
            let first = tokio::select! {
                first = signals.recv() => first,
                // Stopped (or failed) without a signal: this context needs no more listening.
                _ = ssc.await_termination() => return,
            };
            flag.store(first.number, Ordering::SeqCst);
            eprintln!(
                "[signal] {}: stopping once the records received are processed \
                 (again to stop now).",
                first.name
            );
            tokio::select! {
                result = ssc.stop(StopMode::Graceful) => report_stop(result),
                second = signals.recv() => {
                    eprintln!("[signal] {}: stopping now.", second.name);
                    report_stop(ssc.stop(StopMode::Now).await);
                }
            }
            let last = signals.recv().await;
            eprintln!("[signal] {}: exiting.", last.name);
            std::process::exit(last.exit_status().into());
        });
        Ok(SignalStop { signal })
    }

    /// Whether a signal stopped (or is stopping) the context.
    pub fn interrupted(&self) -> bool {
        self.signal().is_some()
    }

    /// The signal that stopped (or is stopping) the context, if one did.
    pub fn signal(&self) -> Option<StoppedBySignal> {
        match self.signal.load(Ordering::SeqCst) {
            0 => None,
            n if n == SIGINT.number => Some(SIGINT),
            _ => Some(SIGTERM),
        }
    }
}

fn report_stop(result: Result<()>) {
    if let Err(e) = result {
        eprintln!("[signal] stopping the context failed: {e}");
    }
}

const SIGINT: StoppedBySignal = StoppedBySignal {
    name: "SIGINT",
    number: 2,
};
const SIGTERM: StoppedBySignal = StoppedBySignal {
    name: "SIGTERM",
    number: 15,
};

/// SIGINT and SIGTERM as one stream (Ctrl-C only where there is no SIGTERM).
pub struct Signals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    /// Listens for SIGINT and SIGTERM from now on.
    ///
    /// # Errors
    /// If the handlers cannot be installed.
    pub fn new() -> std::io::Result<Signals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Signals {
                interrupt: signal(SignalKind::interrupt())?,
                terminate: signal(SignalKind::terminate())?,
            })
        }
        #[cfg(not(unix))]
        Ok(Signals {})
    }

    /// Waits for the next signal.
    pub async fn recv(&mut self) -> StoppedBySignal {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.interrupt.recv() => SIGINT,
                _ = self.terminate.recv() => SIGTERM,
            }
        }
        #[cfg(not(unix))]
        {
            match tokio::signal::ctrl_c().await {
                Ok(()) => SIGINT,
                Err(_) => std::future::pending().await,
            }
        }
    }
}

/// A listener counting the batches and records processed (for a final summary).
#[derive(Clone, Default)]
pub struct Processed(Arc<Mutex<(usize, usize)>>);

impl Processed {
    /// Nothing processed yet.
    pub fn new() -> Processed {
        Processed::default()
    }

    /// `(batches, records)` processed so far.
    pub fn get(&self) -> (usize, usize) {
        *self.0.lock()
    }
}

impl StreamingListener for Processed {
    fn on_batch_completed(&mut self, batch: &BatchInfo) {
        let mut p = self.0.lock();
        p.0 += 1;
        p.1 += batch.num_records;
    }
}

/// A distribution of durations (request latencies, batch processing times) read back by
/// quantile, kept by `hdrhistogram`: each duration is recorded in whole microseconds with 3
/// significant digits (a reading is within 0.1 % of what was recorded), in constant memory
/// whatever the count, with no upper bound.
#[derive(Clone, Debug)]
pub struct Latencies(hdrhistogram::Histogram<u64>);

impl Default for Latencies {
    fn default() -> Latencies {
        Latencies::new()
    }
}

impl Latencies {
    /// Nothing recorded yet.
    pub fn new() -> Latencies {
        Latencies(hdrhistogram::Histogram::new(3).expect("3 significant digits are valid"))
    }

    /// Records `d` (in whole microseconds).
    pub fn record(&mut self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        // The histogram grows to fit (`saturating_record` would clamp to its current range);
        // only beyond 2^62 µs is the value clamped.
        if self.0.record(us).is_err() {
            self.0.saturating_record(us);
        }
    }

    /// How many durations were recorded.
    pub fn len(&self) -> u64 {
        self.0.len()
    }

    /// Whether none was recorded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The duration at quantile `q` (0..=1) by the nearest-rank method: the smallest recorded
    /// duration that at least a fraction `q` of them do not exceed (0.5 is the median, the
    /// lower middle for an even count; 1.0 the maximum), to the histogram's precision. Zero
    /// if none was recorded.
    pub fn quantile(&self, q: f64) -> Duration {
        if self.0.is_empty() {
            return Duration::ZERO;
        }
        Duration::from_micros(self.0.value_at_quantile(q))
    }

    /// The longest duration recorded (to the histogram's precision); zero if none.
    pub fn max(&self) -> Duration {
        self.quantile(1.0)
    }
}

impl Extend<Duration> for Latencies {
    fn extend<I: IntoIterator<Item = Duration>>(&mut self, durations: I) {
        for d in durations {
            self.record(d);
        }
    }
}

impl FromIterator<Duration> for Latencies {
    fn from_iter<I: IntoIterator<Item = Duration>>(durations: I) -> Latencies {
        let mut latencies = Latencies::new();
        latencies.extend(durations);
        latencies
    }
}

/// `d` in milliseconds, with fractions (for printing).
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
