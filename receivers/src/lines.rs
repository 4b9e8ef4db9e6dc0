//! Splits a byte stream into text lines, shared by the socket and file receivers.
//!
//! Rules (the same for every text receiver):
//! * a line ends at `\n`; the `\n` and one `\r` before it are stripped, so CRLF text works;
//! * at the end of the input (EOF, a dropped connection) an unterminated last line is still a
//!   line, with a trailing `\r` stripped too;
//! * invalid UTF-8 is replaced with U+FFFD and the line counts as malformed;
//! * a line longer than `max_line_bytes` (terminator excluded) is handled by the
//!   [`LongLinePolicy`]: truncated (its first `max_line_bytes` bytes, cut back to a character
//!   boundary, are kept and the rest skipped), skipped whole, split into pieces of at most
//!   `max_line_bytes` bytes (each cut at a character boundary), or refused with
//!   [`LineTooLong`]. Every byte that is not delivered is counted ([`LineCounts`]).
//!
//! Memory is bounded: at most `max_line_bytes + 2` bytes of an unfinished line are held.

use std::fmt;
use std::str::FromStr;

use tracing::{debug, warn};

/// Bytes read from a source per read call.
pub(crate) const READ_CHUNK_BYTES: usize = 64 * 1024;
/// A receiver stops collecting lines for one `store_many` at this many lines ...
pub(crate) const BATCH_LINES: usize = 4096;
/// ... or once it has read this many bytes, so one `receive` call stays bounded.
pub(crate) const BATCH_BYTES: usize = 1 << 20;

/// Malformed or long lines logged at `warn` before switching to one `warn` per this many.
const WARN_FIRST: u64 = 10;
const WARN_EVERY: u64 = 1000;

/// What a text receiver does with a line longer than its `max_line_bytes` (the terminator
/// excluded). Whatever the policy, the long line is counted and logged (at `warn` for the
/// first ones, then rate-limited), so nothing is lost silently.
///
/// Parsed from (and displayed as) `truncate`, `skip`, `split` or `fail`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum LongLinePolicy {
    /// Keep the line's first `max_line_bytes` bytes (cut back to a character boundary) and
    /// drop the rest; counted in `ReceiverMetrics::truncated` and `dropped_bytes`.
    #[default]
    Truncate,
    /// Drop the whole line; counted in `ReceiverMetrics::dropped` and `dropped_bytes`.
    Skip,
    /// Deliver the line as several records of at most `max_line_bytes` bytes each, in order,
    /// each cut at a character boundary (a character is never split unless `max_line_bytes`
    /// is smaller than it); nothing is lost. Counted in `ReceiverMetrics::split`.
    Split,
    /// Stop the receiver with a fatal error naming the line's byte offset and the limit (the
    /// streaming context then stops with `Error::Receiver`). Lines before it are delivered.
    Fail,
}

impl LongLinePolicy {
    /// Every policy, in the order of the enum.
    pub const ALL: [LongLinePolicy; 4] = [
        LongLinePolicy::Truncate,
        LongLinePolicy::Skip,
        LongLinePolicy::Split,
        LongLinePolicy::Fail,
    ];

    /// The policy's name: `truncate`, `skip`, `split` or `fail`.
    pub fn as_str(self) -> &'static str {
        match self {
            LongLinePolicy::Truncate => "truncate",
            LongLinePolicy::Skip => "skip",
            LongLinePolicy::Split => "split",
            LongLinePolicy::Fail => "fail",
        }
    }
}

impl fmt::Display for LongLinePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that names no [`LongLinePolicy`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a long-line policy: use truncate, skip, split or fail")]
pub struct UnknownPolicy(pub String);

impl FromStr for LongLinePolicy {
    type Err = UnknownPolicy;

    /// Parses `truncate`, `skip`, `split` or `fail` (ASCII case ignored).
    fn from_str(s: &str) -> Result<LongLinePolicy, UnknownPolicy> {
        LongLinePolicy::ALL
            .into_iter()
            .find(|p| p.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownPolicy(s.to_string()))
    }
}

/// A line longer than `max_line_bytes` met under [`LongLinePolicy::Fail`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "the line starting at byte offset {offset} is longer than max_line_bytes ({limit} bytes); \
     raise max_line_bytes or choose another long-line policy (truncate, skip, split)"
)]
pub struct LineTooLong {
    /// Where the line starts, in bytes from the start of the input (of the connection for a
    /// socket, of the file for a file).
    pub offset: u64,
    /// The limit, `max_line_bytes`.
    pub limit: usize,
}

