//! The event log (Spark: `spark.eventLog.dir` and its `EventLoggingListener`): every listener
//! event of a run, one JSON object per line, in a file of its own under the configured
//! directory, so that a finished run's status page can be served again
//! ([`HistoryServer`](crate::HistoryServer), Spark's History Server).
//!
//! A run writes `<app id>-<start ms>.jsonl.inprogress` and renames it to
//! `<app id>-<start ms>.jsonl` when its context stops (a killed run leaves the
//! `.inprogress` file, which is still readable). Lines, in order:
//! - `{"Start":{...}}`: the [`RunInfo`] (format version, application, batch interval,
//!   DStream graph);
//! - `{"Event":{"at_ms":..,"event":{..}}}`: a [`StreamingEvent`] and when it happened (ms
//!   since the Unix epoch);
//! - `{"Scheduler":{..}}`: the scheduler's recovery counters, after a batch that changed them;
//! - `{"End":{"at_ms":..,"dropped_events":..}}`: the context stopped.
//!
//! Events reach the file through a bounded queue (65,536 events) and a thread of its own, so
//! the coordinator never waits for the disk; the file is flushed after each completed batch
//! and at the end. Were the queue ever full, events are dropped, counted in the `End` line
//! and logged at WARN (Spark's listener bus drops events the same way).

use std::fs::{self, File};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rivulet_framework::config::StreamingConfig;
use rivulet_framework::dstream::GraphDescription;
use rivulet_framework::listener::{StreamingEvent, StreamingListener};
use rivulet_framework::scheduler::{SchedulerCounters, SchedulerMetrics};
use rivulet_framework::{Error, Result};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::listener_bus::queued_listener;
use crate::ui::epoch_ms;

/// The format this build writes and reads (the `format` of [`RunInfo`]).
pub const EVENT_LOG_FORMAT: u32 = 1;

/// Events queued between the coordinator and the event log's thread.
const EVENT_QUEUE: usize = 65_536;

/// The suffix of a log whose run has not stopped (still running, or killed).
const IN_PROGRESS: &str = ".inprogress";

/// A log file's extension.
const EXTENSION: &str = ".jsonl";

/// What an event log says about its run: the first line of the file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunInfo {
    /// The event log format ([`EVENT_LOG_FORMAT`] for this build).
    pub format: u32,
    /// The version of rivulet that wrote the log.
    pub rivulet_version: String,
    /// `StreamingConfig::app_name`.
    pub app_name: String,
    /// When the context started, ms since the Unix epoch.
    pub start_ms: u64,
    /// The batch interval, ms.
    pub batch_interval_ms: u64,
    /// `StreamingConfig::ui_retained_batches` of the run.
    pub ui_retained_batches: usize,
    /// The run's DStream graph.
    pub graph: GraphDescription,
}

/// One line of an event log.
#[derive(Debug, Serialize, Deserialize)]
enum Line {
    Start(RunInfo),
    Event { at_ms: u64, event: StreamingEvent },
    Scheduler(SchedulerMetrics),
    End { at_ms: u64, dropped_events: u64 },
}

/// A run's event log, read back whole (see [`EventLog::read`]).
#[derive(Clone, Debug, PartialEq)]
pub struct EventLog {
    /// The file it was read from.
    pub path: PathBuf,
    /// The run.
    pub run: RunInfo,
    /// Every event, in the order the listeners saw them, with when it happened.
    pub events: Vec<(SystemTime, StreamingEvent)>,
    /// The scheduler's recovery counters as last logged (zero when none was).
    pub scheduler: SchedulerMetrics,
    /// When the context stopped; `None` for a log whose run did not stop cleanly (killed,
    /// or still running).
    pub end: Option<SystemTime>,
    /// Events the run could not log (its queue was full).
    pub dropped_events: u64,
}

