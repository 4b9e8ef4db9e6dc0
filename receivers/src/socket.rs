//! Newline-delimited text over TCP (Spark: `SocketReceiver`, `socketTextStream`).
//! Delivery: at-most-once, like Spark's: a line is stored once it has been read, and lines in
//! flight when the connection drops are gone.

use std::fmt;
use std::io;
use std::time::Duration;

use rivulet_framework::receiver::{BlockSink, Flow, Receiver, ReceiverError};
use rivulet_framework::time::exponential_backoff;
use tokio::net::TcpStream;
use tracing::{debug, info, warn};

use crate::lines::{
    LineCounts, LineSplitter, LongLinePolicy, BATCH_BYTES, BATCH_LINES, READ_CHUNK_BYTES,
};
use crate::{millis, DEFAULT_MAX_LINE_BYTES};

/// A connection attempt that takes longer than this fails and is retried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Reads newline-delimited UTF-8 text from a TCP server, one record per line (Spark:
/// `SocketReceiver`, behind `StreamingContext::socket_text_stream`).
///
/// * **Records:** `String`, one per line, without its `\n` or `\r\n`. Invalid UTF-8 is
///   replaced with U+FFFD and counted as
///   [`malformed`](rivulet_framework::receiver::ReceiverMetrics::malformed).
/// * **Incomplete lines:** when the connection closes or fails in the middle of a line (no
///   `\n` after its last bytes: a feeder killed mid-line), what was received of the line is
///   still stored as a record, as Spark's `socketTextStream` does (its head only under
///   `truncate`, nothing under `skip`), but it is counted in
///   [`incomplete`](rivulet_framework::receiver::ReceiverMetrics::incomplete), which counts
///   as lost input, and logged at `warn` with the address and the bytes received. A line
///   unfinished when the receiver stops is counted the same way, its held bytes in
///   `dropped_bytes` (it is not stored).
/// * **Long lines:** a line longer than [`max_line_bytes`](Self::max_line_bytes) (default
///   [`DEFAULT_MAX_LINE_BYTES`], 1 MiB) is handled by the
///   [`on_long_line`](Self::on_long_line) policy: truncated (default), skipped, split into
///   several records, or a fatal error naming the byte offset and the limit, which stops the
///   streaming context. Each long line is logged (at `warn` for the first ones, then
///   rate-limited) and counted in
///   [`ReceiverMetrics`](rivulet_framework::receiver::ReceiverMetrics) (`truncated`,
///   `dropped`, `dropped_bytes`, `split`, `words_cut`), so nothing is lost silently. The
///   counts grow as the bytes are read: once the receiver has read to the end of its input
///   (see [`finish_on_close`](Self::finish_on_close)) they are exact to the byte.
/// * **Connection:** the receiver connects as a client. A refused connection, a host that
///   does not resolve, a server that closes, or a connection error is logged, counted as a
///   recoverable [`error`](rivulet_framework::receiver::ReceiverMetrics::errors), and
///   followed by a reconnect after a backoff: the receiver never gives up, like Spark's
///   (`receive` keeps returning `Ok(Flow::Continue)` meanwhile), unless
///   [`finish_on_close`](Self::finish_on_close) is set: then the end of the first
///   connection ends the receiver, with final, exact counts.
/// * **Backpressure:** while the buffer is full, the socket is not read, so the server's
///   writes block in TCP flow control.
/// * **Delivery:** at-most-once. Each line read is stored exactly once, across reconnects
///   too; lines the server sent that were not yet read when the connection broke are lost.
///
/// # Examples
/// Reading two lines from a local server:
/// ```
/// use std::sync::Arc;
/// use rivulet_framework::receiver::{BlockBuffer, BlockSealer, BlockSink, Receiver, ReceiverCounters};
/// use rivulet_receivers::SocketTextReceiver;
/// use tokio::io::AsyncWriteExt;
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let server = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
/// let port = server.local_addr().unwrap().port();
/// tokio::spawn(async move {
///     let (mut conn, _) = server.accept().await.unwrap();
///     conn.write_all(b"hello\r\nworld\n").await.unwrap();
/// });
///
/// let mut receiver = SocketTextReceiver::new("127.0.0.1", port);
/// let buffer = Arc::new(BlockBuffer::<String>::new(0, 1000));
/// let mut sink = BlockSink::new(buffer.clone());
/// receiver.on_start().await.unwrap();
/// while buffer.metrics().records_stored < 2 {
///     receiver.receive(&mut sink).await.unwrap();
/// }
/// let block = buffer.seal().pop().unwrap();
/// assert_eq!(block.data.downcast_ref::<Vec<String>>().unwrap(), &["hello", "world"]);
/// # });
/// ```
pub struct SocketTextReceiver {
    host: String,
    port: u16,
    /// `host:port`, for names and logs.
    addr: String,
    max_line_bytes: usize,
    policy: LongLinePolicy,
    initial_backoff: Duration,
    max_backoff: Duration,
    /// Set after a failure: sleep this long before the next attempt.
    retry_delay: Option<Duration>,
    stream: Option<TcpStream>,
    /// Whether the current connection delivered any bytes yet.
    got_data: bool,
    /// Failures since a connection last delivered data: the logs' count, and how far the
    /// next reconnect backs off.
    failures: u64,
    splitter: LineSplitter,
    read_buf: Box<[u8]>,
    /// Finish (`Flow::Finished`) when the connection ends, instead of reconnecting.
    finish_on_close: bool,
    /// A clone of the sink `receive` stores into, to count a line left unfinished by
    /// `on_stop` (which gets no sink).
    stop_sink: Option<BlockSink<String>>,
}