/// What a line splitter (the socket and file receivers' framing) repaired, cut or dropped,
/// for `ReceiverMetrics`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LineCounts {
    /// Records delivered with invalid UTF-8 replaced by U+FFFD.
    pub malformed: u64,
    /// Long lines delivered cut short ([`LongLinePolicy::Truncate`]).
    pub truncated: u64,
    /// Long lines dropped whole ([`LongLinePolicy::Skip`]).
    pub dropped: u64,
    /// Bytes not delivered: the cut-off rests of truncated lines and whole dropped lines
    /// (terminators excluded).
    pub dropped_bytes: u64,
    /// Long lines delivered as several records ([`LongLinePolicy::Split`]).
    pub split: u64,
}

impl LineCounts {
    /// Whether nothing was counted.
    pub fn is_empty(&self) -> bool {
        *self == LineCounts::default()
    }

    /// Adds these counts to the receiver's metrics through `sink`.
    pub(crate) fn report<T: rivulet_framework::data::Data>(
        &self,
        sink: &mut rivulet_framework::receiver::BlockSink<T>,
    ) {
        if self.malformed > 0 {
            sink.report_malformed(self.malformed);
        }
        if self.truncated + self.dropped + self.dropped_bytes + self.split > 0 {
            sink.report_long_lines(self.truncated, self.dropped, self.dropped_bytes, self.split);
        }
    }
}

/// Incremental line splitter: feed it chunks in order, then [`finish`](Self::finish) at EOF.
pub(crate) struct LineSplitter {
    max_line_bytes: usize,
    policy: LongLinePolicy,
    /// The current line's bytes so far (never more than `max_line_bytes + 2`).
    partial: Vec<u8>,
    /// Dropping the rest of a long line up to its `\n`; `Some(true)` when the last byte
    /// dropped was a `\r` that is not counted yet (it is the terminator's if a `\n` follows).
    skipping: Option<bool>,
    /// The current line was already split: its pieces so far are delivered.
    splitting: bool,
    /// Bytes fed since the input started.
    offset: u64,
    /// Where the current line starts.
    line_start: u64,
    /// Malformed and long lines seen over this splitter's life, to rate-limit the warnings.
    logged: u64,
}

impl LineSplitter {
    /// A splitter that handles lines longer than `max_line_bytes` bytes (0 counts as 1) by
    /// `policy`.
    pub(crate) fn new(max_line_bytes: usize, policy: LongLinePolicy) -> LineSplitter {
        LineSplitter {
            // The upper clamp keeps `max_line_bytes + 2` from overflowing.
            max_line_bytes: max_line_bytes.clamp(1, usize::MAX / 2),
            policy,
            partial: Vec::new(),
            skipping: None,
            splitting: false,
            offset: 0,
            line_start: 0,
            logged: 0,
        }
    }

    /// Pushes every line completed by `input` onto `out`; keeps an unfinished line for the
    /// next call. Adds what was repaired, cut or dropped to `counts` (already logged, with
    /// `origin` naming the source: an address or a path).
    ///
    /// # Errors
    /// [`LineTooLong`] under [`LongLinePolicy::Fail`]; the lines before the long one are in
    /// `out`, and the splitter must be [`reset`](Self::reset) before it is used again.
    pub(crate) fn feed(
        &mut self,
        mut input: &[u8],
        out: &mut Vec<String>,
        counts: &mut LineCounts,
        origin: &dyn fmt::Display,
    ) -> Result<(), LineTooLong> {
        while !input.is_empty() {
            if let Some(pending_cr) = self.skipping {
                let (seg, ended) = match find_newline(input) {
                    Some(i) => (&input[..i], true),
                    None => (input, false),
                };
                let ends_cr = seg.last().map_or(pending_cr, |&b| b == b'\r');
                counts.dropped_bytes += u64::from(pending_cr) + seg.len() as u64;
                counts.dropped_bytes -= u64::from(ends_cr);
                let used = seg.len() + usize::from(ended);
                self.advance(used);
                input = &input[used..];
                if ended {
                    self.skipping = None;
                    self.line_start = self.offset;
                } else {
                    self.skipping = Some(ends_cr);
                }
                continue;
            }
            // Look no further than a full line plus its "\r\n": past that it is too long.
            let room = self.max_line_bytes + 2 - self.partial.len();
            let window = &input[..input.len().min(room)];
            match find_newline(window) {
                Some(i) => {
                    let mut line = std::mem::take(&mut self.partial);
                    line.extend_from_slice(&window[..i]);
                    self.advance(i + 1);
                    input = &input[i + 1..];
                    let start = self.line_start;
                    self.line_start = self.offset;
                    self.complete(line, start, out, counts, origin)?;
                }
                None if window.len() == room => {
                    // No newline within `max_line_bytes + 2` bytes: even without a `\r` the
                    // line is longer than allowed.
                    let mut head = std::mem::take(&mut self.partial);
                    head.extend_from_slice(window);
                    self.advance(window.len());
                    input = &input[window.len()..];
                    self.long_head(head, out, counts, origin)?;
                }
                None => {
                    self.partial.extend_from_slice(window);
                    self.advance(window.len());
                    break;
                }
            }
        }
        Ok(())
    }

