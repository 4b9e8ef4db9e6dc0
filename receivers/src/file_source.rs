//! [`TextFileSource`]: the text files moved into a directory, as a polled input (Spark:
//! `FileInputDStream`, behind `StreamingContext::text_file_stream`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use rivulet_framework::dstream::PolledSource;
use rivulet_framework::rdd::PartitionIter;
use rivulet_framework::time::Time;
use rivulet_framework::{Error, Result};
use tracing::{info, warn};

use crate::lines::{LineCounts, LineSplitter, LongLinePolicy, READ_CHUNK_BYTES};
use crate::DEFAULT_MAX_LINE_BYTES;

/// Each text file that appears in a directory, read once into the batch in which it was
/// first seen, one `String` per line (Spark: `FileInputDStream` / `textFileStream`).
///
/// * **Which files:** as each batch is cut, the directory is listed; regular files (or
///   symlinks to them) not seen before belong to that batch, in name order, one partition
///   each. On a fresh start the files already there are ignored; after a restart from a
///   checkpoint, every file not read before the stop is new, so files that arrived while the
///   program was down are read exactly once. Names starting with `.` or `_` are ignored.
///   Subdirectories are not entered.
/// * **Files must appear atomically** (as Spark requires): write elsewhere on the same file
///   system, or under an ignored name, and `rename` into the directory. A file is read when
///   its batch runs and never again: lines appended to it later, or a new file renamed over
///   it, are **not read**. Such a change is made visible: each file's length and
///   modification time are noted when it is listed and when it is read, and every later
///   listing compares them (one `stat` per file in the directory per batch); a difference
///   is logged at WARN with the path, once per change. A file that changed between its
///   listing and its read is read as it was at the read, with the same warning. Files
///   present at a fresh start are watched the same way (they are never read).
/// * **Records:** lines without their `\n` or `\r\n`; the last line needs no newline.
///   Invalid UTF-8 is replaced with U+FFFD and lines longer than
///   [`max_line_bytes`](Self::max_line_bytes) are handled by the
///   [`on_long_line`](Self::on_long_line) policy (default: truncated), both logged with the
///   path (the first lines of a file one by one, then rate-limited). A polled input has no
///   receiver, so there are no `ReceiverMetrics` for it: instead, after reading a file with
///   damaged lines, one WARN names the path and gives the counts (`truncated`, `dropped`,
///   `dropped_bytes`, `split`, `words_cut`, `malformed`), and [`losses`](Self::losses)
///   gives the totals over the files read.
/// * **Errors:** an entry that is not a readable regular file (a directory, a FIFO, a broken
///   symlink) is logged with its path once and skipped. A file that cannot be read when its
///   batch runs fails the batch's tasks with an error naming it (after the task retries).
///   A directory that cannot be listed fails that batch; the next batch lists it again.
/// * **Memory:** the names seen are kept in a set trimmed to the names still in the
///   directory, so it is as large as the directory; it is saved in metadata checkpoints.
///
/// # Examples
/// ```
/// use rivulet_framework::dstream::PolledSource;
/// use rivulet_receivers::TextFileSource;
///
/// let source = TextFileSource::new("/var/spool/rivulet/in").max_line_bytes(64 * 1024);
/// assert_eq!(source.name(), "text files in /var/spool/rivulet/in");
/// ```
pub struct TextFileSource {
    dir: PathBuf,
    max_line_bytes: usize,
    policy: LongLinePolicy,
    /// What reading each file delivered and lost, by name.
    losses: FileLosses,
    /// Names (in `dir`) already taken into a batch, skipped, or present at a fresh start.
    seen: Mutex<BTreeSet<String>>,
    /// Length and modification time of the seen regular files, as last listed or read, to
    /// warn when a file changes after it was taken (not checkpointed: after a restore the
    /// first listing notes them).
    stamps: Mutex<HashMap<String, Stamp>>,
}

/// What a [`TextFileSource`] delivered and lost over the files it read, shared with the
/// source (see [`TextFileSource::losses`]). Each file counts once, however often its
/// partition was computed.
#[derive(Clone, Debug, Default)]
pub struct FileLosses(Arc<Mutex<BTreeMap<String, (u64, LineCounts)>>>);

