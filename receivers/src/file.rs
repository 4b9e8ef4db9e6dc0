//! Text files that appear in a directory (Spark: `FileInputDStream`, `textFileStream`).
//! Delivery: each new file is read once, line by line.

use std::collections::{HashSet, VecDeque};
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use rivulet_framework::receiver::{BlockSink, Flow, Receiver, ReceiverError};
use tokio::fs::File;
use tokio::io::AsyncReadExt;
use tokio::sync::Notify;
use tracing::{debug, error, info, warn};

use crate::lines::{
    LineCounts, LineSplitter, LongLinePolicy, BATCH_BYTES, BATCH_LINES, READ_CHUNK_BYTES,
};
use crate::{millis, DEFAULT_MAX_LINE_BYTES};

/// Reads each text file that appears in a directory once, one record per line (Spark:
/// `FileInputDStream`, behind `StreamingContext::text_file_stream(dir)`).
///
/// * **Which files:** regular files (or symlinks to them) that appear in `dir` after
///   [`on_start`](Receiver::on_start); files present at start are ignored. Names starting
///   with `.` or `_` are ignored (Spark's default filter: write to `.name.tmp` or
///   `_name` inside the directory, then rename). Subdirectories are not entered. New files
///   found together are read in name order.
/// * **Files must appear atomically.** A file is read as soon as it is seen, so it must be
///   complete when it appears: write it elsewhere on the same file system (or under an
///   ignored name) and `rename` it into `dir`, as Spark requires. A file written in place is
///   read as far as it was written; later appends are not read.
/// * **Records:** `String`, one per line, without its `\n` or `\r\n`; the last line needs no
///   newline. Invalid UTF-8 is replaced with U+FFFD; lines longer than
///   [`max_line_bytes`](Self::max_line_bytes) are truncated. Repaired lines count as
///   [`malformed`](rivulet_framework::receiver::ReceiverMetrics::malformed), truncated ones
///   as [`truncated`](rivulet_framework::receiver::ReceiverMetrics::truncated) (with the
///   bytes cut off in `dropped_bytes`).
/// * **Errors:** an entry that cannot be read (a broken symlink, a directory, a FIFO, a
///   permission error) is logged with its path, counted as a recoverable
///   [`error`](rivulet_framework::receiver::ReceiverMetrics::errors) and skipped; the
///   stream goes on. A read error mid-file keeps the lines read so far.
/// * **Discovery:** a `notify` watcher wakes the receiver when the directory changes, and
///   the directory is listed again every [`rescan_interval`](Self::rescan_interval) in case
///   an event was missed (or the watcher could not be set up, e.g. on a network file system).
/// * **Memory:** the names already seen are kept in a set that is trimmed to the names still
///   in the directory at each listing, so it is as large as the directory (a file deleted and
///   later recreated under the same name is new, and is read). Files are read in chunks of
///   at most 1 MiB or 4096 lines per `receive`.
///
/// # Examples
/// ```
/// use rivulet_framework::receiver::Receiver;
/// use rivulet_receivers::TextFileReceiver;
///
/// let receiver = TextFileReceiver::new("/var/spool/rivulet/in").max_line_bytes(64 * 1024);
/// assert_eq!(receiver.name(), "text files in /var/spool/rivulet/in");
/// ```
pub struct TextFileReceiver {
    dir: PathBuf,
    max_line_bytes: usize,
    rescan_interval: Duration,
    /// Whether the files present at start were recorded; a restart keeps what was seen.
    started: bool,
    /// Names (in `dir`) already read, queued, or present at start.
    seen: HashSet<OsString>,
    /// New names to read, in name order.
    queue: VecDeque<OsString>,
    current: Option<OpenFile>,
    watcher: Option<RecommendedWatcher>,
    /// Woken by the watcher's thread on directory changes.
    wake: Arc<Notify>,
    /// Whether the last listing failed, so a lasting failure is logged and counted once.
    listing_failed: bool,
    splitter: LineSplitter,
    read_buf: Box<[u8]>,
}

struct OpenFile {
    path: PathBuf,
    file: File,
    lines: u64,
}

impl TextFileReceiver {
    /// A receiver for the files that will appear in `dir`. Nothing is checked until
    /// [`on_start`](Receiver::on_start).
    pub fn new(dir: impl Into<PathBuf>) -> TextFileReceiver {
        TextFileReceiver {
            dir: dir.into(),
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
            rescan_interval: Duration::from_millis(250),
            started: false,
            seen: HashSet::new(),
            queue: VecDeque::new(),
            current: None,
            watcher: None,
            wake: Arc::new(Notify::new()),
            listing_failed: false,
            splitter: LineSplitter::new(DEFAULT_MAX_LINE_BYTES, LongLinePolicy::Truncate),
            read_buf: vec![0; READ_CHUNK_BYTES].into_boxed_slice(),
        }
    }

