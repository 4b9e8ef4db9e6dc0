//! [`TextFileSource`]: the text files moved into a directory, as a polled input (Spark:
//! `FileInputDStream`, behind `StreamingContext::text_file_stream`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::io::{ErrorKind, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use rivulet_framework::dstream::{NewSplits, PolledSource, ReadError, UnreadablePolicy};
use rivulet_framework::listener::SkippedSplit;
use rivulet_framework::rdd::PartitionIter;
use rivulet_framework::time::Time;
use rivulet_framework::{Error, Result};
use serde::{Deserialize, Serialize};
use tracing::{debug, info, warn};

use crate::lines::{LineCounts, LineSplitter, LongLinePolicy, READ_CHUNK_BYTES};
use crate::DEFAULT_MAX_LINE_BYTES;

/// The default remember window: 60 s (Spark: `spark.streaming.fileStream.minRememberDuration`).
pub(crate) const DEFAULT_FILE_REMEMBER: Duration = Duration::from_secs(60);

/// Each text file that appears in a directory, read once into the batch in which it was
/// first seen, one `String` per line (Spark: `FileInputDStream` / `textFileStream`).
///
/// * **Which files:** as each batch is cut, the directory is listed; the entries not seen
///   before whose modification time is within the [remember window](Self::remember) of the
///   wall clock (default 60 s) belong to that batch, in name order, one partition each. On a
///   fresh start the entries already there are ignored; after a restart from a checkpoint,
///   every entry not read before the stop whose modification time is within the window of
///   the last listing before the stop (or later) is new, so files that arrived while the
///   program was down are read exactly once, however long it was down. Names starting
///   with `.` or `_` are ignored. Subdirectories are not entered.
/// * **Files must appear atomically, with a fresh modification time** (as Spark requires):
///   write elsewhere on the same file system, or under an ignored name, and `rename` into
///   the directory (`cp` then `mv`; a `mv` of a file written long ago keeps its old
///   modification time). A file that appears with a modification time older than the
///   window is not read: it is reported (below) with the reason. A file is read when its
///   batch runs and never again: lines appended to it later, or a new file renamed over
///   it, are **not read**. While the file is within the window, such a change is reported
///   (below) once per change; a file that changed between its listing and its read is read
///   as it was at the read, with a WARN.
/// * **Unreadable entries** (a subdirectory, a FIFO, a dangling symlink, a file that
///   vanished between the listing and the read, a permission error) and the losses above
///   are reported with the path and the reason: one WARN per entry, and in the batch's
///   [`PolledInputInfo`](rivulet_framework::listener::PolledInputInfo) (listeners'
///   `on_polled_input`, the status page, the examples' summaries). Then the
///   [unreadable-input policy](Self::on_unreadable) decides: `Skip` (the default) reads
///   nothing from the entry and goes on; `Fail` fails the batch with
///   [`Error::InputFailed`] naming the path (not retried) and stops the context; that
///   batch gets no checkpoint, so a restart reads its files again (the good ones are not
///   lost) and meets the entry again, under the restarted program's policy: fix the entry,
///   or restart under `Skip`. Under `Skip` a bad entry never stops a job, restarts
///   included. Other read errors (too many open files, an I/O error)
///   fail the task, which is retried. A directory that cannot be listed fails that batch;
///   the next batch lists it again.
/// * **Records:** lines without their `\n` or `\r\n`; the last line needs no newline.
///   Invalid UTF-8 is replaced with U+FFFD and lines longer than
///   [`max_line_bytes`](Self::max_line_bytes) are handled by the
///   [`on_long_line`](Self::on_long_line) policy (default: truncated), both logged with the
///   path (the first lines of a file one by one, then rate-limited); after reading a file
///   with damaged lines, one WARN names the path and gives the counts (`truncated`,
///   `dropped`, `dropped_bytes`, `split`, `words_cut`, `malformed`), and
///   [`losses`](Self::losses) gives the totals over the files read. The lines read per
///   batch are counted in its `PolledInputInfo::records` and `BatchInfo::num_records`.
/// * **Cost, bounded by the window:** each listing reads the directory's names (one
///   `readdir` pass); it `stat`s only names it does not know yet, and the files taken
///   within the window (to see changes). Entries older than the window are remembered by
///   name only, in memory, while they stay in the directory (never `stat`ed again); the
///   files taken within the window are remembered with their length and modification
///   time, and only those are saved in metadata checkpoints. So the checkpoint and the
///   per-batch `stat`s grow with the files that arrive within one window, not with the
///   files left in the directory. After a restart, the first listing `stat`s every name
///   once.
///
/// # Examples
/// ```
/// use std::time::Duration;
/// use rivulet_framework::dstream::{PolledSource, UnreadablePolicy};
/// use rivulet_receivers::TextFileSource;
///
/// let source = TextFileSource::new("/var/spool/rivulet/in")
///     .max_line_bytes(64 * 1024)
///     .on_unreadable(UnreadablePolicy::Fail)
///     .remember(Duration::from_secs(300));
/// assert_eq!(source.name(), "text files in /var/spool/rivulet/in");
/// assert_eq!(source.unreadable_policy(), UnreadablePolicy::Fail);
/// ```
pub struct TextFileSource {
    dir: PathBuf,
    max_line_bytes: usize,
    long_lines: LongLinePolicy,
    /// What reading each file delivered and lost, by name.
    losses: FileLosses,
    policy: UnreadablePolicy,
    /// Whether executor processes may read the files (see `read_in_executor_processes`).
    anywhere: bool,
    remember: Duration,
    files: Mutex<Files>,
    /// Added to the wall clock (ms): tests move time forward with it; zero otherwise.
    skew_ms: std::sync::atomic::AtomicI64,
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
        self.0.lock().insert(name.to_string(), (records, counts));
    }

    /// The totals over the files read so far.
    pub fn totals(&self) -> FileTotals {
        let files = self.0.lock();
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

/// What the source knows about the directory's entries.
#[derive(Default)]
struct Files {
    /// Entries taken into a batch within the remember window (checkpointed).
    recent: HashMap<String, Entry>,
    /// Names known to be older than the window (present at a fresh start, or expired from
    /// `recent`), while they are in the directory: never `stat`ed again. Not checkpointed.
    old: HashSet<String>,
    /// Set at a restore: the next listing files entries older than the window silently
    /// (they were read or ignored before the stop).
    quiet: bool,
    /// After a restore: the wall-clock time (ms) of the last listing before the stop; the
    /// first listing's window reaches back from it.
    resumed_from_ms: Option<i64>,
    /// The wall-clock time (ms) of the last listing.
    last_poll_ms: i64,
}

/// One entry taken into a batch.
#[derive(Clone, Copy, Debug)]
struct Entry {
    stamp: Stamp,
    /// Whether later listings compare its stamp: once read (a change before the read is
    /// read with it).
    watch: bool,
}

/// A file's length and modification time (ms since the Unix epoch).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified_ms: Option<i64>,
}