    /// Ends the input: pushes an unterminated last line, if any, onto `out` and resets the
    /// splitter for a new input (offsets start again at 0).
    ///
    /// # Errors
    /// [`LineTooLong`] under [`LongLinePolicy::Fail`] if that last line is too long.
    pub(crate) fn finish(
        &mut self,
        out: &mut Vec<String>,
        counts: &mut LineCounts,
        origin: &dyn fmt::Display,
    ) -> Result<(), LineTooLong> {
        let skipping = self.skipping.take().is_some();
        let line = std::mem::take(&mut self.partial);
        let start = self.line_start;
        let result = if skipping || line.is_empty() {
            // A `\r` pending in a skipped rest ends the unterminated line: not counted.
            Ok(())
        } else {
            self.complete(line, start, out, counts, origin)
        };
        self.reset();
        result
    }

    /// Drops an unfinished line (the input was abandoned); offsets start again at 0.
    pub(crate) fn reset(&mut self) {
        self.partial.clear();
        self.skipping = None;
        self.splitting = false;
        self.offset = 0;
        self.line_start = 0;
    }

    fn advance(&mut self, bytes: usize) {
        self.offset += bytes as u64;
    }

    /// Handles a whole line (`\n` removed, a `\r` before it still there) starting at `start`.
    fn complete(
        &mut self,
        mut line: Vec<u8>,
        start: u64,
        out: &mut Vec<String>,
        counts: &mut LineCounts,
        origin: &dyn fmt::Display,
    ) -> Result<(), LineTooLong> {
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        let was_split = std::mem::replace(&mut self.splitting, false);
        let max = self.max_line_bytes;
        if line.len() <= max {
            self.emit(line, out, counts, origin);
            return Ok(());
        }
        match self.policy {
            LongLinePolicy::Truncate => {
                let keep = char_cut(&line[..max]);
                counts.truncated += 1;
                counts.dropped_bytes += (line.len() - keep) as u64;
                self.log_long(start, origin);
                line.truncate(keep);
                self.emit(line, out, counts, origin);
            }
            LongLinePolicy::Skip => {
                counts.dropped += 1;
                counts.dropped_bytes += line.len() as u64;
                self.log_long(start, origin);
            }
            LongLinePolicy::Split => {
                if !was_split {
                    counts.split += 1;
                    self.log_long(start, origin);
                }
                let mut rest = &line[..];
                while rest.len() > max {
                    let keep = char_cut(&rest[..max]);
                    self.emit(rest[..keep].to_vec(), out, counts, origin);
                    rest = &rest[keep..];
                }
                self.emit(rest.to_vec(), out, counts, origin);
            }
            LongLinePolicy::Fail => return Err(self.too_long(start, origin)),
        }
        Ok(())
    }

