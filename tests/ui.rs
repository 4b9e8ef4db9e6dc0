//! The status server: the JSON API against a run under the manual clock (exact batch
//! counts, delays, failures with their messages, receivers, the DStream graph), errors for
//! bad paths and batch times, Prometheus `/metrics` parsed with `prometheus-parse`, the
//! checkpoint store's size (with a checkpoint directory) and live bytes, bounded
//! retention, and a port in use.

#[path = "ui_support/mod.rs"]
mod ui_support;

use std::time::Duration;

use rivulet::prelude::*;
use ui_support::*;

/// The value of the sample of `metric` whose labels include `labels` (the `+Inf` bucket,
/// i.e. the count, for a histogram).
fn sample(scrape: &prometheus_parse::Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    let s = scrape
        .samples
        .iter()
        .find(|s| s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .unwrap_or_else(|| panic!("no sample {metric} {labels:?} in {:?}", scrape.samples));
    match &s.value {
        prometheus_parse::Value::Counter(v)
        | prometheus_parse::Value::Gauge(v)
        | prometheus_parse::Value::Untyped(v) => *v,
        prometheus_parse::Value::Histogram(buckets) => buckets
            .iter()
            .find(|b| b.less_than.is_infinite())
            .map(|b| b.count)
            .expect("a +Inf bucket"),
        prometheus_parse::Value::Summary(_) => panic!("{metric} is a summary"),
    }
}

#[actix::test]
async fn json_api_reports_batches_failures_receivers_and_graph() {
    let ssc = run_with_failure(3, 3).await;
    let url = ssc.ui_url().expect("the UI is on");
    assert!(
        url.starts_with("http://127.0.0.1:") && url.ends_with('/'),
        "{url}"
    );
    let api = format!("{url}api/v1/streaming");

    let stats = poll_json(&format!("{api}/statistics"), |s| {
        s["numTotalCompletedBatches"] == 3
    });
    assert_eq!(stats["numTotalFailedBatches"], 1, "{stats}");
    assert_eq!(stats["batchDuration"], 100);
    assert_eq!(stats["numProcessedRecords"], 3);
    assert_eq!(stats["numReceivers"], 1);
    assert!(stats["avgProcessingTime"].is_number(), "{stats}");

    let batches = get_json(&format!("{api}/batches"), 200);
    let times: Vec<i64> = batches
        .as_array()
        .expect("a list")
        .iter()
        .map(|b| b["batchTime"].as_i64().expect("a time"))
        .collect();
    assert_eq!(times, vec![300, 200, 100], "newest first");
    let first = &batches[2];
    assert_eq!(first["inputSize"], 3);
    assert_eq!(first["status"], "COMPLETED");
    for key in ["schedulingDelay", "processingTime", "totalDelay"] {
        assert!(first[key].is_u64(), "{key} present: {first}");
        // The same delay to the microsecond: whole ms are its floor.
        let exact = first[format!("{key}Ms")].as_f64().expect("fractional ms");
        let whole = first[key].as_u64().expect("whole ms") as f64;
        assert!(exact >= whole && exact < whole + 1.0, "{key}: {first}");
    }
    let failed = &batches[1];
    assert_eq!(failed["status"], "FAILED");
    assert_eq!(failed["numFailedOutputOps"], 1);
    let reason = failed["firstFailureReason"].as_str().expect("a reason");
    assert!(reason.contains("fails on purpose"), "{reason}");

    let one = get_json(&format!("{api}/batches/200"), 200);
    let outputs = one["outputOperations"].as_array().expect("outputs");
    assert_eq!(outputs.len(), 2, "{one}");
    assert!(outputs[0]["failureReason"].is_null());
    assert!(outputs[0]["name"]
        .as_str()
        .is_some_and(|n| n.starts_with("foreach_batch at tests/ui_support/mod.rs:")));
    assert!(outputs[1]["failureReason"]
        .as_str()
        .is_some_and(|m| m.contains("fails on purpose")));
    // Each output operation ran one job (collecting its batch), each ending in a result
    // stage that launched at least one copy of each of its tasks.
    let jobs = one["jobs"].as_array().expect("jobs");
    assert_eq!(jobs.len(), 2, "{one}");
    for job in jobs {
        let stages = job["stages"].as_array().expect("stages");
        let last = stages.last().expect("a stage");
        assert_eq!(last["kind"], "result", "{job}");
        assert!(job["failureReason"].is_null(), "{job}");
        for st in stages {
            assert!(
                st["numLaunched"].as_u64() >= st["numTasks"].as_u64(),
                "{st}"
            );
        }
    }

    let receivers = get_json(&format!("{api}/receivers"), 200);
    assert_eq!(receivers[0]["streamName"], "fixed", "{receivers}");
    assert_eq!(receivers[0]["isActive"], true);
    assert_eq!(receivers[0]["records"], 3);
    assert_eq!(receivers[0]["restarts"], 0);
    // Rate control: a limit is in force from the start (the configured maximum, or an
    // estimate under it).
    let limit = receivers[0]["rateLimit"].as_u64().expect("a rate limit");
    assert!((100..=50_000).contains(&limit), "{receivers}");

    let graph = get_json(&format!("{api}/graph"), 200);
    let ops: Vec<&str> = graph["streams"]
        .as_array()
        .expect("streams")
        .iter()
        .map(|s| s["op"].as_str().expect("an op"))
        .collect();
    assert_eq!(ops, vec!["receiver_stream", "map", "count"], "{graph}");
    assert_eq!(graph["streams"][2]["parents"], serde_json::json!([1]));
    assert_eq!(graph["outputs"].as_array().map(Vec::len), Some(2));

    // Bad input.
    let bad = get_json(&format!("{api}/batches/abc"), 400);
    assert!(
        bad["error"].as_str().is_some_and(|e| e.contains("abc")),
        "{bad}"
    );
    get_json(&format!("{api}/batches/99900"), 404);
    let missing = get_json(&format!("{url}api/v1/nope"), 404);
    assert!(missing["error"]
        .as_str()
        .is_some_and(|e| e.contains("/api/v1/nope")));

    // Prometheus, parsed by a maintained exposition-format parser.
    let (status, text) = get(&format!("{url}metrics"));
    assert_eq!(status, 200);
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .expect("the metrics parse");
    assert_eq!(
        sample(&scrape, "rivulet_batches_completed_total", &[]),
        2.0,
        "{text}"
    );
    assert_eq!(sample(&scrape, "rivulet_batches_failed_total", &[]), 1.0);
    assert_eq!(
        sample(&scrape, "rivulet_output_operations_failed_total", &[]),
        1.0
    );
    assert_eq!(
        sample(
            &scrape,
            "rivulet_receiver_records_total",
            &[("receiver", "fixed"), ("stream", "0")]
        ),
        3.0
    );
    assert_eq!(
        sample(&scrape, "rivulet_batch_total_delay_seconds", &[]),
        3.0
    );
    assert_eq!(
        sample(&scrape, "rivulet_batch_processing_time_seconds", &[]),
        3.0
    );
    assert_eq!(sample(&scrape, "rivulet_executors_lost_total", &[]), 0.0);
    assert_eq!(sample(&scrape, "rivulet_task_retries_total", &[]), 0.0);
    // Batches advanced one at a time never queue: nothing ran ahead.
    assert_eq!(sample(&scrape, "rivulet_stages_pipelined_total", &[]), 0.0);
    // Gauges to alert on: nothing waits once the batches completed; the last delay is known.
    assert_eq!(sample(&scrape, "rivulet_batches_waiting", &[]), 0.0);
    assert!(sample(&scrape, "rivulet_last_batch_total_delay_seconds", &[]) >= 0.0);

    // The Prometheus text format 0.0.4 by default: every sample's family has its HELP and
    // TYPE under the sample's name (as `promtool check metrics` demands).
    let (_, head, _) = request("GET", &format!("{url}metrics"), "");
    assert!(
        head.contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    for sample_line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let name = sample_line.split(['{', ' ']).next().expect("a name");
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| {
                name.strip_suffix(suffix)
                    .filter(|f| text.contains(&format!("# TYPE {f} histogram")))
            })
            .unwrap_or(name);
        assert!(
            text.contains(&format!("# HELP {family} ")),
            "{family}:\n{text}"
        );
        assert!(
            text.contains(&format!("# TYPE {family} ")),
            "{family}:\n{text}"
        );
    }
    assert!(!text.contains("# EOF"), "{text}");
    // OpenMetrics when asked, as Prometheus does.
    let (status, head, open) = request(
        "GET",
        &format!("{url}metrics"),
        "Accept: application/openmetrics-text; version=1.0.0\r\n",
    );
    assert_eq!(status, 200);
    assert!(
        head.contains("content-type: application/openmetrics-text"),
        "{head}"
    );
    assert!(
        open.contains("# TYPE rivulet_batches_completed counter"),
        "{open}"
    );
    assert!(open.trim_end().ends_with("# EOF"), "{open}");
    // HEAD: the headers alone; other methods: 405 naming the allowed ones.
    let (status, head, body) = request("HEAD", &format!("{url}metrics"), "");
    assert_eq!(status, 200, "{head}");
    assert!(head.contains("content-type: text/plain"), "{head}");
    assert!(body.is_empty(), "{body}");
    let (status, head, body) = request("POST", &format!("{url}metrics"), "");
    assert_eq!(status, 405, "{body}");
    assert!(head.contains("allow: get, head"), "{head}");

    ssc.stop(StopMode::Graceful).await.expect("stops");
}

