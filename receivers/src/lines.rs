//! Splits a byte stream into text lines, shared by the socket and file receivers.
//!
//! Rules (the same for every text receiver):
//! * a line ends at `\n`; the `\n` and one `\r` before it are stripped, so CRLF text works;
//! * at the end of the input (EOF, a dropped connection) an unterminated last line is still a
//!   line, with a trailing `\r` stripped too;
//! * invalid UTF-8 is replaced with U+FFFD and the line counts as malformed;
//! * a line longer than `max_line_bytes` (terminator excluded) keeps its first
//!   `max_line_bytes` bytes (cut back to a character boundary), the rest of it is skipped,
//!   and it counts as malformed.
//!
//! Memory is bounded: at most `max_line_bytes + 1` bytes of an unfinished line are held.

use std::fmt;

use tracing::{debug, warn};

/// Bytes read from a source per read call.
pub(crate) const READ_CHUNK_BYTES: usize = 64 * 1024;
/// A receiver stops collecting lines for one `store_many` at this many lines ...
pub(crate) const BATCH_LINES: usize = 4096;
/// ... or once it has read this many bytes, so one `receive` call stays bounded.
pub(crate) const BATCH_BYTES: usize = 1 << 20;

/// Malformed lines logged at `warn` before switching to one `warn` per this many.
const WARN_FIRST: u64 = 10;
const WARN_EVERY: u64 = 1000;

/// Incremental line splitter: feed it chunks in order, then [`finish`](Self::finish) at EOF.
pub(crate) struct LineSplitter {
    max_line_bytes: usize,
    /// The current line's bytes so far (never more than `max_line_bytes + 1`).
    partial: Vec<u8>,
    /// The current line was too long and has been emitted: drop bytes up to its `\n`.
    skipping: bool,
    /// Malformed lines seen over this splitter's life, to rate-limit the warnings.
    malformed_total: u64,
}

impl LineSplitter {
    /// A splitter that cuts lines at `max_line_bytes` bytes (0 counts as 1).
    pub(crate) fn new(max_line_bytes: usize) -> LineSplitter {
        LineSplitter {
            // The upper clamp keeps `max_line_bytes + 2` from overflowing.
            max_line_bytes: max_line_bytes.clamp(1, usize::MAX / 2),
            partial: Vec::new(),
            skipping: false,
            malformed_total: 0,
        }
    }

    /// Pushes every line completed by `input` onto `out`; keeps an unfinished line for the
    /// next call. Returns how many of the pushed lines were malformed (already logged, with
    /// `origin` naming the source: an address or a path).
    pub(crate) fn feed(
        &mut self,
        mut input: &[u8],
        out: &mut Vec<String>,
        origin: &dyn fmt::Display,
    ) -> u64 {
        let mut malformed = 0;
        while !input.is_empty() {
            if self.skipping {
                match find_newline(input) {
                    Some(i) => {
                        self.skipping = false;
                        input = &input[i + 1..];
                    }
                    None => break,
                }
                continue;
            }
            // Look no further than a full line plus its "\r\n": past that it is too long.
            let room = self.max_line_bytes + 2 - self.partial.len();
            let window = &input[..input.len().min(room)];
            match find_newline(window) {
                Some(i) => {
                    malformed += u64::from(self.emit(&window[..i], out, origin));
                    input = &input[i + 1..];
                }
                None if window.len() == room => {
                    // No newline within `max_line_bytes + 2` bytes: even without a `\r` the
                    // content is longer than allowed. Emit the head, skip the rest.
                    malformed += u64::from(self.emit(window, out, origin));
                    self.skipping = true;
                    input = &input[window.len()..];
                }
                None => {
                    self.partial.extend_from_slice(window);
                    break;
                }
            }
        }
        malformed
    }

    /// Ends the input: pushes an unterminated last line, if any, onto `out` and resets the
    /// splitter for a new input. Returns 1 if that line was malformed, else 0.
    pub(crate) fn finish(&mut self, out: &mut Vec<String>, origin: &dyn fmt::Display) -> u64 {
        let skipping = std::mem::replace(&mut self.skipping, false);
        if skipping || self.partial.is_empty() {
            self.partial.clear();
            return 0;
        }
        u64::from(self.emit(&[], out, origin))
    }

    /// Drops an unfinished line (the input was abandoned).
    pub(crate) fn reset(&mut self) {
        self.partial.clear();
        self.skipping = false;
    }

    /// Emits `self.partial + tail` as one line (terminator already removed); returns whether
    /// it was malformed.
    fn emit(&mut self, tail: &[u8], out: &mut Vec<String>, origin: &dyn fmt::Display) -> bool {
        let mut bytes = if self.partial.is_empty() {
            // The common case: the whole line is in one chunk; one allocation, the String's.
            tail.strip_suffix(b"\r").unwrap_or(tail).to_vec()
        } else {
            let mut bytes = std::mem::take(&mut self.partial);
            bytes.extend_from_slice(tail);
            if bytes.last() == Some(&b'\r') {
                bytes.pop();
            }
            bytes
        };
        let too_long = bytes.len() > self.max_line_bytes;
        if too_long {
            bytes.truncate(self.max_line_bytes);
        }
        let (line, invalid) = decode(bytes, too_long);
        if too_long || invalid {
            self.malformed_total += 1;
            self.log_malformed(too_long, invalid, origin);
        }
        out.push(line);
        too_long || invalid
    }

