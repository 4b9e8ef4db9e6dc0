//! Helpers shared by the integration tests: contexts on the manual clock, timeouts, a
//! recording listener, a polling loop over batches, local line servers, sorting helpers,
//! and a tiny deterministic PRNG (no extra dependency).
//!
//! Every test binary includes this module and uses only part of it.
#![allow(dead_code)]

use std::fmt::Debug;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use rivulet::prelude::*;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::watch;

/// The batch interval of every test context (irrelevant under the manual clock, but batch
/// times are multiples of it: 100, 200, ... ms).
pub const BATCH_MS: i64 = 100;

/// How long any one test may run before it is failed instead of hanging.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(20);

/// How long to wait for data that arrives asynchronously (sockets, directories).
pub const DATA_TIMEOUT: Duration = Duration::from_secs(10);

/// A config on the manual clock with 100 ms batches, `executors` executors and
/// `parallelism` default partitions.
pub fn config(executors: usize, parallelism: usize) -> StreamingConfig {
    StreamingConfig::new()
        .batch_interval(Duration::from_millis(BATCH_MS as u64))
        .executors(executors)
        .default_parallelism(parallelism)
        .manual_clock(true)
}

/// A context from [`config`].
pub fn context(executors: usize, parallelism: usize) -> StreamingContext {
    StreamingContext::new(config(executors, parallelism)).expect("valid config")
}

/// The time of the `i`-th batch (from 1) under the manual clock.
pub fn batch_time(i: i64) -> Time {
    Time::from_ms(i * BATCH_MS)
}

/// Runs `f`, failing the test if it takes longer than [`TEST_TIMEOUT`].
pub async fn within<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(TEST_TIMEOUT, f)
        .await
        .expect("the test did not finish within its timeout")
}