/// Totals over the files a [`TextFileSource`] read ([`FileLosses::totals`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FileTotals {
    /// Files read.
    pub files: u64,
    /// Records (lines, or pieces of split lines) they delivered.
    pub records: u64,
    /// What was repaired, cut or dropped (`incomplete` is always 0: a file's unterminated
    /// last line is complete).
    pub counts: LineCounts,
}

impl FileLosses {
    fn record(&self, name: &str, records: u64, counts: LineCounts) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name.to_string(), (records, counts));
    }

    /// The totals over the files read so far.
    pub fn totals(&self) -> FileTotals {
        let files = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let mut t = FileTotals {
            files: files.len() as u64,
            ..FileTotals::default()
        };
        for (records, c) in files.values() {
            t.records += records;
            t.counts.malformed += c.malformed;
            t.counts.truncated += c.truncated;
            t.counts.dropped += c.dropped;
            t.counts.dropped_bytes += c.dropped_bytes;
            t.counts.split += c.split;
            t.counts.words_cut += c.words_cut;
            t.counts.incomplete += c.incomplete;
        }
        t
    }
}

/// A file's length and modification time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
}

impl Stamp {
    fn of(meta: &std::fs::Metadata) -> Stamp {
        Stamp {
            len: meta.len(),
            modified: meta.modified().ok(),
        }
    }
}

impl TextFileSource {
    /// A source for the files that will appear in `dir`; checked when the context starts.
    pub fn new(dir: impl Into<PathBuf>) -> TextFileSource {
        TextFileSource {
            dir: dir.into(),
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
            policy: LongLinePolicy::Truncate,
            losses: FileLosses::default(),
            seen: Mutex::new(BTreeSet::new()),
            stamps: Mutex::new(HashMap::new()),
        }
    }

    /// Sets the longest line kept whole, in bytes (default 1 MiB; 0 counts as 1); longer
    /// lines are handled by the [`on_long_line`](Self::on_long_line) policy (default:
    /// truncated at a character boundary) and logged.
    #[must_use]
    pub fn max_line_bytes(mut self, max_line_bytes: usize) -> TextFileSource {
        self.max_line_bytes = max_line_bytes;
        self
    }

    /// Sets what happens to a line longer than [`max_line_bytes`](Self::max_line_bytes)
    /// (default [`LongLinePolicy::Truncate`]), as for the socket receiver; see
    /// [`LongLinePolicy`]. Under [`LongLinePolicy::Fail`] reading the file fails (an
    /// [`Error::Io`] naming the path, the line's byte offset and the limit), which fails
    /// its batch after the task retries.
    #[must_use]
    pub fn on_long_line(mut self, policy: LongLinePolicy) -> TextFileSource {
        self.policy = policy;
        self
    }

    /// A handle on what reading the files delivered and lost (totals over the files read
    /// so far by this process: not checkpointed), for a report at the end of a run. Take
    /// it before the source goes into the graph; it stays valid afterwards.
    pub fn losses(&self) -> FileLosses {
        self.losses.clone()
    }

    fn seen(&self) -> MutexGuard<'_, BTreeSet<String>> {
        self.seen.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn stamps(&self) -> MutexGuard<'_, HashMap<String, Stamp>> {
        self.stamps.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Notes `now` as the stamp of `name`; if it had another one, warns that the file
    /// changed after `when` (once per change: the new stamp is kept).
    fn note(&self, name: &str, now: Stamp, when: &str) {
        let before = self.stamps().insert(name.to_string(), now);
        if let Some(before) = before.filter(|b| *b != now) {
            warn!(
                path = %self.dir.join(name).display(),
                len_before = before.len,
                len_now = now.len,
                "File changed after it was {when}; the change is not read. Files must be \
                 moved into a watched directory atomically (write elsewhere, then rename)."
            );
        }
    }

    /// Compares the seen regular files in `names` with their stamps.
    fn check_seen(&self, names: &[String]) {
        let seen: Vec<String> = {
            let seen = self.seen();
            names
                .iter()
                .filter(|n| !is_ignored(n) && seen.contains(*n))
                .cloned()
                .collect()
        };
        for name in seen {
            let Ok(meta) = std::fs::metadata(self.dir.join(&name)) else {
                continue;
            };
            if !meta.is_file() {
                continue;
            }
            let now = Stamp::of(&meta);
            let known = self.stamps().get(&name).copied();
            match known {
                // First seen here (after a restore): note it.
                None => {
                    self.stamps().insert(name, now);
                }
                Some(before) if before != now => self.note(&name, now, "read or listed"),
                Some(_) => {}
            }
        }
    }

