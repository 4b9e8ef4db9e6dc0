//! Spark's status API under Spark's paths (`/api/v1/applications[/{app}/streaming/...]`)
//! and the short aliases, against runs on the manual clock: every path answers, and its
//! values agree with the run's own counts (records the receiver stored, batches advanced,
//! output operations per batch, the failed output's reason, the jobs each output ran);
//! `?status=` filters, a bad status is a 400, a wrong app a 404, a known and an unknown
//! receiver.

#[path = "ui_support/mod.rs"]
mod ui_support;

use std::sync::{mpsc, Arc};
use std::time::Duration;

use rivulet::prelude::*;
use serde_json::{json, Value};
use tokio::sync::Notify;
use ui_support::*;

/// The `key` of each element of the JSON list `list`.
fn column(list: &Value, key: &str) -> Vec<Value> {
    list.as_array()
        .unwrap_or_else(|| panic!("a list: {list}"))
        .iter()
        .map(|v| v[key].clone())
        .collect()
}

/// Runs `f` (blocking HTTP requests) off the test's thread, which must keep running the
/// runtime: the status server's tasks may need it before the first batch has run.
async fn off_thread<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f)
        .await
        .expect("the requests ran")
}

/// The error message of a JSON error answer with status `status`.
fn error_of(url: &str, status: u16) -> String {
    let body = get_json(url, status);
    body["error"]
        .as_str()
        .unwrap_or_else(|| panic!("an error message: {body}"))
        .to_string()
}

