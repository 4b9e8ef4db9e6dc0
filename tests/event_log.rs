//! The event log and the history server (Spark's `spark.eventLog.dir` and History Server),
//! through the public API on the manual clock: a run's log holds its batches with the
//! records and the failure the run had, it loses `.inprogress` at the stop, and the history
//! server replaying it answers Spark's status API as the live server did; a directory that
//! cannot be created stops the start with an error naming it.

#[path = "ui_support/mod.rs"]
mod ui_support;

use rivulet::actors::{EventLog, HistoryServer};
use rivulet::framework::listener::StreamingEvent;
use rivulet::prelude::*;
use serde_json::Value;
use ui_support::*;

/// `GET url` off the test's thread (which must keep running the runtime): the JSON body.
async fn json(url: String) -> Value {
    tokio::task::spawn_blocking(move || get_json(&url, 200))
        .await
        .expect("the request ran")
}

/// The batches of a `/batches` answer whose `batchId` is in `ids`, by id.
fn only(batches: &Value, ids: &[i64]) -> Vec<Value> {
    let mut kept: Vec<Value> = batches
        .as_array()
        .expect("a list")
        .iter()
        .filter(|b| b["batchId"].as_i64().is_some_and(|id| ids.contains(&id)))
        .cloned()
        .collect();
    kept.sort_by_key(|b| b["batchId"].as_i64());
    kept
}

#[actix::test]
async fn a_finished_runs_history_serves_what_its_live_page_served() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let logs = dir.path().join("events");
    // 3 records, all in batch 100; batches 100, 200, 300; batch 200's second output fails.
    let ssc = run_with_failure_configured(|c| c.event_log_dir(&logs), 3, 3).await;
    let url = ssc.ui_url().expect("the UI is on");
    let live_api = format!("{url}api/v1/applications/rivulet/streaming");
    let stats_url = format!("{live_api}/statistics");
    tokio::task::spawn_blocking(move || {
        poll_json(&stats_url, |s| s["numTotalCompletedBatches"] == 3);
    })
    .await
    .expect("the live page saw the 3 batches");
    let live_batches = json(format!("{live_api}/batches")).await;
    let live_ops = json(format!("{live_api}/batches/200/operations")).await;

    // While it runs, the log is in progress.
    let running = EventLog::list(&logs).expect("the directory lists");
    assert_eq!(running.len(), 1, "{running:?}");
    assert!(
        running[0].to_string_lossy().ends_with(".jsonl.inprogress"),
        "{running:?}"
    );
    ssc.stop(StopMode::Graceful).await.expect("a clean stop");

    let paths = EventLog::list(&logs).expect("the directory lists");
    assert_eq!(paths.len(), 1, "{paths:?}");
    let name = paths[0].file_name().expect("a file").to_string_lossy();
    assert!(
        name.starts_with("rivulet-") && name.ends_with(".jsonl"),
        "closed at the stop: {name}"
    );
    let log = EventLog::read(&paths[0]).expect("the log reads back");
    assert!(log.finished(), "the run stopped cleanly");
    assert_eq!(log.run.app_name, "rivulet");
    assert_eq!(log.run.batch_interval_ms, 100);
    assert_eq!(log.dropped_events, 0);
    assert!(
        log.run
            .graph
            .outputs
            .iter()
            .all(|o| o.op == "foreach_batch"),
        "{:?}",
        log.run.graph
    );
    assert_eq!(log.run.graph.outputs.len(), 2);
    let completed: Vec<_> = log
        .events
        .iter()
        .filter_map(|(_, e)| match e {
            StreamingEvent::BatchCompleted(b) => Some(b),
            _ => None,
        })
        .collect();
    let times: Vec<i64> = completed.iter().map(|b| b.batch_time.as_ms()).collect();
    assert_eq!(&times[..3], &[100, 200, 300], "{times:?}");
    assert_eq!(
        completed.iter().map(|b| b.num_records).sum::<usize>(),
        3,
        "the receiver's 3 records"
    );
    let failed: Vec<i64> = completed
        .iter()
        .filter(|b| !b.succeeded())
        .map(|b| b.batch_time.as_ms())
        .collect();
    assert_eq!(failed, vec![200]);
    assert!(completed[1].failures[0].1.contains("fails on purpose"));
    assert!(
        log.events
            .iter()
            .any(|(_, e)| matches!(e, StreamingEvent::ReceiverStopped(r) if !r.active)),
        "the receiver's stop is logged"
    );
    let event_times: Vec<_> = log.events.iter().map(|(t, _)| *t).collect();
    assert!(
        event_times.windows(2).all(|w| w[0] <= w[1]),
        "events in the order they happened"
    );

    // The history server answers as the live one did for the same batches.
    let history = HistoryServer::start(&log, "127.0.0.1:0").expect("the history server starts");
    let base = format!("http://{}/", history.address());
    let api = format!("{base}api/v1/applications/rivulet/streaming");
    let batches = json(format!("{api}/batches")).await;
    assert_eq!(only(&live_batches, &[100, 200, 300]).len(), 3);
    assert_eq!(
        only(&batches, &[100, 200, 300]),
        only(&live_batches, &[100, 200, 300])
    );
    assert_eq!(
        json(format!("{api}/batches/200/operations")).await,
        live_ops
    );
    let stats = json(format!("{api}/statistics")).await;
    assert_eq!(stats["numProcessedRecords"], 3, "{stats}");
    assert_eq!(stats["numTotalFailedBatches"], 1, "{stats}");
    assert_eq!(
        stats["numActiveReceivers"], 0,
        "stopped with the run: {stats}"
    );
    let apps = json(format!("{base}api/v1/applications")).await;
    let attempt = &apps[0]["attempts"][0];
    assert_eq!(attempt["completed"], true, "{apps}");
    assert!(
        attempt["endTimeEpoch"].as_i64() >= attempt["startTimeEpoch"].as_i64(),
        "{apps}"
    );
    let receivers = json(format!("{api}/receivers")).await;
    assert_eq!(receivers[0]["recordsStored"], 3, "{receivers}");
    assert_eq!(receivers[0]["isActive"], false, "{receivers}");
    let page = tokio::task::spawn_blocking(move || get(&base))
        .await
        .expect("the request ran");
    assert_eq!(page.0, 200);
    assert!(page.1.contains("<html"), "the status page");
    history.stop().await;
}

#[actix::test]
async fn an_event_log_directory_that_cannot_be_made_stops_the_start_naming_it() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"not a directory").expect("a file");
    let ssc = StreamingContext::new(
        StreamingConfig::new()
            .manual_clock(true)
            .event_log_dir(file.join("events")),
    )
    .expect("valid config");
    ssc.queue_stream::<u32>(Vec::new()).foreach_batch(|_, _| {});
    let error = ssc.start().await.expect_err("the log cannot be created");
    let message = error.to_string();
    assert!(
        message.contains("event log directory") && message.contains("a-file"),
        "{message}"
    );
}