#[actix::test]
async fn keeps_only_the_latest_batches() {
    let config = StreamingConfig::new()
        .batch_interval(Duration::from_millis(100))
        .executors(1)
        .manual_clock(true)
        .ui_address("127.0.0.1:0")
        .ui_retained_batches(5);
    let ssc = StreamingContext::new(config).expect("valid config");
    ssc.queue_stream(vec![vec![1, 2]]).foreach_batch(|_, _| {});
    ssc.start().await.expect("starts");
    ssc.advance(20).await.expect("batches run");
    let api = format!("{}api/v1/streaming", ssc.ui_url().expect("the UI is on"));
    poll_json(&format!("{api}/statistics"), |s| {
        s["numTotalCompletedBatches"] == 20
    });
    let batches = get_json(&format!("{api}/batches"), 200);
    let times: Vec<i64> = batches
        .as_array()
        .expect("a list")
        .iter()
        .map(|b| b["batchTime"].as_i64().expect("a time"))
        .collect();
    assert_eq!(times, vec![2000, 1900, 1800, 1700, 1600]);
    get_json(&format!("{api}/batches/100"), 404);
    ssc.stop(StopMode::Graceful).await.expect("stops");
}

#[actix::test]
async fn a_port_in_use_is_an_error_naming_it() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    let address = taken.local_addr().expect("its address").to_string();
    let ssc = StreamingContext::new(
        StreamingConfig::new()
            .manual_clock(true)
            .ui_address(address.clone()),
    )
    .expect("valid config");
    ssc.queue_stream(vec![vec![1]]).foreach_batch(|_, _| {});
    let err = ssc.start().await.expect_err("the port is taken");
    assert!(err.to_string().contains(&address), "{err}");
}