fn at(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// An error about the log at `path`, line `line` (1-based).
fn invalid(path: &Path, line: usize, message: impl std::fmt::Display) -> Error {
    Error::io(
        format!("event log {} line {line}", path.display()),
        std::io::Error::new(std::io::ErrorKind::InvalidData, message.to_string()),
    )
}

impl EventLog {
    /// Reads the event log at `path`. A last line cut short (the run was killed while
    /// writing it) is left out with a WARN; every other line must be whole.
    ///
    /// # Errors
    /// [`Error::Io`] naming the file (and the line, for bad content): it cannot be read, it
    /// is empty, it does not start with a run's description (not an event log), its format
    /// is not [`EVENT_LOG_FORMAT`], or a line other than the last is not a valid record.
    pub fn read(path: &Path) -> Result<EventLog> {
        let file = File::open(path)
            .map_err(|e| Error::io(format!("cannot open event log {}", path.display()), e))?;
        let mut lines = Vec::new();
        let mut reader = BufReader::new(file);
        loop {
            let mut line = String::new();
            let n = reader
                .read_line(&mut line)
                .map_err(|e| Error::io(format!("cannot read event log {}", path.display()), e))?;
            if n == 0 {
                break;
            }
            lines.push(line);
        }
        let mut run = None;
        let mut log = Vec::new();
        let (mut scheduler, mut end, mut dropped) = (SchedulerMetrics::default(), None, 0);
        let count = lines.len();
        for (i, text) in lines.iter().enumerate() {
            let number = i + 1;
            let line = match serde_json::from_str::<Line>(text.trim_end()) {
                Ok(line) => line,
                Err(e) if number == count && !text.ends_with('\n') && number > 1 => {
                    tracing::warn!(
                        log = %path.display(),
                        line = number,
                        error = %e,
                        "The event log's last line was cut short (the run was killed while writing it); it is left out."
                    );
                    break;
                }
                Err(e) => {
                    return Err(invalid(
                        path,
                        number,
                        format!("not an event log record: {e}"),
                    ))
                }
            };
            match (line, &run) {
                (Line::Start(info), None) => {
                    if info.format != EVENT_LOG_FORMAT {
                        return Err(invalid(
                            path,
                            number,
                            format!(
                                "event log format {} (rivulet {}), but this build reads format {EVENT_LOG_FORMAT}",
                                info.format, info.rivulet_version
                            ),
                        ));
                    }
                    run = Some(info);
                }
                (_, None) => {
                    return Err(invalid(
                        path,
                        number,
                        "the first line does not describe a run: not a rivulet event log",
                    ))
                }
                (Line::Start(_), Some(_)) => {
                    return Err(invalid(path, number, "a second run description"))
                }
                (Line::Event { at_ms, event }, Some(_)) => log.push((at(at_ms), event)),
                (Line::Scheduler(m), Some(_)) => scheduler = m,
                (
                    Line::End {
                        at_ms,
                        dropped_events,
                    },
                    Some(_),
                ) => {
                    end = Some(at(at_ms));
                    dropped = dropped_events;
                }
            }
        }
        let run = run.ok_or_else(|| invalid(path, 1, "the file is empty: not an event log"))?;
        Ok(EventLog {
            path: path.to_path_buf(),
            run,
            events: log,
            scheduler,
            end,
            dropped_events: dropped,
        })
    }

    /// The event logs in `dir` (files ending in `.jsonl` or `.jsonl.inprogress`), newest run
    /// first (by the start time in their names).
    ///
    /// # Errors
    /// [`Error::Io`] naming the directory when it cannot be listed.
    pub fn list(dir: &Path) -> Result<Vec<PathBuf>> {
        let entries = fs::read_dir(dir).map_err(|e| {
            Error::io(
                format!("cannot list event log directory {}", dir.display()),
                e,
            )
        })?;
        let mut logs = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| {
                Error::io(
                    format!("cannot list event log directory {}", dir.display()),
                    e,
                )
            })?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let stem = name.strip_suffix(IN_PROGRESS).unwrap_or(&name);
            if let Some(stem) = stem.strip_suffix(EXTENSION) {
                // `<app id>-<start ms>[.<n>]`
                let start = stem
                    .rsplit('-')
                    .next()
                    .and_then(|s| s.split('.').next())
                    .and_then(|s| s.parse::<u64>().ok())
                    .unwrap_or(0);
                logs.push((start, entry.path()));
            }
        }
        logs.sort_by(|a, b| b.cmp(a));
        Ok(logs.into_iter().map(|(_, p)| p).collect())
    }

    /// Whether the run stopped cleanly (the log has its `End` line).
    pub fn finished(&self) -> bool {
        self.end.is_some()
    }
}

