//! Sustained-rate search and marker latency of streaming word count, measured exactly as
//! Spark's peer (`../shared/peers/spark/WordCountBench.java`) measures Spark Streaming, so
//! the two can be compared side by side on one machine.
//!
//! **Pipeline** (the peer's): `flat_map(tokenize) → map((w, 1)) → reduce_by_key(+)`, then one
//! output per batch that reduces each partition to `(distinct, sum)` (`map_partitions`) and
//! collects those (`foreach_batch`), as the peer's `foreachRDD(mapPartitions(..).collect())`.
//! `--by-reference` writes the count as `flat_map_reduce_by_key` over `&str` views of each
//! line instead (the same words; each key allocated once per map task).
//! The tokenizer is Spark's `\W+` split: a word is a maximal run of `[A-Za-z0-9_]`, ASCII
//! lowercased (the examples' `support::words` also splits at `_`; the bundled corpus has no
//! `_`, but this harness matches Spark's rule exactly anyway). Corpus: the bundled
//! `examples/data/shakespeare.txt` (the same file as `../shared/data/shakespeare.txt`),
//! cycled from its first line.
//!
//! **Modes.** `queue`: the peer's `queue` mode — no receiver; two RDDs of `rate × interval`
//! corpus lines each (lines `0..n` and `n..2n` of the cycled corpus, one partition per
//! executor, as the peer's two cached RDDs of 2 partitions on `local[2]`), built once per
//! level with `parallelize`, alternate batch by batch through `queue_stream` + `transform`;
//! each task reads its partition by cloning the lines, as any task reading a shared block.
//! `memory`: a receiver (`receiver_stream`) stores pre-built corpus lines paced at the
//! offered rate — ingest included: the receiver, its block buffer, backpressure and the batch
//! builder share the cores with the executors. `socket`:
//! rivulet's socket receiver (`LineOptions::socket_stream`) fed by a paced generator thread
//! writing corpus bytes to 127.0.0.1, as the peer's `socket` mode (the generator catches up
//! to `elapsed × rate` lines in writes of at most 8192 lines, then sleeps 2 ms).
//!
//! **A level** is one offered rate on a fresh `StreamingContext` (rivulet's defaults except
//! `--executors` (2, like `local[2]`), with a fresh temporary checkpoint directory, so a
//! metadata checkpoint after every batch, unless `--no-checkpoint`; the block interval is
//! rivulet's default, `min(200 ms, batch / (2 × executors))`, unless `--block-ms`; the peer
//! runs without checkpoints and with `min(200 ms, batch / 2)`): `warm` batches, then `meas` measured
//! batches. It is **stable** when, over the measured batches, mean and median processing
//! delay are at most the batch interval, the mean scheduling delay of the last 5 measured
//! batches is at most the interval, and the lines received are at least 95 % of the offered
//! lines (the peer applies this only in socket mode; here it applies to every mode, since
//! backpressure (on by default; `--no-backpressure`) throttles the memory receiver too; a
//! queue batch always holds its lines). A
//! level is aborted (unstable) once a batch completed after warm-up had a scheduling delay
//! above `max(5 intervals, 2 s)`. Every level checks its counts: the words counted over all
//! its batches must equal an independent count of the corpus lines it received (the stream
//! is the corpus cycled from line 0, so those lines are known; in queue mode, of the slice
//! each batch read); a mismatch exits 1.
//!
//! **The search** (the peer's): a warm-up level (`--warmup-stream-ms`, 25 s, at 0.7 × the
//! start rate; not a result), then up to `--max-probes` (8) short probes that ramp up while
//! stable (× `0.85 × interval / mean processing`, clamped to 1.2..2), a failed probe retried
//! once before it counts, then bisection (geometric) until the bounds are within 15 %; then a
//! long confirm level at the best stable rate, stepping down 10 % (at most 3 tries) while it
//! is unstable. The start rate is the peer's rule (0.3 × (queue, memory) or 0.12 × (socket)
//! the best rate of plain batch passes over the corpus; ours is a single-threaded loop,
//! Spark's a `local[2]` job) unless `--start-rate`. Probe and confirm lengths are the peer's: at
//! intervals ≥ 1 s 3 + 8 and 5 + 25 batches, ≥ 500 ms 4 + 12 and 6 + 40, else 10 + 40 and
//! 20 + 150 (warm + measured); `--probe-warm` etc. shorten them.
//!
//! **Latency** (`--fixed-rates r1,r2 --marker-every N`, the peer's latency options): no
//! search; a warm-up level (`--warmup-stream-ms` at `--warmup-batch-ms`, default
//! `max(interval, 100 ms)`, at the highest rate), then one `fixed` level per rate:
//! `max(5, fixed-warm-ms / interval)` warm-up and `max(30, fixed-meas-ms / interval)` measured
//! batches, aborted for backlog only after 30 measured batches. Every N corpus lines the source
//! (both modes) emits a marker line `@@TS <send time, µs>`; it goes through the same pipeline
//! as the unique key `"\0<µs>"`, is not counted as a word or a line, and the output computes,
//! per marker, (time its batch's collect returned − send time), on one monotonic clock
//! anchored to the wall clock. `LAT` prints p50/p90/p99/max over all markers of the measured
//! batches (an HDR histogram) and the peer's per-batch figures.
//!
//! **Output**: lines tagged as the peer's log — `SETUP` (ours; the peer's `STARTUP` times a
//! JVM), `WARMUP`, `REFCOUNT`, `LEVEL {json}` per level, `LAT {json}`, `BATCHES {json}`
//! (per-batch processing, scheduling delay and records of confirm and fixed levels),
//! `RESULT {json}` (the confirmed level: `lines_per_s` and the delay statistics) and `TOTAL`,
//! so `../shared/peers/spark/summarize.py` and `latency_summarize.py` read them (after
//! renaming the saved output to `*.log`). `LEVEL` has the peer's fields plus the lines sent
//! and received, the count check (`words_counted`, `words_expected`, `count_ok`), the CPU
//! cores the process used during the level (`process_cores_used`), the machine's load
//! average, and the lowest limit rate control set (`rate_limit_min`), so a level that failed
//! can be told apart: processing over the interval, a growing scheduling delay, a receiver
//! held back (received < offered), or a starved process.
//!
//! ```text
//! export CARGO_TARGET_DIR=target CARGO_INCREMENTAL=0
//! cargo run --release -p rivulet-benches --bin bench_sustained -- --mode memory --batch-ms 1000
//! cargo run --release -p rivulet-benches --bin bench_sustained -- --mode socket --batch-ms 100 --warmup-stream-ms 5000
//! cargo run --release -p rivulet-benches --bin bench_sustained -- --mode socket --batch-ms 10 \
//!     --fixed-rates 100000 --marker-every 1000 --fixed-warm-ms 3000 --fixed-meas-ms 10000
//! ```
//!
//! Results and what limits the rate: `BENCHMARKS.md` (the first searches:
//! `benches/results/sustained.md`).

