//! # rivulet-receivers
//!
//! Input sources for rivulet: implementations of the framework's
//! [`Receiver`](rivulet_framework::receiver::Receiver) trait that the runtime drives (it
//! calls `on_start`, then `receive` in a loop, then `on_stop`) and that store records in a
//! bounded [`BlockSink`](rivulet_framework::receiver::BlockSink).
//!
//! * [`SocketTextReceiver`]: newline-delimited text from a TCP server, one `String` per line,
//!   reconnecting with backoff forever (Spark: `socketTextStream`).
//! * [`TextFileSource`]: each text file moved into a directory, read once, one `String` per
//!   line, as a polled input whose per-batch files are saved in checkpoints, so a restart
//!   reads each file exactly once (Spark: `textFileStream`, which
//!   `StreamingContext::text_file_stream` uses).
//! * [`MqttReceiver`]: the messages published to an MQTT topic filter, at QoS 1 in a
//!   persistent session, each acknowledged only once its block is stored (in the write-ahead
//!   log with `receiver_wal`): a reliable receiver, at least once; shared subscriptions split
//!   a topic over several receivers.
//!
//! Both text inputs split lines the same way: `\n` or `\r\n` ends a line, an unterminated
//! last line is kept, invalid UTF-8 is replaced with U+FFFD (counted in
//! [`ReceiverMetrics::malformed`](rivulet_framework::receiver::ReceiverMetrics::malformed)),
//! and lines longer than [`DEFAULT_MAX_LINE_BYTES`] (configurable) are truncated, or, for the
//! socket receiver and [`TextFileSource`], skipped, split (at whitespace, so words stay
//! whole) or refused as its [`LongLinePolicy`] says; every long line is counted
//! (`truncated`, `dropped`, `dropped_bytes`, `split`, `words_cut`) and logged, at `warn` for
//! the first ones and then rate-limited. A line the socket receiver's connection ended in
//! the middle of is counted as `incomplete` and logged. Nothing is lost silently; the counts
//! are exact to the byte once the input was read to its end. Recoverable failures
//! (refused connections, unreadable files) are logged with the address or path and counted
//! in [`ReceiverMetrics::errors`](rivulet_framework::receiver::ReceiverMetrics::errors).
//!
//! Receivers never name actix: they run on any tokio runtime with the `net`, `fs`, `time`
//! and `rt` drivers.
//!
//! # Examples
//! Configuring receivers (the `rivulet` crate's `StreamingContext` usually does this for you):
//! ```
//! use std::time::Duration;
//! use rivulet_framework::receiver::Receiver;
//! use rivulet_framework::dstream::PolledSource;
//! use rivulet_receivers::{SocketTextReceiver, TextFileSource};
//!
//! let socket = SocketTextReceiver::new("127.0.0.1", 9999)
//!     .max_line_bytes(64 * 1024)
//!     .reconnect_backoff(Duration::from_millis(50), Duration::from_secs(2));
//! assert_eq!(socket.name(), "socket 127.0.0.1:9999");
//!
//! let files = TextFileSource::new("incoming").max_line_bytes(64 * 1024);
//! assert_eq!(files.name(), "text files in incoming");
//! ```
//! [`SocketTextReceiver`] shows a receiver driven by hand against a local server.
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

mod file_source;
mod lines;
mod mqtt;
mod redis;
mod socket;
#[cfg(test)]
mod testing;

pub use file_source::{FileLosses, FileTotals, TextFileSource, TextFileSourceState};
pub use lines::{LineCounts, LineTooLong, LongLinePolicy, UnknownPolicy};
pub use mqtt::{MqttMessage, MqttReceiver};
pub use redis::{RedisEntry, RedisGroupReceiver, RedisStreamSource, StartPosition};
pub use socket::SocketTextReceiver;

/// The line splitter and its whole-input reference split, for the fuzz targets in `fuzz/`
/// (feature `fuzzing`; not a stable API).
#[cfg(feature = "fuzzing")]
pub mod fuzzing {
    use crate::LineCounts;

    pub use crate::split_text as split_all;

    /// Feeds `input` to the receivers' incremental splitter in chunks of the sizes `chunks`
    /// gives (cycled), then finishes it; returns what [`crate::split_text`] returns.
    pub fn split_chunked(
        input: &[u8],
        chunks: &[usize],
        max_line_bytes: usize,
        policy: crate::LongLinePolicy,
    ) -> (Vec<String>, LineCounts, Option<crate::LineTooLong>) {
        crate::lines::split_chunked(input, chunks, max_line_bytes, policy)
    }
}

/// Splits all of `input` at once by the text receivers' rules (see [`LongLinePolicy`]): the
/// records a receiver would deliver for it, followed by the end of the input, the counts
/// it would report, and, under [`LongLinePolicy::Fail`], the error that stops it (the
/// records before the long line are still returned). For checks and tests that need to know
/// what a receiver makes of a text.
pub fn split_text(
    input: &[u8],
    max_line_bytes: usize,
    policy: LongLinePolicy,
) -> (Vec<String>, LineCounts, Option<LineTooLong>) {
    lines::split_all(input, max_line_bytes, policy)
}

/// The default longest line, in bytes, that text receivers keep whole: 1 MiB.
pub const DEFAULT_MAX_LINE_BYTES: usize = 1 << 20;

/// `d` in whole milliseconds, for log fields.
fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