    /// Handles the first `max_line_bytes + 2` bytes of a line with no `\n` among them.
    fn long_head(
        &mut self,
        mut head: Vec<u8>,
        out: &mut Vec<String>,
        counts: &mut LineCounts,
        origin: &dyn fmt::Display,
    ) -> Result<(), LineTooLong> {
        let max = self.max_line_bytes;
        let start = self.line_start;
        match self.policy {
            LongLinePolicy::Truncate | LongLinePolicy::Skip => {
                let keep = if self.policy == LongLinePolicy::Truncate {
                    counts.truncated += 1;
                    char_cut(&head[..max])
                } else {
                    counts.dropped += 1;
                    0
                };
                self.log_long(start, origin);
                // The rest is dropped like the bytes that follow, up to the `\n`.
                let ends_cr = head.last() == Some(&b'\r');
                counts.dropped_bytes += (head.len() - keep) as u64 - u64::from(ends_cr);
                self.skipping = Some(ends_cr);
                if keep > 0 {
                    head.truncate(keep);
                    self.emit(head, out, counts, origin);
                }
            }
            LongLinePolicy::Split => {
                if !std::mem::replace(&mut self.splitting, true) {
                    counts.split += 1;
                    self.log_long(start, origin);
                }
                let keep = char_cut(&head[..max]);
                self.partial = head.split_off(keep);
                self.emit(head, out, counts, origin);
            }
            LongLinePolicy::Fail => return Err(self.too_long(start, origin)),
        }
        Ok(())
    }

    /// Pushes `bytes` as one record, decoded with invalid UTF-8 replaced (and counted).
    fn emit(
        &mut self,
        bytes: Vec<u8>,
        out: &mut Vec<String>,
        counts: &mut LineCounts,
        origin: &dyn fmt::Display,
    ) {
        let line = match String::from_utf8(bytes) {
            Ok(line) => line,
            Err(e) => {
                counts.malformed += 1;
                self.logged += 1;
                if self.should_warn() {
                    warn!(origin = %origin, malformed_total = self.logged, "Line with invalid UTF-8; replaced the bad bytes with U+FFFD.");
                } else {
                    debug!(origin = %origin, malformed_total = self.logged, "Line with invalid UTF-8; replaced the bad bytes with U+FFFD.");
                }
                String::from_utf8_lossy(e.as_bytes()).into_owned()
            }
        };
        out.push(line);
    }

    fn too_long(&self, offset: u64, origin: &dyn fmt::Display) -> LineTooLong {
        let error = LineTooLong {
            offset,
            limit: self.max_line_bytes,
        };
        warn!(origin = %origin, %error, "Line too long; failing (long-line policy `fail`).");
        error
    }

    fn should_warn(&self) -> bool {
        self.logged <= WARN_FIRST || self.logged.is_multiple_of(WARN_EVERY)
    }

    fn log_long(&mut self, offset: u64, origin: &dyn fmt::Display) {
        self.logged += 1;
        let (max_line_bytes, policy, total) = (self.max_line_bytes, self.policy, self.logged);
        let what = match policy {
            LongLinePolicy::Truncate => {
                "Line longer than max_line_bytes; kept its head, dropped the rest."
            }
            LongLinePolicy::Skip => "Line longer than max_line_bytes; dropped it.",
            LongLinePolicy::Split => {
                "Line longer than max_line_bytes; split it into several records."
            }
            LongLinePolicy::Fail => "Line longer than max_line_bytes.",
        };
        // A flood of bad lines must not flood the log.
        if self.should_warn() {
            warn!(origin = %origin, offset, max_line_bytes, %policy, malformed_total = total, "{what}");
        } else {
            debug!(origin = %origin, offset, max_line_bytes, %policy, malformed_total = total, "{what}");
        }
    }
}

impl fmt::Debug for LineSplitter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LineSplitter")
            .field("max_line_bytes", &self.max_line_bytes)
            .field("policy", &self.policy)
            .field("partial_bytes", &self.partial.len())
            .field("skipping", &self.skipping.is_some())
            .field("offset", &self.offset)
            .finish_non_exhaustive()
    }
}

fn find_newline(bytes: &[u8]) -> Option<usize> {
    bytes.iter().position(|&b| b == b'\n')
}

/// How many of `head`'s bytes to keep so that a character is not cut in two: all of them,
/// unless `head` ends inside a well-formed but unfinished UTF-8 character that does not
/// start `head`; then up to that character.
fn char_cut(head: &[u8]) -> usize {
    let n = head.len();
    // A character is at most 4 bytes: its first byte is at most 3 bytes back from the end.
    for back in 1..=n.min(3) {
        let start = n - back;
        if head[start] & 0xC0 != 0x80 {
            return match std::str::from_utf8(&head[start..]) {
                Err(e) if e.error_len().is_none() && start > 0 => start,
                _ => n,
            };
        }
    }
    n
}

