//! Spark's status API (Spark 3.5: `org.apache.spark.status.api.v1` and its `streaming`
//! package): `/api/v1/applications` lists the one application, and each streaming path is
//! served under Spark's `/api/v1/applications/{app}/streaming/` and the short alias
//! `/api/v1/streaming/` by the same handler. Field names are camelCase as Spark's; times
//! are milliseconds (batch times on the context's clock, wall times since the Unix epoch:
//! Spark writes dates, rivulet numbers, except in the application list, which has both as
//! Spark's); durations are milliseconds; a field is `null` until known.
//!
//! `{app}` is the application's id, [`app_id`] of the context's app name (the name itself
//! is accepted too); another answers `404` naming the one served.

mod batches;
mod receivers;

use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use rivulet_framework::checkpoint::StoreStats;
use serde::Serialize;
use serde_json::json;

use super::Shared;

/// Registers the streaming paths (relative to `.../streaming`) on `cfg`: the same for
/// Spark's scope, whose `{app}` the handlers check, and for the short alias.
pub(super) fn streaming_routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/statistics", web::get().to(statistics))
        .route("/receivers", web::get().to(receivers::receivers))
        .route("/receivers/{id}", web::get().to(receivers::receiver))
        .route("/batches", web::get().to(batches::batches))
        .route("/batches/{id}", web::get().to(batches::batch))
        .route(
            "/batches/{id}/operations",
            web::get().to(batches::operations),
        )
        .route(
            "/batches/{id}/operations/{op}",
            web::get().to(batches::operation),
        )
        .route("/inputs", web::get().to(receivers::inputs))
        .route("/graph", web::get().to(graph));
}

/// The application's id in Spark's paths: the app name with every character but ASCII
/// letters, digits, `.`, `_` and `-` made a `-` (the default name `rivulet` is its own id).
pub(crate) fn app_id(app_name: &str) -> String {
    let id: String = app_name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    if id.is_empty() {
        "rivulet".into()
    } else {
        id
    }
}

/// `Some(404)` when the path's `{app}` is neither the application's id nor its name.
fn check_app(req: &HttpRequest, shared: &Shared) -> Option<HttpResponse> {
    let app = req.match_info().get("app")?;
    if app == shared.app_id || app == shared.app_name {
        return None;
    }
    Some(json_error(
        StatusCode::NOT_FOUND,
        format!(
            "no application {app:?}: this server runs {:?} (named {:?})",
            shared.app_id, shared.app_name
        ),
    ))
}

/// The path segment `name` parsed as a `T`, or the `400` answer naming it as `what`
/// (boxed: an answer is large).
fn path_param<T: FromStr>(
    req: &HttpRequest,
    name: &str,
    what: &str,
) -> Result<T, Box<HttpResponse>> {
    let raw = req.match_info().get(name).unwrap_or_default();
    raw.trim().parse().map_err(|_| {
        Box::new(json_error(
            StatusCode::BAD_REQUEST,
            format!("{what} must be an integer, got {raw:?}"),
        ))
    })
}

/// `t` in ms since the Unix epoch (0 for a time before it).
pub(crate) fn epoch_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn ms(d: Option<Duration>) -> Option<u64> {
    d.map(|d| d.as_millis() as u64)
}

/// `ms` since the Unix epoch as Spark writes dates in its status API,
/// `yyyy-MM-dd'T'HH:mm:ss.SSS'GMT'` (UTC), e.g. `1969-12-31T23:59:59.999GMT` for `-1`.
fn spark_date(ms: i64) -> String {
    let (days, ms_of_day) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    // Howard Hinnant's civil_from_days: the proleptic Gregorian date of a day count.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let (h, m, s, milli) = (
        ms_of_day / 3_600_000,
        ms_of_day / 60_000 % 60,
        ms_of_day / 1000 % 60,
        ms_of_day % 1000,
    );
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{milli:03}GMT")
}

fn avg(values: impl Iterator<Item = u64>) -> Option<f64> {
    let (sum, n) = values.fold((0u64, 0u64), |(s, n), v| (s + v, n + 1));
    (n > 0).then(|| sum as f64 / n as f64)
}

/// `GET .../statistics` (Spark: `StreamingStatistics`, plus rivulet's counters).
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
    /// Records of the completed batches.
    num_processed_records: u64,
    /// Records of the batches that started (as Spark, counted when a batch starts; a polled
    /// input's when its batch completes): `numProcessedRecords` plus those being processed.
    num_received_records: u64,
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
    partitions_recovered: u64,
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

fn json_error(status: StatusCode, message: String) -> HttpResponse {
    HttpResponse::build(status).json(json!({ "error": message }))
}