use std::collections::HashMap;
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::{Parser, ValueEnum};
use parking_lot::Mutex;
use rivulet::framework::block::StreamId;
use rivulet::prelude::*;
use rivulet_benches::harness::{self, median_f64};
use rivulet_benches::support::{
    self, exit_code, init_tracing, parse_batch_ms, parse_executors, usage, Latencies, LineOptions,
};
use serde_json::json;

#[path = "../../../examples/support/allocator.rs"]
mod allocator;

/// The marker line's prefix (the corpus has no `@`).
const MARK: &str = "@@TS ";

/// Where the lines come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// An in-memory receiver storing pre-built corpus lines at the offered rate.
    Memory,
    /// rivulet's socket receiver, fed by a paced generator thread on 127.0.0.1.
    Socket,
    /// No receiver, as the peer's `queue` mode: two pre-built RDDs of `rate × interval`
    /// corpus lines each (different corpus offsets), one per partition per executor,
    /// alternated batch by batch (`queue_stream` + `transform`).
    Queue,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Memory => "memory",
            Mode::Socket => "socket",
            Mode::Queue => "queue",
        }
    }
}

/// Command-line options.
#[derive(Parser, Debug)]
#[command(about = "Highest sustained word-count rate and marker latency, as Spark's peer measures")]
struct Args {
    /// Where the lines come from.
    #[arg(long, value_enum, default_value_t = Mode::Memory)]
    mode: Mode,
    /// Count with `flat_map_reduce_by_key` over `&str` views of each line (records read by
    /// reference out of their blocks, a word allocated only when a map task first sees it)
    /// instead of the peer's `flat_map → map → reduce_by_key`.
    #[arg(long)]
    by_reference: bool,
    /// Batch interval in milliseconds.
    #[arg(long, default_value_t = 1000, value_parser = parse_batch_ms)]
    batch_ms: u64,
    /// Executors (task threads); 2 is the peer's `local[2]`.
    #[arg(long, default_value_t = 2, value_parser = parse_executors)]
    executors: usize,
    /// Block interval in ms (default: rivulet's, min(200, batch / (2 × executors)), at
    /// least 1; the peer uses min(200, batch / 2)).
    #[arg(long)]
    block_ms: Option<u64>,
    /// Turn rate control (backpressure, on by default) off.
    #[arg(long)]
    no_backpressure: bool,
    /// Run without a checkpoint directory. By default every level writes its metadata
    /// checkpoints (after every batch) to a fresh temporary directory, as a fault-tolerant
    /// deployment does (the peer runs without checkpoints).
    #[arg(long)]
    no_checkpoint: bool,
    /// Turn the receiver write-ahead log on (memory and socket modes; needs checkpoints):
    /// every block is logged and flushed before it is stored, every batch's allocation
    /// before its outputs run (the cost of exactly-once receivers).
    #[arg(long, conflicts_with = "no_checkpoint")]
    wal: bool,
    /// Turn timestep pipelining on (off by default, as Spark: one batch at a time).
    #[arg(long)]
    pipelining: bool,
    /// Bound on the receiver's stored-but-unfinished records (default: rivulet's).
    #[arg(long)]
    buffer_records: Option<usize>,
    /// Corpus, cycled (default: the bundled Shakespeare text).
    #[arg(long)]
    input: Option<PathBuf>,
    /// First probed rate in lines/s (0: the peer's rule from a plain pass).
    #[arg(long, default_value_t = 0.0)]
    start_rate: f64,
    /// Most probe levels (retries included) before the confirm level.
    #[arg(long, default_value_t = 8)]
    max_probes: usize,
    /// Length of the throwaway warm-up level, in ms (0: none).
    #[arg(long, default_value_t = 25_000)]
    warmup_stream_ms: u64,
    /// Warm-up batches of a probe (default: the peer's, by interval).
    #[arg(long)]
    probe_warm: Option<usize>,
    /// Measured batches of a probe.
    #[arg(long)]
    probe_meas: Option<usize>,
    /// Warm-up batches of the confirm level.
    #[arg(long)]
    confirm_warm: Option<usize>,
    /// Measured batches of the confirm level.
    #[arg(long)]
    confirm_meas: Option<usize>,
    /// Latency mode: no search, one fixed level per rate (lines/s), comma-separated.
    #[arg(long, value_delimiter = ',')]
    fixed_rates: Vec<f64>,
    /// Emit a timestamped marker line after every N corpus lines (0: none).
    #[arg(long, default_value_t = 0)]
    marker_every: u64,
    /// Warm-up length of a fixed level, in ms (at least 5 batches).
    #[arg(long, default_value_t = 3000)]
    fixed_warm_ms: u64,
    /// Measured length of a fixed level, in ms (at least 30 batches).
    #[arg(long, default_value_t = 10_000)]
    fixed_meas_ms: u64,
    /// Batch interval of the fixed mode's warm-up level (default: max(interval, 100)).
    #[arg(long)]
    warmup_batch_ms: Option<u64>,
    #[command(flatten)]
    lines: LineOptions,
}

/// The corpus, as lines (memory mode), as bytes (socket mode), and as word counts per line.
struct Corpus {
    lines: Vec<String>,
    bytes: Vec<u8>,
    /// `line_end[i]`: the offset just after line `i`'s `\n` in `bytes`.
    line_end: Vec<usize>,
    /// `words_before[i]`: the words of lines `0..i` (`len + 1` entries).
    words_before: Vec<u64>,
}

