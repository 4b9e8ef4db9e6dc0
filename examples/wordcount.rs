//! The main job: streaming word count on real text, end to end.
//!
//! Serves a text file (default: the bundled `examples/data/shakespeare.txt`) line by line
//! over a real TCP socket on 127.0.0.1 into `socket_text_stream`, counts words per batch (a
//! word is a maximal run of ASCII letters and digits, lowercased), prints each batch's top
//! 10 words and a progress line, and exits once every line has been processed.
//!
//! ```text
//! cargo run --release --example wordcount
//! cargo run --release --example wordcount -- --input examples/data/apache_access.log --rate 0 --out /tmp/wc
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use rivulet::prelude::*;

#[path = "support/allocator.rs"]
mod allocator;
#[path = "support/mod.rs"]
mod support;

use support::{
    context, init_tracing, parse_batch_ms, parse_executors, parse_rate, prepare_out_dir,
    read_lines, run_until_done, spawn_server, words, Ending, FeedEnd, InputReport, LineOptions,
    Progress,
};

#[derive(Parser, Debug)]
#[command(about = "Streaming word count over a local TCP socket (rivulet's main job)")]
struct Args {
    #[command(flatten)]
    ui: support::UiArgs,
    /// Text file to stream, one record per line.
    #[arg(long, default_value = "examples/data/shakespeare.txt")]
    input: PathBuf,
    /// Batch interval in milliseconds (at most one day).
    #[arg(long, default_value_t = 500, value_parser = parse_batch_ms)]
    batch_ms: u64,
    /// Lines per second the source sends; 0 sends as fast as backpressure allows.
    #[arg(long, default_value_t = 8000, value_parser = parse_rate, allow_negative_numbers = true)]
    rate: u64,
    /// Executors (task threads), at most 4096; default: one per core.
    #[arg(long, value_parser = parse_executors)]
    executors: Option<usize>,
    /// Write each batch's counts as `word<TAB>count` lines to DIR/batch-<time_ms>/part-NNNNN
    /// (DIR must be empty or absent, unless --overwrite; it is marked as wordcount's output).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Replace an earlier wordcount output in --out DIR (only a directory holding wordcount's
    /// `.rivulet-output` marker and its `batch-*` directories; anything else is refused and
    /// nothing is deleted).
    #[arg(long)]
    overwrite: bool,
    #[command(flatten)]
    lines: LineOptions,
}

#[actix::main]
async fn main() -> ExitCode {
    init_tracing();
    allocator::init();
    let args = Args::parse();
    support::finish(run(args).await).await
}

async fn run(args: Args) -> Result<(), BoxError> {
    args.ui.install();
    let lines = read_lines(&args.input)?;
    // Only once every input is validated: nothing is touched for a run that cannot start.
    if let Some(dir) = &args.out {
        prepare_out_dir(dir, args.overwrite, "wordcount")?;
    }
    let total = lines.len();
    let expected = args.lines.expected_records(&lines);
    println!(
        "Streaming {} ({total} lines) at {} lines/s",
        args.input.display(),
        args.rate
    );

    let (port, server) = spawn_server(Arc::new(lines), args.rate, FeedEnd::Close).await?;

    let ssc = context(
        "wordcount",
        Duration::from_millis(args.batch_ms),
        args.executors,
    )?;
    let counts = args
        .lines
        .feed_stream(&ssc, port)
        .flat_map(words)
        .map(|w| (w, 1u64))
        .reduce_by_key(|a, b| a + b)
        .cache();
    counts.foreach_rdd(|rdd, time| {
        let mut all = rdd.collect()?;
        all.sort_by(|(wa, ca), (wb, cb)| cb.cmp(ca).then_with(|| wa.cmp(wb)));
        let top: Vec<String> = all
            .iter()
            .take(10)
            .map(|(w, c)| format!("{w}:{c}"))
            .collect();
        println!(
            "batch {time}: {} distinct words; top 10: {}",
            all.len(),
            top.join(" ")
        );
        Ok(())
    });
    if let Some(dir) = &args.out {
        counts
            .map(|(w, c)| format!("{w}\t{c}"))
            .save_as_text_files(dir.join("batch"), "");
    }
    let progress = Progress::new(expected);
    ssc.add_listener(progress);
    let report = InputReport::new();
    ssc.add_listener(report.clone());
    // Done once the feed closed, the receiver read all of it, and every record stored was
    // processed: only then are its loss counts final.
    let done = report.input_done();
    let ending = run_until_done(&ssc, done).await?;
    server.abort();
    // Printed after a signal too (what was read so far); a loss fails only a whole run.
    let losses = report.print_and_check(&args.lines);
    if let Ending::Interrupted(signal) = ending {
        println!("Stopped on a signal before all {total} lines were processed.");
        return Err(signal.into());
    }
    losses?;
    println!("Done: {total} lines processed ({expected} records).");
    Ok(())
}