/// The writing side, held by the runtime, which waits for the log to be closed when the
/// context stops.
#[derive(Debug)]
pub(crate) struct EventLogWriter {
    /// The file being written (`.inprogress`).
    path: PathBuf,
    done: watch::Receiver<bool>,
}

/// What the writer thread owns.
struct Writer {
    path: PathBuf,
    out: Option<BufWriter<File>>,
    scheduler: Arc<SchedulerCounters>,
    logged: SchedulerMetrics,
    dropped: Arc<AtomicU64>,
}

impl Writer {
    fn line(&mut self, line: &Line) {
        let Some(out) = &mut self.out else { return };
        let written = serde_json::to_writer(&mut *out, line)
            .map_err(std::io::Error::from)
            .and_then(|()| out.write_all(b"\n"));
        if let Err(e) = written {
            tracing::error!(log = %self.path.display(), error = %e, "Cannot write the event log; the run goes on without it.");
            self.out = None;
        }
    }

    fn flush(&mut self) {
        if let Some(out) = &mut self.out {
            if let Err(e) = out.flush() {
                tracing::error!(log = %self.path.display(), error = %e, "Cannot write the event log; the run goes on without it.");
                self.out = None;
            }
        }
    }

    fn run(mut self, inbox: Receiver<(StreamingEvent, SystemTime)>) -> PathBuf {
        while let Ok((event, time)) = inbox.recv() {
            let completed = matches!(event, StreamingEvent::BatchCompleted(_));
            self.line(&Line::Event {
                at_ms: epoch_ms(time),
                event,
            });
            if completed {
                self.scheduler_line();
                self.flush();
            }
        }
        // The coordinator dropped the listener: the context stopped.
        self.scheduler_line();
        let dropped_events = self.dropped.load(Ordering::Relaxed);
        if dropped_events > 0 {
            tracing::warn!(log = %self.path.display(), dropped_events, "The event log's queue overflowed: events were dropped.");
        }
        self.line(&Line::End {
            at_ms: epoch_ms(SystemTime::now()),
            dropped_events,
        });
        self.flush();
        let Some(out) = self.out.take() else {
            return self.path;
        };
        let finished = self.path.with_extension("");
        let closed = out
            .into_inner()
            .map_err(|e| e.into_error())
            .and_then(|f| f.sync_all())
            .and_then(|()| fs::rename(&self.path, &finished));
        match closed {
            Ok(()) => finished,
            Err(e) => {
                tracing::error!(log = %self.path.display(), error = %e, "Cannot close the event log.");
                self.path
            }
        }
    }

    fn scheduler_line(&mut self) {
        let now = self.scheduler.snapshot();
        if now != self.logged {
            self.line(&Line::Scheduler(now.clone()));
            self.logged = now;
        }
    }
}

