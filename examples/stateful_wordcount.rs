//! Running word counts with `map_with_state` (Spark's StatefulNetworkWordCount).
//!
//! Serves a text file (default: the bundled `examples/data/shakespeare.txt`) line by line
//! over a TCP socket on 127.0.0.1 into `socket_text_stream`, and keeps a running count per
//! word (a maximal run of ASCII letters and digits, lowercased) with `map_with_state`,
//! starting, like Spark's example, from the state `hello: 1, world: 1`. Each batch prints the
//! words it updated with their running totals (top 10 by total); at the end, the 10 most
//! frequent words of the final state (`state_snapshots`), checked against an independent
//! count of the whole file. Exits once every line has been processed (about 6 s).
//!
//! ```text
//! cargo run --release --example stateful_wordcount
//! cargo run --release --example stateful_wordcount -- --no-initial-state --rate 0
//! ```

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use clap::Parser;
use rivulet::prelude::*;

#[path = "support/mod.rs"]
mod support;

use support::{
    context, init_tracing, read_lines, run_until_done, spawn_server, words, Ending, Progress,
};

#[derive(Parser, Debug)]
#[command(about = "Running word counts with map_with_state (Spark's StatefulNetworkWordCount)")]
struct Args {
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
    /// Start from an empty state instead of Spark's `hello: 1, world: 1`.
    #[arg(long)]
    no_initial_state: bool,
}

/// `counts` as `word:count` for the `n` largest counts (ties by word).
fn top(counts: impl IntoIterator<Item = (String, u64)>, n: usize) -> String {
    let mut all: Vec<(String, u64)> = counts.into_iter().collect();
    all.sort_by(|(wa, ca), (wb, cb)| cb.cmp(ca).then_with(|| wa.cmp(wb)));
    let top: Vec<String> = all
        .iter()
        .take(n)
        .map(|(w, c)| format!("{w}:{c}"))
        .collect();
    top.join(" ")
}

#[actix::main]
async fn main() -> Result<(), BoxError> {
    init_tracing();
    let args = Args::parse();
    let lines = read_lines(&args.input)?;
    let total = lines.len();
    let initial: Vec<(String, u64)> = if args.no_initial_state {
        Vec::new()
    } else {
        vec![("hello".into(), 1), ("world".into(), 1)]
    };
    // The independent count the final state is checked against: the file's words, plus
    // the initial state.
    let mut expected: HashMap<String, u64> = initial.iter().cloned().collect();
    for line in &lines {
        for word in words(String::from_utf8_lossy(line).into_owned()) {
            *expected.entry(word).or_default() += 1;
        }
    }
    println!(
        "Streaming {} ({total} lines) at {} lines/s; initial state: {initial:?}",
        args.input.display(),
        args.rate
    );

    let (port, server) = spawn_server(Arc::new(lines), args.rate).await?;

    let ssc = context(
        "stateful_wordcount",
        Duration::from_millis(args.batch_ms),
        args.executors,
    )?;
    let initial_rdd = ssc.parallelize(initial, 2);
    // Spark's `mappingFunc`: adds the word's count to its running total, stores it, and
    // emits `(word, total so far)`. (A closure: the key comes as `&String`, which clippy
    // would flag on a named function.)
    let running_count = |word: &String, one: Option<u64>, state: &mut State<u64>| {
        let total = one.unwrap_or(0) + state.get().copied().unwrap_or(0);
        state.update(total);
        (word.clone(), total)
    };
    let state_dstream = ssc
        .socket_text_stream("127.0.0.1", port)
        .flat_map(words)
        .map(|w| (w, 1u64))
        .map_with_state(StateSpec::function(running_count).initial_state(initial_rdd));

    // The function is called once per word occurrence, so a word seen k times in a batch is
    // emitted k times with growing totals: its last (largest) total is its running count.
    let updated = state_dstream.reduce_by_key(u64::max);
    updated.foreach_rdd(|rdd, time| {
        let updated = rdd.collect()?;
        let n = updated.len();
        println!(
            "batch {time}: {n} words updated; top 10 running totals: {}",
            top(updated, 10)
        );
        Ok(())
    });

    // The whole state, every batch (a full scan: fine for this text's ~12k words). Only the
    // newest snapshot is kept, for the end of the run.
    let last_snapshot: Arc<Mutex<Vec<(String, u64)>>> = Arc::default();
    let sink = last_snapshot.clone();
    state_dstream.state_snapshots().foreach_rdd(move |rdd, _| {
        let snapshot = rdd.collect()?;
        *sink.lock().unwrap_or_else(PoisonError::into_inner) = snapshot;
        Ok(())
    });

    let (progress, done) = Progress::new(total);
    ssc.add_listener(progress);
    let ending = run_until_done(&ssc, done).await?;
    server.abort();

    let snapshot =
        std::mem::take(&mut *last_snapshot.lock().unwrap_or_else(PoisonError::into_inner));
    let words_in_state: u64 = snapshot.iter().map(|(_, c)| c).sum();
    println!(
        "Final state: {} distinct words, {words_in_state} words; top 10: {}",
        snapshot.len(),
        top(snapshot.clone(), 10)
    );
    if ending == Ending::Interrupted {
        println!("Stopped on a signal before all {total} lines were processed: not checked.");
        return Ok(());
    }
    let state: HashMap<String, u64> = snapshot.into_iter().collect();
    if state != expected {
        let mut wrong: Vec<String> = expected
            .iter()
            .filter(|(w, c)| state.get(*w) != Some(*c))
            .map(|(w, c)| format!("{w}: expected {c}, got {:?}", state.get(w)))
            .chain(
                state
                    .iter()
                    .filter(|(w, _)| !expected.contains_key(*w))
                    .map(|(w, c)| format!("{w}: expected none, got {c}")),
            )
            .collect();
        wrong.sort();
        wrong.truncate(10);
        return Err(format!(
            "check failed: the final state differs from an independent count of {} ({})",
            args.input.display(),
            wrong.join("; ")
        )
        .into());
    }
    println!(
        "Check OK: the final state equals an independent count of the file plus the initial state ({} distinct words).",
        expected.len()
    );
    println!("Done: {total} lines processed.");
    Ok(())
}
