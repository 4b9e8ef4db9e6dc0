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
//! digits, lowercased) are printed with `print(10)`. Runs until Ctrl-C, then stops
//! gracefully.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use rivulet::prelude::*;

#[path = "support/mod.rs"]
mod support;

use support::{context, init_tracing, words};

/// Command-line options.
#[derive(Parser, Debug)]
#[command(about = "Counts words of text files moved into DIR, in 1 s batches")]
struct Args {
    /// Directory to watch for new text files.
    dir: PathBuf,
}

/// Parses the options, runs the job, and returns its first error.
#[actix::main]
async fn main() -> Result<(), BoxError> {
    init_tracing();
    let args = Args::parse();
    if !args.dir.is_dir() {
        return Err(format!("{} is not a directory", args.dir.display()).into());
    }
    let ssc = context("directory_wordcount", Duration::from_secs(1), None)?;
    ssc.text_file_stream(&args.dir)
        .flat_map(words)
        .map(|w| (w, 1u64))
        .reduce_by_key(|a, b| a + b)
        .print(10);
    ssc.start().await?;
    println!(
        "Watching {} for new files; Ctrl-C to stop.",
        args.dir.display()
    );
    // tokio's `signal` feature is not among the workspace's tokio features; actix-rt (a
    // dev-dependency, default features) re-exports tokio's `ctrl_c`.
    tokio::select! {
        signal = actix_rt::signal::ctrl_c() => {
            signal.map_err(|e| format!("listening for Ctrl-C: {e}"))?;
            println!("Ctrl-C: stopping after the received lines are counted.");
        }
        result = ssc.await_termination() => result?,
    }
    ssc.stop(StopMode::Graceful).await?;
    Ok(())
}