#[actix::test]
async fn the_ui_is_off_unless_asked() {
    let ssc = StreamingContext::new(StreamingConfig::new().manual_clock(true)).expect("valid");
    ssc.queue_stream(vec![vec![1]]).foreach_batch(|_, _| {});
    ssc.start().await.expect("starts");
    assert_eq!(ssc.ui_url(), None);
    ssc.stop(StopMode::Graceful).await.expect("stops");
}

/// A context on the manual clock serving the UI, keeping checkpoints in `checkpoint_dir`
/// (in memory without one), with a running word count (`update_state_by_key`) that writes
/// a data checkpoint every other batch; returns it after `batches` batches completed.
async fn stateful_run(
    checkpoint_dir: Option<&std::path::Path>,
    batches: usize,
) -> StreamingContext {
    let mut config = StreamingConfig::new()
        .batch_interval(Duration::from_millis(100))
        .executors(2)
        .default_parallelism(2)
        .manual_clock(true)
        .ui_address("127.0.0.1:0");
    if let Some(dir) = checkpoint_dir {
        config = config.checkpoint_dir(dir);
    }
    let ssc = StreamingContext::new(config).expect("valid config");
    let input: Vec<Vec<String>> = (0..batches)
        .map(|b| {
            (0..50)
                .map(|i| format!("word-{}", (b * 7 + i) % 40))
                .collect()
        })
        .collect();
    ssc.queue_stream(input)
        .map(|w: String| (w, 1u64))
        .update_state_by_key(|vs: Vec<u64>, s: Option<u64>| {
            Some(s.unwrap_or(0) + vs.iter().sum::<u64>())
        })
        .checkpoint(Duration::from_millis(200))
        .foreach_batch(|_, _| {});
    ssc.start().await.expect("starts");
    ssc.advance(batches as u32).await.expect("batches run");
    ssc
}

