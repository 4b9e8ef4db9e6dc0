//! The JSON API under `/api/v1/streaming/`, modelled on Spark's streaming REST API
//! (`/api/v1/applications/{app}/streaming/...`): field names in camelCase as Spark's,
//! times in milliseconds since the Unix epoch, durations in milliseconds.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix_web::{web, HttpRequest, HttpResponse};
use rivulet_framework::checkpoint::StoreStats;
use serde::Serialize;
use serde_json::json;

use super::state::{lock, BatchRecord, UiState};
use super::Shared;

fn epoch_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn ms(d: Option<Duration>) -> Option<u64> {
    d.map(|d| d.as_millis() as u64)
}

fn avg(values: impl Iterator<Item = u64>) -> Option<f64> {
    let (sum, n) = values.fold((0u64, 0u64), |(s, n), v| (s + v, n + 1));
    (n > 0).then(|| sum as f64 / n as f64)
}

/// `GET /api/v1/streaming/statistics` (Spark: `StreamingStatistics`).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Statistics {
    app_name: String,
    start_time: u64,
    batch_duration: u64,
    num_receivers: usize,
    num_active_receivers: usize,
    num_inactive_receivers: usize,
    num_total_completed_batches: u64,
    num_total_failed_batches: u64,
    num_retained_completed_batches: usize,
    num_active_batches: usize,
    num_processed_records: u64,
    avg_input_rate: Option<f64>,
    avg_scheduling_delay: Option<f64>,
    avg_processing_time: Option<f64>,
    avg_total_delay: Option<f64>,
    executors_lost: u64,
    tasks_rerun_after_loss: u64,
    stages_resubmitted: u64,
    speculative_tasks: u64,
    task_retries: u64,
    stages_pipelined: u64,
    /// `null` until the first metadata checkpoint.
    checkpoint_store: Option<CheckpointStoreView>,
    /// Inputs that polled inputs (text file streams) skipped, with reasons in `/inputs`
    /// (rivulet's addition).
    num_skipped_inputs: u64,
}

/// The checkpoint store after the last metadata checkpoint (rivulet's addition): its bytes
/// on disk (`null` for a store in memory), the bytes of what it holds, and its compactions.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CheckpointStoreView {
    size_bytes: Option<u64>,
    live_bytes: u64,
    compactions: u64,
    last_compaction_ms: Option<u64>,
}

impl From<StoreStats> for CheckpointStoreView {
    fn from(s: StoreStats) -> Self {
        CheckpointStoreView {
            size_bytes: s.size_bytes,
            live_bytes: s.live_bytes,
            compactions: s.compactions,
            last_compaction_ms: ms(s.last_compaction),
        }
    }
}

/// One batch (Spark: `BatchInfo` of the REST API), with `outputOperations` in the
/// single-batch view.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct BatchView {
    batch_id: i64,
    batch_time: i64,
    status: &'static str,
    batch_duration: u64,
    input_size: usize,
    input_rate: f64,
    submission_time: u64,
    scheduling_delay: Option<u64>,
    processing_time: Option<u64>,
    total_delay: Option<u64>,
    num_completed_output_ops: usize,
    num_failed_output_ops: usize,
    first_failure_reason: Option<String>,
    failures: Vec<FailureView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    output_operations: Option<Vec<OutputView>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    jobs: Option<Vec<JobView>>,
}

/// One job of a batch, with its stages (rivulet's addition to Spark's batch view).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JobView {
    operator: String,
    duration: u64,
    failure_reason: Option<String>,
    stages: Vec<StageView>,
}

/// One stage of a job.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StageView {
    stage_id: u32,
    kind: &'static str,
    operator: String,
    num_tasks: usize,
    num_launched: usize,
    num_retries: usize,
    num_speculative: usize,
    duration: u64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct FailureView {
    output_op: String,
    message: String,
}

/// One output operation of a batch (Spark: `OutputOperationInfo`).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OutputView {
    output_op_id: usize,
    name: String,
    duration: u64,
    failure_reason: Option<String>,
}

/// One receiver (Spark: `ReceiverInfo` of the REST API).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ReceiverView {
    stream_id: u32,
    stream_name: String,
    is_active: bool,
    records: u64,
    records_stored: u64,
    malformed: u64,
    errors: u64,
    restarts: u64,
    last_error: Option<String>,
    last_error_time: Option<u64>,
    avg_event_rate: Option<f64>,
    rate_limit: Option<u64>,
}