impl Corpus {
    fn read(path: &std::path::Path) -> Result<Corpus, BoxError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| usage(format!("--input {}: {e}", path.display())))?;
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        if lines.is_empty() {
            return Err(usage(format!("--input {}: no lines", path.display())));
        }
        if let Some(i) = lines.iter().position(|l| l.starts_with(MARK)) {
            return Err(usage(format!(
                "--input {}: line {} starts with the marker prefix {MARK:?}",
                path.display(),
                i + 1
            )));
        }
        let (mut bytes, mut line_end, mut words_before) = (Vec::new(), Vec::new(), vec![0]);
        for line in &lines {
            bytes.extend_from_slice(line.as_bytes());
            bytes.push(b'\n');
            line_end.push(bytes.len());
            let before = words_before.last().copied().unwrap_or(0);
            words_before.push(before + tokenize(line.clone(), false).len() as u64);
        }
        Ok(Corpus {
            lines,
            bytes,
            line_end,
            words_before,
        })
    }

    fn len(&self) -> usize {
        self.lines.len()
    }

    /// Lines `from..from + n` of the cycled corpus.
    fn cycled(&self, from: u64, n: u64) -> Vec<String> {
        let len = self.len() as u64;
        (from..from + n)
            .map(|i| self.lines[(i % len) as usize].clone())
            .collect()
    }

    /// The words of the first `k` lines of the cycled corpus.
    fn words_of_prefix(&self, k: u64) -> u64 {
        let n = self.len() as u64;
        let per_cycle = self.words_before[self.len()];
        (k / n) * per_cycle + self.words_before[(k % n) as usize]
    }
}

/// Spark's tokenizer: split on `\W+` (`[^A-Za-z0-9_]`), drop empty tokens, ASCII lowercase.
/// With `markers`, a marker line becomes the single token `"\0<send µs>"`.
fn tokenize(line: String, markers: bool) -> Vec<String> {
    if markers {
        if let Some(us) = line.strip_prefix(MARK) {
            return vec![format!("\0{us}")];
        }
    }
    line.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty())
        .map(str::to_ascii_lowercase)
        .collect()
}

/// [`tokenize`]'s words as `&str` views (`--by-reference`): a marker's key is the only one
/// made per line.
fn for_each_token(line: &str, markers: bool, f: impl FnMut(&str)) {
    if markers {
        if let Some(us) = line.strip_prefix(MARK) {
            let mut f = f;
            f(&format!("\0{us}"));
            return;
        }
    }
    support::for_each_token(line, |c| c.is_ascii_alphanumeric() || c == '_', f)
}

/// Which of `queue` mode's two pre-built slices the batch at `time_ms` reads: they alternate
/// batch by batch, as the peer's two cached RDDs.
fn queue_slice(time_ms: i64, batch_ms: u64) -> usize {
    (time_ms.div_euclid(batch_ms.max(1) as i64)).rem_euclid(2) as usize
}

/// Microseconds on a monotonic clock anchored to the wall clock at its first use (the
/// generators, the output and the batch times share it, as the peer's `nowUs`).
fn now_us() -> u64 {
    static BASE: OnceLock<(u64, Instant)> = OnceLock::new();
    let (wall_us, at) = BASE.get_or_init(|| {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        (wall.as_micros() as u64, Instant::now())
    });
    wall_us + at.elapsed().as_micros() as u64
}

/// The lines of the cycled corpus as `memory` mode's source: at time `t` after its start it
/// has stored `t × rate` lines (in `store_many` calls of at most `CHUNK` lines, each ending at
/// a marker when one is due), then sleeps until about a millisecond's worth more is due (as
/// the socket generator writes in rounds); it yields its thread after each store so that the
/// batch builder sharing it can seal blocks (see `bench_wordcount`). Without the wait for a
/// millisecond's worth it stored one or two lines per call, a million calls a second, and
/// its thread spent more CPU in that loop than both executors in the word count.
struct MemoryLines {
    corpus: Arc<Corpus>,
    rate: f64,
    marker_every: u64,
    next: u64,
    next_mark: u64,
    started: tokio::time::Instant,
    sent: Arc<AtomicU64>,
}

/// Lines per `store_many` (the socket receiver stores up to about 4096 per call too).
const CHUNK: u64 = 4096;

impl Receiver for MemoryLines {
    type Item = String;

    fn name(&self) -> String {
        format!("memory({} lines/s)", self.rate)
    }

    async fn on_start(&mut self) -> Result<(), ReceiverError> {
        self.started = tokio::time::Instant::now();
        Ok(())
    }

    async fn receive(&mut self, sink: &mut BlockSink<String>) -> Result<Flow, ReceiverError> {
        let due = (self.started.elapsed().as_secs_f64() * self.rate) as u64;
        // About 1 ms of lines per store (at least one line, at most a chunk).
        let round = ((self.rate / 1000.0) as u64).clamp(1, CHUNK);
        if due < self.next + round {
            let at = Duration::from_secs_f64((self.next + round) as f64 / self.rate);
            tokio::time::sleep_until(self.started + at).await;
            return Ok(Flow::Continue);
        }
        let n = self.corpus.len() as u64;
        let from = self.next % n;
        let take = (due - self.next)
            .min(CHUNK)
            .min(n - from)
            .min(self.next_mark - self.next);
        let mut chunk: Vec<String> =
            self.corpus.lines[from as usize..(from + take) as usize].to_vec();
        self.next += take;
        if self.next == self.next_mark {
            chunk.push(format!("{MARK}{}", now_us()));
            self.next_mark += self.marker_every;
        }
        if sink.store_many(chunk).await.is_err() {
            return Ok(Flow::Finished); // the context is stopping
        }
        self.sent.store(self.next, Ordering::Relaxed);
        tokio::task::yield_now().await;
        Ok(Flow::Continue)
    }
}

/// `socket` mode's source: a thread serving the cycled corpus to the first client at the
/// offered rate, as the peer's `Generator`.
struct Generator {
    port: u16,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    /// A write error before the stop, with when it happened.
    thread: JoinHandle<Option<(Instant, std::io::Error)>>,
}