#[actix::test]
async fn spark_paths_answer_with_the_runs_counts() {
    // 3 records, all in batch 100; 3 batches; 2 output operations per batch, the second
    // failing in batch 200 ("fails on purpose").
    let ssc = run_with_failure(3, 3).await;
    let url = ssc.ui_url().expect("the UI is on");

    // The application list: one, running, under the default app name.
    let apps = get_json(&format!("{url}api/v1/applications"), 200);
    assert_eq!(column(&apps, "id"), vec![json!("rivulet")], "{apps}");
    assert_eq!(apps[0]["name"], "rivulet");
    let attempt = &apps[0]["attempts"][0];
    assert_eq!(attempt["completed"], false, "{attempt}");
    assert_eq!(attempt["endTime"], "1969-12-31T23:59:59.999GMT");
    assert_eq!(attempt["endTimeEpoch"], -1);
    let start = attempt["startTimeEpoch"].as_i64().expect("a start");
    assert!(start > 0, "{attempt}");
    assert!(
        attempt["lastUpdatedEpoch"].as_i64() >= Some(start),
        "{attempt}"
    );
    let start_date = attempt["startTime"].as_str().expect("a date");
    assert!(
        start_date.len() == 26 && start_date.ends_with("GMT") && start_date.as_bytes()[10] == b'T',
        "Spark's yyyy-MM-dd'T'HH:mm:ss.SSS'GMT': {start_date}"
    );
    assert_eq!(
        get_json(&format!("{url}api/v1/applications/rivulet"), 200)["id"],
        "rivulet"
    );

    let spark = format!("{url}api/v1/applications/rivulet/streaming");
    let short = format!("{url}api/v1/streaming");
    let stats = poll_json(&format!("{spark}/statistics"), |s| {
        s["numTotalCompletedBatches"] == 3
    });
    assert_eq!(stats["batchDuration"], 100, "{stats}");
    assert_eq!(stats["numReceivers"], 1);
    assert_eq!(stats["numActiveReceivers"], 1);
    assert_eq!(stats["numInactiveReceivers"], 0);
    assert_eq!(stats["numRetainedCompletedBatches"], 3);
    assert_eq!(stats["numActiveBatches"], 0);
    assert_eq!(stats["numProcessedRecords"], 3);
    assert_eq!(stats["numReceivedRecords"], 3, "nothing is in flight");
    // 3 records over 3 batches of 100 ms: 10 records/s on average.
    assert_eq!(stats["avgInputRate"].as_f64(), Some(10.0), "{stats}");
    for key in ["avgSchedulingDelay", "avgProcessingTime", "avgTotalDelay"] {
        assert!(stats[key].is_number(), "{key}: {stats}");
    }

    // Batches: one per advance, newest first, two output operations each.
    let batches = get_json(&format!("{spark}/batches"), 200);
    assert_eq!(
        column(&batches, "batchId"),
        vec![json!(300), json!(200), json!(100)]
    );
    assert_eq!(column(&batches, "batchId"), column(&batches, "batchTime"));
    assert_eq!(
        column(&batches, "inputSize"),
        vec![json!(0), json!(0), json!(3)]
    );
    assert_eq!(column(&batches, "numTotalOutputOps"), vec![json!(2); 3]);
    assert_eq!(column(&batches, "numActiveOutputOps"), vec![json!(0); 3]);
    assert_eq!(
        column(&batches, "numCompletedOutputOps"),
        vec![json!(2), json!(1), json!(2)],
        "Spark's meaning: ended without an error"
    );
    assert_eq!(
        column(&batches, "numFailedOutputOps"),
        vec![json!(0), json!(1), json!(0)]
    );
    let reason = batches[1]["firstFailureReason"].as_str().expect("a reason");
    assert!(reason.contains("fails on purpose"), "{reason}");

    // ?status=: completed includes the failed batch (Spark counts it completed), any case.
    let filtered = |status: &str| {
        column(
            &get_json(&format!("{spark}/batches?status={status}"), 200),
            "batchId",
        )
    };
    assert_eq!(filtered("completed"), column(&batches, "batchId"));
    assert_eq!(filtered("COMPLETED"), column(&batches, "batchId"));
    assert_eq!(filtered("Failed"), vec![json!(200)]);
    assert!(filtered("processing").is_empty());
    assert!(filtered("queued").is_empty());
    let bad = error_of(&format!("{spark}/batches?status=done"), 400);
    for name in ["\"done\"", "completed", "processing", "queued"] {
        assert!(bad.contains(name), "{name} in {bad}");
    }
    error_of(&format!("{short}/batches?status=done"), 400);
    // ?since= (rivulet's): only the batches after a time, newest first; with a status too.
    let since = |query: &str| {
        column(
            &get_json(&format!("{short}/batches?{query}"), 200),
            "batchId",
        )
    };
    assert_eq!(since("since=100"), vec![json!(300), json!(200)]);
    assert!(since("since=300").is_empty());
    assert_eq!(since("since=0&status=failed"), vec![json!(200)]);
    error_of(&format!("{short}/batches?since=soon"), 400);

    // The failed batch's output operations, with their jobs.
    let one = get_json(&format!("{spark}/batches/200"), 200);
    let ops = get_json(&format!("{spark}/batches/200/operations"), 200);
    assert_eq!(
        column(&ops, "outputOpId"),
        vec![json!(0), json!(1)],
        "{ops}"
    );
    assert_eq!(ops, one["outputOperations"], "the same views");
    assert!(ops[0]["failureReason"].is_null(), "{ops}");
    let failure = ops[1]["failureReason"].as_str().expect("a failure");
    assert!(failure.contains("fails on purpose"), "{failure}");
    let mut all_jobs = std::collections::BTreeSet::new();
    for op in ops.as_array().expect("a list") {
        let (start, end, duration) = (
            op["startTime"].as_u64().expect("a start"),
            op["endTime"].as_u64().expect("an end"),
            op["duration"].as_u64().expect("a duration"),
        );
        assert_eq!(end - start, duration, "{op}");
        assert!(
            start >= attempt["startTimeEpoch"].as_u64().expect("ms"),
            "{op}"
        );
        assert!(op["name"]
            .as_str()
            .is_some_and(|n| n.starts_with("foreach_batch at tests/ui_support/mod.rs:")));
        assert_eq!(op["description"], op["name"]);
        // Each output operation collected its batch: one job, named by the batch view.
        let ids = op["jobIds"].as_array().expect("job ids").clone();
        assert_eq!(ids.len(), 1, "{op}");
        let jobs: Vec<&Value> = one["jobs"]
            .as_array()
            .expect("jobs")
            .iter()
            .filter(|j| j["outputOpId"] == op["outputOpId"])
            .collect();
        assert_eq!(
            jobs.iter().map(|j| j["jobId"].clone()).collect::<Vec<_>>(),
            ids,
            "{one}"
        );
        all_jobs.extend(ids.iter().map(|id| id.as_u64().expect("an id")));
    }
    assert_eq!(all_jobs.len(), 2, "each job belongs to one output: {ops}");
    assert_eq!(
        get_json(&format!("{spark}/batches/200/operations/1"), 200),
        ops[1]
    );
    let missing = error_of(&format!("{spark}/batches/200/operations/5"), 404);
    assert!(
        missing.contains('5') && missing.contains("200"),
        "{missing}"
    );
    error_of(&format!("{spark}/batches/200/operations/x"), 400);
    error_of(&format!("{spark}/batches/99900/operations"), 404);
    error_of(&format!("{spark}/batches/99900/operations/0"), 404);
    error_of(&format!("{spark}/batches/abc"), 400);

    // The receiver: its records stored (read live), its rate per retained batch.
    let receivers = get_json(&format!("{spark}/receivers"), 200);
    assert_eq!(
        column(&receivers, "streamId"),
        vec![json!(0)],
        "{receivers}"
    );
    let r = get_json(&format!("{spark}/receivers/0"), 200);
    assert_eq!(r, receivers[0]);
    assert_eq!(r["streamName"], "fixed", "{r}");
    assert_eq!(r["isActive"], true);
    assert_eq!(r["executorId"], "driver");
    assert_eq!(r["executorHost"], "127.0.0.1");
    assert_eq!(r["recordsStored"], 3, "what the receiver stored: {r}");
    assert_eq!(r["records"], 3);
    assert!(r["lastErrorMessage"].is_null() && r["lastError"].is_null());
    assert!(r["lastErrorTime"].is_null());
    // 3 records in batch 100 of 100 ms: 30/s, then none.
    assert_eq!(
        r["eventRates"],
        json!([[100, 30.0], [200, 0.0], [300, 0.0]]),
        "{r}"
    );
    assert_eq!(r["avgEventRate"].as_f64(), Some(10.0));
    let unknown = error_of(&format!("{spark}/receivers/7"), 404);
    assert!(unknown.contains('7'), "{unknown}");
    error_of(&format!("{spark}/receivers/abc"), 400);

    // A wrong app is a 404 naming it, on every path.
    for path in [
        "",
        "/streaming/statistics",
        "/streaming/batches",
        "/streaming/receivers/0",
        "/streaming/batches/200/operations/1",
    ] {
        let wrong = error_of(&format!("{url}api/v1/applications/nope{path}"), 404);
        assert!(
            wrong.contains("\"nope\"") && wrong.contains("rivulet"),
            "{path}: {wrong}"
        );
    }
    // Unknown streaming paths are 404s under both prefixes.
    error_of(&format!("{spark}/nope"), 404);
    error_of(&format!("{short}/nope"), 404);

    // The short paths are aliases: the same answers.
    for path in [
        "/statistics",
        "/batches",
        "/batches?status=failed",
        "/batches/200",
        "/batches/200/operations",
        "/batches/200/operations/0",
        "/receivers",
        "/receivers/0",
        "/inputs",
        "/graph",
    ] {
        assert_eq!(
            get_json(&format!("{spark}{path}"), 200),
            get_json(&format!("{short}{path}"), 200),
            "{path}"
        );
    }
    ssc.stop(StopMode::Graceful).await.expect("stops");
}

