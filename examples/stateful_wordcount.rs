//! Running word counts with `map_with_state` (Spark's StatefulNetworkWordCount).
//!
//! Serves a text file (default: the bundled `examples/data/shakespeare.txt`) line by line
//! over a TCP socket on 127.0.0.1 into `socket_text_stream`, and keeps a running count per
//! word (a maximal run of ASCII letters and digits, lowercased) with `map_with_state`,
//! starting, like Spark's example, from the state `hello: 1, world: 1`. Each batch prints the
//! words it updated with their running totals (top 10 by total); at the end, the 10 most
//! frequent words of the final state (`state_snapshots`), checked against an independent
//! count of the whole file. Exits once every line has been processed (about 6 s).
//!
//! ```text
//! cargo run --release --example stateful_wordcount
//! cargo run --release --example stateful_wordcount -- --no-initial-state --rate 0
//! ```
//!
//! **The recovery job** (`--directory DIR`, `--tail FILE`, `--redis-stream URL#KEY` or
//! `--mqtt mqtt://HOST:PORT#TOPIC`): counts the words of the text files moved into `DIR`
//! (`text_file_stream`), of the lines appended to `FILE` (a reliable receiver with the
//! write-ahead log), of the `line` fields of a Redis stream's entries (a direct stream: entry
//! id ranges in the checkpoint), or of the messages published to an MQTT topic filter (the
//! `MqttReceiver`: QoS 1 in the persistent session of client `--mqtt-client-id`, each message
//! acknowledged once it is in the write-ahead log: none acknowledged is lost, and one stored
//! but not yet acknowledged when the job dies is counted again, at least once), instead of
//! the socket, with no initial state. With `--checkpoint-dir CKPT` it runs under `StreamingContext::get_or_create`:
//! killed at any moment (even `kill -9`) and started again with the same command, it
//! restores the state and counts every word exactly once: the directory's files that
//! arrived meanwhile are read once, and the tailed file resumes at the offset the
//! write-ahead log recorded. `--checkpoint-interval-ms N` sets how often the state is
//! data-checkpointed (`DStream::checkpoint`). `--idle-exit-secs N` stops it gracefully after
//! N seconds without new words, and `--final-state FILE` then writes the final state as
//! sorted `word<TAB>count` lines. Start over with `--fresh`, which deletes CKPT only if it is
//! a rivulet checkpoint directory that no running process holds.
//!
//! ```text
//! cargo run --release --example stateful_wordcount -- --directory in --checkpoint-dir ckpt \
//!     --idle-exit-secs 5 --final-state counts.tsv
//! cargo run --release --example stateful_wordcount -- --tail app.log --checkpoint-dir ckpt \
//!     --checkpoint-interval-ms 500 --batch-ms 100
//! cargo run --release --example stateful_wordcount -- --mqtt 'mqtt://127.0.0.1:1883#lines' \
//!     --checkpoint-dir ckpt --idle-exit-secs 5 --final-state counts.tsv
//! ```

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use parking_lot::Mutex;
use rivulet::prelude::*;

#[path = "support/allocator.rs"]
mod allocator;
#[path = "support/mod.rs"]
mod support;
#[path = "stateful_wordcount/tail.rs"]
mod tail;

use rivulet::receivers::{
    FileLosses, MqttMessage, MqttReceiver, RedisEntry, RedisStreamSource, TextFileSource,
};
use support::{
    context, init_tracing, read_lines, run_until_done, spawn_server, words, Ending, FeedEnd,
    InputReport, Progress, SignalStop,
};

