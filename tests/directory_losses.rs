//! `text_file_stream` and the entries it cannot read (issue 15): a subdirectory, a socket, a
//! dangling symlink, a file that appears with an old modification time. Under the default
//! `skip` policy each is reported once (path and reason) in the batch's `PolledInputInfo`
//! while the stream goes on, and the lines read are counted in `BatchInfo::num_records`;
//! under `fail` the first one fails its batch (once, not retried) and stops the context
//! with an error naming the path, and a restart under `skip` reads the batch again and goes
//! on. Faults are chosen to work as root
//! (CI runs tests as root, where `chmod 000` does not stop a read).

mod common;
mod ui_support;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use common::*;
use parking_lot::Mutex;
use rivulet::prelude::*;
use rivulet::receivers::TextFileSource;

/// The polled input reports and the completed batches, in order.
#[derive(Clone, Default)]
struct Reports(Arc<Mutex<(Vec<PolledInputInfo>, Vec<BatchInfo>)>>);

impl Reports {
    fn attach(ssc: &StreamingContext) -> Reports {
        let r = Reports::default();
        ssc.add_listener(r.clone());
        r
    }
    fn inputs(&self) -> Vec<PolledInputInfo> {
        self.0.lock().0.clone()
    }
    fn completed(&self) -> Vec<BatchInfo> {
        self.0.lock().1.clone()
    }
    /// Skipped path -> reason, over every report (a path reported twice fails the test).
    fn skipped(&self) -> BTreeMap<String, String> {
        let mut all = BTreeMap::new();
        for s in self.inputs().into_iter().flat_map(|i| i.skipped) {
            let again = all.insert(s.split.clone(), s.reason);
            assert!(again.is_none(), "{} reported twice", s.split);
        }
        all
    }
}

impl StreamingListener for Reports {
    fn on_polled_input(&mut self, input: &PolledInputInfo) {
        self.0.lock().0.push(input.clone());
    }
    fn on_batch_completed(&mut self, batch: &BatchInfo) {
        self.0.lock().1.push(batch.clone());
    }
}

fn numbered(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix} {i}")).collect()
}

/// Writes `lines` to `staging/name`, then renames the file into `dir`.
fn move_in(staging: &Path, dir: &Path, name: &str, lines: &[String]) {
    let tmp = staging.join(name);
    fs::write(&tmp, text(lines)).unwrap();
    fs::rename(&tmp, dir.join(name)).unwrap();
}

fn dirs() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("in");
    let staging = root.path().join("staging");
    fs::create_dir(&dir).unwrap();
    fs::create_dir(&staging).unwrap();
    (root, dir, staging)
}

fn path(dir: &Path, name: &str) -> String {
    dir.join(name).display().to_string()
}

#[cfg(unix)]
#[actix::test]
async fn unreadable_entries_are_skipped_counted_and_reported_once() {
    within(async {
        let (_root, dir, staging) = dirs();
        let ssc = context(2, 2);
        let reports = Reports::attach(&ssc);
        let lines = ssc.text_file_stream(&dir).collect_batches();
        ssc.start().await.unwrap();
        ssc.advance(1).await.unwrap();

        let (a, b) = (numbered("a", 3), numbered("b", 400));
        fs::create_dir(dir.join("nested")).unwrap();
        let _socket = std::os::unix::net::UnixListener::bind(dir.join("socket")).unwrap();
        std::os::unix::fs::symlink(dir.join("nowhere"), dir.join("dangling")).unwrap();
        move_in(&staging, &dir, "a.txt", &a);
        move_in(&staging, &dir, "b.txt", &b);
        advance_until(&ssc, || lines.records().len() >= a.len() + b.len()).await;
        ssc.advance(2).await.unwrap();
        ssc.stop(StopMode::Graceful).await.unwrap();

        assert_eq!(sorted(lines.records()), sorted([a, b].concat()));
        let expected: BTreeMap<String, String> = [
            ("dangling", "a symlink whose target does not exist"),
            ("nested", "is a directory"),
            ("socket", "not a regular file (a FIFO, socket or device)"),
        ]
        .into_iter()
        .map(|(n, r)| (path(&dir, n), r.to_string()))
        .collect();
        assert_eq!(reports.skipped(), expected);
        // Every line read is counted, once, in its batch's report and its completed event.
        let inputs = reports.inputs();
        let completed = reports.completed();
        assert_eq!(inputs.iter().map(|i| i.records).sum::<usize>(), 403);
        assert_eq!(completed.iter().map(|b| b.num_records).sum::<usize>(), 403);
        assert_eq!(inputs.len(), completed.len(), "one report per batch");
        for (i, b) in inputs.iter().zip(&completed) {
            assert_eq!((i.batch_time, i.records), (b.batch_time, b.num_records));
            assert!(i.failure.is_none());
        }
        let with_files: Vec<&PolledInputInfo> = inputs.iter().filter(|i| i.splits > 0).collect();
        assert_eq!(with_files.len(), 1, "{inputs:?}");
        assert_eq!(with_files[0].splits, 5);
    })
    .await
}

