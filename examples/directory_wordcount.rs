//! Counts the words of text files moved into a directory, every second (Spark's
//! HdfsWordCount, on a local directory).
//!
//! ```text
//! mkdir -p /tmp/in
//! cargo run --release --example directory_wordcount -- /tmp/in
//! # elsewhere: write a file, then move it in (files must appear atomically)
//! cp examples/data/shakespeare.txt /tmp/staged.txt && mv /tmp/staged.txt /tmp/in/
//! ```
//!
//! Files present at start, and names starting with `.` or `_`, are ignored; each new file
//! is read once. Each 1 s batch's word counts (a word is a maximal run of ASCII letters and
//! digits, lowercased) are printed with `print(10)`. Runs until Ctrl-C (SIGINT) or
//! SIGTERM, then stops gracefully and prints how much it counted (a second signal stops at
//! once) and what reading the files lost: lines longer than `--max-line-bytes` are
//! truncated by default, or handled as `--on-long-line` says. Exits with status 1 when
//! input was lost and no `--on-long-line` policy was named.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use rivulet::prelude::*;

#[path = "support/mod.rs"]
mod support;

use rivulet::framework::receiver::ReceiverMetrics;
use rivulet::receivers::TextFileSource;
use support::{context, init_tracing, words, LineOptions, Processed, SignalStop};

/// Command-line options.
#[derive(Parser, Debug)]
#[command(about = "Counts words of text files moved into DIR, in 1 s batches")]
struct Args {
    #[command(flatten)]
    ui: support::UiArgs,
    /// Directory to watch for new text files.
    dir: PathBuf,
    #[command(flatten)]
    lines: LineOptions,
}

/// Parses the options, runs the job, and returns its first error.
#[actix::main]
async fn main() -> std::process::ExitCode {
    init_tracing();
    let args = Args::parse();
    support::exit_code(run(args).await)
}

async fn run(args: Args) -> Result<(), BoxError> {
    args.ui.install();
    if !args.dir.is_dir() {
        return Err(format!("{} is not a directory", args.dir.display()).into());
    }
    let ssc = context("directory_wordcount", Duration::from_secs(1), None)?;
    // `text_file_stream`, with the long-line options and a handle on what reading lost.
    let source = TextFileSource::new(&args.dir)
        .max_line_bytes(args.lines.max_line_bytes)
        .on_long_line(args.lines.policy());
    let losses = source.losses();
    ssc.graph()
        .polled_stream(source)
        .flat_map(words)
        .map(|w| (w, 1u64))
        .reduce_by_key(|a, b| a + b)
        .print(10);
    let processed = Processed::new();
    ssc.add_listener(processed.clone());
    ssc.start().await?;
    support::print_ui_url(&ssc);
    // The first SIGINT/SIGTERM stops gracefully (the lines received are still counted), a
    // second one at once; either way the context stops and the summary is printed.
    let signals = SignalStop::install(&ssc)?;
    println!(
        "Watching {} for new files; Ctrl-C (SIGINT) or SIGTERM to stop.",
        args.dir.display()
    );
    ssc.await_termination().await?;
    ssc.stop(StopMode::Graceful).await?;
    let (batches, lines) = processed.get();
    let how = if signals.interrupted() {
        " on a signal"
    } else {
        ""
    };
    println!("Stopped{how}: {batches} batches, {lines} lines counted.");
    let t = losses.totals();
    let c = t.counts;
    let metrics = ReceiverMetrics {
        records_stored: t.records,
        malformed: c.malformed,
        truncated: c.truncated,
        dropped: c.dropped,
        dropped_bytes: c.dropped_bytes,
        split: c.split,
        words_cut: c.words_cut,
        incomplete: c.incomplete,
        ..ReceiverMetrics::default()
    };
    let name = format!("{} files in {}", t.files, args.dir.display());
    support::print_and_check_losses(&[(name, metrics)], &args.lines)
}