    /// Sets the longest line kept whole, in bytes, `\r\n` excluded (default 1 MiB; 0 counts as
    /// 1). Longer lines are truncated to this many bytes (at a character boundary), logged,
    /// and counted in `ReceiverMetrics::truncated` and `dropped_bytes`.
    #[must_use]
    pub fn max_line_bytes(mut self, max_line_bytes: usize) -> TextFileReceiver {
        self.max_line_bytes = max_line_bytes;
        self.splitter = LineSplitter::new(max_line_bytes, LongLinePolicy::Truncate);
        self
    }

    /// Sets how often the directory is listed when no change was signalled (default
    /// 250 ms; at least 1 ms). This bounds the delay before a file is noticed if the
    /// watcher misses it.
    #[must_use]
    pub fn rescan_interval(mut self, interval: Duration) -> TextFileReceiver {
        self.rescan_interval = interval.max(Duration::from_millis(1));
        self
    }

    fn fatal(&self, what: &str, error: io::Error) -> ReceiverError {
        let message = format!(
            "text file stream: {what} {}: {}",
            self.dir.display(),
            error.kind()
        );
        ReceiverError::fatal(message).with_source(error)
    }

    async fn list(&self) -> io::Result<Vec<OsString>> {
        let mut entries = tokio::fs::read_dir(&self.dir).await?;
        let mut names = Vec::new();
        while let Some(entry) = entries.next_entry().await? {
            names.push(entry.file_name());
        }
        Ok(names)
    }

    /// Starts the watcher; without one, the periodic listing still finds every file.
    fn watch(&mut self) {
        let wake = self.wake.clone();
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            // Our own opens and reads show up as access events: no news.
            if !matches!(&event, Ok(e) if e.kind.is_access() || e.kind.is_remove()) {
                wake.notify_one();
            }
        })
        .and_then(|mut watcher| {
            watcher.watch(&self.dir, RecursiveMode::NonRecursive)?;
            Ok(watcher)
        });
        match watcher {
            Ok(watcher) => self.watcher = Some(watcher),
            Err(error) => warn!(
                dir = %self.dir.display(),
                %error,
                rescan_interval_ms = millis(self.rescan_interval),
                "Cannot watch directory; listing it periodically instead."
            ),
        }
    }

    /// Lists the directory and queues the new files in name order; returns how many.
    async fn scan(&mut self, sink: &mut BlockSink<String>) -> usize {
        let names = match self.list().await {
            Ok(names) => names,
            Err(error) => {
                if !self.listing_failed {
                    error!(dir = %self.dir.display(), %error, "Cannot list directory; retrying.");
                    sink.report_error();
                    self.listing_failed = true;
                }
                return 0;
            }
        };
        if std::mem::take(&mut self.listing_failed) {
            info!(dir = %self.dir.display(), "Directory can be listed again.");
        }
        // Forget names that left the directory, so `seen` stays as small as the directory.
        // Safe: we only scan when nothing is queued or open.
        {
            let present: HashSet<&OsString> = names.iter().collect();
            self.seen.retain(|name| present.contains(name));
        }
        let mut new: Vec<OsString> = names
            .into_iter()
            .filter(|name| !is_ignored(name) && !self.seen.contains(name))
            .collect();
        new.sort_unstable();
        self.seen.extend(new.iter().cloned());
        let found = new.len();
        self.queue.extend(new);
        found
    }

    /// Opens the first queued file; logs, counts and skips it if it cannot be read.
    async fn open_next(&mut self, sink: &mut BlockSink<String>) {
        let Some(name) = self.queue.front() else {
            return;
        };
        let path = self.dir.join(name);
        let opened = open_regular_file(&path).await;
        // Dequeued only now: a call cancelled while opening tries this file again.
        self.queue.pop_front();
        match opened {
            Ok(file) => {
                debug!(path = %path.display(), "Reading new file.");
                self.current = Some(OpenFile {
                    path,
                    file,
                    lines: 0,
                });
            }
            Err(error) => {
                error!(path = %path.display(), %error, "Cannot read new file; skipped.");
                sink.report_error();
            }
        }
    }

    /// Reads the open file up to a batch of lines and stores them.
    async fn read_some(&mut self, sink: &mut BlockSink<String>) -> Result<Flow, ReceiverError> {
        let Some(OpenFile {
            path,
            file,
            lines: lines_read,
        }) = self.current.as_mut()
        else {
            return Ok(Flow::Continue);
        };
        let mut lines = Vec::new();
        let mut counts = LineCounts::default();
        let mut bytes = 0;
        let done = loop {
            match file.read(&mut self.read_buf).await {
                Ok(0) => break true,
                Ok(n) => {
                    bytes += n;
                    // Under `Truncate` the splitter never fails.
                    let _ = self.splitter.feed(
                        &self.read_buf[..n],
                        &mut lines,
                        &mut counts,
                        &path.display(),
                    );
                    if lines.len() >= BATCH_LINES || bytes >= BATCH_BYTES {
                        break false;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => {
                    let lines_read = *lines_read + lines.len() as u64;
                    error!(
                        path = %path.display(),
                        %error,
                        lines_read,
                        "Cannot read file; skipped the rest of it."
                    );
                    sink.report_error();
                    break true;
                }
            }
        };
        if done {
            // An unterminated last line is a record too.
            let _ = self
                .splitter
                .finish(&mut lines, &mut counts, &path.display());
            debug!(path = %path.display(), lines = *lines_read + lines.len() as u64, "File read.");
            self.current = None;
        } else {
            *lines_read += lines.len() as u64;
        }
        counts.report(sink);
        if !lines.is_empty() && sink.store_many(lines).await.is_err() {
            debug!(dir = %self.dir.display(), "Sink closed; receiver finishing.");
            return Ok(Flow::Finished);
        }
        Ok(Flow::Continue)
    }

    /// Waits for a watcher event or the rescan interval, whichever comes first.
    async fn wait_for_change(&self) {
        tokio::select! {
            () = self.wake.notified() => {}
            () = tokio::time::sleep(self.rescan_interval) => {}
        }
    }
}

/// Spark's default filter: hidden and temporary names are not input.
fn is_ignored(name: &OsStr) -> bool {
    matches!(name.as_encoded_bytes().first(), Some(b'.' | b'_'))
}

/// Opens `path` if it is a regular file (after following symlinks). Checked first because
/// opening a FIFO would block until a writer shows up.
async fn open_regular_file(path: &Path) -> io::Result<File> {
    let meta = match tokio::fs::metadata(path).await {
        Ok(meta) => meta,
        Err(e)
            if e.kind() == io::ErrorKind::NotFound
                && tokio::fs::symlink_metadata(path).await.is_ok() =>
        {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                "a symlink whose target does not exist",
            ));
        }
        Err(e) => return Err(e),
    };
    if meta.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "is a directory",
        ));
    }
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    File::open(path).await
}

