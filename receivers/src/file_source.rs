//! [`TextFileSource`]: the text files moved into a directory, as a polled input (Spark:
//! `FileInputDStream`, behind `StreamingContext::text_file_stream`).

use std::collections::BTreeSet;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

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
///   its batch runs; a file that changes after it was seen is not read again (a changed
///   length or modification time is logged as a warning).
/// * **Records:** lines without their `\n` or `\r\n`; the last line needs no newline.
///   Invalid UTF-8 is replaced with U+FFFD and lines longer than
///   [`max_line_bytes`](Self::max_line_bytes) are truncated, both logged with the path.
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
    /// Names (in `dir`) already taken into a batch, skipped, or present at a fresh start.
    seen: Mutex<BTreeSet<String>>,
}

impl TextFileSource {
    /// A source for the files that will appear in `dir`; checked when the context starts.
    pub fn new(dir: impl Into<PathBuf>) -> TextFileSource {
        TextFileSource {
            dir: dir.into(),
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
            seen: Mutex::new(BTreeSet::new()),
        }
    }

    /// Sets the longest line kept whole, in bytes (default 1 MiB; 0 counts as 1); longer
    /// lines are truncated at a character boundary and logged.
    #[must_use]
    pub fn max_line_bytes(mut self, max_line_bytes: usize) -> TextFileSource {
        self.max_line_bytes = max_line_bytes;
        self
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
        self.seen.lock().unwrap_or_else(PoisonError::into_inner)
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
            .finish()
    }
}

/// Spark's default filter: hidden and temporary names are not input.
fn is_ignored(name: &str) -> bool {
    name.starts_with('.') || name.starts_with('_')
}

/// Why `path` cannot be read as a text file, if it cannot (checked before opening: opening
/// a FIFO would block until a writer shows up).
fn not_a_file(path: &Path) -> Option<String> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => None,
        Ok(m) if m.is_dir() => Some("is a directory".into()),
        Ok(_) => Some("not a regular file".into()),
        Err(_) if std::fs::symlink_metadata(path).is_ok() => {
            Some("a symlink whose target does not exist".into())
        }
        Err(e) => Some(e.to_string()),
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
        *self.seen() = names.into_iter().collect();
        Ok(())
    }

    /// Lists the directory: the names not seen before, in name order (unreadable entries
    /// are logged and skipped).
    ///
    /// # Errors
    /// [`Error::Io`] naming the directory when it cannot be listed.
    fn poll(&self, _t: Time) -> Result<Vec<String>> {
        let names = self.list()?;
        let mut seen = self.seen();
        // Forget names that left the directory, so `seen` stays as small as the directory.
        let present: BTreeSet<&String> = names.iter().collect();
        seen.retain(|n| present.contains(n));
        let mut new: Vec<String> = names
            .into_iter()
            .filter(|n| !is_ignored(n) && !seen.contains(n))
            .collect();
        new.sort_unstable();
        seen.extend(new.iter().cloned());
        Ok(new
            .into_iter()
            .filter(|name| match not_a_file(&self.dir.join(name)) {
                None => true,
                Some(why) => {
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
        let mut splitter = LineSplitter::new(self.max_line_bytes, LongLinePolicy::Truncate);
        let (mut lines, mut buf) = (Vec::new(), vec![0u8; READ_CHUNK_BYTES]);
        let mut counts = LineCounts::default();
        let origin = path.display();
        loop {
            match file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    // Under `Truncate` the splitter never fails; long lines are logged.
                    let _ = splitter.feed(&buf[..n], &mut lines, &mut counts, &origin);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(fail(e)),
            }
        }
        let _ = splitter.finish(&mut lines, &mut counts, &origin);
        Ok(Box::new(lines.into_iter()))
    }

    fn state(&self) -> Vec<String> {
        self.seen().iter().cloned().collect()
    }

    fn restore(&self, state: Vec<String>) {
        *self.seen() = state.into_iter().collect();
    }
}