/// The statistics once `batches` batches completed, and `/metrics` parsed (both read after
/// the last batch's checkpoint-store event: it precedes the batch's completion).
fn statistics_and_metrics(
    ssc: &StreamingContext,
    batches: u64,
) -> (serde_json::Value, prometheus_parse::Scrape, String) {
    let url = ssc.ui_url().expect("the UI is on");
    let stats = poll_json(&format!("{url}api/v1/streaming/statistics"), |s| {
        s["numTotalCompletedBatches"] == batches
    });
    let (status, text) = get(&format!("{url}metrics"));
    assert_eq!(status, 200);
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .expect("the metrics parse");
    (stats, scrape, text)
}

#[actix::test]
async fn a_checkpoint_directory_reports_its_size_and_live_bytes() {
    let dir = tempfile::tempdir().expect("a checkpoint directory");
    let ssc = stateful_run(Some(dir.path()), 6).await;
    let (stats, scrape, text) = statistics_and_metrics(&ssc, 6);

    let store = &stats["checkpointStore"];
    let size = store["sizeBytes"].as_u64().expect("a size on disk");
    let live = store["liveBytes"].as_u64().expect("live bytes");
    assert!(live > 0, "the store holds checkpoints: {store}");
    assert!(
        size >= live,
        "the directory holds at least its live bytes: {store}"
    );
    assert!(store["compactions"].is_u64(), "{store}");
    assert_eq!(
        store["lastCompactionMs"].is_null(),
        store["compactions"] == 0,
        "a compaction's duration exactly when one ran: {store}"
    );

    // The same numbers, from the same event, in Prometheus.
    assert_eq!(
        sample(&scrape, "rivulet_checkpoint_store_size_bytes", &[]),
        size as f64,
        "{text}"
    );
    assert_eq!(
        sample(&scrape, "rivulet_checkpoint_store_live_bytes", &[]),
        live as f64
    );
    assert_eq!(
        sample(&scrape, "rivulet_checkpoint_store_compactions_total", &[]),
        store["compactions"].as_f64().expect("a count")
    );
    for name in [
        "rivulet_checkpoint_store_size_bytes",
        "rivulet_checkpoint_store_live_bytes",
        "rivulet_checkpoint_store_compactions_total",
    ] {
        assert!(
            text.contains(&format!("# HELP {name} ")),
            "{name} is documented: {text}"
        );
    }
    ssc.stop(StopMode::Graceful).await.expect("stops");

    // The directory was measured: it is no smaller now than the store's live bytes.
    let on_disk: u64 = walk(dir.path());
    assert!(on_disk >= live, "{on_disk} bytes on disk, {live} live");
}

/// The bytes of the files under `dir`.
fn walk(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .expect("a readable directory")
        .map(|e| {
            let e = e.expect("a directory entry");
            let meta = e.metadata().expect("its metadata");
            if meta.is_dir() {
                walk(&e.path())
            } else {
                meta.len()
            }
        })
        .sum()
}

#[actix::test]
async fn a_store_in_memory_reports_no_size() {
    let ssc = stateful_run(None, 6).await;
    let (stats, scrape, text) = statistics_and_metrics(&ssc, 6);
    let store = &stats["checkpointStore"];
    assert!(store["sizeBytes"].is_null(), "no size in memory: {store}");
    assert!(
        store["liveBytes"].as_u64() > Some(0),
        "it still holds the state's checkpoints: {store}"
    );
    assert_eq!(store["compactions"], 0, "{store}");
    assert!(
        !text.contains("rivulet_checkpoint_store_size_bytes"),
        "no size metric, not even its HELP line: {text}"
    );
    assert_eq!(
        sample(&scrape, "rivulet_checkpoint_store_live_bytes", &[]),
        store["liveBytes"].as_f64().expect("a number")
    );
    ssc.stop(StopMode::Graceful).await.expect("stops");
}