    fn log_malformed(&self, too_long: bool, invalid_utf8: bool, origin: &dyn fmt::Display) {
        let total = self.malformed_total;
        let max_line_bytes = self.max_line_bytes;
        let what = if too_long {
            "Line longer than max_line_bytes; kept its head, skipped the rest."
        } else {
            "Line with invalid UTF-8; replaced the bad bytes with U+FFFD."
        };
        // A flood of bad lines must not flood the log.
        if total <= WARN_FIRST || total % WARN_EVERY == 0 {
            warn!(
                origin = %origin,
                too_long,
                invalid_utf8,
                max_line_bytes,
                malformed_total = total,
                "{what}"
            );
        } else {
            debug!(
                origin = %origin,
                too_long,
                invalid_utf8,
                max_line_bytes,
                malformed_total = total,
                "{what}"
            );
        }
    }
}

impl fmt::Debug for LineSplitter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LineSplitter")
            .field("max_line_bytes", &self.max_line_bytes)
            .field("partial_bytes", &self.partial.len())
            .field("skipping", &self.skipping)
            .finish_non_exhaustive()
    }
}

fn find_newline(bytes: &[u8]) -> Option<usize> {
    bytes.iter().position(|&b| b == b'\n')
}

/// Decodes `bytes` as UTF-8, replacing invalid sequences; returns the text and whether any
/// were replaced. A `truncated` line that is only cut inside its last character loses that
/// character instead of getting a U+FFFD.
fn decode(bytes: Vec<u8>, truncated: bool) -> (String, bool) {
    match String::from_utf8(bytes) {
        Ok(line) => (line, false),
        Err(e) if truncated && e.utf8_error().error_len().is_none() => {
            let valid = e.utf8_error().valid_up_to();
            let mut bytes = e.into_bytes();
            bytes.truncate(valid);
            match String::from_utf8(bytes) {
                Ok(line) => (line, false),
                Err(e) => (String::from_utf8_lossy(e.as_bytes()).into_owned(), true),
            }
        }
        Err(e) => (String::from_utf8_lossy(e.as_bytes()).into_owned(), true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Splits `input` fed in chunks of `chunk` bytes; returns the lines and malformed count.
    fn split(input: &[u8], max: usize, chunk: usize) -> (Vec<String>, u64) {
        let mut s = LineSplitter::new(max);
        let mut out = Vec::new();
        let mut bad = 0;
        for c in input.chunks(chunk) {
            bad += s.feed(c, &mut out, &"test");
        }
        bad += s.finish(&mut out, &"test");
        (out, bad)
    }

    /// Every chunking of `input` gives the same result.
    fn check(input: &[u8], max: usize, lines: &[&str], malformed: u64) {
        for chunk in 1..=input.len().max(1) {
            let (out, bad) = split(input, max, chunk);
            assert_eq!(out, lines, "chunk size {chunk}");
            assert_eq!(bad, malformed, "chunk size {chunk}");
        }
    }

    #[test]
    fn splits_lf_and_crlf_and_keeps_empty_and_unterminated_lines() {
        check(
            b"a\r\nbb\n\ncc\r\n\r\nlast",
            100,
            &["a", "bb", "", "cc", "", "last"],
            0,
        );
        check(b"x\n", 100, &["x"], 0);
        check(b"x\r", 100, &["x"], 0);
        check(b"", 100, &[], 0);
        // Only one `\r` before the `\n` is a terminator.
        check(b"a\r\r\n", 100, &["a\r"], 0);
    }

    #[test]
    fn replaces_invalid_utf8_and_counts_each_bad_line_once() {
        check(
            b"ok\n\xff\xfebad\nfine\n\xc3",
            100,
            &["ok", "\u{fffd}\u{fffd}bad", "fine", "\u{fffd}"],
            2,
        );
    }

    #[test]
    fn truncates_long_lines_and_skips_their_rest() {
        check(b"1234\n123456789\nab\n", 4, &["1234", "1234", "ab"], 1);
        // Exactly at the limit, with CRLF: not too long.
        check(b"1234\r\n12345\r\nz", 4, &["1234", "1234", "z"], 1);
        // A long unterminated last line is emitted once.
        check(b"a\n123456789", 4, &["a", "1234"], 1);
        // Cut inside "é" (2 bytes): the half character is dropped, not replaced.
        check("abé\n".as_bytes(), 3, &["ab"], 1);
    }

    #[test]
    fn finish_resets_for_the_next_input() {
        let mut s = LineSplitter::new(4);
        let mut out = Vec::new();
        assert_eq!(s.feed(b"123456", &mut out, &"t"), 1);
        assert_eq!(s.finish(&mut out, &"t"), 0);
        s.feed(b"ab", &mut out, &"t");
        s.reset();
        s.feed(b"cd\n", &mut out, &"t");
        assert_eq!(out, vec!["1234", "cd"]);
    }
}