impl Stamp {
    fn of(meta: &std::fs::Metadata) -> Stamp {
        Stamp {
            len: meta.len(),
            modified_ms: modified_ms(meta),
        }
    }
}

fn modified_ms(meta: &std::fs::Metadata) -> Option<i64> {
    let since = meta.modified().ok()?.duration_since(UNIX_EPOCH).ok()?;
    i64::try_from(since.as_millis()).ok()
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// What a [`TextFileSource`] saves in metadata checkpoints: the files it took within its
/// remember window (name, length, modification time) and the wall-clock time of its last
/// listing. Its size is bounded by the files that arrive within one window. A state saved
/// by an older rivulet (every name seen in the directory) is read too.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TextFileSourceState(SavedState);

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(untagged)]
enum SavedState {
    Window {
        recent: Vec<SavedFile>,
        last_poll_ms: i64,
    },
    /// rivulet before the remember window: every name seen (read or ignored).
    Names(Vec<String>),
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct SavedFile {
    name: String,
    len: u64,
    modified_ms: Option<i64>,
}

impl TextFileSource {
    /// A source for the files that will appear in `dir`; checked when the context starts.
    /// Defaults: lines up to 1 MiB, unreadable entries skipped and reported, a 60 s remember
    /// window.
    pub fn new(dir: impl Into<PathBuf>) -> TextFileSource {
        TextFileSource {
            dir: dir.into(),
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
            long_lines: LongLinePolicy::Truncate,
            losses: FileLosses::default(),
            policy: UnreadablePolicy::Skip,
            anywhere: true,
            remember: DEFAULT_FILE_REMEMBER,
            files: Mutex::new(Files::default()),
            skew_ms: std::sync::atomic::AtomicI64::new(0),
        }
    }

