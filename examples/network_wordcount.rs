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
//! lowercased) are printed with `print(10)`. Runs until Ctrl-C, then stops gracefully
//! (the lines already received are still counted).

use std::time::Duration;

use clap::Parser;
use rivulet::prelude::*;

#[path = "support/mod.rs"]
mod support;

use support::{context, init_tracing, words};

/// Command-line options.
#[derive(Parser, Debug)]
#[command(
    about = "Counts words of lines from a TCP server in 1 s batches (Spark's NetworkWordCount)"
)]
struct Args {
    /// Host of the server to read lines from.
    host: String,
    /// Its port.
    port: u16,
}

/// Parses the options, runs the job, and returns its first error.
#[actix::main]
async fn main() -> Result<(), BoxError> {
    init_tracing();
    let args = Args::parse();
    let ssc = context("network_wordcount", Duration::from_secs(1), None)?;
    ssc.socket_text_stream(&args.host, args.port)
        .flat_map(words)
        .map(|w| (w, 1u64))
        .reduce_by_key(|a, b| a + b)
        .print(10);
    ssc.start().await?;
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
