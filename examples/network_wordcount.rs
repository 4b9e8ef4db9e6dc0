//! Spark's NetworkWordCount: counts the words of lines read from a TCP server, every second.
//!
//! Start a server that sends text, e.g. `nc -lk 9999`, then type lines into it:
//!
//! ```text
//! nc -lk 9999
//! cargo run --release --example network_wordcount -- localhost 9999
//! # a finite feed: stop once the server closed the connection and all of it was counted
//! nc -l 9999 < examples/data/shakespeare.txt &
//! cargo run --release --example network_wordcount -- localhost 9999 --stop-on-close
//! ```
//!
//! Each 1 s batch's word counts (a word is a maximal run of ASCII letters and digits,
//! lowercased) are printed with `print(10)`. Runs until Ctrl-C (SIGINT) or SIGTERM (or,
//! with `--stop-on-close`, until the server closes the connection), then stops gracefully
//! (the lines already received are still counted; a second signal stops at once) and
//! prints how much it counted and what the receiver lost: lines longer than
//! `--max-line-bytes` (truncated by default, or as `--on-long-line` says) and lines cut
//! short by the end of the connection. Exits with status 1 when input was lost and no
//! `--on-long-line` policy was named.

use std::time::Duration;

use clap::Parser;
use rivulet::prelude::*;

#[path = "support/allocator.rs"]
mod allocator;
#[path = "support/mod.rs"]
mod support;

use support::{context, words, InputReport, LineOptions, Processed, SignalStop};

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
    /// Its port (1 to 65535).
    #[arg(value_parser = clap::value_parser!(u16).range(1..))]
    port: u16,
    /// Stop once the server closes the connection (after sending data) and every line
    /// received is counted, instead of reconnecting until a signal.
    #[arg(long)]
    stop_on_close: bool,
    #[command(flatten)]
    lines: LineOptions,
}

/// Parses the options, runs the job, and returns its first error.
#[actix::main]
async fn main() -> std::process::ExitCode {
    // The receiver's connections, reconnections and failures are shown (at INFO and WARN).
    support::init_tracing_with("warn,rivulet_receivers::socket=info");
    allocator::init();
    let args = Args::parse();
    support::finish(run(args).await).await
}

async fn run(args: Args) -> Result<(), BoxError> {
    args.ui.install();
    // A host that names nothing is a mistake in the command line, not a server that is
    // down: say so now rather than retry it forever (a refused connection is retried).
    let resolved = tokio::net::lookup_host((args.host.as_str(), args.port))
        .await
        .map(|mut addrs| addrs.next().is_some());
    if !matches!(resolved, Ok(true)) {
        let why = match resolved {
            Err(e) => e.to_string(),
            Ok(_) => "no address".to_string(),
        };
        return Err(support::usage(format!(
            "HOST {}: cannot resolve it ({why})",
            args.host
        )));
    }
    let ssc = context("network_wordcount", Duration::from_secs(1), None)?;
    let receiver = args
        .lines
        .receiver(&args.host, args.port)
        .finish_on_close(args.stop_on_close);
    ssc.receiver_stream(receiver)
        .flat_map(words)
        .map(|w| (w, 1u64))
        .reduce_by_key(|a, b| a + b)
        .print(10);
    let processed = Processed::new();
    ssc.add_listener(processed.clone());
    let report = InputReport::new();
    ssc.add_listener(report.clone());
    ssc.start().await?;
    support::print_ui_url(&ssc);
    // The first SIGINT/SIGTERM stops gracefully (the lines received are still counted), a
    // second one at once; either way the context stops and the summary is printed.
    let signals = SignalStop::install(&ssc)?;
    if args.stop_on_close {
        // The receiver finishes when the server closes; then the lines it stored are counted.
        tokio::select! {
            done = report.input_done() => if let Ok(Err(failure)) = done {
                ssc.stop(StopMode::Now).await?;
                return Err(failure.into());
            },
            result = support::await_termination(&ssc) => result?,
        }
    } else {
        support::await_termination(&ssc).await?;
    }
    ssc.stop(StopMode::Graceful).await?;
    let (batches, lines) = processed.get();
    let how = if signals.interrupted() {
        " on a signal"
    } else if args.stop_on_close {
        " after the server closed the connection"
    } else {
        ""
    };
    println!("Stopped{how}: {batches} batches, {lines} lines counted.");
    // A live feed ends on a signal: its losses are reported (and fail the run) all the same.
    report.print_and_check(&args.lines)
}