    fn list(&self) -> Result<Vec<String>> {
        let context = || {
            format!(
                "text file stream: cannot list directory {}",
                self.dir.display()
            )
        };
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&self.dir).map_err(|e| Error::io(context(), e))? {
            let entry = entry.map_err(|e| Error::io(context(), e))?;
            match entry.file_name().into_string() {
                Ok(name) => names.push(name),
                Err(name) => {
                    warn!(dir = %self.dir.display(), name = ?name, "File name is not UTF-8; skipped.")
                }
            }
        }
        Ok(names)
    }
}

impl fmt::Debug for TextFileSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TextFileSource")
            .field("dir", &self.dir)
            .field("max_line_bytes", &self.max_line_bytes)
            .field("seen", &self.seen().len())
            .field("stamped", &self.stamps().len())
            .finish()
    }
}

/// Spark's default filter: hidden and temporary names are not input.
fn is_ignored(name: &str) -> bool {
    name.starts_with('.') || name.starts_with('_')
}

/// The metadata of `path` if it is a regular file (or a symlink to one), else why it cannot
/// be read as a text file (checked before opening: opening a FIFO would block until a
/// writer shows up).
fn regular_file(path: &Path) -> std::result::Result<std::fs::Metadata, String> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => Ok(m),
        Ok(m) if m.is_dir() => Err("is a directory".into()),
        Ok(_) => Err("not a regular file".into()),
        Err(_) if std::fs::symlink_metadata(path).is_ok() => {
            Err("a symlink whose target does not exist".into())
        }
        Err(e) => Err(e.to_string()),
    }
}

impl PolledSource for TextFileSource {
    type Item = String;
    type Split = String;
    type State = Vec<String>;

    /// `text files in <dir>`.
    fn name(&self) -> String {
        format!("text files in {}", self.dir.display())
    }

    /// Checks the directory and notes the files already in it, which are not read.
    ///
    /// # Errors
    /// [`Error::Io`] naming the directory when it does not exist or cannot be listed;
    /// [`Error::Config`] when it is not a directory.
    fn start(&self) -> Result<()> {
        let meta = std::fs::metadata(&self.dir).map_err(|e| {
            Error::io(
                format!(
                    "text file stream: cannot open directory {}",
                    self.dir.display()
                ),
                e,
            )
        })?;
        if !meta.is_dir() {
            return Err(Error::Config(format!(
                "text file stream: {} is not a directory",
                self.dir.display()
            )));
        }
        let names = self.list()?;
        info!(dir = %self.dir.display(), ignored = names.len(), "Watching directory for new files; files already there are ignored.");
        let stamps = names
            .iter()
            .filter(|n| !is_ignored(n))
            .filter_map(|n| {
                let meta = std::fs::metadata(self.dir.join(n)).ok()?;
                meta.is_file().then(|| (n.clone(), Stamp::of(&meta)))
            })
            .collect();
        *self.stamps() = stamps;
        *self.seen() = names.into_iter().collect();
        Ok(())
    }

    /// Lists the directory: the names not seen before, in name order (unreadable entries
    /// are logged and skipped). Seen files whose length or modification time changed are
    /// logged at WARN.
    ///
    /// # Errors
    /// [`Error::Io`] naming the directory when it cannot be listed.
    fn poll(&self, _t: Time) -> Result<Vec<String>> {
        let names = self.list()?;
        self.check_seen(&names);
        let new = {
            let mut seen = self.seen();
            // Forget names that left the directory, so `seen` stays as small as the directory.
            let present: BTreeSet<&String> = names.iter().collect();
            seen.retain(|n| present.contains(n));
            self.stamps().retain(|n, _| present.contains(n));
            let mut new: Vec<String> = names
                .into_iter()
                .filter(|n| !is_ignored(n) && !seen.contains(n))
                .collect();
            new.sort_unstable();
            seen.extend(new.iter().cloned());
            new
        };
        Ok(new
            .into_iter()
            .filter(|name| match regular_file(&self.dir.join(name)) {
                Ok(meta) => {
                    self.stamps().insert(name.clone(), Stamp::of(&meta));
                    true
                }
                Err(why) => {
                    warn!(path = %self.dir.join(name).display(), reason = %why, "Cannot read new file; skipped.");
                    false
                }
            })
            .collect())
    }

