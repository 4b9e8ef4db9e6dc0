//! Batches and their output operations (Spark: `BatchInfo` and `OutputOperationInfo` of
//! the streaming REST API): `batches[?status=]`, `batches/{id}`,
//! `batches/{id}/operations` and `batches/{id}/operations/{op}`, where `id` is the batch
//! time in milliseconds (Spark's `batchId`) and `op` the output operation's index.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use rivulet_framework::time::Time;
use serde::{Deserialize, Serialize};

use super::{check_app, epoch_ms, json_error, ms, path_param};
use crate::ui::state::{BatchRecord, BatchStatus, UiState};
use crate::ui::Shared;

/// One batch (Spark: `BatchInfo` of the REST API), with `outputOperations` and `jobs` in
/// the single-batch view.
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
    /// The three delays above in fractional milliseconds, to the microsecond (rivulet's
    /// addition: Spark's are whole ms, which reads 0 for most batches of 10 ms).
    scheduling_delay_ms: Option<f64>,
    processing_time_ms: Option<f64>,
    total_delay_ms: Option<f64>,
    /// Output operations running: all those not ended while the batch is processing
    /// (rivulet reports output operations when their batch ends), else 0.
    num_active_output_ops: usize,
    /// Output operations that ended without an error (Spark's meaning).
    num_completed_output_ops: usize,
    num_failed_output_ops: usize,
    /// Output operations the batch runs (ended ones included).
    num_total_output_ops: usize,
    first_failure_reason: Option<String>,
    failures: Vec<FailureView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    output_operations: Option<Vec<OutputView>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    jobs: Option<Vec<JobView>>,
    /// What each polled input (file stream, direct stream) read in the batch: its splits
    /// as the source names them (files, offset ranges), rivulet's form of Spark's
    /// `StreamInputInfo` metadata. In the single-batch view, once the batch completed.
    #[serde(skip_serializing_if = "Option::is_none")]
    inputs: Option<Vec<InputView>>,
}

/// One polled input's part of a batch.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct InputView {
    /// The input DStream's id.
    stream_id: u32,
    name: String,
    records: usize,
    /// The splits read, e.g. `events/0 offsets 0..500`.
    splits: Vec<String>,
    /// How many were skipped as unreadable.
    num_skipped: usize,
}

/// One job of a batch, with its stages (rivulet's addition to Spark's batch view).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JobView {
    job_id: u64,
    output_op_id: Option<usize>,
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
    kind: String,
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
    /// As `name`: the operator and its call site (Spark's is the call site's long form).
    description: String,
    /// Wall clock, ms since the Unix epoch.
    start_time: u64,
    end_time: u64,
    duration: u64,
    failure_reason: Option<String>,
    /// The scheduler's ids of the jobs the operation's actions ran, in the order they ended.
    job_ids: Vec<u64>,
}

fn output_views(b: &BatchRecord) -> Vec<OutputView> {
    b.outputs
        .values()
        .map(|o| {
            let start_time = epoch_ms(o.start_time);
            let duration = o.duration.as_millis() as u64;
            OutputView {
                output_op_id: o.id,
                name: o.name.clone(),
                description: o.name.clone(),
                start_time,
                end_time: start_time + duration,
                duration,
                failure_reason: o.failure.clone(),
                job_ids: b
                    .jobs
                    .iter()
                    .filter(|j| j.output_op == Some(o.id))
                    .map(|j| j.id)
                    .collect(),
            }
        })
        .collect()
}

/// `d` in milliseconds, to the microsecond.
fn fractional_ms(d: Option<std::time::Duration>) -> Option<f64> {
    d.map(|d| d.as_micros() as f64 / 1000.0)
}