    /// The wall clock, in ms since the Unix epoch.
    fn now_ms(&self) -> i64 {
        now_ms().saturating_add(self.skew_ms.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Whether executor processes (`StreamingConfig::local_cluster` and the others) read
    /// the files of the batches they map (default `true`), as Spark's executors read HDFS:
    /// the directory must then be at the same path in every process, which on one host it
    /// always is; on other hosts (a static cluster, Kubernetes pods) only on a shared
    /// volume. `false` keeps the reads, and the stages over them, in the coordinator. A
    /// file an executor process cannot find is skipped under the unreadable-input policy
    /// as anywhere else, so do not leave this on over a directory other hosts lack.
    #[must_use]
    pub fn read_in_executor_processes(mut self, read: bool) -> TextFileSource {
        self.anywhere = read;
        self
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
        self.long_lines = policy;
        self
    }

    /// A handle on what reading the files delivered and lost (totals over the files read
    /// so far by this process: not checkpointed), for a report at the end of a run. Take
    /// it before the source goes into the graph; it stays valid afterwards.
    pub fn losses(&self) -> FileLosses {
        self.losses.clone()
    }

    /// Sets what happens to an entry that cannot be read, or appears older than the remember
    /// window, or changes after it was read (default [`UnreadablePolicy::Skip`]): see the
    /// type's documentation. Either way it is reported with its path and the reason.
    #[must_use]
    pub fn on_unreadable(mut self, policy: UnreadablePolicy) -> TextFileSource {
        self.policy = policy;
        self
    }

    /// Sets the remember window (default 60 s; Spark: `minRememberDuration`): a new entry is
    /// read only if its modification time is within this duration before the listing, and
    /// the files taken are remembered (and checkpointed) only as long. Keep it longer than
    /// the time a file takes from its last write to its move into the directory.
    /// `StreamingContext::text_file_stream_with` rounds it up to a whole number of batch
    /// intervals (see [`round_remember_to`](Self::round_remember_to)).
    #[must_use]
    pub fn remember(mut self, window: Duration) -> TextFileSource {
        self.remember = window;
        self
    }

    /// Rounds the remember window up to a whole, non-zero number of `batch_interval`s
    /// (Spark: `FileInputDStream.numBatchesToRemember`), so that it is never shorter than a
    /// batch interval.
    #[must_use]
    pub fn round_remember_to(mut self, batch_interval: Duration) -> TextFileSource {
        let batch = batch_interval.as_millis().max(1);
        let batches = self.remember.as_millis().div_ceil(batch).max(1);
        let ms = u64::try_from(batch.saturating_mul(batches)).unwrap_or(u64::MAX);
        self.remember = Duration::from_millis(ms);
        self
    }

    /// The remember window in force.
    pub fn remember_window(&self) -> Duration {
        self.remember
    }

    /// `(taken, old)`: how many entries the source remembers with their stamps (taken into
    /// a batch within the window; checkpointed) and by name only (older than the window,
    /// still in the directory). For monitoring and tests.
    pub fn remembered(&self) -> (usize, usize) {
        let files = self.files.lock();
        (files.recent.len(), files.old.len())
    }

    fn path_of(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    /// The non-ignored names in the directory.
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
                Ok(name) if is_ignored(&name) => {}
                Ok(name) => names.push(name),
                Err(name) => {
                    warn!(dir = %self.dir.display(), name = ?name, "File name is not UTF-8; skipped.")
                }
            }
        }
        Ok(names)
    }