    /// Reads the file's lines.
    ///
    /// # Errors
    /// [`Error::Io`] naming the file when it cannot be opened or read.
    fn read(&self, name: &String) -> Result<PartitionIter<String>> {
        let path = self.dir.join(name);
        let fail = |e| {
            Error::io(
                format!("text file stream: cannot read {}", path.display()),
                e,
            )
        };
        let mut file = std::fs::File::open(&path).map_err(fail)?;
        let mut splitter = LineSplitter::new(self.max_line_bytes, self.policy);
        let too_long = |e: crate::LineTooLong| {
            Error::io(
                format!("text file stream: {}", path.display()),
                std::io::Error::new(std::io::ErrorKind::InvalidData, e),
            )
        };
        let (mut lines, mut buf) = (Vec::new(), vec![0u8; READ_CHUNK_BYTES]);
        let mut counts = LineCounts::default();
        let origin = path.display();
        let mut bytes_read = 0u64;
        loop {
            match file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    bytes_read += n as u64;
                    // Only under `Fail` does the splitter fail; long lines are logged.
                    splitter
                        .feed(&buf[..n], &mut lines, &mut counts, &origin)
                        .map_err(too_long)?;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(fail(e)),
            }
        }
        splitter
            .finish(&mut lines, &mut counts, &origin)
            .map_err(too_long)?;
        if !counts.is_empty() {
            warn!(
                path = %origin,
                lines = lines.len(),
                truncated = counts.truncated,
                dropped = counts.dropped,
                dropped_bytes = counts.dropped_bytes,
                split = counts.split,
                words_cut = counts.words_cut,
                malformed = counts.malformed,
                max_line_bytes = self.max_line_bytes,
                policy = %self.policy,
                "Read file with damaged lines: lines longer than max_line_bytes handled by \
                 the long-line policy, invalid UTF-8 replaced with U+FFFD."
            );
        }
        // By name: a file read again (a recomputed partition) is counted once.
        self.losses.record(name, lines.len() as u64, counts);
        // What was read is what later listings compare with (the length read, so that a
        // line appended after the end was reached still shows as a change).
        if let Ok(meta) = file.metadata() {
            let read = Stamp {
                len: bytes_read,
                ..Stamp::of(&meta)
            };
            self.note(name, read, "listed");
        }
        Ok(Box::new(lines.into_iter()))
    }

    fn state(&self) -> Vec<String> {
        self.seen().iter().cloned().collect()
    }

    fn restore(&self, state: Vec<String>) {
        *self.seen() = state.into_iter().collect();
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::io::Write;

    use rivulet_framework::dstream::PolledSource;
    use rivulet_framework::time::Time;
    use tempfile::TempDir;

    use super::TextFileSource;
    use crate::testing::capture;

    fn append(path: &std::path::Path, text: &str) {
        let mut f = fs::OpenOptions::new().append(true).open(path).unwrap();
        f.write_all(text.as_bytes()).unwrap();
    }

    fn read_all(source: &TextFileSource, name: &str) -> Vec<String> {
        source.read(&name.to_string()).unwrap().collect()
    }

    #[test]
    fn a_file_changed_after_it_was_read_is_warned_about_once_per_change() {
        let (logs, _guard) = capture();
        let dir = TempDir::new().unwrap();
        fs::write(dir.path().join("old.txt"), "old\n").unwrap();
        let source = TextFileSource::new(dir.path());
        source.start().unwrap();
        assert!(source.poll(Time::ZERO).unwrap().is_empty());

        let staged = TempDir::new_in(dir.path().parent().unwrap()).unwrap();
        fs::write(staged.path().join("a.txt"), "a1\na2\n").unwrap();
        fs::rename(staged.path().join("a.txt"), dir.path().join("a.txt")).unwrap();
        assert_eq!(source.poll(Time::ZERO).unwrap(), ["a.txt"]);
        assert_eq!(read_all(&source, "a.txt"), ["a1", "a2"]);
        assert!(source.poll(Time::ZERO).unwrap().is_empty());
        assert_eq!(logs.take_warnings(), Vec::<String>::new());

        // Appended in place: not read, but warned about with the path, once.
        append(&dir.path().join("a.txt"), "a3\n");
        assert!(source.poll(Time::ZERO).unwrap().is_empty());
        let warnings = logs.take_warnings();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        let path = dir.path().join("a.txt").display().to_string();
        assert!(
            warnings[0].contains(&path) && warnings[0].contains("changed"),
            "{warnings:?}"
        );
        assert!(source.poll(Time::ZERO).unwrap().is_empty());
        assert_eq!(logs.take_warnings(), Vec::<String>::new());

        // Each change is reported; so is a change to a file present at the start.
        append(&dir.path().join("a.txt"), "a4\n");
        append(&dir.path().join("old.txt"), "more\n");
        assert!(source.poll(Time::ZERO).unwrap().is_empty());
        let warnings = logs.take_warnings();
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings.iter().any(|w| w.contains(&path)), "{warnings:?}");
        let old = dir.path().join("old.txt").display().to_string();
        assert!(warnings.iter().any(|w| w.contains(&old)), "{warnings:?}");
    }

    #[test]
    fn a_file_changed_between_listing_and_reading_is_read_whole_and_warned_about_once() {
        let (logs, _guard) = capture();
        let dir = TempDir::new().unwrap();
        let source = TextFileSource::new(dir.path());
        source.start().unwrap();
        fs::write(dir.path().join("b.txt"), "b1\n").unwrap();
        assert_eq!(source.poll(Time::ZERO).unwrap(), ["b.txt"]);
        append(&dir.path().join("b.txt"), "b2\n");
        assert_eq!(read_all(&source, "b.txt"), ["b1", "b2"]);
        assert_eq!(logs.take_warnings().len(), 1);
        // What was read is the reference now: no second warning.
        assert!(source.poll(Time::ZERO).unwrap().is_empty());
        assert_eq!(logs.take_warnings(), Vec::<String>::new());
    }

    #[test]
    fn truncated_lines_are_counted_in_one_warning_per_file() {
        let (logs, _guard) = capture();
        let dir = TempDir::new().unwrap();
        let source = TextFileSource::new(dir.path()).max_line_bytes(10);
        source.start().unwrap();
        let long = "x".repeat(100);
        fs::write(dir.path().join("c.txt"), format!("{long}\nshort\n{long}\n")).unwrap();
        assert_eq!(source.poll(Time::ZERO).unwrap(), ["c.txt"]);
        let lines = read_all(&source, "c.txt");
        assert_eq!(lines, ["x".repeat(10), "short".into(), "x".repeat(10)]);
        let warnings = logs.take_warnings();
        let path = dir.path().join("c.txt").display().to_string();
        let summary: Vec<&String> = warnings
            .iter()
            .filter(|w| w.contains("truncated=2"))
            .collect();
        assert_eq!(summary.len(), 1, "{warnings:?}");
        assert!(
            summary[0].contains(&path) && summary[0].contains("dropped_bytes=180"),
            "{warnings:?}"
        );
    }

    #[test]
    fn long_lines_follow_the_policy_and_losses_count_each_file_once() {
        let dir = TempDir::new().unwrap();
        let source = TextFileSource::new(dir.path())
            .max_line_bytes(4)
            .on_long_line(crate::LongLinePolicy::Split);
        let losses = source.losses();
        source.start().unwrap();
        fs::write(dir.path().join("d.txt"), "ab cdef\nok\n").unwrap();
        assert_eq!(source.poll(Time::ZERO).unwrap(), ["d.txt"]);
        assert_eq!(read_all(&source, "d.txt"), ["ab ", "cdef", "ok"]);
        // A recomputed partition reads the file again: counted once.
        assert_eq!(read_all(&source, "d.txt").len(), 3);
        let t = losses.totals();
        assert_eq!(
            (t.files, t.records, t.counts.split, t.counts.dropped_bytes),
            (1, 3, 1, 0)
        );

        let failing = TextFileSource::new(dir.path())
            .max_line_bytes(4)
            .on_long_line(crate::LongLinePolicy::Fail);
        let error = failing
            .read(&"d.txt".to_string())
            .err()
            .expect("a long line under fail");
        let message = error.to_string();
        assert!(message.contains("d.txt"), "{message}");
        let source_text = std::error::Error::source(&error)
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            format!("{message} {source_text}").contains("byte offset 0"),
            "{message} / {source_text}"
        );
    }
}