impl EventLogWriter {
    /// Creates `dir` if needed and a log file for this run in it, writes the run's
    /// description, and starts the thread that writes events. Returns the writer and the
    /// listener that feeds it (add it to the listener bus).
    ///
    /// # Errors
    /// [`Error::Io`] naming the directory or file when it cannot be created or written;
    /// [`Error::Internal`] when the thread cannot start.
    pub(crate) fn start(
        dir: &Path,
        config: &StreamingConfig,
        graph: GraphDescription,
        scheduler: Arc<SchedulerCounters>,
    ) -> Result<(EventLogWriter, Box<dyn StreamingListener>)> {
        fs::create_dir_all(dir).map_err(|e| {
            Error::io(
                format!("cannot create event log directory {}", dir.display()),
                e,
            )
        })?;
        let start_ms = epoch_ms(SystemTime::now());
        let app_id = crate::ui::app_id(config.get_app_name());
        let mut path = dir.join(format!("{app_id}-{start_ms}{EXTENSION}{IN_PROGRESS}"));
        // Two runs of one application started in the same millisecond: a fresh name.
        let mut n = 1;
        while path.exists() {
            path = dir.join(format!("{app_id}-{start_ms}.{n}{EXTENSION}{IN_PROGRESS}"));
            n += 1;
        }
        let file = File::create_new(&path)
            .map_err(|e| Error::io(format!("cannot create event log {}", path.display()), e))?;
        let dropped = Arc::new(AtomicU64::new(0));
        let mut writer = Writer {
            path: path.clone(),
            out: Some(BufWriter::new(file)),
            logged: scheduler.snapshot(),
            scheduler,
            dropped: dropped.clone(),
        };
        writer.line(&Line::Start(RunInfo {
            format: EVENT_LOG_FORMAT,
            rivulet_version: env!("CARGO_PKG_VERSION").to_string(),
            app_name: config.get_app_name().to_string(),
            start_ms,
            batch_interval_ms: config.get_batch_interval().as_millis() as u64,
            ui_retained_batches: config.get_ui_retained_batches(),
            graph,
        }));
        writer.flush();
        if writer.out.is_none() {
            return Err(Error::io(
                format!("cannot write event log {}", path.display()),
                std::io::Error::other("see the error logged above"),
            ));
        }
        let (events, inbox) = mpsc::sync_channel(EVENT_QUEUE);
        let (done_tx, done) = watch::channel(false);
        std::thread::Builder::new()
            .name("rivulet-event-log".into())
            .spawn(move || {
                let path = writer.run(inbox);
                tracing::info!(log = %path.display(), "Event log written.");
                let _ = done_tx.send(true);
            })
            .map_err(|e| Error::Internal(format!("cannot start the event log's thread: {e}")))?;
        tracing::info!(log = %path.display(), "Writing the event log.");
        Ok((
            EventLogWriter { path, done },
            queued_listener(events, dropped),
        ))
    }