fn batch_view(s: &UiState, b: &BatchRecord, detailed: bool) -> BatchView {
    let interval = s.batch_interval.as_secs_f64();
    let info = &b.info;
    let ended = b.outputs.len();
    let failed = b.outputs.values().filter(|o| o.failure.is_some()).count();
    let total = info.num_output_ops.max(ended);
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
        scheduling_delay_ms: fractional_ms(info.scheduling_delay),
        processing_time_ms: fractional_ms(info.processing_delay),
        total_delay_ms: fractional_ms(info.total_delay()),
        num_active_output_ops: match b.status {
            BatchStatus::Processing => total - ended,
            _ => 0,
        },
        num_completed_output_ops: ended - failed,
        num_failed_output_ops: failed,
        num_total_output_ops: total,
        first_failure_reason: info.failures.first().map(|(_, m)| m.clone()),
        failures: info
            .failures
            .iter()
            .map(|(op, m)| FailureView {
                output_op: op.clone(),
                message: m.clone(),
            })
            .collect(),
        output_operations: detailed.then(|| output_views(b)),
        inputs: detailed.then(|| {
            b.inputs
                .iter()
                .map(|i| InputView {
                    stream_id: i.stream,
                    name: i.name.clone(),
                    records: i.records,
                    splits: i.split_names.clone(),
                    num_skipped: i.skipped.len(),
                })
                .collect()
        }),
        jobs: detailed.then(|| {
            b.jobs
                .iter()
                .map(|j| JobView {
                    job_id: j.id,
                    output_op_id: j.output_op,
                    operator: j.operator.clone(),
                    duration: j.duration.as_millis() as u64,
                    failure_reason: j.failure.clone(),
                    stages: j
                        .stages
                        .iter()
                        .map(|st| StageView {
                            stage_id: st.id,
                            kind: st.kind.clone(),
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

/// The `?status=` and `?since=` of `batches`.
#[derive(Deserialize)]
struct StatusFilter {
    status: Option<String>,
    /// Only batches whose time (ms) is after this one (rivulet's: a page that holds every
    /// batch up to its newest completed one fetches only what changed since).
    since: Option<i64>,
}

/// The statuses `?status=` accepts, as an error names them.
const ACCEPTED_STATUSES: &str =
    "completed, processing, queued (Spark's), failed (rivulet's: completed with a failed output operation)";

/// Whether a batch of status `status` passes the filter `wanted` (lowercase); `None` for
/// an unknown filter. `completed` includes `FAILED` batches, which Spark counts as
/// completed.
fn passes(wanted: &str, status: BatchStatus) -> Option<bool> {
    Some(match wanted {
        "completed" => matches!(status, BatchStatus::Completed | BatchStatus::Failed),
        "processing" => status == BatchStatus::Processing,
        "queued" => status == BatchStatus::Queued,
        "failed" => status == BatchStatus::Failed,
        _ => return None,
    })
}

/// `GET .../batches[?status=completed|processing|queued|failed][&since=MS]`: retained
/// batches, newest first as Spark, and with `since` only those after batch time `MS`
/// (batches complete in order, so every batch up to a completed one is final); `400` for
/// another status or a `since` that is not an integer.
pub(super) async fn batches(req: HttpRequest, shared: web::Data<Shared>) -> HttpResponse {
    if let Some(wrong) = check_app(&req, &shared) {
        return wrong;
    }
    let (filter, since) = match web::Query::<StatusFilter>::from_query(req.query_string()) {
        Ok(q) => {
            let q = q.into_inner();
            (q.status.map(|s| s.trim().to_ascii_lowercase()), q.since)
        }
        Err(e) => {
            return json_error(StatusCode::BAD_REQUEST, format!("bad query string: {e}"));
        }
    };
    if let Some(wanted) = &filter {
        if passes(wanted, BatchStatus::Queued).is_none() {
            return json_error(
                StatusCode::BAD_REQUEST,
                format!(
                    "unknown batch status {wanted:?}: the accepted ones are {ACCEPTED_STATUSES}"
                ),
            );
        }
    }
    let views: Vec<BatchView> = {
        let s = shared.state.lock();
        s.batches
            .values()
            .rev()
            .filter(|b| since.is_none_or(|t| b.info.batch_time.as_ms() > t))
            .filter(|b| {
                filter
                    .as_deref()
                    .is_none_or(|w| passes(w, b.status) == Some(true))
            })
            .map(|b| batch_view(&s, b, false))
            .collect()
    };
    HttpResponse::Ok().json(views)
}

/// Runs `answer` on the retained batch the path's `{id}` names, or answers `400` (not an
/// integer) or `404` (not retained).
fn with_batch(
    req: &HttpRequest,
    shared: &Shared,
    answer: impl FnOnce(&UiState, &BatchRecord) -> HttpResponse,
) -> HttpResponse {
    if let Some(wrong) = check_app(req, shared) {
        return wrong;
    }
    let id = match path_param::<i64>(req, "id", "batch id (its time in ms)") {
        Ok(id) => id,
        Err(e) => return *e,
    };
    let s = shared.state.lock();
    match s.batches.get(&Time::from_ms(id)) {
        Some(b) => answer(&s, b),
        None => json_error(
            StatusCode::NOT_FOUND,
            format!("no retained batch with id (time) {id}"),
        ),
    }
}

/// `GET .../batches/{id}`: one batch, with its output operations and jobs.
pub(super) async fn batch(req: HttpRequest, shared: web::Data<Shared>) -> HttpResponse {
    with_batch(&req, &shared, |s, b| {
        HttpResponse::Ok().json(batch_view(s, b, true))
    })
}

/// `GET .../batches/{id}/operations`: the batch's output operations that ended, by id.
pub(super) async fn operations(req: HttpRequest, shared: web::Data<Shared>) -> HttpResponse {
    with_batch(&req, &shared, |_, b| {
        HttpResponse::Ok().json(output_views(b))
    })
}

/// `GET .../batches/{id}/operations/{op}`: one output operation; `404` when the batch has
/// none with that id (yet: they are reported when the batch ends).
pub(super) async fn operation(req: HttpRequest, shared: web::Data<Shared>) -> HttpResponse {
    if let Some(wrong) = check_app(&req, &shared) {
        return wrong;
    }
    let op = match path_param::<usize>(&req, "op", "output operation id") {
        Ok(op) => op,
        Err(e) => return *e,
    };
    with_batch(&req, &shared, |_, b| {
        match output_views(b).into_iter().find(|o| o.output_op_id == op) {
            Some(view) => HttpResponse::Ok().json(view),
            None => json_error(
                StatusCode::NOT_FOUND,
                format!(
                    "batch {} has no output operation {op} (it has {:?})",
                    b.info.batch_time.as_ms(),
                    b.outputs.keys().collect::<Vec<_>>()
                ),
            ),
        }
    })
}