#[actix::test]
async fn records_stored_are_read_live_before_any_batch() {
    // The receiver stored 5 records; no batch was cut yet.
    let ssc = run_with_failure(5, 0).await;
    let url = ssc.ui_url().expect("the UI is on");
    let api = format!("{url}api/v1/streaming");
    let (r, stats) = {
        let api = api.clone();
        off_thread(move || {
            // The list first: the receiver is listed once its start event arrived.
            poll_json(&format!("{api}/receivers"), |r| r[0]["recordsStored"] == 5);
            let r = get_json(&format!("{api}/receivers/0"), 200);
            (r, get_json(&format!("{api}/statistics"), 200))
        })
        .await
    };
    assert_eq!(r["records"], 0, "in no batch yet: {r}");
    assert_eq!(r["eventRates"], json!([]), "{r}");
    assert!(r["avgEventRate"].is_null(), "{r}");
    assert_eq!(stats["numReceivedRecords"], 0, "{stats}");

    ssc.advance(1).await.expect("batch 100 runs");
    let r = poll_json(&format!("{api}/receivers/0"), |r| r["records"] == 5);
    assert_eq!(r["recordsStored"], 5, "{r}");
    assert_eq!(r["eventRates"], json!([[100, 50.0]]), "{r}");
    ssc.stop(StopMode::Graceful).await.expect("stops");
}