#[actix::test]
async fn the_fail_policy_stops_the_context_naming_the_path_and_a_restart_under_skip_goes_on() {
    within(async {
        let (root, dir, staging) = dirs();
        let ckpt = root.path().join("ckpt");
        let build = |ssc: &StreamingContext,
                     out: &Arc<Mutex<Option<BatchCollector<String>>>>,
                     policy: UnreadablePolicy|
         -> Result<()> {
            let source = TextFileSource::new(&dir).on_unreadable(policy);
            *out.lock() = Some(ssc.text_file_stream_with(source).collect_batches());
            Ok(())
        };
        let out = Arc::new(Mutex::new(None));
        let ssc = StreamingContext::get_or_create(&ckpt, config(2, 2), |ssc| {
            build(ssc, &out, UnreadablePolicy::Fail)
        })
        .unwrap();
        let reports = Reports::attach(&ssc);
        ssc.start().await.unwrap();
        ssc.advance(1).await.unwrap();
        let a = numbered("a", 3);
        move_in(&staging, &dir, "a.txt", &a);
        fs::create_dir(dir.join("nested")).unwrap();
        // The batch fails, and the context stops with it: `advance` sees one or the other.
        ssc.advance(1).await.expect_err("the batch fails");
        let nested = path(&dir, "nested");
        let stopped = ssc
            .await_termination()
            .await
            .expect_err("stopped by the failure");
        assert!(stopped.to_string().contains(&nested), "{stopped}");
        ssc.stop(StopMode::Now).await.ok();
        let status = ssc.status();
        match &status {
            Some(Status::Stopped(Some(Error::InputFailed { split, reason, .. }))) => {
                assert_eq!(split, &nested);
                assert_eq!(reason, "is a directory");
            }
            other => panic!("expected a stop with InputFailed, got {other:?}"),
        }
        let report = reports.inputs().into_iter().find(|i| i.failure.is_some());
        let report = report.expect("the failed batch is reported");
        assert_eq!(report.skipped.len(), 1);
        assert_eq!(report.skipped[0].split, nested);
        // Its task failed once, not four times.
        let failed = reports.completed().into_iter().find(|b| !b.succeeded());
        let failed = failed.expect("the failed batch completed");
        assert_eq!(failed.failures.len(), 1, "{failed:?}");
        let message = &failed.failures[0].1;
        assert!(
            message.contains("after 1 attempt(s)") && message.contains(&nested),
            "{message}"
        );
        drop(ssc);

        // The failed batch was not checkpointed: a restart under `skip` reads it again, the
        // good file included, and reports the bad entry instead of stopping.
        let b = numbered("b", 2);
        move_in(&staging, &dir, "b.txt", &b);
        let out = Arc::new(Mutex::new(None));
        let ssc = StreamingContext::get_or_create(&ckpt, config(2, 2), |ssc| {
            build(ssc, &out, UnreadablePolicy::Skip)
        })
        .unwrap();
        let reports = Reports::attach(&ssc);
        ssc.start().await.unwrap();
        let lines = out.lock().take().unwrap();
        advance_until(&ssc, || lines.records().len() >= a.len() + b.len()).await;
        ssc.advance(2).await.unwrap();
        ssc.stop(StopMode::Graceful).await.unwrap();
        assert_eq!(sorted(lines.records()), sorted([a, b].concat()));
        assert_eq!(
            reports.skipped(),
            BTreeMap::from([(nested, "is a directory".to_string())])
        );
    })
    .await
}

