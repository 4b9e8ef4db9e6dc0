//! The history command (Spark's History Server): serves the status page, Spark's status
//! API and `/metrics` of a finished run from the event log it wrote with `--event-log DIR`.
//!
//! ```text
//! cargo run --release --example wordcount -- --event-log /tmp/rivulet-events
//! cargo run --release --example history -- --event-log /tmp/rivulet-events
//! ```
//!
//! It lists the runs in DIR (newest first), serves the newest (or the one `--run` names: a
//! file name, or part of one) at http://127.0.0.1:18080/ (Spark's History Server port; `--ui
//! ADDR` to change it) until SIGINT or SIGTERM, then exits 0. Exit status 2 when DIR holds no
//! event log or `--run` matches none; 1 when the chosen log cannot be read.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use rivulet::actors::{EventLog, HistoryServer};

#[path = "support/allocator.rs"]
mod allocator;
#[path = "support/mod.rs"]
mod support;

use rivulet::prelude::BoxError;
use support::{init_tracing_with, usage};

#[derive(Parser, Debug)]
#[command(about = "Serves a finished run's status page from its event log")]
struct Args {
    /// The directory a run wrote its event log to (`--event-log DIR` of the examples,
    /// `StreamingConfig::event_log_dir`).
    #[arg(long, value_name = "DIR")]
    event_log: PathBuf,
    /// The run to serve: its log's file name or part of it (default: the newest run).
    #[arg(long, value_name = "NAME")]
    run: Option<String>,
    /// Where to serve, ip:port (port 0 picks a free one).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:18080")]
    ui: String,
}

#[actix::main]
async fn main() -> ExitCode {
    init_tracing_with("warn,rivulet_actors=info");
    allocator::init();
    let args = Args::parse();
    support::exit_code(run(args).await)
}

async fn run(args: Args) -> Result<(), BoxError> {
    if !args.event_log.is_dir() {
        return Err(usage(format!(
            "--event-log {}: not a directory",
            args.event_log.display()
        )));
    }
    let logs = EventLog::list(&args.event_log)?;
    if logs.is_empty() {
        return Err(usage(format!(
            "--event-log {}: holds no event log (files named *.jsonl or *.jsonl.inprogress)",
            args.event_log.display()
        )));
    }
    println!("Runs in {} (newest first):", args.event_log.display());
    for path in &logs {
        println!("  {}", file_name(path));
    }
    let chosen = match &args.run {
        Some(name) => logs
            .iter()
            .find(|p| file_name(p).contains(name.as_str()))
            .ok_or_else(|| {
                usage(format!(
                    "--run {name}: no event log in the directory matches"
                ))
            })?,
        None => &logs[0],
    };
    let log = EventLog::read(chosen)?;
    let batches = log
        .events
        .iter()
        .filter(|(_, e)| {
            matches!(
                e,
                rivulet::framework::listener::StreamingEvent::BatchCompleted(_)
            )
        })
        .count();
    println!(
        "Serving {} ({}, {} events, {batches} batches completed; {}).",
        file_name(chosen),
        log.run.app_name,
        log.events.len(),
        if log.finished() {
            "the run stopped cleanly"
        } else {
            "the run did not stop cleanly: killed, or still running"
        }
    );
    let server = HistoryServer::start(&log, &args.ui)?;
    println!("History: http://{}/ (Ctrl-C to exit)", server.address());
    let mut signals =
        support::Signals::new().map_err(|e| format!("listening for SIGINT and SIGTERM: {e}"))?;
    let signal = signals.recv().await;
    eprintln!("[signal] {}: exiting.", signal.name);
    server.stop().await;
    Ok(())
}

fn file_name(path: &std::path::Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}