    /// The stamps of the watched entries in `names` that changed since they were read, and
    /// why (noted: each change is reported once).
    fn changed(&self, watched: Vec<(String, Stamp)>) -> Vec<SkippedSplit> {
        let mut changed = Vec::new();
        for (name, before) in watched {
            let Ok(meta) = std::fs::metadata(self.dir.join(&name)) else {
                continue;
            };
            let now = Stamp::of(&meta);
            if !meta.is_file() || now == before {
                continue;
            }
            if let Some(entry) = self.files.lock().recent.get_mut(&name) {
                entry.stamp = now;
            }
            changed.push(SkippedSplit {
                split: self.path_of(&name),
                reason: format!(
                    "changed after it was read (length {} -> {} bytes); the change is not \
                     read: files must be moved into a watched directory atomically (write \
                     elsewhere, then rename)",
                    before.len, now.len
                ),
            });
        }
        changed
    }
}

impl fmt::Debug for TextFileSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (recent, old) = self.remembered();
        f.debug_struct("TextFileSource")
            .field("dir", &self.dir)
            .field("max_line_bytes", &self.max_line_bytes)
            .field("policy", &self.policy)
            .field("remember", &self.remember)
            .field("recent", &recent)
            .field("old", &old)
            .finish()
    }
}

/// Spark's default filter: hidden and temporary names are not input.
fn is_ignored(name: &str) -> bool {
    name.starts_with('.') || name.starts_with('_')
}

/// Whether an I/O error is about the entry itself (reading again will not help): the
/// unreadable-input policy handles it. Others (too many open files, an I/O error) are
/// retried.
fn is_unreadable(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::NotFound
            | ErrorKind::PermissionDenied
            | ErrorKind::IsADirectory
            | ErrorKind::NotADirectory
            | ErrorKind::InvalidInput
    )
}

/// `e` while reading `path`, as a [`ReadError`].
fn read_error(path: &Path, e: std::io::Error) -> ReadError {
    if is_unreadable(&e) {
        ReadError::Unreadable {
            reason: e.to_string(),
        }
    } else {
        ReadError::Failed(Error::io(
            format!("text file stream: cannot read {}", path.display()),
            e,
        ))
    }
}

/// The metadata of `path` if it is a regular file (or a symlink to one), else why it cannot
/// be read as a text file (checked before opening: opening a FIFO would block until a
/// writer shows up).
fn regular_file(path: &Path) -> std::result::Result<std::fs::Metadata, ReadError> {
    let unreadable = |reason: &str| ReadError::Unreadable {
        reason: reason.into(),
    };
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => Ok(m),
        Ok(m) if m.is_dir() => Err(unreadable("is a directory")),
        Ok(_) => Err(unreadable("not a regular file (a FIFO, socket or device)")),
        Err(e) if e.kind() == ErrorKind::NotFound && std::fs::symlink_metadata(path).is_ok() => {
            Err(unreadable("a symlink whose target does not exist"))
        }
        Err(e) if e.kind() == ErrorKind::NotFound => Err(unreadable(
            "vanished between the listing and the read (No such file or directory)",
        )),
        Err(e) => Err(read_error(path, e)),
    }
}

impl PolledSource for TextFileSource {
    type Item = String;
    type Split = String;
    type State = TextFileSourceState;

    /// Unless [`read_in_executor_processes(false)`](TextFileSource::read_in_executor_processes):
    /// executor processes read the files too, and what they repaired and cut is sent back
    /// ([`read_note`](PolledSource::read_note)) into [`losses`](TextFileSource::losses).
    fn read_anywhere(&self) -> bool {
        self.anywhere
    }

