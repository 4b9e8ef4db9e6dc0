//! The top words of the last 30 s, every second, with an incremental window (Spark:
//! `reduceByKeyAndWindow(_ + _, _ - _, Seconds(30), Seconds(1))`).
//!
//! Serves a text file (default: the bundled `examples/data/shakespeare.txt`) line by line
//! over a TCP socket on 127.0.0.1 into `socket_text_stream`, at a rate that makes the text
//! last about 35 s, and prints each window's 10 most frequent words (a word is a maximal run
//! of ASCII letters and digits, lowercased). Each window is checked against the same window
//! recomputed from scratch (`reduce_by_key_and_window` without the inverse). Exits once
//! every line has been processed (about 35 s).
//!
//! ```text
//! cargo run --release --example windowed_wordcount
//! cargo run --release --example windowed_wordcount -- --window-secs 10 --slide-secs 2 --rate 4000
//! ```

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use rivulet::prelude::*;

#[path = "support/allocator.rs"]
mod allocator;
#[path = "support/mod.rs"]
mod support;

use support::{
    context, init_tracing, read_lines, run_until_done, spawn_server, words, Ending, FeedEnd,
    Progress,
};

#[derive(Parser, Debug)]
#[command(about = "Top words of the last 30 s every second, with an incremental window")]
struct Args {
    #[command(flatten)]
    ui: support::UiArgs,
    /// Text file to stream, one record per line.
    #[arg(long, default_value = "examples/data/shakespeare.txt")]
    input: PathBuf,
    /// Lines per second the source sends (the default makes the bundled text last ~35 s);
    /// 0 sends as fast as backpressure allows.
    #[arg(long, default_value_t = 1200, value_parser = support::parse_rate, allow_negative_numbers = true)]
    rate: u64,
    /// Window length in seconds (a multiple of the batch interval).
    #[arg(long, default_value_t = 30, value_parser = support::parse_window_secs, allow_negative_numbers = true)]
    window_secs: u64,
    /// Slide (time between two windows) in seconds (a multiple of the batch interval).
    #[arg(long, default_value_t = 1, value_parser = support::parse_window_secs, allow_negative_numbers = true)]
    slide_secs: u64,
    /// Batch interval in milliseconds.
    #[arg(long, default_value_t = 1000, value_parser = support::parse_batch_ms)]
    batch_ms: u64,
    /// Executors (task threads); default: one per core.
    #[arg(long, value_parser = support::parse_executors)]
    executors: Option<usize>,
    #[command(flatten)]
    lines: support::LineOptions,
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
    let lines = read_lines(&args.input)?;
    let expected_records = args.lines.expected_records(&lines);
    let total = lines.len();
    let (window, slide) = (
        Duration::from_secs(args.window_secs),
        Duration::from_secs(args.slide_secs),
    );
    println!(
        "Streaming {} ({total} lines) at {} lines/s; window {window:?}, slide {slide:?}",
        args.input.display(),
        args.rate
    );

    let (port, server) = spawn_server(Arc::new(lines), args.rate, FeedEnd::Close).await?;

    let ssc = context(
        "windowed_wordcount",
        Duration::from_millis(args.batch_ms),
        args.executors,
    )?;
    let pairs = args
        .lines
        .feed_stream(&ssc, port)
        .flat_map(words)
        .map(|w| (w, 1u64));
    // `reduce_by_key_and_window_inv(+, -)` plus a filter: each window is the previous one
    // minus the batches that left and plus those that entered. Without the filter, a word
    // whose count fell back to 0 stays in the window with 0, so the window's state would grow
    // with every word ever seen; the filter drops it from the state and from the output.
    let spec = WindowReduce::new(|a: u64, b| a + b)
        .inverse(|a, b| a - b)
        .filter(|(_, n)| *n > 0);
    let windowed = pairs.reduce_by_key_and_window_with(spec, window, slide)?;
    windowed.foreach_rdd(|rdd, time| {
        let mut all = rdd.collect()?;
        all.sort_by(|(wa, ca), (wb, cb)| cb.cmp(ca).then_with(|| wa.cmp(wb)));
        let words: u64 = all.iter().map(|(_, c)| c).sum();
        let top: Vec<String> = all
            .iter()
            .take(10)
            .map(|(w, c)| format!("{w}:{c}"))
            .collect();
        println!(
            "window ending {time}: {words} words, {} distinct; top 10: {}",
            all.len(),
            top.join(" ")
        );
        Ok(())
    });

    // The check: every window equals the same window recomputed from all its batches (the
    // form without inverse, whose cost grows with the window).
    let recomputed = pairs.reduce_by_key_and_window(|a, b| a + b, window, slide)?;
    let (windows, mismatches) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let (w, m) = (windows.clone(), mismatches.clone());
    windowed
        .full_outer_join(&recomputed)
        .filter(|(_, (a, b))| a != b)
        .foreach_rdd(move |rdd, time| {
            let differing = rdd.take(3)?;
            w.fetch_add(1, Ordering::Relaxed);
            if !differing.is_empty() {
                m.fetch_add(1, Ordering::Relaxed);
                eprintln!(
                    "[check] window ending {time} differs from a recomputation: {differing:?}"
                );
            }
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

    let (windows, mismatches) = (
        windows.load(Ordering::Relaxed),
        mismatches.load(Ordering::Relaxed),
    );
    if mismatches > 0 {
        return Err(format!(
            "check failed: {mismatches} of {windows} windows differ from a recomputation"
        )
        .into());
    }
    if let Ending::Interrupted(signal) = ending {
        println!(
            "Stopped on a signal before all {total} lines were processed; the {windows} windows \
             compared equal a recomputation."
        );
        return Err(signal.into());
    }
    if windows == 0 {
        return Err(format!(
            "nothing to check: no window was compared (the run ended before the first slide; \
             use a --slide-secs no longer than the input lasts, {total} lines at {} lines/s)",
            args.rate
        )
        .into());
    }
    println!(
        "Check OK: all {windows} incremental windows equal a recomputation without the inverse."
    );
    println!("Done: {total} lines processed.");
    Ok(())
}
