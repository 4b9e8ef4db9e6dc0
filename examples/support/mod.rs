//! What the file-fed examples share: reading an input file into lines, a local TCP line
//! server that plays the file as a live source, the word splitter, and a listener that
//! prints progress and says when every line has been processed.
//!
//! Each example includes this module with `#[path = "support/mod.rs"] mod support;`. Cargo
//! does not build it as an example of its own: only `examples/*.rs` and
//! `examples/*/main.rs` are discovered.

// Every example uses only part of this module.
#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rivulet::prelude::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The lines of the file at `path`, without their newlines (raw bytes: the socket source
/// decodes them).
///
/// # Errors
/// If the file cannot be read, naming it.
pub fn read_lines(path: &Path) -> Result<Vec<Vec<u8>>, BoxError> {
    let text = std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let mut lines: Vec<Vec<u8>> = text.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
    if text.ends_with(b"\n") {
        lines.pop(); // the empty remainder after the final newline is not a line
    }
    Ok(lines)
}

/// A word is a maximal run of ASCII letters and digits, lowercased.
pub fn words(line: String) -> Vec<String> {
    line.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_ascii_lowercase)
        .collect()
}

/// Binds a listener on 127.0.0.1 (a free port) and serves `lines` on it (see [`serve`]).
/// Returns the port and the server task; abort the task when done.
///
/// # Errors
/// If the listener cannot be bound.
pub async fn spawn_server(
    lines: Arc<Vec<Vec<u8>>>,
    rate: u64,
) -> std::io::Result<(u16, JoinHandle<std::io::Result<()>>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    Ok((port, actix::spawn(serve(listener, lines, rate))))
}

/// Sends `lines` to the first client at `rate` lines/s (0: as fast as the client reads), then
/// keeps the connection open until the process exits, as a live source would.
pub async fn serve(
    listener: TcpListener,
    lines: Arc<Vec<Vec<u8>>>,
    rate: u64,
) -> std::io::Result<()> {
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
pub struct Progress {
    total: usize,
    done: usize,
    batches: usize,
    started: Instant,
    finished: Option<oneshot::Sender<()>>,
}

impl Progress {
    /// A listener expecting `total` records, and the receiver it signals once they all
    /// were processed.
    pub fn new(total: usize) -> (Progress, oneshot::Receiver<()>) {
        let (tx, rx) = oneshot::channel();
        let progress = Progress {
            total,
            done: 0,
            batches: 0,
            started: Instant::now(),
            finished: Some(tx),
        };
        (progress, rx)
    }
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

/// Starts `ssc` and runs it until `done` fires (every record processed), then stops it
/// gracefully.
///
/// # Errors
/// The context's errors: an invalid graph at start, or the first failed batch.
pub async fn run_until_done(ssc: &StreamingContext, done: oneshot::Receiver<()>) -> Result<()> {
    ssc.start().await?;
    tokio::select! {
        _ = done => {}
        result = ssc.await_termination() => result?,
    }
    ssc.stop(StopMode::Graceful).await
}