impl Receiver for TextFileReceiver {
    type Item = String;

    /// `text files in <dir>`.
    fn name(&self) -> String {
        format!("text files in {}", self.dir.display())
    }

    /// Checks the directory, records the files already in it (the first time only: a
    /// restart reads what arrived meanwhile), and starts watching it.
    ///
    /// # Errors
    /// A fatal [`ReceiverError`] naming the path when the directory does not exist, is not
    /// a directory, or cannot be listed.
    async fn on_start(&mut self) -> Result<(), ReceiverError> {
        let meta = tokio::fs::metadata(&self.dir)
            .await
            .map_err(|e| self.fatal("cannot open directory", e))?;
        if !meta.is_dir() {
            let message = format!(
                "text file stream: {} is not a directory",
                self.dir.display()
            );
            return Err(ReceiverError::fatal(message));
        }
        if !self.started {
            let names = self
                .list()
                .await
                .map_err(|e| self.fatal("cannot list directory", e))?;
            info!(
                dir = %self.dir.display(),
                ignored = names.len(),
                "Watching directory for new files; files already there are ignored."
            );
            self.seen = names.into_iter().collect();
            self.started = true;
        }
        self.watch();
        Ok(())
    }

    /// Does one bounded step: reads up to about 4096 lines or 1 MiB of the file being read
    /// and stores them with one `store_many` (waiting while the buffer is full); or, with no
    /// file open, opens the next new file; or lists the directory, and if nothing is new,
    /// waits for a change or the rescan interval. Always returns `Ok(Flow::Continue)`
    /// unless the sink is closed.
    ///
    /// # Errors
    /// None: unreadable files and directory listing failures are logged, counted and
    /// retried or skipped. Returns `Ok(Flow::Finished)` when the sink is closed (the context
    /// is stopping).
    ///
    /// # Cancel safety
    /// Cancelling while it lists, opens or waits loses nothing. Cancelling while it reads or
    /// waits for room in the buffer drops the lines of that step that were not stored yet;
    /// this only happens when the context stops.
    async fn receive(&mut self, sink: &mut BlockSink<String>) -> Result<Flow, ReceiverError> {
        if self.current.is_none() {
            if self.queue.is_empty() && self.scan(sink).await == 0 {
                self.wait_for_change().await;
                return Ok(Flow::Continue);
            }
            self.open_next(sink).await;
        }
        self.read_some(sink).await
    }

    /// Stops watching. What was seen, queued, or is being read is kept, so a restart goes
    /// on where this one stopped.
    async fn on_stop(&mut self) {
        self.watcher = None;
    }
}

impl fmt::Debug for TextFileReceiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TextFileReceiver")
            .field("dir", &self.dir)
            .field("max_line_bytes", &self.max_line_bytes)
            .field("rescan_interval", &self.rescan_interval)
            .field("seen", &self.seen.len())
            .field("queued", &self.queue.len())
            .field("reading", &self.current.as_ref().map(|f| &f.path))
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