#[actix::test]
async fn batches_in_flight_are_processing_and_queued() {
    // Batch 100's output waits at a gate while batch 200 queues behind it.
    let config = StreamingConfig::new()
        .app_name("word count")
        .batch_interval(Duration::from_millis(100))
        .executors(1)
        .manual_clock(true)
        .ui_address("127.0.0.1:0");
    let ssc = StreamingContext::new(config).expect("valid config");
    let stored = Arc::new(Notify::new());
    let (release, gate) = mpsc::channel::<()>();
    let gate = parking_lot::Mutex::new(gate);
    ssc.receiver_stream(Fixed {
        records: (0..4).map(|i| format!("line {i}")).collect(),
        stored: stored.clone(),
        done: false,
    })
    .foreach_batch(move |t, _| {
        if t == Time::from_ms(100) {
            let gate = gate.lock();
            let _ = gate.recv_timeout(UI_TIMEOUT);
        }
    });
    ssc.start().await.expect("starts");
    tokio::time::timeout(UI_TIMEOUT, stored.notified())
        .await
        .expect("the receiver stores its records");
    let url = ssc.ui_url().expect("the UI is on");
    // The app name has a space: its id in Spark's paths has a dash.
    let apps = {
        let url = url.clone();
        off_thread(move || get_json(&format!("{url}api/v1/applications"), 200)).await
    };
    assert_eq!(apps[0]["id"], "word-count", "{apps}");
    assert_eq!(apps[0]["name"], "word count");
    let spark = format!("{url}api/v1/applications/word-count/streaming");

    let watch = {
        let spark = spark.clone();
        tokio::task::spawn_blocking(move || {
            // Both batches in flight, as the events told (batch 100 is queued an instant
            // before it starts): from here on nothing moves until the gate opens.
            poll_json(&format!("{spark}/batches"), |b| {
                column(b, "status") == vec![json!("QUEUED"), json!("PROCESSING")]
            });
            let queued = get_json(&format!("{spark}/batches?status=queued"), 200);
            let processing = get_json(&format!("{spark}/batches?status=processing"), 200);
            let stats = get_json(&format!("{spark}/statistics"), 200);
            let completed = get_json(&format!("{spark}/batches?status=completed"), 200);
            let _ = release.send(());
            (queued, processing, stats, completed)
        })
    };
    let (first, second, watched) = tokio::join!(ssc.advance(1), ssc.advance(1), watch);
    first.expect("batch 100 runs");
    second.expect("batch 200 runs");
    let (queued, processing, stats, completed) = watched.expect("the watcher ran");
    assert_eq!(column(&queued, "batchId"), vec![json!(200)], "{queued}");
    assert_eq!(queued[0]["status"], "QUEUED");
    assert_eq!(queued[0]["numActiveOutputOps"], 0);
    assert_eq!(
        column(&processing, "batchId"),
        vec![json!(100)],
        "{processing}"
    );
    let running = &processing[0];
    assert_eq!(running["status"], "PROCESSING");
    assert_eq!(running["inputSize"], 4);
    assert_eq!(running["numTotalOutputOps"], 1, "{running}");
    assert_eq!(running["numActiveOutputOps"], 1, "{running}");
    assert_eq!(running["numCompletedOutputOps"], 0, "{running}");
    assert_eq!(completed, json!([]));
    assert_eq!(stats["numActiveBatches"], 2, "{stats}");
    assert_eq!(stats["numReceivedRecords"], 4, "batch 100 started: {stats}");
    assert_eq!(stats["numProcessedRecords"], 0, "none completed: {stats}");

    let stats = poll_json(&format!("{spark}/statistics"), |s| {
        s["numTotalCompletedBatches"] == 2
    });
    assert_eq!(stats["numProcessedRecords"], 4, "{stats}");
    assert_eq!(stats["numReceivedRecords"], 4, "{stats}");
    // The app name itself is accepted too; another is not.
    get_json(
        &format!("{url}api/v1/applications/word%20count/streaming/statistics"),
        200,
    );
    let wrong = error_of(
        &format!("{url}api/v1/applications/rivulet/streaming/statistics"),
        404,
    );
    assert!(wrong.contains("word-count"), "{wrong}");
    ssc.stop(StopMode::Graceful).await.expect("stops");
}