/// Advances the manual clock one batch at a time until `done()` holds (checked before each
/// batch), failing the test after [`DATA_TIMEOUT`]. Returns how many batches ran.
///
/// For data that arrives asynchronously (a socket, a directory): between batches it pauses
/// a few milliseconds so that the receiver gets CPU time and an idle wait does not run
/// thousands of empty batches. This polls for the data; it does not sleep in its place.
pub async fn advance_until(ssc: &StreamingContext, mut done: impl FnMut() -> bool) -> u32 {
    let mut batches = 0;
    let poll = async {
        while !done() {
            ssc.advance(1).await.expect("a batch failed");
            batches += 1;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(DATA_TIMEOUT, poll)
        .await
        .expect("the expected data did not arrive in time");
    batches
}

/// `v`, sorted.
pub fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}

/// Each batch sorted: the multiset of each batch, for results of shuffles.
pub fn sorted_batches<T: Ord>(batches: Vec<Vec<T>>) -> Vec<Vec<T>> {
    batches.into_iter().map(sorted).collect()
}

/// `(s.to_string(), n)`.
pub fn kv<V>(s: &str, v: V) -> (String, V) {
    (s.to_string(), v)
}

/// `&str`s as `String`s.
pub fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// The line number (from 1) of the one line of `source` that contains `needle` (not counting
/// the string literal `"needle..."` that names it): where a test expects an operator's call
/// site, robust to reformatting. Use with `include_str!("this_file.rs")`.
pub fn line_of(source: &str, needle: &str) -> u32 {
    let hits: Vec<usize> = source
        .lines()
        .enumerate()
        // Skip the needle's own string literal (`"needle"`).
        .filter(|(_, l)| l.match_indices(needle).any(|(i, _)| !l[..i].ends_with('"')))
        .map(|(i, _)| i + 1)
        .collect();
    match hits.as_slice() {
        [line] => *line as u32,
        _ => panic!("{needle:?} must occur on exactly one line, found on {hits:?}"),
    }
}

/// Asserts that `batches` has `times` as its batch times, in order.
pub fn assert_times<T: Debug>(batches: &[(Time, Vec<T>)], times: &[i64]) {
    let got: Vec<i64> = batches.iter().map(|(t, _)| t.as_ms()).collect();
    assert_eq!(got, times, "batch times");
}

// ---------------------------------------------------------------------------------------
// Listener events

/// A streaming event, as a listener saw it.
#[derive(Clone, Debug)]
pub enum Event {
    Submitted(BatchInfo),
    Started(BatchInfo),
    Completed(BatchInfo),
    Output(OutputOperationInfo),
    ReceiverStarted(ReceiverInfo),
    ReceiverError(ReceiverInfo),
    ReceiverStopped(ReceiverInfo),
}

/// Records every listener event; tests read them and wait for them.
#[derive(Clone)]
pub struct Events {
    events: Arc<Mutex<Vec<Event>>>,
    changed: watch::Receiver<u64>,
    notify: Arc<watch::Sender<u64>>,
}

impl Default for Events {
    fn default() -> Self {
        let (tx, rx) = watch::channel(0);
        Events {
            events: Arc::default(),
            changed: rx,
            notify: Arc::new(tx),
        }
    }
}

struct Recorder {
    events: Arc<Mutex<Vec<Event>>>,
    notify: Arc<watch::Sender<u64>>,
}

impl Recorder {
    fn push(&mut self, e: Event) {
        self.events.lock().push(e);
        self.notify.send_modify(|n| *n += 1);
    }
}

impl StreamingListener for Recorder {
    fn on_batch_submitted(&mut self, b: &BatchInfo) {
        self.push(Event::Submitted(b.clone()));
    }
    fn on_batch_started(&mut self, b: &BatchInfo) {
        self.push(Event::Started(b.clone()));
    }
    fn on_batch_completed(&mut self, b: &BatchInfo) {
        self.push(Event::Completed(b.clone()));
    }
    fn on_output_operation_completed(&mut self, o: &OutputOperationInfo) {
        self.push(Event::Output(o.clone()));
    }
    fn on_receiver_started(&mut self, r: &ReceiverInfo) {
        self.push(Event::ReceiverStarted(r.clone()));
    }
    fn on_receiver_error(&mut self, r: &ReceiverInfo) {
        self.push(Event::ReceiverError(r.clone()));
    }
    fn on_receiver_stopped(&mut self, r: &ReceiverInfo) {
        self.push(Event::ReceiverStopped(r.clone()));
    }
}

impl Events {
    /// Registers a recorder on `ssc` (before start) and returns the events it records.
    pub fn attach(ssc: &StreamingContext) -> Events {
        let events = Events::default();
        ssc.add_listener(Recorder {
            events: events.events.clone(),
            notify: events.notify.clone(),
        });
        events
    }

    /// Every event so far, in order.
    pub fn all(&self) -> Vec<Event> {
        self.events.lock().clone()
    }

    /// Records received in the completed batches so far.
    pub fn records_completed(&self) -> usize {
        self.all()
            .iter()
            .map(|e| match e {
                Event::Completed(b) => b.num_records,
                _ => 0,
            })
            .sum()
    }

    /// The completed batches so far.
    pub fn completed(&self) -> Vec<BatchInfo> {
        self.all()
            .into_iter()
            .filter_map(|e| match e {
                Event::Completed(b) => Some(b),
                _ => None,
            })
            .collect()
    }

    /// The receivers' stopped events so far.
    pub fn receiver_stopped(&self) -> Vec<ReceiverInfo> {
        self.all()
            .into_iter()
            .filter_map(|e| match e {
                Event::ReceiverStopped(r) => Some(r),
                _ => None,
            })
            .collect()
    }

    /// Waits (without a timeout of its own) until `pred` holds for the events so far.
    pub async fn wait_for(&self, pred: impl Fn(&[Event]) -> bool) {
        let mut changed = self.changed.clone();
        loop {
            changed.borrow_and_update();
            if pred(&self.all()) {
                return;
            }
            changed
                .changed()
                .await
                .expect("the recorder is kept alive by this handle");
        }
    }

    /// Waits up to [`DATA_TIMEOUT`] for a receiver-started event.
    pub async fn wait_receiver_started(&self) -> ReceiverInfo {
        tokio::time::timeout(
            DATA_TIMEOUT,
            self.wait_for(|es| es.iter().any(|e| matches!(e, Event::ReceiverStarted(_)))),
        )
        .await
        .expect("no receiver started");
        self.all()
            .into_iter()
            .find_map(|e| match e {
                Event::ReceiverStarted(r) => Some(r),
                _ => None,
            })
            .expect("just seen")
    }
}

// ---------------------------------------------------------------------------------------
// Local line servers

/// A TCP socket bound to `127.0.0.1:port` (0: any free port) with `SO_REUSEADDR`, not yet
/// listening: connections to it are refused until [`TcpSocket::listen`] is called.
pub fn bind_socket(port: u16) -> TcpSocket {
    let socket = TcpSocket::new_v4().expect("socket");
    socket.set_reuseaddr(true).expect("SO_REUSEADDR");
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    socket.bind(addr).expect("bind 127.0.0.1");
    socket
}

/// A listener on `127.0.0.1:port` (0: any free port), `SO_REUSEADDR` set so that a server
/// can come back on the port it closed.
pub fn listen(port: u16) -> TcpListener {
    bind_socket(port).listen(64).expect("listen")
}

/// `lines` joined, each ended by `\n`.
pub fn text(lines: &[String]) -> Vec<u8> {
    let mut out = Vec::new();
    for l in lines {
        out.extend_from_slice(l.as_bytes());
        out.push(b'\n');
    }
    out
}

/// Serves `payload` to the first client of `listener`, stops listening at once (so that the
/// client's reconnects are refused), then closes the connection. The task ends then.
pub fn serve_and_close(listener: TcpListener, payload: Vec<u8>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let (mut conn, _) = listener.accept().await.expect("accept");
        drop(listener);
        conn.write_all(&payload).await.expect("write");
        conn.shutdown().await.expect("shutdown");
    })
}