/// Splits all of `input` at once by the rules of this module, with the same outputs and
/// counts as feeding it to a [`LineSplitter`] in any chunks and finishing: the reference that
/// tests and fuzzing compare the incremental splitter against. Returns the records, the
/// counts, and the error that stopped it under [`LongLinePolicy::Fail`].
pub(crate) fn split_all(
    input: &[u8],
    max_line_bytes: usize,
    policy: LongLinePolicy,
) -> (Vec<String>, LineCounts, Option<LineTooLong>) {
    let max = max_line_bytes.clamp(1, usize::MAX / 2);
    let (mut out, mut counts) = (Vec::new(), LineCounts::default());
    let mut push = |bytes: &[u8], counts: &mut LineCounts| {
        let line = String::from_utf8_lossy(bytes);
        if std::str::from_utf8(bytes).is_err() {
            counts.malformed += 1;
        }
        out.push(line.into_owned());
    };
    let mut offset = 0u64;
    let mut raw_lines: Vec<&[u8]> = input.split(|&b| b == b'\n').collect();
    if input.is_empty() || input.ends_with(b"\n") {
        raw_lines.pop(); // nothing follows the last `\n`: not a line
    }
    for raw in raw_lines {
        let start = offset;
        offset += raw.len() as u64 + 1;
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        if line.len() <= max {
            push(line, &mut counts);
            continue;
        }
        match policy {
            LongLinePolicy::Truncate => {
                let keep = char_cut(&line[..max]);
                counts.truncated += 1;
                counts.dropped_bytes += (line.len() - keep) as u64;
                push(&line[..keep], &mut counts);
            }
            LongLinePolicy::Skip => {
                counts.dropped += 1;
                counts.dropped_bytes += line.len() as u64;
            }
            LongLinePolicy::Split => {
                counts.split += 1;
                let mut rest = line;
                while rest.len() > max {
                    let keep = char_cut(&rest[..max]);
                    push(&rest[..keep], &mut counts);
                    rest = &rest[keep..];
                }
                push(rest, &mut counts);
            }
            LongLinePolicy::Fail => {
                let error = LineTooLong {
                    offset: start,
                    limit: max,
                };
                return (out, counts, Some(error));
            }
        }
    }
    (out, counts, None)
}