impl SocketTextReceiver {
    /// A receiver that will connect to `host:port` (`host`: a name or an IP address). Nothing
    /// is resolved or connected until the receiver runs.
    pub fn new(host: impl Into<String>, port: u16) -> SocketTextReceiver {
        let host = host.into();
        let initial_backoff = Duration::from_millis(100);
        // An IPv6 literal gets brackets, as in a URL: `[::1]:9999`.
        let addr = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        SocketTextReceiver {
            addr,
            host,
            port,
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
            policy: LongLinePolicy::default(),
            initial_backoff,
            max_backoff: Duration::from_secs(5),
            retry_delay: None,
            stream: None,
            got_data: false,
            failures: 0,
            splitter: LineSplitter::new(DEFAULT_MAX_LINE_BYTES, LongLinePolicy::default()),
            read_buf: vec![0; READ_CHUNK_BYTES].into_boxed_slice(),
            finish_on_close: false,
            stop_sink: None,
        }
    }

    /// Sets whether the receiver finishes when the server ends the connection (default
    /// `false`: it reconnects forever, like Spark's). When set, the end of the first
    /// connection (the server closes it, or it fails) makes `receive` store the last lines
    /// and return `Ok(Flow::Finished)`: the receiver stops for good, and its stopped event
    /// carries counts that cover every byte the server sent. A connection closed before any
    /// data is an empty input. A refused connection or an unresolvable host is still
    /// retried (the feed may not be up yet). For finite feeds (a file played over a socket,
    /// `nc -l 9999 < file`).
    #[must_use]
    pub fn finish_on_close(mut self, finish: bool) -> SocketTextReceiver {
        self.finish_on_close = finish;
        self
    }

    /// Sets the longest line delivered as one record, in bytes, `\r\n` excluded (default
    /// [`DEFAULT_MAX_LINE_BYTES`], 1 MiB; 0 counts as 1). Longer lines are handled by the
    /// [`on_long_line`](Self::on_long_line) policy (default: truncated to this many bytes at
    /// a character boundary, and counted). It also bounds the memory held for an unfinished
    /// line: at most `max_line_bytes + 2` bytes.
    #[must_use]
    pub fn max_line_bytes(mut self, max_line_bytes: usize) -> SocketTextReceiver {
        self.max_line_bytes = max_line_bytes;
        self.splitter = LineSplitter::new(max_line_bytes, self.policy);
        self
    }

    /// Sets what happens to a line longer than [`max_line_bytes`](Self::max_line_bytes)
    /// (default [`LongLinePolicy::Truncate`]); see [`LongLinePolicy`]. With
    /// [`LongLinePolicy::Fail`], `receive` returns a fatal [`ReceiverError`] naming the
    /// line's byte offset in the connection and the limit.
    #[must_use]
    pub fn on_long_line(mut self, policy: LongLinePolicy) -> SocketTextReceiver {
        self.policy = policy;
        self.splitter = LineSplitter::new(self.max_line_bytes, policy);
        self
    }

    /// Sets the delay between connection attempts: `initial` after the first failure, then
    /// doubling up to `max` (defaults: 100 ms and 5 s). It goes back to `initial` once a
    /// connection delivers data, so a server that accepts and closes at once is not hammered.
    /// `initial` is at least 1 ms, and `max` at least `initial`.
    #[must_use]
    pub fn reconnect_backoff(mut self, initial: Duration, max: Duration) -> SocketTextReceiver {
        self.initial_backoff = initial.max(Duration::from_millis(1));
        self.max_backoff = max.max(self.initial_backoff);
        self
    }