#[derive(Parser, Debug)]
#[command(about = "Running word counts with map_with_state (Spark's StatefulNetworkWordCount)")]
struct Args {
    #[command(flatten)]
    ui: support::UiArgs,
    /// Text file to stream, one record per line.
    #[arg(long, default_value = "examples/data/shakespeare.txt")]
    input: PathBuf,
    /// Batch interval in milliseconds.
    #[arg(long, default_value_t = 500, value_parser = support::parse_batch_ms)]
    batch_ms: u64,
    /// Lines per second the source sends; 0 sends as fast as backpressure allows.
    #[arg(long, default_value_t = 8000, value_parser = support::parse_rate, allow_negative_numbers = true)]
    rate: u64,
    /// Executors (task threads); default: one per core.
    #[arg(long, value_parser = support::parse_executors)]
    executors: Option<usize>,
    /// Start from an empty state instead of Spark's `hello: 1, world: 1`.
    #[arg(long)]
    no_initial_state: bool,
    /// Count the words of the text files moved into this directory instead of streaming
    /// `--input` over a socket (the recovery job; no initial state).
    #[arg(long, group = "recovery")]
    directory: Option<PathBuf>,
    /// Count the words of the lines appended to this file (the recovery job over a reliable
    /// receiver: with `--checkpoint-dir`, through the write-ahead log, resuming at the
    /// offset it logged).
    #[arg(long, group = "recovery")]
    tail: Option<PathBuf>,
    /// Count the words of the `line` field of the entries of a Redis stream, given as
    /// `redis://HOST:PORT/#KEY` (the recovery job over a direct stream: each batch's entry
    /// ids are in the checkpoint, so a restart reads every entry once, with no write-ahead
    /// log).
    #[arg(long, group = "recovery", value_name = "URL#KEY")]
    redis_stream: Option<String>,
    /// Count the words of the messages published to an MQTT topic filter, given as
    /// `mqtt://HOST:PORT#TOPIC` (the recovery job over a reliable receiver: QoS 1 in a
    /// persistent session, each message acknowledged once it is stored, with
    /// `--checkpoint-dir` in the write-ahead log: none acknowledged is lost, some may be
    /// counted twice after a crash).
    #[arg(long, group = "recovery", value_name = "mqtt://HOST:PORT#TOPIC")]
    mqtt: Option<String>,
    /// The MQTT client id of `--mqtt`: its persistent session on the broker (keep it stable
    /// across restarts, unique among the broker's clients).
    #[arg(long, default_value = "stateful_wordcount", requires = "mqtt")]
    mqtt_client_id: String,
    /// Keep checkpoints here and restart from them (`StreamingContext::get_or_create`).
    #[arg(long, requires = "recovery")]
    checkpoint_dir: Option<PathBuf>,
    /// Data-checkpoint the state every this many ms (a multiple of `--batch-ms`; default:
    /// the smallest multiple of the batch interval that is at least 10 s).
    #[arg(long, requires = "recovery", value_parser = support::parse_batch_ms)]
    checkpoint_interval_ms: Option<u64>,
    /// Delete `--checkpoint-dir` first, to start over (refused for a directory that is not
    /// a rivulet checkpoint, or that a running process holds).
    #[arg(long, requires = "checkpoint_dir")]
    fresh: bool,
    /// Stop gracefully after this many seconds without new words (recovery job).
    #[arg(long, requires = "recovery")]
    idle_exit_secs: Option<u64>,
    /// When stopped, write the final state here as sorted `word<TAB>count` lines.
    #[arg(long, requires = "recovery")]
    final_state: Option<PathBuf>,
    /// With `--checkpoint-dir`, keep a receiver's blocks out of the write-ahead log: a block
    /// is acknowledged to its source once its replica is held elsewhere (with
    /// `--receivers-in-processes`, by the second executor process), as Spark's receivers
    /// without the log. A lost executor process loses nothing acknowledged; a coordinator
    /// crash loses what its batches had not finished.
    #[arg(long, requires = "checkpoint_dir")]
    no_receiver_wal: bool,
    #[command(flatten)]
    lines: support::LineOptions,
}

/// `counts` as `word:count` for the `n` largest counts (ties by word).
fn top(counts: impl IntoIterator<Item = (String, u64)>, n: usize) -> String {
    let mut all: Vec<(String, u64)> = counts.into_iter().collect();
    all.sort_by(|(wa, ca), (wb, cb)| cb.cmp(ca).then_with(|| wa.cmp(wb)));
    let top: Vec<String> = all
        .iter()
        .take(n)
        .map(|(w, c)| format!("{w}:{c}"))
        .collect();
    top.join(" ")
}