impl Generator {
    fn spawn(corpus: Arc<Corpus>, rate: f64, marker_every: u64) -> std::io::Result<Generator> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let (s, c) = (stop.clone(), sent.clone());
        let thread = std::thread::Builder::new()
            .name("line-generator".into())
            .spawn(move || {
                let error = generate(&listener, &corpus, rate, marker_every, &s, &c).err();
                // Keep the connection (closed with `socket`) until the level stopped, so the
                // receiver never sees it close early.
                while !s.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(5));
                }
                error.map(|e| (Instant::now(), e))
            })?;
        Ok(Generator {
            port,
            stop,
            sent,
            thread,
        })
    }

    /// Stops it; returns its first write error, if one happened before `before`.
    fn finish(self, before: Instant) -> Option<std::io::Error> {
        self.stop.store(true, Ordering::Relaxed);
        match self.thread.join() {
            Ok(Some((at, e))) if at < before => Some(e),
            Ok(_) => None,
            Err(_) => Some(std::io::Error::other("the generator thread panicked")),
        }
    }
}

/// The generator's loop; returns when `stop` is set or on a write error.
fn generate(
    listener: &TcpListener,
    corpus: &Corpus,
    rate: f64,
    marker_every: u64,
    stop: &AtomicBool,
    sent: &AtomicU64,
) -> std::io::Result<()> {
    let mut socket = loop {
        match listener.accept() {
            Ok((socket, _)) => break socket,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if stop.load(Ordering::Relaxed) {
                    return Ok(());
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => return Err(e),
        }
    };
    socket.set_nonblocking(false)?;
    // A blocked write (the receiver is backpressured) looks at `stop` every 100 ms.
    socket.set_write_timeout(Some(Duration::from_millis(100)))?;
    let n = corpus.len() as u64;
    let start = Instant::now();
    let (mut next, mut next_mark) = (0u64, marker_every_start(marker_every));
    while !stop.load(Ordering::Relaxed) {
        let due = (start.elapsed().as_secs_f64() * rate) as u64;
        while next < due && !stop.load(Ordering::Relaxed) {
            let li = next % n;
            let take = (due - next).min(n - li).min(8192).min(next_mark - next);
            let from = if li == 0 {
                0
            } else {
                corpus.line_end[li as usize - 1]
            };
            let to = corpus.line_end[(li + take) as usize - 1];
            if !write_all(&mut socket, &corpus.bytes[from..to], stop)? {
                return Ok(());
            }
            next += take;
            if next == next_mark {
                let marker = format!("{MARK}{}\n", now_us());
                if !write_all(&mut socket, marker.as_bytes(), stop)? {
                    return Ok(());
                }
                next_mark += marker_every;
            }
            sent.store(next, Ordering::Relaxed);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok(())
}

fn marker_every_start(every: u64) -> u64 {
    if every > 0 {
        every
    } else {
        u64::MAX
    }
}

/// Writes all of `buf`; `Ok(false)` if `stop` was set while a write waited.
fn write_all(socket: &mut TcpStream, mut buf: &[u8], stop: &AtomicBool) -> std::io::Result<bool> {
    use std::io::ErrorKind::{Interrupted, TimedOut, WouldBlock};
    while !buf.is_empty() {
        match socket.write(buf) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(k) => buf = &buf[k..],
            Err(e) if matches!(e.kind(), WouldBlock | TimedOut | Interrupted) => {
                if stop.load(Ordering::Relaxed) {
                    return Ok(false);
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// One completed batch, from the listener.
#[derive(Clone, Copy, Debug)]
struct BatchRec {
    time_ms: i64,
    proc_ms: f64,
    sched_ms: f64,
    records: usize,
}

/// One batch's output: its words and the send times of its markers.
#[derive(Clone, Debug, Default)]
struct BatchOut {
    distinct: u64,
    words: u64,
    markers: Vec<u64>,
    /// Marker keys whose time did not parse (a bug: fails the level's check).
    bad_markers: u64,
    done_us: u64,
}

/// What the listener saw during a level.
#[derive(Debug, Default)]
struct Seen {
    recs: Vec<BatchRec>,
    /// The largest scheduling delay of a batch completed after the warm-up batches.
    max_sched_after_warm_ms: f64,
    failures: Vec<String>,
    /// The lowest rate limit rate control set (records/s), and how many it set.
    min_rate_limit: Option<f64>,
    rate_limits: usize,
}

struct Watch {
    warm: usize,
    seen: Arc<Mutex<Seen>>,
}

impl StreamingListener for Watch {
    fn on_batch_completed(&mut self, b: &BatchInfo) {
        let mut s = self.seen.lock();
        let sched_ms = b.scheduling_delay.unwrap_or_default().as_secs_f64() * 1e3;
        s.recs.push(BatchRec {
            time_ms: b.batch_time.as_ms(),
            proc_ms: b.processing_delay.unwrap_or_default().as_secs_f64() * 1e3,
            sched_ms,
            records: b.num_records,
        });
        if s.recs.len() > self.warm && sched_ms > s.max_sched_after_warm_ms {
            s.max_sched_after_warm_ms = sched_ms;
        }
        for (op, error) in &b.failures {
            s.failures
                .push(format!("batch {}: {op}: {error}", b.batch_time));
        }
    }

    fn on_receiver_rate_limit(&mut self, _stream: StreamId, records_per_sec: Option<f64>) {
        let mut s = self.seen.lock();
        if let Some(r) = records_per_sec {
            s.rate_limits += 1;
            s.min_rate_limit = Some(s.min_rate_limit.map_or(r, |m| m.min(r)));
        }
    }
}

/// What kind of level, as the peer's `kind`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Warmup,
    Probe,
    Confirm,
    Fixed,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Warmup => "warmup",
            Kind::Probe => "probe",
            Kind::Confirm => "confirm",
            Kind::Fixed => "fixed",
        }
    }
}

/// A level's figures (the peer's `Level`).
#[derive(Debug)]
struct Level {
    offered: f64,
    stable: bool,
    mean_proc: f64,
    json: serde_json::Value,
}

/// The nearest-rank `p`-quantile (0..=1; 0 the minimum, 1 the maximum) of `v`, in ms
/// rounded to 0.1 ms (see [`Latencies::quantile`]); NaN if empty.
fn pct(v: &Latencies, p: f64) -> f64 {
    if v.is_empty() {
        f64::NAN
    } else {
        r1(support::ms(v.quantile(p)))
    }
}

/// `ms` milliseconds as a duration (0 if negative).
fn from_ms(ms: f64) -> Duration {
    Duration::from_secs_f64(ms.max(0.0) / 1000.0)
}

/// The duration from `from_us` to `to_us` (µs on the same clock; 0 if negative).
fn between_us(from_us: i64, to_us: i64) -> Duration {
    Duration::from_micros(u64::try_from(to_us - from_us).unwrap_or(0))
}

fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        f64::NAN
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

/// CPU seconds (user + system, all threads) this process used so far
/// ([`harness::process_cpu`]); NaN where unavailable.
fn process_cpu_s() -> f64 {
    harness::process_cpu().map_or(f64::NAN, |d| d.as_secs_f64())
}

/// The machine's 1-minute load average (`/proc/loadavg`); NaN where unavailable.
fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

/// `x` rounded to one decimal (for the JSON lines).
fn r1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// The settings every level shares.
struct Setup {
    args: Args,
    corpus: Arc<Corpus>,
}

impl Setup {
    /// The level's config; with checkpoints on, in `checkpoint_dir`.
    fn config(&self, batch_ms: u64, checkpoint_dir: Option<&Path>) -> StreamingConfig {
        let mut config = StreamingConfig::new()
            .app_name("bench_sustained")
            .batch_interval(Duration::from_millis(batch_ms))
            .executors(self.args.executors)
            .backpressure(!self.args.no_backpressure)
            .pipelining(self.args.pipelining);
        if let Some(block_ms) = self.args.block_ms {
            config = config.block_interval(Duration::from_millis(block_ms.min(batch_ms)));
        }
        if let Some(dir) = checkpoint_dir {
            config = config.checkpoint_dir(dir).receiver_wal(self.args.wal);
        }
        if let Some(n) = self.args.buffer_records {
            config = config.receiver_buffer_records(n);
        }
        config
    }

    /// Runs one level (the peer's `runLevel`) and prints its `LEVEL` line (and `LAT` and
    /// `BATCHES` where the peer prints them).
    ///
    /// # Errors
    /// A context that fails to start or stop, a failed batch, a generator write error, or
    /// counts that differ from the reference.
    async fn run_level(
        &self,
        batch_ms: u64,
        rate: f64,
        warm: usize,
        meas: usize,
        kind: Kind,
        marker_every: u64,
    ) -> Result<Level, BoxError> {
        let lines_per_batch = ((rate * batch_ms as f64 / 1000.0).round() as u64).max(1);
        let offered = lines_per_batch as f64 * 1000.0 / batch_ms as f64;
        // A fresh checkpoint directory per level (a context refuses one holding a checkpoint).
        let checkpoints = match self.args.no_checkpoint {
            true => None,
            false => Some(tempfile::tempdir()?),
        };
        let ssc = StreamingContext::new(
            self.config(batch_ms, checkpoints.as_ref().map(tempfile::TempDir::path)),
        )?;
        let seen = Arc::new(Mutex::new(Seen::default()));
        ssc.add_listener(Watch {
            warm,
            seen: seen.clone(),
        });
        let sent = Arc::new(AtomicU64::new(0));
        let mut generator = None;
        let lines = match self.args.mode {
            Mode::Memory => ssc.receiver_stream(MemoryLines {
                corpus: self.corpus.clone(),
                rate: offered,
                marker_every,
                next: 0,
                next_mark: marker_every_start(marker_every),
                started: tokio::time::Instant::now(),
                sent: sent.clone(),
            }),
            Mode::Socket => {
                let g = Generator::spawn(self.corpus.clone(), offered, marker_every)?;
                let stream = self.args.lines.socket_stream(&ssc, g.port);
                generator = Some(g);
                stream
            }
            Mode::Queue => {
                let slices: [Rdd<String>; 2] = [0, 1].map(|k| {
                    let lines = self.corpus.cycled(k * lines_per_batch, lines_per_batch);
                    ssc.parallelize(lines, self.args.executors)
                });
                ssc.queue_stream::<String>(Vec::new())
                    .transform(move |_, t| slices[queue_slice(t.as_ms(), batch_ms)].clone())
            }
        };
        let markers = marker_every > 0;
        let outs: Arc<Mutex<HashMap<i64, BatchOut>>> = Arc::default();
        let sink = outs.clone();
        let counts = if self.args.by_reference {
            lines.flat_map_reduce_by_key(
                move |l: &String, counts| for_each_token(l, markers, |w| counts.add(w, 1u64)),
                |a, b| a + b,
            )
        } else {
            lines
                .flat_map(move |l| tokenize(l, markers))
                .map(|w| (w, 1u64))
                .reduce_by_key(|a, b| a + b)
        };
        counts
            .map_partitions(|it| {
                let mut out = BatchOut::default();
                for (w, n) in it {
                    match w.strip_prefix('\0') {
                        Some(us) => match us.parse::<u64>() {
                            Ok(us) => out.markers.push(us),
                            Err(_) => out.bad_markers += 1,
                        },
                        None => {
                            out.distinct += 1;
                            out.words += n;
                        }
                    }
                }
                std::iter::once((out.distinct, out.words, out.markers, out.bad_markers))
            })
            .foreach_batch(move |time, parts| {
                let done_us = now_us(); // the batch's collect returned
                let mut out = BatchOut {
                    done_us,
                    ..BatchOut::default()
                };
                for (d, w, m, bad) in parts {
                    out.distinct += d;
                    out.words += w;
                    out.markers.extend(m);
                    out.bad_markers += bad;
                }
                sink.lock().insert(time.as_ms(), out);
            });

        let total = warm + meas;
        let deadline = Instant::now() + Duration::from_millis(total as u64 * batch_ms * 2 + 15_000);
        let abort_ms = (5 * batch_ms).max(2000) as f64;
        let (cpu_at_start, wall_at_start) = (process_cpu_s(), Instant::now());
        ssc.start().await?;
        let mut aborted = false;
        let watching = async {
            loop {
                tokio::time::sleep(Duration::from_millis(10)).await;
                let s = seen.lock();
                if !s.failures.is_empty() || s.recs.len() >= total || Instant::now() > deadline {
                    return;
                }
                let measured = s.recs.len().saturating_sub(warm);
                if s.max_sched_after_warm_ms > abort_ms
                    && (kind != Kind::Fixed || measured >= meas.min(30))
                {
                    aborted = true;
                    return;
                }
            }
        };
        tokio::select! {
            () = watching => {}
            result = ssc.await_termination() => {
                result?;
                return Err("the context stopped during a level".into());
            }
        }
        let stopping = Instant::now();
        // CPU cores this process used while the level ran (2 executors + receiver +
        // coordinator share the machine's cores with whatever else runs on it).
        let cores_used = (process_cpu_s() - cpu_at_start)
            / stopping
                .duration_since(wall_at_start)
                .as_secs_f64()
                .max(1e-3);
        let load = load_average();
        tokio::time::timeout(Duration::from_secs(300), ssc.stop(StopMode::Graceful))
            .await
            .map_err(|_| "a graceful stop took over 300 s")??;
        if let Some(g) = generator.take() {
            sent.store(g.sent.load(Ordering::Relaxed), Ordering::Relaxed);
            if let Some(e) = g.finish(stopping) {
                return Err(format!("the line generator failed: {e}").into());
            }
        }

        let seen = std::mem::take(&mut *seen.lock());
        if !seen.failures.is_empty() {
            return Err(format!("batches failed: {}", seen.failures.join("; ")).into());
        }
        let outs = std::mem::take(&mut *outs.lock());
        // The words of each queue slice (lines `k × lines_per_batch ..` of the corpus).
        let slice_words = (self.args.mode == Mode::Queue).then(|| {
            let words = |k: u64| self.corpus.words_of_prefix(k * lines_per_batch);
            [words(1) - words(0), words(2) - words(1)]
        });
        self.summarize(
            batch_ms,
            lines_per_batch,
            slice_words,
            offered,
            warm,
            meas,
            kind,
            aborted,
            marker_every,
            sent.load(Ordering::Relaxed),
            seen.recs,
            &outs,
            (cores_used, load, seen.min_rate_limit, seen.rate_limits),
        )
    }

    /// The level's statistics, counts check and output lines.
    #[allow(clippy::too_many_arguments)]
    fn summarize(
        &self,
        batch_ms: u64,
        lines_per_batch: u64,
        slice_words: Option<[u64; 2]>,
        offered: f64,
        warm: usize,
        meas: usize,
        kind: Kind,
        aborted: bool,
        marker_every: u64,
        sent: u64,
        mut recs: Vec<BatchRec>,
        outs: &HashMap<i64, BatchOut>,
        (cores_used, load, min_limit, limits): (f64, f64, Option<f64>, usize),
    ) -> Result<Level, BoxError> {
        let mode = self.args.mode.name();
        let interval = batch_ms as f64;
        recs.sort_by_key(|r| r.time_ms);
        let markers_of = |t: i64| {
            outs.get(&t)
                .map_or(0, |o| o.markers.len() as u64 + o.bad_markers)
        };

        // A batch's corpus lines: a queue slice, or what the receiver stored.
        let lines_of = |r: &BatchRec| match slice_words {
            Some(_) => lines_per_batch,
            None => (r.records as u64).saturating_sub(markers_of(r.time_ms)),
        };

        // Counts: every batch, measured or not.
        let records: u64 = recs.iter().map(|r| r.records as u64).sum();
        let all_markers: u64 = outs
            .values()
            .map(|o| o.markers.len() as u64 + o.bad_markers)
            .sum();
        let bad: u64 = outs.values().map(|o| o.bad_markers).sum();
        let counted: u64 = outs.values().map(|o| o.words).sum();
        let (received, sent, expected) = match slice_words {
            Some(words) => {
                let received = recs.len() as u64 * lines_per_batch;
                let expected = recs
                    .iter()
                    .map(|r| words[queue_slice(r.time_ms, batch_ms)])
                    .sum();
                (received, received, expected)
            }
            None => {
                let received = records.saturating_sub(all_markers);
                (received, sent, self.corpus.words_of_prefix(received))
            }
        };
        let count_ok = counted == expected && bad == 0 && records >= all_markers;

        let total = warm + meas;
        let m: &[BatchRec] = if recs.len() > warm {
            &recs[warm..recs.len().min(total)]
        } else {
            &[]
        };
        let proc: Vec<f64> = m.iter().map(|r| r.proc_ms).collect();
        let sched: Vec<f64> = m.iter().map(|r| r.sched_ms).collect();
        let proc_q: Latencies = proc.iter().copied().map(from_ms).collect();
        let sched_q: Latencies = sched.iter().copied().map(from_ms).collect();
        let mut distinct = Vec::new();
        let (mut line_sum, mut word_sum) = (0u64, 0u64);
        for r in m {
            if let Some(o) = outs.get(&r.time_ms) {
                word_sum += o.words;
                distinct.push(o.distinct as f64);
            }
            line_sum += lines_of(r);
        }
        let last5 = mean(&sched[sched.len().saturating_sub(5)..]);
        let first5 = mean(&sched[..sched.len().min(5)]);
        let slope = if m.len() >= 2 {
            let xs: Vec<f64> = m.iter().map(|r| r.time_ms as f64 / 1000.0).collect();
            let (mx, my) = (mean(&xs), mean(&sched));
            let sxy: f64 = xs
                .iter()
                .zip(&sched)
                .map(|(x, y)| (x - mx) * (y - my))
                .sum();
            let sxx: f64 = xs.iter().map(|x| (x - mx) * (x - mx)).sum();
            if sxx > 0.0 {
                sxy / sxx
            } else {
                f64::NAN
            }
        } else {
            f64::NAN
        };
        let secs = m.len() as f64 * interval / 1000.0;
        let lines_per_s = if secs > 0.0 {
            line_sum as f64 / secs
        } else {
            0.0
        };
        let words_per_s = if secs > 0.0 {
            word_sum as f64 / secs
        } else {
            0.0
        };
        let recv_frac = if m.is_empty() {
            0.0
        } else {
            lines_per_s / offered
        };
        let mean_proc = mean(&proc);
        let full = !aborted && m.len() == meas;
        let stable = full
            && mean_proc <= interval
            && pct(&proc_q, 0.5) <= interval
            && last5 <= interval
            && recv_frac >= 0.95;
        let sustained =
            full && pct(&proc_q, 0.5) < interval && last5 <= interval && recv_frac >= 0.95;
        let mut json = json!({
            "kind": kind.name(), "mode": mode, "batch_ms": batch_ms,
            "offered_lines_per_s": offered.round() as u64, "lines_per_batch": lines_per_batch,
            "warm": warm, "meas": meas, "completed": recs.len(), "stable": stable,
            "aborted": aborted, "lines_per_s": lines_per_s.round() as u64,
            "words_per_s": words_per_s.round() as u64, "recv_frac": (recv_frac * 1000.0).round() / 1000.0,
            "proc_mean_ms": r1(mean_proc), "proc_p50_ms": pct(&proc_q, 0.5),
            "proc_p90_ms": pct(&proc_q, 0.9), "proc_max_ms": pct(&proc_q, 1.0),
            "sched_p50_ms": pct(&sched_q, 0.5), "sched_max_ms": pct(&sched_q, 1.0),
            "sched_last5_mean_ms": r1(last5), "distinct_words_p50": median_f64(&distinct),
            "executors": self.args.executors, "backpressure": !self.args.no_backpressure,
            "sent_lines": sent, "received_lines": received, "words_counted": counted,
            "words_expected": expected, "count_ok": count_ok,
            "process_cores_used": (cores_used * 100.0).round() / 100.0, "loadavg_1m": load,
            "rate_limit_min": min_limit.map(f64::round), "rate_limit_updates": limits,
        });
        if kind == Kind::Fixed {
            json["sustained"] = sustained.into();
            json["sched_first5_mean_ms"] = r1(first5).into();
            json["sched_slope_ms_per_s"] = ((slope * 100.0).round() / 100.0).into();
        }
        println!("LEVEL {json}");
        if marker_every > 0 {
            println!(
                "LAT {}",
                latency(kind, batch_ms, offered, marker_every, m, outs)?
            );
        }
        if matches!(kind, Kind::Confirm | Kind::Fixed) {
            let all = &recs;
            let mut b = json!({});
            b["proc_ms"] = all.iter().map(|r| r1(r.proc_ms)).collect::<Vec<_>>().into();
            b["sched_ms"] = all
                .iter()
                .map(|r| r1(r.sched_ms))
                .collect::<Vec<_>>()
                .into();
            b["records"] = all.iter().map(|r| r.records).collect::<Vec<_>>().into();
            if marker_every > 0 {
                b["markers"] = all
                    .iter()
                    .map(|r| markers_of(r.time_ms))
                    .collect::<Vec<_>>()
                    .into();
            }
            b["warm"] = warm.into();
            println!("BATCHES {b}");
        }
        if !count_ok {
            return Err(format!(
                "COUNT MISMATCH at {} lines/s: {received} corpus lines received, {counted} words \
                 counted, {expected} expected ({bad} unparsable markers)",
                offered.round()
            )
            .into());
        }
        Ok(Level {
            offered,
            stable,
            mean_proc,
            json,
        })
    }
}

/// The `LAT` line: end-to-end latency of the markers of the measured batches `m`.
fn latency(
    kind: Kind,
    batch_ms: u64,
    offered: f64,
    marker_every: u64,
    m: &[BatchRec],
    outs: &HashMap<i64, BatchOut>,
) -> Result<serde_json::Value, BoxError> {
    let mut all = Latencies::new();
    let (mut b_max, mut b_med, mut b_min, mut wait, mut after) = (
        Latencies::new(),
        Latencies::new(),
        Latencies::new(),
        Latencies::new(),
        Latencies::new(),
    );
    let (mut with_markers, mut count) = (0, 0);
    for r in m {
        let Some(o) = outs.get(&r.time_ms).filter(|o| !o.markers.is_empty()) else {
            continue;
        };
        with_markers += 1;
        let done_us = o.done_us as i64;
        let b: Latencies = o
            .markers
            .iter()
            .map(|&s| between_us(s as i64, done_us))
            .collect();
        all.extend(o.markers.iter().map(|&s| between_us(s as i64, done_us)));
        // A marker is sent before the batch that holds it is cut (0 if the clocks say not).
        wait.extend(
            o.markers
                .iter()
                .map(|&s| between_us(s as i64, r.time_ms * 1000)),
        );
        count += o.markers.len();
        b_max.record(b.max());
        b_med.record(b.quantile(0.5));
        b_min.record(b.quantile(0.0));
        after.record(between_us(r.time_ms * 1000, done_us));
    }
    Ok(json!({
        "kind": kind.name(), "batch_ms": batch_ms, "offered_lines_per_s": offered.round() as u64,
        "marker_every": marker_every, "batches": m.len(), "batches_with_markers": with_markers,
        "markers": count, "all_p50_ms": pct(&all, 0.5), "all_p90_ms": pct(&all, 0.9),
        "all_p99_ms": pct(&all, 0.99), "all_max_ms": pct(&all, 1.0), "all_min_ms": pct(&all, 0.0),
        "batchmax_p50_ms": pct(&b_max, 0.5), "batchmax_p90_ms": pct(&b_max, 0.9),
        "batchmax_p99_ms": pct(&b_max, 0.99), "batchmax_max_ms": pct(&b_max, 1.0),
        "batchmed_p50_ms": pct(&b_med, 0.5), "batchmin_p50_ms": pct(&b_min, 0.5),
        "send_to_batchtime_p50_ms": pct(&wait, 0.5),
        "batchtime_to_done_p50_ms": pct(&after, 0.5),
        "batchtime_to_done_max_ms": pct(&after, 1.0),
    }))
}

/// The best rate (lines/s) of a few plain single-threaded passes of the same word count over
/// at least 400,000 lines of the cycled corpus (the peer's plain-job warm-up), printing
/// `WARMUP` lines; then the `REFCOUNT` line.
fn plain_passes(corpus: &Corpus) -> f64 {
    let n = corpus.len().max(400_000);
    let mut best: f64 = 0.0;
    for iter in 0..3 {
        let started = Instant::now();
        let mut counts: HashMap<String, u64> = HashMap::new();
        for i in 0..n {
            for w in tokenize(corpus.lines[i % corpus.len()].clone(), false) {
                *counts.entry(w).or_insert(0) += 1;
            }
        }
        let secs = started.elapsed().as_secs_f64().max(1e-9);
        let words: u64 = counts.values().sum();
        best = best.max(n as f64 / secs);
        println!(
            "WARMUP {}",
            json!({"iter": iter, "lines": n, "words": words, "distinct": counts.len(),
                   "secs": (secs * 1000.0).round() / 1000.0,
                   "lines_per_s": (n as f64 / secs).round() as u64, "words_per_s": (words as f64 / secs).round() as u64})
        );
    }
    let mut distinct = std::collections::HashSet::new();
    for line in &corpus.lines {
        distinct.extend(tokenize(line.clone(), false));
    }
    println!(
        "REFCOUNT {}",
        json!({"lines": corpus.len(), "words": corpus.words_of_prefix(corpus.len() as u64),
               "distinct": distinct.len(),
               "underscores": corpus.bytes.iter().filter(|&&b| b == b'_').count()})
    );
    best
}

/// (probe warm, probe measured, confirm warm, confirm measured) batches: the peer's table,
/// unless overridden.
fn lengths(args: &Args) -> (usize, usize, usize, usize) {
    let (pw, pm, cw, cm) = match args.batch_ms {
        b if b >= 1000 => (3, 8, 5, 25),
        b if b >= 500 => (4, 12, 6, 40),
        _ => (10, 40, 20, 150),
    };
    (
        args.probe_warm.unwrap_or(pw),
        args.probe_meas.unwrap_or(pm).max(1),
        args.confirm_warm.unwrap_or(cw),
        args.confirm_meas.unwrap_or(cm).max(1),
    )
}

#[actix::main]
async fn main() -> ExitCode {
    init_tracing();
    let args = Args::parse();
    exit_code(run(args).await)
}

async fn run(args: Args) -> Result<(), BoxError> {
    let started = Instant::now();
    if args
        .fixed_rates
        .iter()
        .any(|r| !(r.is_finite() && *r > 0.0))
    {
        return Err(usage(
            "--fixed-rates: each rate must be a positive number of lines/s",
        ));
    }
    if !(args.start_rate.is_finite() && args.start_rate >= 0.0) {
        return Err(usage(
            "--start-rate: must be 0 (automatic) or a positive rate",
        ));
    }
    if args.mode == Mode::Queue && args.marker_every > 0 {
        return Err(usage(
            "--marker-every: markers need a source (memory or socket mode), as the peer's",
        ));
    }
    if args.block_ms == Some(0) {
        return Err(usage("--block-ms: must be at least 1"));
    }
    let path = args
        .input
        .clone()
        .unwrap_or_else(|| harness::example_data("shakespeare.txt"));
    let corpus = Arc::new(Corpus::read(&path)?);
    let batch_ms = args.batch_ms;
    let setup = Setup { args, corpus };
    let (args, corpus) = (&setup.args, &setup.corpus);
    println!(
        "SETUP {}",
        json!({"mode": args.mode.name(), "batch_ms": batch_ms, "executors": args.executors,
               "block_interval_ms": setup.config(batch_ms, None).get_block_interval().as_millis() as u64,
               "backpressure": !args.no_backpressure,
               "checkpoints": !args.no_checkpoint,
               "receiver_wal": args.wal,
               "pipelining": args.pipelining,
               "receiver_buffer_records": args.buffer_records,
               "corpus": path.file_name().map(|f| f.to_string_lossy().into_owned()),
               "corpus_lines": corpus.len(), "corpus_bytes": corpus.bytes.len()})
    );
    let best_plain = plain_passes(corpus);
    let marker_every = args.marker_every;

    if !args.fixed_rates.is_empty() {
        let highest = args.fixed_rates.iter().copied().fold(0.0, f64::max);
        let wr = if args.start_rate > 0.0 {
            args.start_rate
        } else {
            highest
        };
        let wb = args.warmup_batch_ms.unwrap_or(batch_ms.max(100)).max(1);
        if args.warmup_stream_ms > 0 {
            let meas = (args.warmup_stream_ms / wb).max(1) as usize;
            setup
                .run_level(wb, wr, 3, meas, Kind::Warmup, marker_every)
                .await?;
        }
        for &rate in &args.fixed_rates {
            let fw = (args.fixed_warm_ms / batch_ms).max(5) as usize;
            let fm = (args.fixed_meas_ms / batch_ms).max(30) as usize;
            let level = setup
                .run_level(batch_ms, rate, fw, fm, Kind::Fixed, marker_every)
                .await?;
            println!("RESULT {}", level.json);
        }
        println!(
            "TOTAL {}",
            json!({"wall_s": r1(started.elapsed().as_secs_f64())})
        );
        return Ok(());
    }

    let (pw, pm, cw, cm) = lengths(args);
    let factor = if args.mode == Mode::Socket { 0.12 } else { 0.3 };
    let mut r = if args.start_rate > 0.0 {
        args.start_rate
    } else {
        best_plain * factor
    };
    if args.warmup_stream_ms > 0 {
        let meas = (args.warmup_stream_ms / batch_ms).max(1) as usize;
        setup
            .run_level(batch_ms, r * 0.7, pw, meas, Kind::Warmup, marker_every)
            .await?;
    }
    // Ramp up while stable; a failed probe is retried once at the same rate before it
    // counts; once a confirmed failure bounds the range, bisect (geometrically).
    let (mut lo, mut hi) = (0.0f64, f64::INFINITY);
    let mut retried = false;
    for _ in 0..args.max_probes {
        let level = setup
            .run_level(batch_ms, r, pw, pm, Kind::Probe, marker_every)
            .await?;
        let rr = level.offered;
        if level.stable {
            lo = lo.max(rr);
            retried = false;
            // A confirmed failure far above a comfortably stable rate was a transient.
            if hi.is_finite() && level.mean_proc < 0.5 * batch_ms as f64 {
                hi = f64::INFINITY;
            }
        } else if !retried {
            retried = true;
            continue;
        } else {
            hi = hi.min(rr);
            retried = false;
        }
        if lo == 0.0 {
            r /= 2.0;
        } else if hi.is_infinite() {
            let jump = 0.85 * batch_ms as f64 / level.mean_proc.max(1.0);
            r = lo * jump.clamp(1.2, 2.0);
        } else {
            if hi / lo < 1.15 {
                break;
            }
            r = (lo * hi).sqrt();
        }
    }
    // Confirm: a long level at the best stable rate, 10 % lower while unstable.
    let mut cr = if lo > 0.0 { lo } else { r };
    let mut best = None;
    for _ in 0..3 {
        let level = setup
            .run_level(batch_ms, cr, cw, cm, Kind::Confirm, marker_every)
            .await?;
        let stable = level.stable;
        best = Some(level);
        if stable {
            break;
        }
        cr *= 0.9;
    }
    if let Some(level) = best {
        println!("RESULT {}", level.json);
    }
    println!(
        "TOTAL {}",
        json!({"wall_s": r1(started.elapsed().as_secs_f64())})
    );
    Ok(())
}