async fn statistics(req: HttpRequest, shared: web::Data<Shared>) -> HttpResponse {
    if let Some(wrong) = check_app(&req, &shared) {
        return wrong;
    }
    let sched = shared.scheduler.snapshot();
    let s = shared.state.lock();
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
        num_received_records: s.received_total,
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
        partitions_recovered: sched.partitions_recovered,
        checkpoint_store: s.checkpoint_store.map(CheckpointStoreView::from),
        num_skipped_inputs: s.polled_inputs.values().map(|p| p.skipped).sum(),
    };
    drop(s);
    HttpResponse::Ok().json(stats)
}

/// `GET .../graph`: the DStream graph (rivulet's addition).
async fn graph(req: HttpRequest, shared: web::Data<Shared>) -> HttpResponse {
    if let Some(wrong) = check_app(&req, &shared) {
        return wrong;
    }
    let s = shared.state.lock();
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

/// One application (Spark: `ApplicationInfo`), with its one attempt.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ApplicationView {
    id: String,
    name: String,
    attempts: Vec<AttemptView>,
}

/// The running attempt (Spark: `ApplicationAttemptInfo`): dates as Spark writes them, and
/// the same as epoch ms in the `...Epoch` fields.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AttemptView {
    start_time: String,
    /// Spark's for a running application: `-1` (`1969-12-31T23:59:59.999GMT`).
    end_time: String,
    last_updated: String,
    /// Wall time since the start, in ms.
    duration: u64,
    /// `$USER` of the process (empty when unset).
    spark_user: String,
    /// Always `false`: the server runs while the context does.
    completed: bool,
    /// rivulet's version (the field Spark fills with its own).
    app_spark_version: &'static str,
    start_time_epoch: i64,
    end_time_epoch: i64,
    last_updated_epoch: i64,
}

fn application_view(shared: &Shared) -> ApplicationView {
    let start = shared.state.lock().start_time;
    // A run served from its event log ended when its log says; a live one is running.
    let now = shared.ended.unwrap_or_else(SystemTime::now);
    let (start_ms, now_ms) = (epoch_ms(start) as i64, epoch_ms(now) as i64);
    let end_ms = if shared.ended.is_some() { now_ms } else { -1 };
    ApplicationView {
        id: shared.app_id.clone(),
        name: shared.app_name.clone(),
        attempts: vec![AttemptView {
            start_time: spark_date(start_ms),
            end_time: spark_date(end_ms),
            last_updated: spark_date(now_ms),
            duration: now.duration_since(start).unwrap_or_default().as_millis() as u64,
            spark_user: std::env::var("USER").unwrap_or_default(),
            completed: shared.ended.is_some(),
            app_spark_version: env!("CARGO_PKG_VERSION"),
            start_time_epoch: start_ms,
            end_time_epoch: end_ms,
            last_updated_epoch: now_ms,
        }],
    }
}

/// `GET /api/v1/applications`: the one application, running (or, served from an event
/// log, completed if its run stopped cleanly). Spark's query parameters
/// (`status`, `minDate`, `limit`, ...) are not read: the list never has another.
pub(super) async fn applications(shared: web::Data<Shared>) -> HttpResponse {
    HttpResponse::Ok().json(vec![application_view(&shared)])
}

/// `GET /api/v1/applications/{app}`: the application; `404` for another id.
pub(super) async fn application(req: HttpRequest, shared: web::Data<Shared>) -> HttpResponse {
    match check_app(&req, &shared) {
        Some(wrong) => wrong,
        None => HttpResponse::Ok().json(application_view(&shared)),
    }
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
            StatusCode::INTERNAL_SERVER_ERROR,
            "the metrics could not be encoded".into(),
        ),
    }
}

/// Any other method on `/metrics`: 405 with `Allow`.
pub(super) async fn metrics_method_not_allowed(req: HttpRequest) -> HttpResponse {
    let mut answer = json_error(
        StatusCode::METHOD_NOT_ALLOWED,
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
        StatusCode::NOT_FOUND,
        format!("no such path: {}", req.path()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_written_as_spark_writes_them() {
        assert_eq!(spark_date(-1), "1969-12-31T23:59:59.999GMT");
        assert_eq!(spark_date(0), "1970-01-01T00:00:00.000GMT");
        // Spark's own example (its REST API docs): 2015-02-03T16:42:40.000GMT.
        assert_eq!(spark_date(1_422_981_760_000), "2015-02-03T16:42:40.000GMT");
        assert_eq!(spark_date(951_782_400_123), "2000-02-29T00:00:00.123GMT");
    }

    #[test]
    fn app_ids_keep_url_safe_characters() {
        assert_eq!(app_id("rivulet"), "rivulet");
        assert_eq!(app_id("word count/v2"), "word-count-v2");
        assert_eq!(app_id(""), "rivulet");
    }
}
