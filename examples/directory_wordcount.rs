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
//! once).

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use rivulet::prelude::*;

#[path = "support/mod.rs"]
mod support;

use support::{context, init_tracing, words, Processed, SignalStop};

/// Command-line options.
#[derive(Parser, Debug)]
#[command(about = "Counts words of text files moved into DIR, in 1 s batches")]
struct Args {
    #[command(flatten)]
    ui: support::UiArgs,
    /// Directory to watch for new text files.
    dir: PathBuf,
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
    ssc.text_file_stream(&args.dir)
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
    Ok(())
}