fn batch_view(s: &UiState, b: &BatchRecord, with_outputs: bool) -> BatchView {
    let interval = s.batch_interval.as_secs_f64();
    let info = &b.info;
    BatchView {
        batch_id: info.batch_time.as_ms(),
        batch_time: info.batch_time.as_ms(),
        status: b.status.as_str(),
        batch_duration: s.batch_interval.as_millis() as u64,
        input_size: info.num_records,
        input_rate: if interval > 0.0 {
            info.num_records as f64 / interval
        } else {
            0.0
        },
        submission_time: epoch_ms(info.submission_time),
        scheduling_delay: ms(info.scheduling_delay),
        processing_time: ms(info.processing_delay),
        total_delay: ms(info.total_delay()),
        num_completed_output_ops: b.outputs.len(),
        num_failed_output_ops: b.outputs.values().filter(|o| o.failure.is_some()).count(),
        first_failure_reason: info.failures.first().map(|(_, m)| m.clone()),
        failures: info
            .failures
            .iter()
            .map(|(op, m)| FailureView {
                output_op: op.clone(),
                message: m.clone(),
            })
            .collect(),
        output_operations: with_outputs.then(|| {
            b.outputs
                .values()
                .map(|o| OutputView {
                    output_op_id: o.id,
                    name: o.name.clone(),
                    duration: o.duration.as_millis() as u64,
                    failure_reason: o.failure.clone(),
                })
                .collect()
        }),
        jobs: with_outputs.then(|| {
            b.jobs
                .iter()
                .map(|j| JobView {
                    operator: j.operator.clone(),
                    duration: j.duration.as_millis() as u64,
                    failure_reason: j.failure.clone(),
                    stages: j
                        .stages
                        .iter()
                        .map(|st| StageView {
                            stage_id: st.id,
                            kind: st.kind,
                            operator: st.operator.clone(),
                            num_tasks: st.tasks,
                            num_launched: st.launched,
                            num_retries: st.retries,
                            num_speculative: st.speculative,
                            duration: st.duration.as_millis() as u64,
                        })
                        .collect(),
                })
                .collect()
        }),
    }
}

fn json_error(status: actix_web::http::StatusCode, message: String) -> HttpResponse {
    HttpResponse::build(status).json(json!({ "error": message }))
}

pub(super) async fn statistics(shared: web::Data<Shared>) -> HttpResponse {
    let sched = shared.scheduler.snapshot();
    let s = lock(&shared.state);
    let done = || {
        s.batches
            .values()
            .filter(|b| b.info.processing_delay.is_some())
    };
    let interval = s.batch_interval.as_secs_f64();
    let stats = Statistics {
        app_name: shared.app_name.clone(),
        start_time: epoch_ms(s.start_time),
        batch_duration: s.batch_interval.as_millis() as u64,
        num_receivers: s.receivers.len(),
        num_active_receivers: s.receivers.values().filter(|r| r.info.active).count(),
        num_inactive_receivers: s.receivers.values().filter(|r| !r.info.active).count(),
        num_total_completed_batches: s.completed_total + s.failed_total,
        num_total_failed_batches: s.failed_total,
        num_retained_completed_batches: done().count(),
        num_active_batches: s.batches.len() - done().count(),
        num_processed_records: s.records_total,
        avg_input_rate: avg(done().map(|b| b.info.num_records as u64)).map(|r| {
            if interval > 0.0 {
                r / interval
            } else {
                0.0
            }
        }),
        avg_scheduling_delay: avg(done().filter_map(|b| ms(b.info.scheduling_delay))),
        avg_processing_time: avg(done().filter_map(|b| ms(b.info.processing_delay))),
        avg_total_delay: avg(done().filter_map(|b| ms(b.info.total_delay()))),
        executors_lost: sched.executors_lost,
        tasks_rerun_after_loss: sched.tasks_rerun_after_loss,
        stages_resubmitted: sched.stages_resubmitted,
        speculative_tasks: sched.speculative_tasks,
        task_retries: sched.task_retries,
        stages_pipelined: sched.stages_pipelined,
        checkpoint_store: s.checkpoint_store.map(CheckpointStoreView::from),
        num_skipped_inputs: s.polled_inputs.values().map(|p| p.skipped).sum(),
    };
    drop(s);
    HttpResponse::Ok().json(stats)
}

/// Newest first, as Spark.
pub(super) async fn batches(shared: web::Data<Shared>) -> HttpResponse {
    let views: Vec<BatchView> = {
        let s = lock(&shared.state);
        s.batches
            .values()
            .rev()
            .map(|b| batch_view(&s, b, false))
            .collect()
    };
    HttpResponse::Ok().json(views)
}

pub(super) async fn batch(shared: web::Data<Shared>, time: web::Path<String>) -> HttpResponse {
    let Ok(ms) = time.trim().parse::<i64>() else {
        return json_error(
            actix_web::http::StatusCode::BAD_REQUEST,
            format!(
                "batch time must be milliseconds (an integer), got {:?}",
                time.as_str()
            ),
        );
    };
    let view = {
        let s = lock(&shared.state);
        s.batches
            .get(&rivulet_framework::time::Time::from_ms(ms))
            .map(|b| batch_view(&s, b, true))
    };
    match view {
        Some(v) => HttpResponse::Ok().json(v),
        None => json_error(
            actix_web::http::StatusCode::NOT_FOUND,
            format!("no retained batch at time {ms}"),
        ),
    }
}