    /// Counts a failure and schedules the next attempt; returns the delay before it.
    fn schedule_reconnect(&mut self, sink: &mut BlockSink<String>) -> Duration {
        sink.report_error();
        let retry = u32::try_from(self.failures).unwrap_or(u32::MAX);
        self.failures += 1;
        let delay = exponential_backoff(self.initial_backoff, retry, self.max_backoff);
        self.retry_delay = Some(delay);
        delay
    }

    /// Resolves the host and connects to the first address that accepts.
    async fn connect(&self) -> Result<TcpStream, ConnectError> {
        let addrs = tokio::net::lookup_host((self.host.as_str(), self.port))
            .await
            .map_err(ConnectError::Resolve)?;
        let mut last = None;
        for addr in addrs {
            match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
                Ok(Ok(stream)) => return Ok(stream),
                Ok(Err(e)) => last = Some(e),
                Err(_) => {
                    let msg = format!("no answer from {addr} within {CONNECT_TIMEOUT:?}");
                    last = Some(io::Error::new(io::ErrorKind::TimedOut, msg));
                }
            }
        }
        Err(match last {
            Some(e) => ConnectError::Connect(e),
            None => ConnectError::Resolve(io::Error::new(
                io::ErrorKind::NotFound,
                "the host resolved to no address",
            )),
        })
    }

    /// Waits out a pending backoff, then tries to connect once. Returns whether connected.
    async fn try_connect(&mut self, sink: &mut BlockSink<String>) -> bool {
        if let Some(delay) = self.retry_delay {
            // Cancel-safe: if dropped here, the next call sleeps again.
            tokio::time::sleep(delay).await;
            self.retry_delay = None;
        }
        match self.connect().await {
            Ok(stream) => {
                info!(addr = %self.addr, "Connected.");
                self.stream = Some(stream);
                self.got_data = false;
                true
            }
            Err(ConnectError::Resolve(error)) => {
                let retry_in_ms = millis(self.schedule_reconnect(sink));
                warn!(
                    addr = %self.addr,
                    %error,
                    failures = self.failures,
                    retry_in_ms,
                    "Cannot resolve host; retrying."
                );
                false
            }
            Err(ConnectError::Connect(error)) => {
                let retry_in_ms = millis(self.schedule_reconnect(sink));
                warn!(
                    addr = %self.addr,
                    %error,
                    failures = self.failures,
                    retry_in_ms,
                    "Cannot connect; retrying."
                );
                false
            }
        }
    }
}

enum ConnectError {
    Resolve(io::Error),
    Connect(io::Error),
}

/// Why a connection ended.
enum Disconnect {
    Closed,
    Failed(io::Error),
}

impl Receiver for SocketTextReceiver {
    type Item = String;

    /// `socket host:port`.
    fn name(&self) -> String {
        format!("socket {}", self.addr)
    }

    /// `true`: any process reaches the socket the same way (an executor process on another
    /// host needs the address to be reachable from there, as Spark's socket receiver does).
    fn runs_anywhere(&self) -> bool {
        true
    }

    /// Resets the connection state; does not connect (the first `receive` does), so it
    /// never blocks and never fails.
    async fn on_start(&mut self) -> Result<(), ReceiverError> {
        self.stream = None;
        self.retry_delay = None;
        self.failures = 0;
        self.splitter.reset();
        Ok(())
    }

