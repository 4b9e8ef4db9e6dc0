//! Spark's NetworkWordCount: counts the words of lines read from a TCP server, every second.
//!
//! Start a server that sends text, e.g. `nc -lk 9999`, then type lines into it:
//!
//! ```text
//! nc -lk 9999
//! cargo run --release --example network_wordcount -- localhost 9999
//! ```
//!
//! Each 1 s batch's word counts (a word is a maximal run of ASCII letters and digits,
//! lowercased) are printed with `print(10)`. Runs until Ctrl-C (SIGINT) or SIGTERM,
//! then stops gracefully (the lines already received are still counted) and prints how much
//! it counted; a second signal stops at once.

use std::time::Duration;

use clap::Parser;
use rivulet::prelude::*;

#[path = "support/mod.rs"]
mod support;

use support::{context, init_tracing, words, Processed, SignalStop};

/// Command-line options.
#[derive(Parser, Debug)]
#[command(
    about = "Counts words of lines from a TCP server in 1 s batches (Spark's NetworkWordCount)"
)]
struct Args {
    #[command(flatten)]
    ui: support::UiArgs,
    /// Host of the server to read lines from.
    host: String,
    /// Its port.
    port: u16,
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
    let ssc = context("network_wordcount", Duration::from_secs(1), None)?;
    ssc.socket_text_stream(&args.host, args.port)
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