    fn read_note(&self, split: &String) -> Option<Vec<u8>> {
        let (records, counts) = self.losses.0.lock().get(split.as_str()).copied()?;
        rivulet_framework::checkpoint::encode(&(records, counts)).ok()
    }

    fn add_read_note(&self, split: &String, note: &[u8]) {
        let key = format!("read note of {split}");
        match rivulet_framework::checkpoint::decode::<(u64, LineCounts)>(
            note,
            "an executor process",
            &key,
        ) {
            Ok((records, counts)) => self.losses.record(split, records, counts),
            Err(e) => {
                tracing::warn!(error = %e, "An executor process's note on a file it read does not decode; its losses are not counted.")
            }
        }
    }

    /// `text files in <dir>`.
    fn name(&self) -> String {
        format!("text files in {}", self.dir.display())
    }

    /// The file's path.
    fn describe(&self, split: &String) -> String {
        self.path_of(split)
    }

    fn unreadable_policy(&self) -> UnreadablePolicy {
        self.policy
    }

    /// Checks the directory and notes the entries already in it, which are not read.
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
        info!(dir = %self.dir.display(), ignored = names.len(), remember_ms = duration_ms(self.remember), "Watching directory for new files; files already there are ignored.");
        let mut files = self.files.lock();
        *files = Files {
            old: names.into_iter().collect(),
            last_poll_ms: self.now_ms(),
            ..Files::default()
        };
        Ok(())
    }

    /// Lists the directory: the new entries within the remember window, in name order, and
    /// the entries reported (see the type's documentation): new ones older than the window,
    /// and files within the window that changed since they were read.
    ///
    /// # Errors
    /// [`Error::Io`] naming the directory when it cannot be listed.
    fn poll(&self, _t: Time) -> Result<NewSplits<String>> {
        let names = self.list()?;
        let now = self.now_ms();
        let window = duration_ms(self.remember);
        // Under the lock: forget what left the directory or the window; pick what to stat.
        let (threshold, quiet, unknown, watched) = {
            let mut files = self.files.lock();
            let mut threshold = now.saturating_sub(window);
            if let Some(resumed) = files.resumed_from_ms.take() {
                threshold = threshold.min(resumed.saturating_sub(window));
            }
            let quiet = std::mem::take(&mut files.quiet);
            files.last_poll_ms = now;
            let present: HashSet<&str> = names.iter().map(String::as_str).collect();
            files.old.retain(|n| present.contains(n.as_str()));
            files.recent.retain(|n, _| present.contains(n.as_str()));
            let expired: Vec<String> = files
                .recent
                .iter()
                .filter(|(_, e)| e.stamp.modified_ms.is_some_and(|m| m < threshold))
                .map(|(n, _)| n.clone())
                .collect();
            for name in expired {
                files.recent.remove(&name);
                files.old.insert(name);
            }
            let unknown: Vec<String> = names
                .iter()
                .filter(|n| !files.old.contains(*n) && !files.recent.contains_key(*n))
                .cloned()
                .collect();
            let watched: Vec<(String, Stamp)> = files
                .recent
                .iter()
                .filter(|(_, e)| e.watch)
                .map(|(n, e)| (n.clone(), e.stamp))
                .collect();
            (threshold, quiet, unknown, watched)
        };
        // Off the lock (tasks note their reads under it): one stat per name.
        let mut skipped = self.changed(watched);
        let (mut new, mut old) = (Vec::new(), Vec::new());
        for name in unknown {
            let path = self.dir.join(&name);
            // A dangling symlink is judged by the link's own time; its read reports it.
            let meta = std::fs::metadata(&path).or_else(|_| std::fs::symlink_metadata(&path));
            let meta = match meta {
                Ok(meta) => meta,
                Err(e) => {
                    // Gone between the listing and the stat: never taken, nothing lost.
                    debug!(path = %path.display(), error = %e, "Entry vanished while listed.");
                    continue;
                }
            };
            let stamp = Stamp::of(&meta);
            match stamp.modified_ms {
                Some(m) if m < threshold => {
                    if !quiet {
                        skipped.push(SkippedSplit {
                            split: path.display().to_string(),
                            reason: format!(
                                "appeared with a modification time {} s older than the \
                                 listing, beyond the remember window ({} s): not read (give \
                                 it a fresh modification time, e.g. copy it rather than move \
                                 an old file in, or raise the window)",
                                (now - m) / 1000,
                                window / 1000
                            ),
                        });
                    }
                    old.push(name);
                }
                _ => new.push((name, stamp)),
            }
        }
        new.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let mut files = self.files.lock();
        files.old.extend(old);
        for (name, stamp) in &new {
            let entry = Entry {
                stamp: *stamp,
                watch: false,
            };
            files.recent.insert(name.clone(), entry);
        }
        drop(files);
        Ok(NewSplits {
            splits: new.into_iter().map(|(name, _)| name).collect(),
            skipped,
        })
    }

    /// Reads the file's lines.
    ///
    /// # Errors
    /// [`ReadError::Unreadable`] when it is gone, not a regular file, or not permitted;
    /// [`ReadError::Failed`] with [`Error::Io`] naming the file for other I/O errors.
    fn read(&self, name: &String) -> std::result::Result<PartitionIter<String>, ReadError> {
        let path = self.dir.join(name);
        regular_file(&path)?;
        let mut file = std::fs::File::open(&path).map_err(|e| read_error(&path, e))?;
        let mut splitter = LineSplitter::new(self.max_line_bytes, self.long_lines);
        let too_long = |e: crate::LineTooLong| {
            ReadError::Failed(Error::io(
                format!("text file stream: {}", path.display()),
                std::io::Error::new(ErrorKind::InvalidData, e),
            ))
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
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(read_error(&path, e)),
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
                policy = %self.long_lines,
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
            let listed = self.files.lock().recent.get_mut(name).map(|entry| {
                let listed = entry.stamp;
                *entry = Entry {
                    stamp: read,
                    watch: true,
                };
                listed
            });
            if let Some(listed) = listed.filter(|l| *l != read) {
                warn!(
                    path = %origin,
                    len_listed = listed.len,
                    len_read = read.len,
                    "File changed between its listing and its read; read as it was at the \
                     read. Files must be moved into a watched directory atomically (write \
                     elsewhere, then rename)."
                );
            }
        }
        Ok(Box::new(lines.into_iter()))
    }

    fn state(&self) -> TextFileSourceState {
        let files = self.files.lock();
        let mut recent: Vec<SavedFile> = files
            .recent
            .iter()
            .map(|(name, e)| SavedFile {
                name: name.clone(),
                len: e.stamp.len,
                modified_ms: e.stamp.modified_ms,
            })
            .collect();
        recent.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        TextFileSourceState(SavedState::Window {
            recent,
            last_poll_ms: files.last_poll_ms,
        })
    }

    fn restore(&self, state: TextFileSourceState) {
        let mut files = self.files.lock();
        *files = match state.0 {
            SavedState::Window {
                recent,
                last_poll_ms,
            } => Files {
                recent: recent
                    .into_iter()
                    .map(|f| {
                        let stamp = Stamp {
                            len: f.len,
                            modified_ms: f.modified_ms,
                        };
                        (f.name, Entry { stamp, watch: true })
                    })
                    .collect(),
                quiet: true,
                resumed_from_ms: Some(last_poll_ms),
                last_poll_ms,
                ..Files::default()
            },
            // An older rivulet's state: the names it saw are not new; every other name is,
            // whatever its age (as that rivulet would have read it).
            SavedState::Names(names) => Files {
                old: names.into_iter().collect(),
                quiet: true,
                resumed_from_ms: Some(i64::MIN),
                last_poll_ms: self.now_ms(),
                ..Files::default()
            },
        };
    }
}

#[cfg(test)]
mod tests;
