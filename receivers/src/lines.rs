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
//!   `max_line_bytes` bytes (each cut after a whitespace byte when there is one, so words
//!   stay whole; see [`LongLinePolicy::Split`]), or refused with [`LineTooLong`]. Every byte
//!   that is not delivered is counted ([`LineCounts`]), when it is read: the counts are exact
//!   to the byte for the input read so far.
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
    /// Deliver the line as several records of at most `max_line_bytes` bytes each, in order;
    /// nothing is lost: the records, concatenated, are the line. Each piece is cut where a
    /// whitespace tokenizer loses nothing:
    ///
    /// 1. right after the last ASCII whitespace byte (space, tab, `\r`, form feed: Rust's
    ///    `u8::is_ascii_whitespace`) within the piece's `max_line_bytes` bytes: the
    ///    whitespace ends the piece, the next word starts the next one;
    /// 2. else, if the byte right after the limit is ASCII whitespace, at the limit (the
    ///    piece is one or more whole words);
    /// 3. else (a run of non-whitespace longer than `max_line_bytes`: a "word" longer than
    ///    the limit), at the limit cut back to a character boundary (a character is never
    ///    split unless `max_line_bytes` is smaller than it): the word is cut in two, and the
    ///    cut is counted in `ReceiverMetrics::words_cut`.
    ///
    /// A tokenizer that splits on other characters too (punctuation) sees the same words
    /// whenever no cut falls in a word (`words_cut` is 0). Counted in
    /// `ReceiverMetrics::split` (once per long line).
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
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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
    /// Pieces of split lines that end inside a word: no whitespace to cut at within
    /// `max_line_bytes` (see [`LongLinePolicy::Split`]).
    pub words_cut: u64,
    /// Lines the input ended in the middle of (a connection closed or reset, or the
    /// receiver stopped, before the line's `\n`). Counted by the socket receiver, not by
    /// the splitter's `finish` (a file's unterminated last line is complete).
    pub incomplete: u64,
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
        if self.words_cut > 0 {
            sink.report_words_cut(self.words_cut);
        }
        if self.incomplete > 0 {
            sink.report_incomplete(self.incomplete);
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

    /// Bytes of the current, unfinished line received so far (those already delivered as
    /// split pieces, or counted as dropped, included); 0 between lines.
    pub(crate) fn unfinished_bytes(&self) -> u64 {
        self.offset - self.line_start
    }

    /// Abandons an unfinished line that will never be finished nor delivered (the receiver
    /// stops): counts it as `incomplete`, and the bytes of it held and not delivered as
    /// `dropped_bytes` (a trailing `\r` excluded, as at the end of the input), then resets.
    /// Returns the line's bytes received so far (0, counting nothing, between lines).
    pub(crate) fn abandon(&mut self, counts: &mut LineCounts) -> u64 {
        let received = self.unfinished_bytes();
        if received > 0 {
            counts.incomplete += 1;
            if self.skipping.is_none() {
                let held = self.partial.strip_suffix(b"\r").unwrap_or(&self.partial);
                counts.dropped_bytes += held.len() as u64;
            }
        }
        self.reset();
        received
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
                    let keep = split_cut(rest, max, counts);
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
                // `head` holds `max + 2` bytes, none of them a `\n`, so the first `max + 1`
                // are the line's (a `\r` terminator could only be the last): the cut is the
                // one the whole line would get.
                let keep = split_cut(&head, max, counts);
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

/// Where [`LongLinePolicy::Split`] ends the next piece of `rest` (longer than `max`): after
/// the last ASCII whitespace byte within `rest[..max]`; else at `max` if `rest[max]` is
/// whitespace; else at `max` cut back to a character boundary, counted in
/// `counts.words_cut`. Always at least 1 byte.
fn split_cut(rest: &[u8], max: usize, counts: &mut LineCounts) -> usize {
    if let Some(i) = rest[..max].iter().rposition(u8::is_ascii_whitespace) {
        return i + 1;
    }
    if rest[max].is_ascii_whitespace() {
        return max;
    }
    counts.words_cut += 1;
    char_cut(&rest[..max])
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
                    let keep = split_cut(rest, max, &mut counts);
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

    fn split(words_cut: u64) -> LineCounts {
        LineCounts {
            split: 1,
            words_cut,
            ..LineCounts::default()
        }
    }

    #[test]
    fn split_cuts_a_word_longer_than_the_limit_at_char_boundaries_and_counts_the_cuts() {
        check(
            b"123456789\nab\n",
            4,
            Split,
            &["1234", "5678", "9", "ab"],
            split(2),
        );
        check(b"12345\r\n", 4, Split, &["1234", "5"], split(1));
        check("abcé\n".as_bytes(), 4, Split, &["abc", "é"], split(1));
        check("ééé".as_bytes(), 3, Split, &["é", "é", "é"], split(2));
    }

    #[test]
    fn split_cuts_after_the_last_whitespace_within_the_limit() {
        // Each piece ends with its whitespace: the pieces joined are the line.
        check(
            b"ab cd ef gh\nz\n",
            7,
            Split,
            &["ab cd ", "ef gh", "z"],
            split(0),
        );
        check(b"ab\tcdefg\n", 4, Split, &["ab\t", "cdef", "g"], split(1));
        // The byte after the limit is a space: the piece is cut at the limit, words whole.
        check(b"abcd efgh\r\n", 4, Split, &["abcd", " ", "efgh"], split(0));
        // Several spaces in a row; a leading space.
        check(b" abcdef", 4, Split, &[" ", "abcd", "ef"], split(1));
        check(b"a   bcd e", 4, Split, &["a   ", "bcd ", "e"], split(0));
    }

    /// The words (runs of non-whitespace) of `lines`, in order.
    fn words_of(lines: &[String]) -> Vec<String> {
        lines
            .iter()
            .flat_map(|l| l.split_ascii_whitespace().map(str::to_string))
            .collect()
    }

    #[test]
    fn split_keeps_every_word_whole_when_each_fits_the_limit() {
        // A 3 MB line of words of 1 to 40 bytes, split at 1 MiB, read in socket-sized chunks.
        let mut line = Vec::new();
        let mut n = 0u32;
        while line.len() < 3 << 20 {
            n = n.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            let len = 1 + (n >> 16) as usize % 40;
            line.extend(std::iter::repeat_n(b'a' + (n % 26) as u8, len));
            line.push(if n.is_multiple_of(7) { b'\t' } else { b' ' });
        }
        let mut input = line.clone();
        input.extend(b"\nlast words\n");
        let (whole, _, _) = split_all(&input, usize::MAX, Truncate);
        let (pieces, counts, error) =
            split_chunked(&input, &[READ_CHUNK_BYTES, 777], 1 << 20, Split);
        assert_eq!(error, None);
        assert_eq!(
            (counts.split, counts.words_cut, counts.dropped_bytes),
            (1, 0, 0)
        );
        assert!(
            pieces.len() > 4,
            "the line was split: {} records",
            pieces.len()
        );
        assert!(pieces.iter().all(|p| p.len() <= 1 << 20));
        assert_eq!(pieces.concat(), whole.concat());
        assert_eq!(words_of(&pieces), words_of(&whole));
    }

    #[test]
    fn abandon_counts_the_unfinished_line_as_incomplete_and_its_held_bytes_as_dropped() {
        let (mut out, mut counts) = (Vec::new(), LineCounts::default());
        let mut s = LineSplitter::new(100, Truncate);
        s.feed(b"done\npartial li", &mut out, &mut counts, &"t")
            .unwrap();
        assert_eq!(s.unfinished_bytes(), 10);
        assert_eq!(s.abandon(&mut counts), 10);
        assert_eq!((counts.incomplete, counts.dropped_bytes), (1, 10));
        assert_eq!(
            s.abandon(&mut counts),
            0,
            "nothing unfinished after a reset"
        );
        // While the rest of a long line is skipped, its bytes are already counted.
        let mut s = LineSplitter::new(4, Skip);
        let mut counts = LineCounts::default();
        s.feed(b"123456789", &mut out, &mut counts, &"t").unwrap();
        assert_eq!(counts.dropped_bytes, 9);
        assert_eq!(s.abandon(&mut counts), 9);
        assert_eq!(
            (counts.dropped, counts.incomplete, counts.dropped_bytes),
            (1, 1, 9)
        );
        // A split line: the pieces delivered are not dropped, the rest held is.
        let mut s = LineSplitter::new(4, Split);
        let mut counts = LineCounts::default();
        let mut out = Vec::new();
        s.feed(b"ab cd ef", &mut out, &mut counts, &"t").unwrap();
        assert_eq!(out, ["ab "]);
        assert_eq!(s.abandon(&mut counts), 8);
        assert_eq!((counts.incomplete, counts.dropped_bytes), (1, 5));
        assert_eq!(out, ["ab "]);
        assert_eq!(counts.split, 1);
        assert_eq!(counts.malformed, 0);
        assert_eq!(counts.truncated, 0);
        assert_eq!(counts.words_cut, 0);
        assert_eq!(counts.dropped, 0);
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
                    // One run of `w`: every cut is inside that "word".
                    assert_eq!(counts.words_cut, 4);
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
            Just(b" ".to_vec()),
            Just(b"\t".to_vec()),
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

        /// Under `split`, a whitespace tokenizer sees the words of the whole lines, in order,
        /// unless a cut fell inside a word (counted in `words_cut`).
        #[test]
        fn split_keeps_words_whole_unless_it_counts_a_cut(
            input in text(),
            max in 1usize..12,
        ) {
            let (whole, _, _) = split_all(&input, usize::MAX, Truncate);
            let (pieces, counts, _) = split_all(&input, max, Split);
            if counts.words_cut == 0 {
                prop_assert_eq!(words_of(&pieces), words_of(&whole));
            }
            let longest = whole
                .iter()
                .flat_map(|l| l.split_ascii_whitespace())
                .map(str::len)
                .max()
                .unwrap_or(0);
            if counts.malformed == 0 && longest <= max {
                prop_assert_eq!(counts.words_cut, 0);
            }
        }
    }
}
