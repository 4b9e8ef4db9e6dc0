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
//! SIGTERM, then stops gracefully and prints how much it counted: the lines read, and each
//! entry that was not read with the reason (a subdirectory, a FIFO, a dangling symlink, a
//! file that vanished before its read, a file moved in with a modification time older than
//! the 60 s remember window, a file changed after it was read), and what reading the files
//! lost: lines longer than `--max-line-bytes` are truncated by default, or handled as
//! `--on-long-line` says. A second signal stops at once.
//!
//! Exit status: 0 when everything was read; 1 when an entry was skipped and no
//! `--on-unreadable` policy was named (`--on-unreadable=skip` accepts the loss and exits 0),
//! when `--on-unreadable=fail` stopped the run at the first such entry (the error names it;
//! a restart from a checkpoint would read that batch again), or when a line was lost and no
//! `--on-long-line` policy was named; 2 for a usage error (a `DIR` that is not a directory).

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use rivulet::prelude::*;
use rivulet::receivers::TextFileSource;

#[path = "support/allocator.rs"]
mod allocator;
#[path = "support/mod.rs"]
mod support;

use support::{context, init_tracing, words, LineOptions, PolledReport, Processed, SignalStop};

/// Command-line options.
#[derive(Parser, Debug)]
#[command(about = "Counts words of text files moved into DIR, in 1 s batches")]
struct Args {
    #[command(flatten)]
    ui: support::UiArgs,
    /// What to do with an entry that cannot be read (skip: report it and go on; fail: stop
    /// with an error naming it). Without this option entries are skipped, and the run exits
    /// with status 1 if any was, as input was lost; naming a policy accepts its outcome.
    #[arg(long, value_name = "POLICY")]
    on_unreadable: Option<UnreadablePolicy>,
    /// Directory to watch for new text files.
    dir: PathBuf,
    #[command(flatten)]
    lines: LineOptions,
}

/// Parses the options, runs the job, and returns its first error.
#[actix::main]
async fn main() -> std::process::ExitCode {
    init_tracing();
    allocator::init();
    let args = Args::parse();
    support::finish(run(args).await).await
}

async fn run(args: Args) -> Result<(), BoxError> {
    args.ui.install();
    if !args.dir.is_dir() {
        return Err(support::usage(format!(
            "DIR {}: not a directory; give the directory to watch",
            args.dir.display()
        )));
    }
    let ssc = context("directory_wordcount", Duration::from_secs(1), None)?;
    // `text_file_stream`, with the bad-entry and long-line options and a handle on what
    // reading lost.
    let source = TextFileSource::new(&args.dir)
        .on_unreadable(args.on_unreadable.unwrap_or_default())
        .max_line_bytes(args.lines.max_line_bytes)
        .on_long_line(args.lines.policy());
    let losses = source.losses();
    ssc.text_file_stream_with(source)
        .flat_map(words)
        .map(|w| (w, 1u64))
        .reduce_by_key(|a, b| a + b)
        .print(10);
    let processed = Processed::new();
    ssc.add_listener(processed.clone());
    let inputs = PolledReport::new();
    ssc.add_listener(inputs.clone());
    ssc.start().await?;
    support::print_ui_url(&ssc);
    // The first SIGINT/SIGTERM stops gracefully (the lines received are still counted), a
    // second one at once; either way the context stops and the summary is printed.
    let signals = SignalStop::install(&ssc)?;
    println!(
        "Watching {} for new files; Ctrl-C (SIGINT) or SIGTERM to stop.",
        args.dir.display()
    );
    // A failure (e.g. `--on-unreadable=fail` meeting a bad entry) still prints the summary.
    let ended = ssc.await_termination().await;
    let stopped = ssc.stop(StopMode::Graceful).await;
    let (batches, lines) = processed.get();
    let how = if signals.interrupted() {
        " on a signal"
    } else if ended.is_err() {
        " after a failure"
    } else {
        ""
    };
    println!("Stopped{how}: {batches} batches, {lines} lines counted.");
    let skipped = inputs.print_and_check(args.on_unreadable);
    let long_lines = support::print_and_check_file_losses(&args.dir, losses.totals(), &args.lines);
    ended?;
    // Stopping a context that already stopped on its failure is not a second error.
    if let Err(e) = stopped {
        if !matches!(e, Error::NotRunning(_)) {
            return Err(e.into());
        }
    }
    skipped.and(long_lines)
}
