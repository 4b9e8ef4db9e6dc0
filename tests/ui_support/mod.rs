//! What the status-server tests share: a minimal HTTP/1.1 GET on 127.0.0.1 (std only), the
//! test receiver, and polling the JSON API with a deadline.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rivulet::prelude::*;
use tokio::sync::Notify;

/// How long to wait for the status server to have seen the events of a run.
pub const UI_TIMEOUT: Duration = Duration::from_secs(10);

/// `GET url` (an `http://127.0.0.1:port/...` URL): the status code and the body.
pub fn get(url: &str) -> (u16, String) {
    let (status, _, body) = request("GET", url, "");
    (status, body)
}

/// `method url` with the extra header lines `headers` (each ending in `\r\n`): the status
/// code, the response head (lowercased) and the body.
pub fn request(method: &str, url: &str, headers: &str) -> (u16, String, String) {
    let rest = url.strip_prefix("http://").expect("an http URL");
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    let mut stream = TcpStream::connect(host).expect("the status server accepts connections");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("a read timeout");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\n{headers}Content-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .expect("the request is sent");
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .expect("the response is read");
    let response = String::from_utf8(response).expect("a UTF-8 response");
    let (head, body) = response
        .split_once("\r\n\r\n")
        .expect("a response head and body");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status code");
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    (
        status,
        head.to_ascii_lowercase(),
        if chunked {
            dechunk(body)
        } else {
            body.to_string()
        },
    )
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).expect("a chunk size");
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        body = &rest[n + 2..];
    }
    out
}

/// `GET url` as JSON, expecting `status`.
pub fn get_json(url: &str, status: u16) -> serde_json::Value {
    let (got, body) = get(url);
    assert_eq!(got, status, "GET {url}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {url}: not JSON ({e}): {body}"))
}

/// Polls `GET url` until `done(json)` holds, failing the test after [`UI_TIMEOUT`].
pub fn poll_json(url: &str, done: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let deadline = Instant::now() + UI_TIMEOUT;
    loop {
        let json = get_json(url, 200);
        if done(&json) {
            return json;
        }
        assert!(
            Instant::now() < deadline,
            "GET {url} did not reach the expected state in time: {json}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Stores `records`, signals `stored`, then idles until stopped.
pub struct Fixed {
    pub records: Vec<String>,
    pub stored: Arc<Notify>,
    pub done: bool,
}

impl Receiver for Fixed {
    type Item = String;
    fn name(&self) -> String {
        "fixed".into()
    }
    async fn on_start(&mut self) -> Result<(), ReceiverError> {
        Ok(())
    }
    async fn receive(&mut self, sink: &mut BlockSink<String>) -> Result<Flow, ReceiverError> {
        if self.done {
            std::future::pending::<()>().await;
        }
        sink.store_many(std::mem::take(&mut self.records))
            .await
            .map_err(|_| ReceiverError::fatal("stopped"))?;
        self.done = true;
        self.stored.notify_one();
        Ok(Flow::Continue)
    }
}

/// A context on the manual clock serving the UI on a free loopback port, with a receiver
/// of `records` records, whose batch 2 fails in its second output ("fails on purpose").
/// Returns the context, once started and batch 1 holds the records, and runs `batches`.
pub async fn run_with_failure(records: usize, batches: u32) -> StreamingContext {
    run_with_failure_in(None, records, batches).await
}

/// As [`run_with_failure`], keeping checkpoints in `checkpoint_dir` when given.
pub async fn run_with_failure_in(
    checkpoint_dir: Option<&Path>,
    records: usize,
    batches: u32,
) -> StreamingContext {
    run_with_failure_configured(
        |config| match checkpoint_dir {
            Some(dir) => config.checkpoint_dir(dir),
            None => config,
        },
        records,
        batches,
    )
    .await
}

/// As [`run_with_failure`], with the configuration changed by `configure` first.
pub async fn run_with_failure_configured(
    configure: impl FnOnce(StreamingConfig) -> StreamingConfig,
    records: usize,
    batches: u32,
) -> StreamingContext {
    let config = configure(
        StreamingConfig::new()
            .batch_interval(Duration::from_millis(100))
            .executors(2)
            .default_parallelism(2)
            .manual_clock(true)
            .max_rate_per_receiver(50_000.0)
            .ui_address("127.0.0.1:0"),
    );
    let ssc = StreamingContext::new(config).expect("valid config");
    let stored = Arc::new(Notify::new());
    let lines = ssc.receiver_stream(Fixed {
        records: (0..records).map(|i| format!("line {i}")).collect(),
        stored: stored.clone(),
        done: false,
    });
    lines.map(|l| l.len()).count().foreach_batch(|_, _| {});
    lines.foreach_batch(|t, _| {
        assert!(t != Time::from_ms(200), "fails on purpose");
    });
    ssc.start().await.expect("starts");
    tokio::time::timeout(UI_TIMEOUT, stored.notified())
        .await
        .expect("the receiver stores its records");
    for _ in 0..batches {
        let _ = ssc.advance(1).await;
    }
    ssc
}