/// Serves `payload` to the first client of `listener` and keeps the connection open (as a
/// live source would) until `more` sends further payloads or is dropped.
pub fn serve_and_hold(
    listener: TcpListener,
    payload: Vec<u8>,
) -> (
    tokio::sync::mpsc::UnboundedSender<Vec<u8>>,
    tokio::task::JoinHandle<()>,
) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
    let task = tokio::spawn(async move {
        let (mut conn, _) = listener.accept().await.expect("accept");
        conn.write_all(&payload).await.expect("write");
        while let Some(more) = rx.recv().await {
            conn.write_all(&more).await.expect("write");
        }
        let _ = conn.shutdown().await;
    });
    (tx, task)
}

// ---------------------------------------------------------------------------------------
// Generated data

/// The words of `lines` ([`words_of`] each) counted by hand: the independent count the
/// word-count jobs are checked against.
pub fn count_words<'a>(
    lines: impl IntoIterator<Item = &'a str>,
) -> std::collections::BTreeMap<String, u64> {
    let mut counts = std::collections::BTreeMap::new();
    for w in lines.into_iter().flat_map(words_of) {
        *counts.entry(w).or_default() += 1;
    }
    counts
}

/// The words of `line`: maximal runs of ASCII letters and digits, lowercased. Written with
/// a character loop, independently of the pipelines under test.
pub fn words_of(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for c in line.chars() {
        if c.is_ascii_alphanumeric() {
            current.push(c.to_ascii_lowercase());
        } else if !current.is_empty() {
            out.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// `target/<profile>/examples/<name>`, next to the test binary's `deps/` folder: `cargo test`
/// builds the examples there. Fails the test when the binary is missing.
pub fn example_binary(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let profile_dir = exe
        .parent()
        .and_then(std::path::Path::parent)
        .expect("target/<profile>");
    let bin = profile_dir.join("examples").join(name);
    assert!(
        bin.exists(),
        "{} is missing: run `cargo test` (which builds the examples), or `cargo build \
         --examples` before running one test file",
        bin.display()
    );
    bin
}

/// The path of program `binary` on `PATH` or in the system's `sbin` folders (where Debian
/// puts daemons such as mosquitto, off a non-root user's `PATH`), for a test that needs a
/// tool beyond Rust; when it is missing, `None` after a loud `SKIPPED` line naming `test`
/// and how to install it (`package`, by `scripts/install-test-tools.sh`), or a failure when
/// the environment variable `require` is `1` (as `.ci/run` sets it).
pub fn installed_tool(
    binary: &str,
    package: &str,
    require: &str,
    test: &str,
) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let sbin = ["/usr/local/sbin", "/usr/sbin", "/sbin"].map(std::path::PathBuf::from);
    if let Some(found) = std::env::split_paths(&path)
        .chain(sbin)
        .map(|dir| dir.join(binary))
        .find(|p| p.is_file())
    {
        return Some(found);
    }
    let install = format!(
        "{binary} is missing: install it with `bash scripts/install-test-tools.sh` (Debian's `{package}` package)"
    );
    if std::env::var_os(require).is_some_and(|v| v == "1") {
        panic!("{install} ({require}=1: the test must run).");
    }
    // Written to stderr directly: the test harness captures `eprintln!` of passing tests.
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "\n*** SKIPPED {test}: {install}. ***\n");
    None
}