    /// Connects if needed, then stores the lines that are available: it waits for the first
    /// bytes, then takes what can be read without waiting, up to about 4096 lines or 1 MiB,
    /// and stores them with one `store_many` (waiting while the buffer is full).
    ///
    /// A failed connection attempt or a broken connection returns `Ok(Flow::Continue)`
    /// (after counting and logging it); the next call waits the backoff and reconnects.
    ///
    /// # Errors
    /// A fatal [`ReceiverError`] for a line longer than `max_line_bytes` under
    /// [`LongLinePolicy::Fail`] (the lines before it are stored first). Every socket failure
    /// is retried. Returns `Ok(Flow::Finished)` when the sink is
    /// closed (the context is stopping).
    ///
    /// # Cancel safety
    /// Cancelling while it waits for the backoff, a connection or data loses nothing. Cancelling
    /// while it waits for room in the buffer drops the lines read but not yet stored; this
    /// only happens when the context stops, and delivery is at-most-once anyway.
    async fn receive(&mut self, sink: &mut BlockSink<String>) -> Result<Flow, ReceiverError> {
        if self.stream.is_none() && !self.try_connect(sink).await {
            return Ok(Flow::Continue);
        }
        let Some(stream) = self.stream.as_mut() else {
            return Ok(Flow::Continue);
        };
        if self.stop_sink.is_none() {
            self.stop_sink = Some(sink.clone());
        }
        let mut lines = Vec::new();
        let mut counts = LineCounts::default();
        let mut too_long = None;
        let mut bytes = 0;
        let ended = loop {
            match stream.try_read(&mut self.read_buf) {
                Ok(0) => break Some(Disconnect::Closed),
                Ok(n) => {
                    if !self.got_data {
                        // The server is really there: start the next backoff from scratch.
                        self.got_data = true;
                        self.failures = 0;
                    }
                    bytes += n;
                    let fed = self.splitter.feed(
                        &self.read_buf[..n],
                        &mut lines,
                        &mut counts,
                        &self.addr,
                    );
                    if let Err(e) = fed {
                        too_long = Some(e);
                        break None;
                    }
                    if lines.len() >= BATCH_LINES || bytes >= BATCH_BYTES {
                        break None;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if !lines.is_empty() {
                        break None;
                    }
                    // Nothing collected yet, so waiting here is cancel-safe.
                    if let Err(e) = stream.readable().await {
                        break Some(Disconnect::Failed(e));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Some(Disconnect::Failed(e)),
            }
        };
        let mut finished = false;
        if let Some(ended) = ended {
            let cut = self.splitter.unfinished_bytes();
            if cut > 0 {
                // The rest of this line never came: stored as received, but not silently.
                counts.incomplete += 1;
                warn!(
                    addr = %self.addr,
                    bytes_received = cut,
                    policy = %self.policy,
                    "Connection ended in the middle of a line (no newline after its last \
                     bytes); the part received is handled as a last line (stored, unless the \
                     long-line policy drops it) and counted as incomplete."
                );
            }
            // What was read is kept: an unterminated last line is still a record.
            if let Err(e) = self.splitter.finish(&mut lines, &mut counts, &self.addr) {
                too_long = Some(e);
            }
            self.stream = None;
            finished = self.finish_on_close;
            let retry_in_ms = if finished {
                None
            } else {
                Some(millis(self.schedule_reconnect(sink)))
            };
            let (addr, failures) = (&self.addr, self.failures);
            match (ended, retry_in_ms) {
                (Disconnect::Closed, None) => {
                    info!(%addr, "Server closed the connection; receiver finishing (finish_on_close).");
                }
                (Disconnect::Failed(error), None) => {
                    sink.report_error();
                    warn!(%addr, %error, "Connection failed; receiver finishing (finish_on_close).");
                }
                (Disconnect::Closed, Some(retry_in_ms)) => {
                    warn!(
                        %addr,
                        failures,
                        retry_in_ms,
                        "Server closed the connection; reconnecting."
                    );
                }
                (Disconnect::Failed(error), Some(retry_in_ms)) => {
                    warn!(%addr, %error, failures, retry_in_ms, "Connection failed; reconnecting.");
                }
            }
        }
        counts.report(sink);
        if !lines.is_empty() && sink.store_many(lines).await.is_err() {
            debug!(addr = %self.addr, "Sink closed; receiver finishing.");
            return Ok(Flow::Finished);
        }
        if finished && too_long.is_none() {
            return Ok(Flow::Finished);
        }
        if let Some(error) = too_long {
            // The lines before the long one are stored; the rest of the input is refused.
            self.stream = None;
            self.splitter.reset();
            return Err(ReceiverError::fatal(format!(
                "{error} (long-line policy `fail`)"
            )));
        }
        Ok(Flow::Continue)
    }

    /// Closes the connection. A line left unfinished (its `\n` not read yet) is not stored:
    /// it is counted as `incomplete`, its bytes held as `dropped_bytes`, and logged at `warn`.
    async fn on_stop(&mut self) {
        if self.stream.take().is_some() {
            debug!(addr = %self.addr, "Connection closed.");
        }
        let mut counts = LineCounts::default();
        let cut = self.splitter.abandon(&mut counts);
        if cut > 0 {
            warn!(
                addr = %self.addr,
                bytes_received = cut,
                dropped_bytes = counts.dropped_bytes,
                "Receiver stopping in the middle of a line; dropped what was held of it \
                 (counted as an incomplete record)."
            );
            if let Some(sink) = self.stop_sink.as_mut() {
                counts.report(sink);
            }
        }
    }
}

impl fmt::Debug for SocketTextReceiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SocketTextReceiver")
            .field("addr", &self.addr)
            .field("max_line_bytes", &self.max_line_bytes)
            .field("policy", &self.policy)
            .field("initial_backoff", &self.initial_backoff)
            .field("max_backoff", &self.max_backoff)
            .field("connected", &self.stream.is_some())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