/// Spark's `mappingFunc`: adds the word's count to its running total, stores it, and emits
/// `(word, total so far)`.
#[allow(clippy::ptr_arg)] // the mapping function gets the key as `&String`
fn running_count(word: &String, one: Option<u64>, state: &mut State<u64>) -> (String, u64) {
    let total = one.unwrap_or(0) + state.get().copied().unwrap_or(0);
    state.update(total);
    (word.clone(), total)
}

/// What the recovery job counts.
#[derive(Clone, Debug)]
enum RecoveryInput {
    /// The text files moved into a directory.
    Directory(PathBuf),
    /// The lines appended to a file.
    Tail(PathBuf),
    /// The `line` fields of a Redis stream's entries: the server's URL and the stream's key.
    Redis(String, String),
    /// The messages published to an MQTT topic filter: the broker's host and port, the
    /// filter and the client id.
    Mqtt {
        host: String,
        port: u16,
        topic: String,
        client_id: String,
    },
}

/// MQTT payloads that were not UTF-8 (they count no words), reported at the end of the run.
static MQTT_NOT_TEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl RecoveryInput {
    /// The input stream; for a directory, with the long-line options, its handle on what
    /// reading the files lost put into `losses`.
    fn stream(
        &self,
        ssc: &StreamingContext,
        lines: &support::LineOptions,
        losses: &Mutex<Option<FileLosses>>,
    ) -> DStream<String> {
        match self {
            RecoveryInput::Directory(dir) => {
                let source = TextFileSource::new(dir)
                    .max_line_bytes(lines.max_line_bytes)
                    .on_long_line(lines.policy());
                *losses.lock() = Some(source.losses());
                ssc.text_file_stream_with(source)
            }
            RecoveryInput::Tail(path) => ssc.receiver_stream(tail::TailReceiver::new(path)),
            RecoveryInput::Redis(url, key) => match RedisStreamSource::new(url, [key.clone()]) {
                Ok(source) => ssc
                    .direct_stream(
                        source,
                        DirectOptions::default().max_rate_per_partition(20_000.0),
                    )
                    .stream()
                    // An entry without a UTF-8 `line` field counts no words.
                    .map(|e: RedisEntry| e.text("line").unwrap_or_default().to_string()),
                // Checked by `run` before the context is built.
                Err(_) => ssc.queue_stream(Vec::new()),
            },
            RecoveryInput::Mqtt {
                host,
                port,
                topic,
                client_id,
            } => match MqttReceiver::new(host, *port, topic, client_id) {
                Ok(receiver) => ssc.receiver_stream(receiver).map(|m: MqttMessage| {
                    m.text().map(str::to_string).unwrap_or_else(|| {
                        MQTT_NOT_TEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        String::new()
                    })
                }),
                // Checked by `run` before the context is built.
                Err(_) => ssc.queue_stream(Vec::new()),
            },
        }
    }

    fn describe(&self) -> String {
        match self {
            RecoveryInput::Directory(dir) => format!("the files moved into {}", dir.display()),
            RecoveryInput::Tail(path) => format!("the lines appended to {}", path.display()),
            RecoveryInput::Redis(url, key) => format!("redis stream {key} at {url}"),
            RecoveryInput::Mqtt {
                host,
                port,
                topic,
                client_id,
            } => format!("mqtt topic {topic} at {host}:{port} as client {client_id}"),
        }
    }
}

/// A checkpoint error with what the user can do: `--fresh` only where starting over is
/// the remedy (a corrupt or foreign checkpoint), never for a held directory or a full disk.
fn advise(e: Error, ckpt: &Path) -> BoxError {
    match &e {
        Error::Checkpoint(c) if c.suggests_starting_over() => format!(
            "{e}\n(to start over, pass --fresh: it deletes {})",
            ckpt.display()
        )
        .into(),
        _ => e.into(),
    }
}