/// One polled input (rivulet's addition; Spark lists none: `FileInputDStream` has no
/// receiver): what its batches read and skipped so far.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PolledInputView {
    stream_id: u32,
    stream_name: String,
    records: u64,
    splits: u64,
    skipped: u64,
    /// The most recent skipped inputs, newest first.
    last_skipped: Vec<SkippedView>,
    /// The error that stopped the context under the `fail` policy.
    failure: Option<String>,
}

/// One skipped input: its batch (ms), path and reason.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SkippedView {
    batch_time: i64,
    path: String,
    reason: String,
}

/// `GET /api/v1/streaming/inputs`: the polled inputs.
pub(super) async fn inputs(shared: web::Data<Shared>) -> HttpResponse {
    let views: Vec<PolledInputView> = {
        let s = lock(&shared.state);
        s.polled_inputs
            .iter()
            .map(|(&stream_id, p)| PolledInputView {
                stream_id,
                stream_name: p.name.clone(),
                records: p.records,
                splits: p.splits,
                skipped: p.skipped,
                last_skipped: p
                    .last_skipped
                    .iter()
                    .rev()
                    .map(|(t, s)| SkippedView {
                        batch_time: t.as_ms(),
                        path: s.split.clone(),
                        reason: s.reason.clone(),
                    })
                    .collect(),
                failure: p.failure.clone(),
            })
            .collect()
    };
    HttpResponse::Ok().json(views)
}

pub(super) async fn receivers(shared: web::Data<Shared>) -> HttpResponse {
    let views: Vec<ReceiverView> = {
        let s = lock(&shared.state);
        let elapsed = SystemTime::now()
            .duration_since(s.start_time)
            .unwrap_or_default()
            .as_secs_f64();
        s.receivers
            .values()
            .map(|r| ReceiverView {
                stream_id: r.info.stream,
                stream_name: r.info.name.clone(),
                is_active: r.info.active,
                records: r.records_in_batches,
                records_stored: r.info.metrics.records_stored,
                malformed: r.info.metrics.malformed,
                errors: r.info.metrics.errors.max(r.failures),
                restarts: r.starts.saturating_sub(1),
                last_error: r.info.last_error.clone(),
                last_error_time: r.last_error_time.map(epoch_ms),
                avg_event_rate: (elapsed > 0.0).then(|| r.records_in_batches as f64 / elapsed),
                rate_limit: s
                    .rate_limits
                    .get(&r.info.stream)
                    .copied()
                    .flatten()
                    .map(|r| r.round() as u64),
            })
            .collect()
    };
    HttpResponse::Ok().json(views)
}

/// `GET /api/v1/streaming/graph`: the DStream graph (rivulet's addition).
pub(super) async fn graph(shared: web::Data<Shared>) -> HttpResponse {
    let s = lock(&shared.state);
    let g = &s.graph;
    let body = json!({
        "streams": g.streams.iter().map(|n| json!({
            "id": n.id, "op": n.op, "callSite": n.call_site, "slideMs": n.slide_ms,
            "parents": n.parents,
        })).collect::<Vec<_>>(),
        "outputs": g.outputs.iter().map(|o| json!({
            "id": o.id, "op": o.op, "callSite": o.call_site, "stream": o.stream,
        })).collect::<Vec<_>>(),
    });
    drop(s);
    HttpResponse::Ok().json(body)
}

/// `GET` or `HEAD /metrics`: OpenMetrics text when the `Accept` header asks for
/// `application/openmetrics-text` (as Prometheus does), else the Prometheus text format
/// 0.0.4 (`text/plain; version=0.0.4`), which `promtool check metrics` and older scrapers
/// read. (actix-web answers `HEAD` with the headers alone.)
pub(super) async fn metrics(req: HttpRequest, shared: web::Data<Shared>) -> HttpResponse {
    let openmetrics = req
        .headers()
        .get(actix_web::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("application/openmetrics-text"));
    match shared.metrics.encode() {
        Ok(text) if openmetrics => HttpResponse::Ok()
            .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
            .body(text),
        Ok(text) => HttpResponse::Ok()
            .content_type("text/plain; version=0.0.4; charset=utf-8")
            .body(super::metrics::to_prometheus_text(&text)),
        Err(_) => json_error(
            actix_web::http::StatusCode::INTERNAL_SERVER_ERROR,
            "the metrics could not be encoded".into(),
        ),
    }
}

/// Any other method on `/metrics`: 405 with `Allow`.
pub(super) async fn metrics_method_not_allowed(req: HttpRequest) -> HttpResponse {
    let mut answer = json_error(
        actix_web::http::StatusCode::METHOD_NOT_ALLOWED,
        format!("{} /metrics: only GET and HEAD", req.method()),
    );
    answer.headers_mut().insert(
        actix_web::http::header::ALLOW,
        actix_web::http::header::HeaderValue::from_static("GET, HEAD"),
    );
    answer
}

pub(super) async fn not_found(req: HttpRequest) -> HttpResponse {
    json_error(
        actix_web::http::StatusCode::NOT_FOUND,
        format!("no such path: {}", req.path()),
    )
}
