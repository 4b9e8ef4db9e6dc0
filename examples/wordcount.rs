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
use std::time::{Duration, Instant};

use clap::Parser;
use rivulet::prelude::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

#[derive(Parser, Debug)]
#[command(about = "Streaming word count over a local TCP socket (rivulet's main job)")]
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
    /// Write each batch's counts as `word<TAB>count` lines to DIR/batch-<time_ms>/part-NNNNN.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// A word is a maximal run of ASCII letters and digits, lowercased.
fn words(line: String) -> Vec<String> {
    line.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_ascii_lowercase)
        .collect()
}

/// Sends `lines` to the first client at `rate` lines/s (0: as fast as the client reads), then
/// keeps the connection open until the process exits, as a live source would.
async fn serve(listener: TcpListener, lines: Arc<Vec<Vec<u8>>>, rate: u64) -> std::io::Result<()> {
    let (mut socket, _) = listener.accept().await?;
    let tick = Duration::from_millis(10);
    let per_tick = if rate == 0 {
        usize::MAX
    } else {
        (rate as usize / 100).max(1)
    };
    let mut next = tokio::time::Instant::now();
    for chunk in lines.chunks(per_tick.min(lines.len().max(1))) {
        let mut buf = Vec::with_capacity(chunk.iter().map(|l| l.len() + 1).sum());
        for line in chunk {
            buf.extend_from_slice(line);
            buf.push(b'\n');
        }
        socket.write_all(&buf).await?;
        if rate > 0 {
            next += tick;
            tokio::time::sleep_until(next).await;
        }
    }
    socket.flush().await?;
    std::future::pending::<()>().await;
    Ok(())
}

/// Prints a progress line after each batch and signals when all `total` records are done.
struct Progress {
    total: usize,
    done: usize,
    batches: usize,
    started: Instant,
    finished: Option<tokio::sync::oneshot::Sender<()>>,
}

impl StreamingListener for Progress {
    fn on_batch_completed(&mut self, batch: &BatchInfo) {
        self.batches += 1;
        self.done += batch.num_records;
        let secs = self.started.elapsed().as_secs_f64().max(1e-9);
        println!(
            "[progress] batch {} done: {} records in {} ms | {} batches, {}/{} records, {:.0} records/s",
            batch.batch_time,
            batch.num_records,
            batch.processing_delay.unwrap_or_default().as_millis(),
            self.batches,
            self.done,
            self.total,
            self.done as f64 / secs,
        );
        for (op, error) in &batch.failures {
            eprintln!("[error] batch {}: {op}: {error}", batch.batch_time);
        }
        if self.done >= self.total {
            if let Some(tx) = self.finished.take() {
                let _ = tx.send(());
            }
        }
    }
}

#[actix::main]
async fn main() -> Result<(), BoxError> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let args = Args::parse();
    let text =
        std::fs::read(&args.input).map_err(|e| format!("reading {}: {e}", args.input.display()))?;
    let mut lines: Vec<Vec<u8>> = text.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
    if text.ends_with(b"\n") {
        lines.pop(); // the empty remainder after the final newline is not a line
    }
    let total = lines.len();
    println!(
        "Streaming {} ({total} lines) at {} lines/s",
        args.input.display(),
        args.rate
    );

    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let server = actix::spawn(serve(listener, Arc::new(lines), args.rate));

    let mut config = StreamingConfig::new()
        .app_name("wordcount")
        .batch_interval(Duration::from_millis(args.batch_ms));
    if let Some(n) = args.executors {
        config = config.executors(n);
    }
    let ssc = StreamingContext::new(config)?;
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
    let (tx, rx) = tokio::sync::oneshot::channel();
    ssc.add_listener(Progress {
        total,
        done: 0,
        batches: 0,
        started: Instant::now(),
        finished: Some(tx),
    });
    ssc.start().await?;
    tokio::select! {
        _ = rx => {}
        result = ssc.await_termination() => result?,
    }
    ssc.stop(StopMode::Graceful).await?;
    server.abort();
    println!("Done: {total} lines processed.");
    Ok(())
}