/// The recovery job: the running word counts of `input`.
async fn run_recovery(args: &Args, input: RecoveryInput) -> Result<(), BoxError> {
    let mut config = support::base_config()
        .app_name("stateful_wordcount")
        .batch_interval(Duration::from_millis(args.batch_ms));
    if let Some(n) = args.executors {
        config = config.executors(n);
    }
    // The receivers' inputs go through the write-ahead log (a checkpoint directory is where
    // it lives), unless `--no-receiver-wal`.
    if matches!(input, RecoveryInput::Tail(_) | RecoveryInput::Mqtt { .. })
        && args.checkpoint_dir.is_some()
        && !args.no_receiver_wal
    {
        config = config.receiver_wal(true);
    }
    let last_snapshot: Arc<Mutex<Vec<(String, u64)>>> = Arc::default();
    let last_words = Arc::new(Mutex::new(Instant::now()));
    let (snapshot_sink, activity) = (last_snapshot.clone(), last_words.clone());
    let checkpoint_interval = args.checkpoint_interval_ms.map(Duration::from_millis);
    let source = input.clone();
    let file_losses: Arc<Mutex<Option<FileLosses>>> = Arc::default();
    let (line_options, losses_slot) = (args.lines.clone(), file_losses.clone());
    let build = move |ssc: &StreamingContext| -> Result<()> {
        let state = source
            .stream(ssc, &line_options, &losses_slot)
            .flat_map(words)
            .map(|w| (w, 1u64))
            .map_with_state(StateSpec::function(running_count));
        if let Some(interval) = checkpoint_interval {
            state.checkpoint(interval);
        }
        state.reduce_by_key(u64::max).foreach_rdd(move |rdd, time| {
            let updated = rdd.collect()?;
            if !updated.is_empty() {
                *activity.lock() = Instant::now();
                println!(
                    "batch {time}: {} words updated; top 5 running totals: {}",
                    updated.len(),
                    top(updated, 5)
                );
            }
            Ok(())
        });
        state.state_snapshots().foreach_rdd(move |rdd, _| {
            *snapshot_sink.lock() = rdd.collect()?;
            Ok(())
        });
        Ok(())
    };
    let ssc = match &args.checkpoint_dir {
        Some(ckpt) => {
            if args.fresh && rivulet::actors::SledCheckpointStore::destroy(ckpt)? {
                println!(
                    "--fresh: deleted the checkpoint directory {}.",
                    ckpt.display()
                );
            }
            let ssc = StreamingContext::get_or_create(ckpt, config, build)
                .map_err(|e| advise(e, ckpt))?;
            match ssc.restore_report() {
                Some(report) => {
                    println!(
                        "Restored from checkpoint {}: continuing after batch {}.",
                        ckpt.display(),
                        report.checkpoint.batch_time_ms
                    );
                    if !report.skipped.is_empty() {
                        println!(
                            "Skipped {} damaged newer checkpoint(s): {}",
                            report.skipped.len(),
                            report.skipped.join("; ")
                        );
                    }
                    if report.batches_behind() > 0 {
                        println!(
                            "The checkpoint is {} batch(es) older than the last batch this directory completed: they run again.",
                            report.batches_behind()
                        );
                    }
                }
                None => println!("No checkpoint in {}: starting anew.", ckpt.display()),
            }
            ssc
        }
        None => {
            let ssc = StreamingContext::new(config)?;
            build(&ssc)?;
            ssc
        }
    };
    println!("Counting the words of {}.", input.describe());
    let (receivers, polled) = (InputReport::new(), support::PolledReport::new());
    ssc.add_listener(receivers.clone());
    ssc.add_listener(polled.clone());
    ssc.start().await?;
    support::print_ui_url(&ssc);
    let signals = SignalStop::install(&ssc)?;
    let idle = async {
        let Some(secs) = args.idle_exit_secs else {
            return std::future::pending().await;
        };
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let since = last_words.lock().elapsed();
            if since >= Duration::from_secs(secs) {
                println!("No new words for {secs} s: stopping.");
                return;
            }
        }
    };
    tokio::select! {
        () = idle => {}
        result = support::await_termination(&ssc) => result?,
    }
    ssc.stop(StopMode::Graceful).await?;
    support::print_cluster_summary(&ssc);
    let snapshot = std::mem::take(&mut *last_snapshot.lock());
    let words_in_state: u64 = snapshot.iter().map(|(_, c)| c).sum();
    println!(
        "Final state: {} distinct words, {words_in_state} words; top 10: {}{}",
        snapshot.len(),
        top(snapshot.clone(), 10),
        if signals.interrupted() {
            " (stopped on a signal)"
        } else {
            ""
        }
    );
    if let Some(path) = &args.final_state {
        let mut sorted = snapshot;
        sorted.sort();
        let text: String = sorted.iter().map(|(w, c)| format!("{w}\t{c}\n")).collect();
        // Written aside, then renamed: a reader never sees half a file.
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, path))
            .map_err(|e| format!("--final-state: cannot write {}: {e}", path.display()))?;
        println!("Wrote the final state to {}.", path.display());
    }
    // What the input lost (in this run: the counts are not checkpointed).
    match &input {
        RecoveryInput::Directory(dir) => {
            // Bad entries are skipped (the default policy): a skip is a loss to report.
            let skipped = polled.print_and_check(None);
            let losses = file_losses.lock().clone();
            let totals = losses.map(|l| l.totals()).unwrap_or_default();
            let long_lines = support::print_and_check_file_losses(dir, totals, &args.lines);
            skipped.and(long_lines)
        }
        RecoveryInput::Tail(_) => receivers.print_and_check(&args.lines),
        // A direct stream reads what the stream holds; entries deleted from a batch's range
        // stop the run with an error naming them.
        RecoveryInput::Redis(..) => Ok(()),
        // A payload that is not UTF-8 is reported, not a failure: it counts no words.
        RecoveryInput::Mqtt { .. } => {
            let not_text = MQTT_NOT_TEXT.load(std::sync::atomic::Ordering::Relaxed);
            if not_text > 0 {
                println!("{not_text} MQTT payload(s) were not UTF-8: they counted no words.");
            }
            Ok(())
        }
    }
}