/// Feeds `input` to a [`LineSplitter`] in chunks of the sizes `chunks` yields (cycled; a 0 is
/// read as 1), then finishes it; returns what [`split_all`] returns.
#[cfg_attr(not(any(test, feature = "fuzzing")), allow(dead_code))]
pub(crate) fn split_chunked(
    input: &[u8],
    chunks: &[usize],
    max_line_bytes: usize,
    policy: LongLinePolicy,
) -> (Vec<String>, LineCounts, Option<LineTooLong>) {
    let mut splitter = LineSplitter::new(max_line_bytes, policy);
    let (mut out, mut counts) = (Vec::new(), LineCounts::default());
    let mut rest = input;
    let mut sizes = chunks.iter().copied().cycle();
    while !rest.is_empty() {
        let n = sizes.next().unwrap_or(rest.len()).clamp(1, rest.len());
        if let Err(e) = splitter.feed(&rest[..n], &mut out, &mut counts, &"input") {
            return (out, counts, Some(e));
        }
        rest = &rest[n..];
    }
    let error = splitter.finish(&mut out, &mut counts, &"input").err();
    (out, counts, error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    use LongLinePolicy::{Fail, Skip, Split, Truncate};

    /// Every chunking of `input` gives `lines` and `counts`, as does the reference.
    fn check(input: &[u8], max: usize, policy: LongLinePolicy, lines: &[&str], counts: LineCounts) {
        let expected = (
            lines.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            counts,
            None,
        );
        assert_eq!(split_all(input, max, policy), expected, "reference");
        for chunk in 1..=input.len().max(1) {
            assert_eq!(
                split_chunked(input, &[chunk], max, policy),
                expected,
                "chunk size {chunk}"
            );
        }
    }

    fn malformed(n: u64) -> LineCounts {
        LineCounts {
            malformed: n,
            ..LineCounts::default()
        }
    }

    #[test]
    fn splits_lf_and_crlf_and_keeps_empty_and_unterminated_lines() {
        let none = LineCounts::default();
        check(
            b"a\r\nbb\n\ncc\r\n\r\nlast",
            100,
            Truncate,
            &["a", "bb", "", "cc", "", "last"],
            none,
        );
        check(b"x\n", 100, Truncate, &["x"], none);
        check(b"x\r", 100, Truncate, &["x"], none);
        check(b"", 100, Truncate, &[], none);
        // Only one `\r` before the `\n` is a terminator.
        check(b"a\r\r\n", 100, Truncate, &["a\r"], none);
    }

    #[test]
    fn replaces_invalid_utf8_and_counts_each_bad_line_once() {
        check(
            b"ok\n\xff\xfebad\nfine\n\xc3",
            100,
            Truncate,
            &["ok", "\u{fffd}\u{fffd}bad", "fine", "\u{fffd}"],
            malformed(2),
        );
    }

    #[test]
    fn truncate_keeps_the_head_and_counts_the_dropped_rest() {
        let one = |dropped_bytes| LineCounts {
            truncated: 1,
            dropped_bytes,
            ..LineCounts::default()
        };
        check(
            b"1234\n123456789\nab\n",
            4,
            Truncate,
            &["1234", "1234", "ab"],
            one(5),
        );
        // Exactly at the limit, with CRLF: not too long; the terminator is never counted.
        check(
            b"1234\r\n12345\r\nz",
            4,
            Truncate,
            &["1234", "1234", "z"],
            one(1),
        );
        check(b"123456789\r\n", 4, Truncate, &["1234"], one(5));
        // A long unterminated last line is emitted once.
        check(b"a\n123456789", 4, Truncate, &["a", "1234"], one(5));
        // Cut inside "é" (2 bytes): the half character is dropped (and counted), not replaced.
        check("abé\n".as_bytes(), 3, Truncate, &["ab"], one(2));
    }

    #[test]
    fn skip_drops_the_whole_line_and_counts_its_bytes() {
        let counts = LineCounts {
            dropped: 2,
            dropped_bytes: 9 + 6,
            ..LineCounts::default()
        };
        check(
            b"1234\n123456789\r\nab\n123456",
            4,
            Skip,
            &["1234", "ab"],
            counts,
        );
    }

    #[test]
    fn split_delivers_every_byte_in_pieces_at_char_boundaries() {
        let one = LineCounts {
            split: 1,
            ..LineCounts::default()
        };
        check(
            b"123456789\nab\n",
            4,
            Split,
            &["1234", "5678", "9", "ab"],
            one,
        );
        check(b"12345\r\n", 4, Split, &["1234", "5"], one);
        check("abcé\n".as_bytes(), 4, Split, &["abc", "é"], one);
        check("ééé".as_bytes(), 3, Split, &["é", "é", "é"], one);
    }

    #[test]
    fn fail_stops_at_the_long_line_naming_its_offset_and_the_limit() {
        let input = b"ok\r\nfine\n123456789\nnever\n";
        let expected_error = LineTooLong {
            offset: 9,
            limit: 4,
        };
        for chunk in 1..=input.len() {
            let (lines, _, error) = split_chunked(input, &[chunk], 4, Fail);
            assert_eq!(lines, ["ok", "fine"], "chunk size {chunk}");
            assert_eq!(error.as_ref(), Some(&expected_error), "chunk size {chunk}");
        }
        assert_eq!(split_all(input, 4, Fail).2, Some(expected_error.clone()));
        let message = expected_error.to_string();
        assert!(
            message.contains("byte offset 9") && message.contains("4 bytes"),
            "{message}"
        );
    }

    #[test]
    fn a_5_mb_line_under_each_policy() {
        const LEN: usize = 5 * 1024 * 1024;
        const MAX: usize = 1 << 20;
        let mut input = b"before\n".to_vec();
        input.extend(std::iter::repeat_n(b'w', LEN));
        input.extend(b"\nafter\n");
        let chunks = [READ_CHUNK_BYTES, 7, 1 << 20];
        for policy in LongLinePolicy::ALL {
            let (lines, counts, error) = split_chunked(&input, &chunks, MAX, policy);
            let lens: Vec<usize> = lines.iter().map(String::len).collect();
            match policy {
                Truncate => {
                    assert_eq!(lens, [6, MAX, 5]);
                    assert_eq!(
                        (counts.truncated, counts.dropped_bytes),
                        (1, (LEN - MAX) as u64)
                    );
                }
                Skip => {
                    assert_eq!(lens, [6, 5]);
                    assert_eq!((counts.dropped, counts.dropped_bytes), (1, LEN as u64));
                }
                Split => {
                    assert_eq!(lens, [6, MAX, MAX, MAX, MAX, MAX, 5]);
                    assert_eq!((counts.split, counts.dropped_bytes), (1, 0));
                }
                Fail => {
                    assert_eq!(lens, [6]);
                    assert_eq!(
                        error,
                        Some(LineTooLong {
                            offset: 7,
                            limit: MAX
                        })
                    );
                }
            }
            if policy != Fail {
                assert_eq!(error, None);
            }
        }
    }

    #[test]
    fn policies_parse_and_display_their_names() {
        for policy in LongLinePolicy::ALL {
            assert_eq!(policy.to_string().parse::<LongLinePolicy>(), Ok(policy));
        }
        assert_eq!("SKIP".parse::<LongLinePolicy>(), Ok(Skip));
        let error = "drop".parse::<LongLinePolicy>().unwrap_err().to_string();
        assert!(error.contains("`drop`") && error.contains("truncate, skip, split or fail"));
    }

    #[test]
    fn finish_resets_for_the_next_input() {
        let mut s = LineSplitter::new(4, Truncate);
        let (mut out, mut counts) = (Vec::new(), LineCounts::default());
        s.feed(b"123456", &mut out, &mut counts, &"t").unwrap();
        assert_eq!(counts.truncated, 1);
        s.finish(&mut out, &mut counts, &"t").unwrap();
        assert_eq!(counts.dropped_bytes, 2);
        s.feed(b"ab", &mut out, &mut counts, &"t").unwrap();
        s.reset();
        s.feed(b"cd\n", &mut out, &mut counts, &"t").unwrap();
        assert_eq!(out, vec!["1234", "cd"]);
    }

    fn policy() -> impl Strategy<Value = LongLinePolicy> {
        prop::sample::select(LongLinePolicy::ALL.to_vec())
    }

    /// Bytes rich in terminators, multi-byte characters and invalid sequences.
    fn text() -> impl Strategy<Value = Vec<u8>> {
        let piece = prop_oneof![
            Just(b"\n".to_vec()),
            Just(b"\r".to_vec()),
            Just(b"\r\n".to_vec()),
            Just("é".as_bytes().to_vec()),
            Just("€".as_bytes().to_vec()),
            Just("𝄞".as_bytes().to_vec()),
            Just(vec![0xff]),
            Just(vec![0xe2, 0x82]),
            prop::collection::vec(b'a'..=b'c', 1..6),
        ];
        prop::collection::vec(piece, 0..40).prop_map(|p| p.concat())
    }

    proptest! {
        /// The incremental splitter, fed in any chunks, gives exactly the reference split:
        /// the same records, counts and error.
        #[test]
        fn any_chunking_equals_the_reference_split(
            input in text(),
            chunks in prop::collection::vec(1usize..12, 1..6),
            max in 1usize..12,
            policy in policy(),
        ) {
            prop_assert_eq!(
                split_chunked(&input, &chunks, max, policy),
                split_all(&input, max, policy)
            );
        }

        /// Under `split` nothing is lost: the records joined are the lines; and every
        /// policy accounts for each byte of a valid line.
        #[test]
        fn split_loses_nothing_and_truncate_counts_what_it_drops(
            input in text(),
            max in 1usize..12,
        ) {
            let (whole, _, _) = split_all(&input, usize::MAX, Truncate);
            let (pieces, counts, _) = split_all(&input, max, Split);
            prop_assert_eq!(counts.dropped_bytes, 0);
            let kept: usize = pieces.iter().map(|p| p.len()).sum();
            let all: usize = whole.iter().map(|p| p.len()).sum();
            // Replacement characters make lengths differ only for invalid input.
            if counts.malformed == 0 {
                prop_assert_eq!(pieces.concat(), whole.concat());
                let (cut, tcounts, _) = split_all(&input, max, Truncate);
                let kept_cut: usize = cut.iter().map(|p| p.len()).sum();
                prop_assert_eq!(kept_cut as u64 + tcounts.dropped_bytes, all as u64);
            }
            prop_assert!(kept >= all || counts.malformed > 0);
        }
    }
}
