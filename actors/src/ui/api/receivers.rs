//! Inputs: `receivers` and `receivers/{id}` (Spark: `ReceiverInfo` of the streaming REST
//! API, `id` the stream id), and the polled inputs, `inputs` (rivulet's addition).

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use rivulet_framework::block::StreamId;
use serde::Serialize;

use super::{check_app, epoch_ms, json_error, path_param};
use crate::ui::state::{ReceiverRecord, UiState};
use crate::ui::Shared;

/// A receiver that runs in this process (each on its own arbiter thread, as Spark's do on
/// an executor): Spark's id for the process that is not an executor. One in an executor
/// process shows that process's executor id.
const EXECUTOR_ID: &str = "driver";

/// One receiver (Spark: `ReceiverInfo` of the REST API, plus rivulet's counters).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ReceiverView {
    stream_id: StreamId,
    stream_name: String,
    is_active: bool,
    /// `"driver"` ([`EXECUTOR_ID`]), or the id of the executor process running it.
    executor_id: String,
    /// The host the status server listens on, or the executor process's.
    executor_host: String,
    /// Records of its stream in batches so far.
    records: u64,
    /// Records the receiver stored so far, read live from its buffer (stored records not
    /// yet in a batch included).
    records_stored: u64,
    malformed: u64,
    errors: u64,
    restarts: u64,
    /// The last error's message (Spark: `lastErrorMessage`).
    last_error_message: Option<String>,
    /// The last error (Spark: with its stack trace; here the same message).
    last_error: Option<String>,
    last_error_time: Option<u64>,
    /// The mean of `eventRates` (Spark's meaning), `null` without a retained batch.
    avg_event_rate: Option<f64>,
    /// Per retained batch, oldest first: `[batch time (ms), records of the stream in the
    /// batch per second of batch interval]`.
    event_rates: Vec<(i64, f64)>,
    rate_limit: Option<u64>,
}

fn receiver_view(s: &UiState, shared: &Shared, host: &str, r: &ReceiverRecord) -> ReceiverView {
    let stream = r.info.stream;
    // Counters move while the receiver runs: read them now, not as of its last event.
    let source = shared.sources.iter().find(|(id, _)| *id == stream);
    let live = source.map_or(r.info.metrics, |(_, source)| source.metrics());
    let (executor_id, executor_host) = match source.and_then(|(_, s)| s.executor()) {
        Some((executor, host)) => (executor.to_string(), host),
        None => (EXECUTOR_ID.to_string(), host.to_string()),
    };
    let interval = s.batch_interval.as_secs_f64();
    let event_rates: Vec<(i64, f64)> = s
        .batches
        .values()
        .map(|b| {
            let n = b.info.stream_records.get(&stream).copied().unwrap_or(0) as f64;
            let rate = if interval > 0.0 { n / interval } else { 0.0 };
            (b.info.batch_time.as_ms(), rate)
        })
        .collect();
    let avg_event_rate = (!event_rates.is_empty())
        .then(|| event_rates.iter().map(|(_, r)| r).sum::<f64>() / event_rates.len() as f64);
    ReceiverView {
        stream_id: stream,
        stream_name: r.info.name.clone(),
        is_active: r.info.active,
        executor_id,
        executor_host,
        records: r.records_in_batches,
        records_stored: live.records_stored.max(r.info.metrics.records_stored),
        malformed: live.malformed.max(r.info.metrics.malformed),
        errors: live.errors.max(r.info.metrics.errors).max(r.failures),
        restarts: r.starts.saturating_sub(1),
        last_error_message: r.info.last_error.clone(),
        last_error: r.info.last_error.clone(),
        last_error_time: r.last_error_time.map(epoch_ms),
        avg_event_rate,
        event_rates,
        rate_limit: s
            .rate_limits
            .get(&stream)
            .copied()
            .flatten()
            .map(|r| r.round() as u64),
    }
}

/// The host the server listens on (`localhost` when it listens on every address).
fn host(req: &HttpRequest) -> String {
    let ip = req.app_config().local_addr().ip();
    if ip.is_unspecified() {
        "localhost".into()
    } else {
        ip.to_string()
    }
}

/// `GET .../receivers`: the receivers, by stream id.
pub(super) async fn receivers(req: HttpRequest, shared: web::Data<Shared>) -> HttpResponse {
    if let Some(wrong) = check_app(&req, &shared) {
        return wrong;
    }
    let host = host(&req);
    let views: Vec<ReceiverView> = {
        let s = shared.state.lock();
        s.receivers
            .values()
            .map(|r| receiver_view(&s, &shared, &host, r))
            .collect()
    };
    HttpResponse::Ok().json(views)
}

/// `GET .../receivers/{id}`: the receiver of stream `id`; `400` when `id` is not an
/// integer, `404` when no receiver feeds that stream.
pub(super) async fn receiver(req: HttpRequest, shared: web::Data<Shared>) -> HttpResponse {
    if let Some(wrong) = check_app(&req, &shared) {
        return wrong;
    }
    let id = match path_param::<StreamId>(&req, "id", "receiver's stream id") {
        Ok(id) => id,
        Err(e) => return *e,
    };
    let host = host(&req);
    let s = shared.state.lock();
    match s.receivers.get(&id) {
        Some(r) => HttpResponse::Ok().json(receiver_view(&s, &shared, &host, r)),
        None => json_error(
            StatusCode::NOT_FOUND,
            format!(
                "no receiver with stream id {id} (the receivers' are {:?})",
                s.receivers.keys().collect::<Vec<_>>()
            ),
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

/// `GET .../inputs`: the polled inputs.
pub(super) async fn inputs(req: HttpRequest, shared: web::Data<Shared>) -> HttpResponse {
    if let Some(wrong) = check_app(&req, &shared) {
        return wrong;
    }
    let views: Vec<PolledInputView> = {
        let s = shared.state.lock();
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