#[actix::test]
async fn a_file_moved_in_with_an_old_modification_time_is_reported_and_not_read() {
    within(async {
        let (_root, dir, staging) = dirs();
        let ssc = context(1, 1);
        let reports = Reports::attach(&ssc);
        let lines = ssc.text_file_stream(&dir).collect_batches();
        ssc.start().await.unwrap();
        ssc.advance(1).await.unwrap();
        let old = staging.join("old.txt");
        fs::write(&old, "old\n").unwrap();
        let f = fs::File::options().write(true).open(&old).unwrap();
        f.set_modified(SystemTime::now() - Duration::from_secs(3600))
            .unwrap();
        drop(f);
        fs::rename(&old, dir.join("old.txt")).unwrap();
        let fresh = numbered("fresh", 2);
        move_in(&staging, &dir, "fresh.txt", &fresh);
        advance_until(&ssc, || lines.records().len() >= fresh.len()).await;
        ssc.advance(2).await.unwrap();
        ssc.stop(StopMode::Graceful).await.unwrap();
        assert_eq!(lines.records(), fresh);
        let skipped = reports.skipped();
        assert_eq!(skipped.len(), 1, "{skipped:?}");
        let reason = &skipped[&path(&dir, "old.txt")];
        assert!(reason.contains("remember window (60 s)"), "{reason}");
    })
    .await
}

#[actix::test]
async fn the_status_page_shows_the_lines_read_and_the_entries_skipped() {
    within(async {
        let (_root, dir, staging) = dirs();
        let ssc = StreamingContext::new(config(1, 1).ui_address("127.0.0.1:0")).unwrap();
        let lines = ssc.text_file_stream(&dir).collect_batches();
        ssc.start().await.unwrap();
        ssc.advance(1).await.unwrap();
        fs::create_dir(dir.join("nested")).unwrap();
        let a = numbered("a", 7);
        move_in(&staging, &dir, "a.txt", &a);
        advance_until(&ssc, || lines.records().len() >= a.len()).await;
        let api = format!("{}api/v1/streaming", ssc.ui_url().expect("the UI is on"));
        let stats = ui_support::poll_json(&format!("{api}/statistics"), |s| {
            s["numProcessedRecords"] == 7 && s["numSkippedInputs"] == 1
        });
        assert_eq!(stats["numReceivers"], 0, "{stats}");
        let inputs = ui_support::get_json(&format!("{api}/inputs"), 200);
        let input = &inputs[0];
        assert_eq!(
            input["streamName"],
            format!("text files in {}", dir.display())
        );
        assert_eq!(
            (&input["records"], &input["splits"]),
            (&7.into(), &2.into())
        );
        assert_eq!(input["skipped"], 1);
        assert_eq!(input["lastSkipped"][0]["path"], path(&dir, "nested"));
        assert_eq!(input["lastSkipped"][0]["reason"], "is a directory");
        assert!(input["failure"].is_null(), "{inputs}");
        ssc.stop(StopMode::Graceful).await.unwrap();
    })
    .await
}

/// A window reads each batch's files again while it covers them: the bad entry is still
/// reported once, and its lines are counted once (in the batch that took the file).
#[actix::test]
async fn a_window_over_the_stream_reports_a_bad_entry_once() {
    within(async {
        let (_root, dir, staging) = dirs();
        let ssc = context(2, 2);
        let reports = Reports::attach(&ssc);
        let batch = Duration::from_millis(BATCH_MS as u64);
        let windows = ssc
            .text_file_stream(&dir)
            .window(batch * 3, batch)
            .unwrap()
            .collect_batches();
        ssc.start().await.unwrap();
        ssc.advance(1).await.unwrap();
        fs::create_dir(dir.join("nested")).unwrap();
        let a = numbered("a", 4);
        move_in(&staging, &dir, "a.txt", &a);
        advance_until(&ssc, || !windows.records().is_empty()).await;
        ssc.advance(4).await.unwrap();
        ssc.stop(StopMode::Graceful).await.unwrap();
        // Three windows held the file's lines.
        assert_eq!(
            windows.records(),
            [a.clone(), a.clone(), a.clone()].concat()
        );
        assert_eq!(reports.skipped().len(), 1);
        let records: usize = reports.inputs().iter().map(|i| i.records).sum();
        assert_eq!(records, a.len());
    })
    .await
}
