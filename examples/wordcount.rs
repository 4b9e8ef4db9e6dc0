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
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use rivulet::prelude::*;

#[path = "support/mod.rs"]
mod support;

use support::{
    context, init_tracing, read_lines, run_until_done, spawn_server, words, Ending, Progress,
};

#[derive(Parser, Debug)]
#[command(about = "Streaming word count over a local TCP socket (rivulet's main job)")]
struct Args {
    #[command(flatten)]
    ui: support::UiArgs,
    /// Text file to stream, one record per line.
    #[arg(long, default_value = "examples/data/shakespeare.txt")]
    input: PathBuf,
    /// Batch interval in milliseconds.
    #[arg(long, default_value_t = 500)]
    batch_ms: u64,
    /// Lines per second the source sends; 0 sends as fast as backpressure allows.
    #[arg(long, default_value_t = 8000)]
    rate: u64,
    /// Executors (task threads); default: one per core.
    #[arg(long)]
    executors: Option<usize>,
    /// Write each batch's counts as `word<TAB>count` lines to DIR/batch-<time_ms>/part-NNNNN.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[actix::main]
async fn main() -> Result<(), BoxError> {
    init_tracing();
    let args = Args::parse();
    args.ui.install();
    let lines = read_lines(&args.input)?;
    let total = lines.len();
    println!(
        "Streaming {} ({total} lines) at {} lines/s",
        args.input.display(),
        args.rate
    );

    let (port, server) = spawn_server(Arc::new(lines), args.rate).await?;

    let ssc = context(
        "wordcount",
        Duration::from_millis(args.batch_ms),
        args.executors,
    )?;
    let counts = ssc
        .socket_text_stream("127.0.0.1", port)
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
    let (progress, done) = Progress::new(total);
    ssc.add_listener(progress);
    let ending = run_until_done(&ssc, done).await?;
    server.abort();
    if ending == Ending::Interrupted {
        println!("Stopped on a signal before all {total} lines were processed.");
        return Ok(());
    }
    println!("Done: {total} lines processed.");
    Ok(())
}