/// `mqtt://HOST:PORT#TOPIC` as the MQTT input (the topic filter may itself hold `#`).
fn parse_mqtt(spec: &str, client_id: &str) -> Result<RecoveryInput, String> {
    let form = "give the broker and the topic filter as mqtt://HOST:PORT#TOPIC";
    let rest = spec.strip_prefix("mqtt://").ok_or(form)?;
    let (address, topic) = rest.split_once('#').ok_or(form)?;
    let (host, port) = address.rsplit_once(':').ok_or(form)?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("port `{port}` is not a number from 0 to 65535"))?;
    if host.is_empty() {
        return Err(form.into());
    }
    MqttReceiver::new(host, port, topic, client_id).map_err(|e| e.to_string())?;
    Ok(RecoveryInput::Mqtt {
        host: host.to_string(),
        port,
        topic: topic.to_string(),
        client_id: client_id.to_string(),
    })
}

#[actix::main]
async fn main() -> std::process::ExitCode {
    init_tracing();
    allocator::init();
    let args = Args::parse();
    support::finish(run(args).await).await
}

async fn run(args: Args) -> Result<(), BoxError> {
    args.ui.install();
    if let Some(dir) = args.directory.clone() {
        return run_recovery(&args, RecoveryInput::Directory(dir)).await;
    }
    if let Some(path) = args.tail.clone() {
        return run_recovery(&args, RecoveryInput::Tail(path)).await;
    }
    if let Some(spec) = args.redis_stream.clone() {
        let Some((url, key)) = spec.rsplit_once('#').filter(|(_, k)| !k.is_empty()) else {
            return Err(support::usage(format!(
                "--redis-stream {spec}: give the server's URL and the stream's key as redis://HOST:PORT/#KEY"
            )));
        };
        RedisStreamSource::new(url, [key])
            .map_err(|e| support::usage(format!("--redis-stream {spec}: {e}")))?;
        return run_recovery(
            &args,
            RecoveryInput::Redis(url.to_string(), key.to_string()),
        )
        .await;
    }
    if let Some(spec) = args.mqtt.clone() {
        let input = parse_mqtt(&spec, &args.mqtt_client_id)
            .map_err(|e| support::usage(format!("--mqtt {spec}: {e}")))?;
        return run_recovery(&args, input).await;
    }
    let lines = read_lines(&args.input)?;
    let expected_records = args.lines.expected_records(&lines);
    let total = lines.len();
    let initial: Vec<(String, u64)> = if args.no_initial_state {
        Vec::new()
    } else {
        vec![("hello".into(), 1), ("world".into(), 1)]
    };
    // The independent count the final state is checked against: the words of the records
    // the file becomes under the long-line options (rivulet's reference split of the whole
    // file, not the receiver: the lines themselves unless one is longer than
    // --max-line-bytes), plus the initial state. A named policy's outcome is expected; an
    // unnamed loss fails the input check before this one.
    let mut expected: HashMap<String, u64> = initial.iter().cloned().collect();
    for record in args.lines.expected_lines(&lines) {
        for word in words(record) {
            *expected.entry(word).or_default() += 1;
        }
    }
    println!(
        "Streaming {} ({total} lines) at {} lines/s; initial state: {initial:?}",
        args.input.display(),
        args.rate
    );

    let (port, server) = spawn_server(Arc::new(lines), args.rate, FeedEnd::Close).await?;

    let ssc = context(
        "stateful_wordcount",
        Duration::from_millis(args.batch_ms),
        args.executors,
    )?;
    let initial_rdd = ssc.parallelize(initial, 2);
    let state_dstream = args
        .lines
        .feed_stream(&ssc, port)
        .flat_map(words)
        .map(|w| (w, 1u64))
        .map_with_state(StateSpec::function(running_count).initial_state(initial_rdd));

    // The function is called once per word occurrence, so a word seen k times in a batch is
    // emitted k times with growing totals: its last (largest) total is its running count.
    let updated = state_dstream.reduce_by_key(u64::max);
    updated.foreach_rdd(|rdd, time| {
        let updated = rdd.collect()?;
        let n = updated.len();
        println!(
            "batch {time}: {n} words updated; top 10 running totals: {}",
            top(updated, 10)
        );
        Ok(())
    });

    // The whole state, every batch (a full scan: fine for this text's ~12k words). Only the
    // newest snapshot is kept, for the end of the run.
    let last_snapshot: Arc<Mutex<Vec<(String, u64)>>> = Arc::default();
    let sink = last_snapshot.clone();
    state_dstream.state_snapshots().foreach_rdd(move |rdd, _| {
        let snapshot = rdd.collect()?;
        *sink.lock() = snapshot;
        Ok(())
    });

    let progress = Progress::new(expected_records);
    ssc.add_listener(progress);
    let input_report = support::InputReport::new();
    ssc.add_listener(input_report.clone());
    // Done once the feed closed, the receiver read all of it, and every record stored was
    // processed: only then are its loss counts final.
    let done = input_report.input_done();
    let ending = run_until_done(&ssc, done).await?;
    // Printed after a signal too (what was read so far); a loss fails only a whole run.
    let losses = input_report.print_and_check(&args.lines);
    if ending == Ending::Done {
        losses?;
    }
    server.abort();

    let snapshot = std::mem::take(&mut *last_snapshot.lock());
    let words_in_state: u64 = snapshot.iter().map(|(_, c)| c).sum();
    println!(
        "Final state: {} distinct words, {words_in_state} words; top 10: {}",
        snapshot.len(),
        top(snapshot.clone(), 10)
    );
    if let Ending::Interrupted(signal) = ending {
        println!("Stopped on a signal before all {total} lines were processed: not checked.");
        return Err(signal.into());
    }
    let state: HashMap<String, u64> = snapshot.into_iter().collect();
    if state != expected {
        let mut wrong: Vec<String> = expected
            .iter()
            .filter(|(w, c)| state.get(*w) != Some(*c))
            .map(|(w, c)| match state.get(w) {
                Some(got) => format!("{w}: expected {c}, got {got}"),
                None => format!("{w}: expected {c}, missing"),
            })
            .chain(
                state
                    .iter()
                    .filter(|(w, _)| !expected.contains_key(*w))
                    .map(|(w, c)| format!("{w}: expected none, got {c}")),
            )
            .collect();
        wrong.sort();
        wrong.truncate(10);
        return Err(format!(
            "check failed: the final state differs from an independent count of {} ({})",
            args.input.display(),
            wrong.join("; ")
        )
        .into());
    }
    println!(
        "Check OK: the final state equals an independent count of the file plus the initial state ({} distinct words).",
        expected.len()
    );
    println!("Done: {total} lines processed.");
    Ok(())
}