    /// Waits, after the context stopped (and so dropped the listener), until the log is
    /// closed: the events queued before are written, then the `End` line, and the file is
    /// renamed without `.inprogress`. Waits at most 10 s for the disk.
    pub(crate) async fn closed(&self) {
        let mut done = self.done.clone();
        if tokio::time::timeout(Duration::from_secs(10), done.wait_for(|d| *d))
            .await
            .is_err()
        {
            tracing::warn!(log = %self.path.display(), "The event log was not closed within 10 s; it stays .inprogress.");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rivulet_framework::listener::BatchInfo;
    use rivulet_framework::time::Time;

    use super::*;

    fn run_info(format: u32) -> RunInfo {
        RunInfo {
            format,
            rivulet_version: "0.0.9".into(),
            app_name: "test".into(),
            start_ms: 1_000,
            batch_interval_ms: 100,
            ui_retained_batches: 10,
            graph: GraphDescription::default(),
        }
    }

    fn completed(ms: i64) -> Line {
        Line::Event {
            at_ms: 2_000 + ms as u64,
            event: StreamingEvent::BatchCompleted(BatchInfo {
                batch_time: Time::from_ms(ms),
                num_records: 5,
                stream_records: Default::default(),
                submission_time: UNIX_EPOCH,
                scheduling_delay: Some(Duration::ZERO),
                processing_delay: Some(Duration::from_millis(1)),
                failures: Vec::new(),
                num_output_ops: 1,
            }),
        }
    }

    fn text(lines: &[Line]) -> String {
        lines
            .iter()
            .map(|l| serde_json::to_string(l).unwrap() + "\n")
            .collect()
    }

    fn read(content: &str) -> Result<EventLog> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app-1.jsonl");
        fs::write(&path, content).unwrap();
        EventLog::read(&path)
    }

    fn error(content: &str) -> String {
        read(content).unwrap_err().to_string()
    }

    #[test]
    fn a_whole_log_reads_back_with_its_end_and_counters() {
        let mut metrics = SchedulerMetrics::default();
        metrics.task_retries = 2;
        let log = read(&text(&[
            Line::Start(run_info(EVENT_LOG_FORMAT)),
            completed(100),
            Line::Scheduler(metrics.clone()),
            completed(200),
            Line::End {
                at_ms: 9_000,
                dropped_events: 4,
            },
        ]))
        .unwrap();
        assert_eq!(log.run, run_info(EVENT_LOG_FORMAT));
        assert_eq!(log.events.len(), 2);
        assert_eq!(log.events[1].0, UNIX_EPOCH + Duration::from_millis(2_200));
        assert_eq!(log.scheduler, metrics);
        assert_eq!(log.end, Some(UNIX_EPOCH + Duration::from_millis(9_000)));
        assert_eq!(log.dropped_events, 4);
        assert!(log.finished());
    }

    #[test]
    fn a_last_line_a_kill_cut_short_is_left_out() {
        let whole = text(&[
            Line::Start(run_info(EVENT_LOG_FORMAT)),
            completed(100),
            completed(200),
        ]);
        let cut = &whole[..whole.len() - 20];
        let log = read(cut).unwrap();
        assert_eq!(log.events.len(), 1, "the whole lines only");
        assert!(!log.finished());
    }

    #[test]
    fn a_bad_line_before_the_last_is_an_error_naming_its_line() {
        let mut content = text(&[Line::Start(run_info(EVENT_LOG_FORMAT)), completed(100)]);
        content.push_str("{\"Event\": 3}\n");
        content.push_str(&text(&[completed(200)]));
        let message = error(&content);
        assert!(
            message.contains("app-1.jsonl line 3") && message.contains("not an event log record"),
            "{message}"
        );
        // A whole last line (it ends in a newline) that is bad is an error too.
        let mut content = text(&[Line::Start(run_info(EVENT_LOG_FORMAT))]);
        content.push_str("garbage\n");
        assert!(error(&content).contains("line 2"));
    }

    #[test]
    fn files_that_are_not_logs_of_this_format_are_refused() {
        assert!(error("").contains("empty"), "{}", error(""));
        let message = error(&text(&[completed(100)]));
        assert!(message.contains("not a rivulet event log"), "{message}");
        let message = error("{\"a\": 1}");
        assert!(message.contains("line 1"), "{message}");
        let message = error(&text(&[Line::Start(run_info(EVENT_LOG_FORMAT + 1))]));
        assert!(
            message.contains(&format!("format {}", EVENT_LOG_FORMAT + 1))
                && message.contains("rivulet 0.0.9"),
            "{message}"
        );
        let message = error(&text(&[
            Line::Start(run_info(EVENT_LOG_FORMAT)),
            Line::Start(run_info(EVENT_LOG_FORMAT)),
        ]));
        assert!(message.contains("a second run description"), "{message}");
        let missing = EventLog::read(Path::new("/nonexistent/app.jsonl")).unwrap_err();
        assert!(missing.to_string().contains("/nonexistent/app.jsonl"));
    }

    #[test]
    fn logs_are_listed_newest_run_first() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "a-100.jsonl",
            "b-300.jsonl.inprogress",
            "a-200.jsonl",
            "notes.txt",
            "c-50.1.jsonl",
        ] {
            fs::write(dir.path().join(name), "").unwrap();
        }
        let names: Vec<String> = EventLog::list(dir.path())
            .unwrap()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "b-300.jsonl.inprogress",
                "a-200.jsonl",
                "a-100.jsonl",
                "c-50.1.jsonl"
            ]
        );
        let missing = EventLog::list(&dir.path().join("none")).unwrap_err();
        assert!(missing.to_string().contains("event log directory"));
    }
}
