//! What the executor-process tests share: a receiver that stores one chunk of lines per
//! permit the test adds (so that each chunk is one batch's input), a socket feed for
//! receivers that run in executor processes, the words of lines counted by hand, and how
//! many words the first chunks hold.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use rivulet::prelude::*;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

/// Stores `records` in chunks of `chunk` lines, one for each permit added to `permits`,
/// then idles.
pub struct GatedLines {
    pub records: Vec<String>,
    pub chunk: usize,
    pub permits: Arc<tokio::sync::Semaphore>,
}

impl Receiver for GatedLines {
    type Item = String;
    fn name(&self) -> String {
        "gated lines".into()
    }
    async fn on_start(&mut self) -> Result<(), ReceiverError> {
        Ok(())
    }
    async fn receive(&mut self, sink: &mut BlockSink<String>) -> Result<Flow, ReceiverError> {
        if self.records.is_empty() {
            std::future::pending::<()>().await;
        }
        self.permits
            .acquire()
            .await
            .map_err(|_| ReceiverError::fatal("stopped"))?
            .forget();
        let rest = self.records.split_off(self.chunk.min(self.records.len()));
        let chunk = std::mem::replace(&mut self.records, rest);
        sink.store_many(chunk)
            .await
            .map_err(|_| ReceiverError::fatal("stopped"))?;
        Ok(Flow::Continue)
    }
}

/// The space-separated words of `lines`, counted by hand.
pub fn hand_count(lines: &[String]) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for word in lines.iter().flat_map(|l| l.split(' ')) {
        *counts.entry(word.to_string()).or_default() += 1;
    }
    counts
}

/// For each chunk of `chunk` lines, the words in it and all chunks before it.
pub fn words_upto(lines: &[String], chunk: usize) -> Vec<u64> {
    lines
        .chunks(chunk)
        .scan(0, |sum, c| {
            *sum += c.iter().map(|l| l.split(' ').count() as u64).sum::<u64>();
            Some(*sum)
        })
        .collect()
}

/// `lines` lines of 4 words from `vocab`, seeded.
pub fn lines_of(vocab: &[&str], lines: usize, seed: u64) -> Vec<String> {
    let mut rng = fastrand::Rng::with_seed(seed);
    (0..lines)
        .map(|_| {
            (0..4)
                .map(|_| vocab[rng.usize(..vocab.len())])
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

/// Each batch's records, in batch order, as an output collects them.
pub type Batches<T> = Arc<Mutex<Vec<(Time, Vec<T>)>>>;

/// Registers an output of `stream` that collects each batch's records.
pub fn per_batch<T: Data>(stream: &DStream<T>) -> Batches<T> {
    let batches: Batches<T> = Arc::default();
    let sink = batches.clone();
    stream.foreach_batch(move |t, batch| sink.lock().unwrap().push((t, batch)));
    batches
}

/// The batches collected so far, taken out.
pub fn taken<T>(batches: &Batches<T>) -> Vec<(Time, Vec<T>)> {
    std::mem::take(&mut *batches.lock().unwrap())
}

/// A socket feed: accepts the receivers' connections (one at a time) and writes each chunk
/// of lines to the newest.
pub struct Feed {
    /// Connections accepted so far.
    pub accepted: Arc<AtomicUsize>,
    connections: tokio::sync::mpsc::UnboundedReceiver<TcpStream>,
    current: Option<TcpStream>,
}

impl Feed {
    /// In the coordinator, a feed started here and its port, which it hands to its executor
    /// processes in environment variable `env` (they inherit the coordinator's environment);
    /// in an executor process, that port and no feed.
    pub async fn for_this_process(env: &str) -> (u16, Option<Feed>) {
        if StreamingContext::is_executor_process() {
            let port = std::env::var(env)
                .expect("the coordinator set the port")
                .parse()
                .expect("a port");
            return (port, None);
        }
        let (port, feed) = Feed::start().await;
        std::env::set_var(env, port.to_string());
        (port, Some(feed))
    }

    /// A feed listening on 127.0.0.1, and its port.
    pub async fn start() -> (u16, Feed) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a port");
        let port = listener.local_addr().expect("bound").port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let (tx, connections) = tokio::sync::mpsc::unbounded_channel();
        let counter = accepted.clone();
        actix_rt::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                if tx.send(socket).is_err() {
                    return;
                }
            }
        });
        let feed = Feed {
            accepted,
            connections,
            current: None,
        };
        (port, feed)
    }

    /// Writes `lines` to the newest connection.
    pub async fn send(&mut self, lines: &[String]) {
        while let Ok(socket) = self.connections.try_recv() {
            self.current = Some(socket);
        }
        let socket = self.current.as_mut().expect("a receiver connected");
        let mut bytes = lines.join("\n");
        bytes.push('\n');
        socket.write_all(bytes.as_bytes()).await.expect("written");
        socket.flush().await.expect("flushed");
    }
}

/// The sum of `counts` over the batches from `first` to `last`.
pub fn sum<K: Ord + Clone>(
    counts: &BTreeMap<Time, BTreeMap<K, u64>>,
    first: Time,
    last: Time,
) -> BTreeMap<K, u64> {
    let mut total = BTreeMap::new();
    for batch in counts.range(first..=last).map(|(_, b)| b) {
        for (k, n) in batch {
            *total.entry(k.clone()).or_default() += n;
        }
    }
    total
}

/// The words of `lines` (split at spaces) counted per batch.
pub fn word_counts(lines: &DStream<String>) -> DStream<(String, u64)> {
    lines
        .flat_map(|line: String| line.split(' ').map(str::to_string).collect::<Vec<String>>())
        .map(|w: String| (w, 1u64))
        .reduce_by_key(|a, b| a + b)
}

/// The words counted so far, over every batch of `counts`.
pub fn words_counted(counts: &Batches<(String, u64)>) -> u64 {
    counts
        .lock()
        .unwrap()
        .iter()
        .flat_map(|(_, b)| b.iter().map(|(_, n)| *n))
        .sum()
}

/// `counts` by batch time, each batch's as a map.
pub fn by_batch<K: Ord + Clone>(counts: &Batches<(K, u64)>) -> BTreeMap<Time, BTreeMap<K, u64>> {
    counts
        .lock()
        .unwrap()
        .iter()
        .map(|(t, b)| (*t, b.iter().cloned().collect()))
        .collect()
}
