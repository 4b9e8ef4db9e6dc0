//! The HTTP side (actix-web, on 127.0.0.1 only): `POST /events` hands each event to its
//! user's session actor and answers with what the session says; `GET /stats` returns the
//! dashboard's latest batch and window.
//!
//! | Answer | When |
//! |---|---|
//! | `200` `{"user", "events", "session_events", "session_secs"}` | the event is in the stream |
//! | `400` `{"error"}` | the body is not an event: not a JSON object with exactly the fields, a field empty or too long, a time out of range (counted) |
//! | `413` `{"error"}` | the body is over 16 KiB (counted) |
//! | `415` `{"error"}` | the body is not `Content-Type: application/json` (counted) |
//! | `503` `{"error"}` + `Retry-After` | the stream stayed full until the deadline, or stopped |
//!
//! Every check runs before the event goes anywhere: an event is stored only if it is
//! answered `200` (and a `503` stored nothing).

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use actix::Addr;
use actix_web::dev::ServerHandle;
use actix_web::http::{header, StatusCode};
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use futures::StreamExt;
use rivulet::prelude::BoxError;
use serde::Serialize;
use tokio::time::Instant;

use crate::analytics::{Dashboard, GetStats};
use crate::sessions::{Ledger, Refused, Sessions};
use crate::PageEvent;

/// Longest accepted `user` and `page`, in bytes.
pub const MAX_FIELD_BYTES: usize = 2048;
/// Largest accepted request body, in bytes.
pub const MAX_BODY_BYTES: usize = 16 * 1024;
/// The accepted event times, in seconds since the Unix epoch: 1970-01-01 up to (not
/// including) 2100-01-01 UTC.
pub const EVENT_TIME_RANGE: std::ops::Range<i64> = 0..4_102_444_800;

/// What the handlers share.
#[derive(Clone)]
pub struct Service {
    /// The users' session actors.
    pub sessions: Sessions,
    /// The dashboard `GET /stats` reads.
    pub dashboard: Addr<Dashboard>,
    /// Where refusals are counted.
    pub ledger: Arc<Ledger>,
    /// How long a request may wait for the stream before it is answered `503`.
    pub deadline: Duration,
}

fn json(status: StatusCode, body: &impl Serialize) -> HttpResponse {
    let text = serde_json::to_string(body)
        .unwrap_or_else(|e| format!("{{\"error\":\"cannot encode the answer: {e}\"}}"));
    HttpResponse::build(status)
        .content_type("application/json")
        .body(text)
}

#[derive(Serialize)]
struct ErrorBody {
    error: String,
}

fn error(status: StatusCode, message: String) -> HttpResponse {
    json(status, &ErrorBody { error: message })
}

/// An event from a request body, or why it is not one: a JSON object with `user`, `page`
/// (1 to [`MAX_FIELD_BYTES`] bytes each) and `time` (in [`EVENT_TIME_RANGE`]), nothing else.
pub fn parse_event(body: &[u8]) -> Result<PageEvent, String> {
    // serde also reads a struct from a JSON array (`["ann", "/", 1]`): not an event here.
    if body.trim_ascii_start().first() != Some(&b'{') {
        return Err("not an event: expected a JSON object".into());
    }
    let event: PageEvent =
        serde_json::from_slice(body).map_err(|e| format!("not an event: {e}"))?;
    if !EVENT_TIME_RANGE.contains(&event.time) {
        return Err(format!(
            "`time` {} is out of range: seconds since the Unix epoch, from {} to {} \
             (before 2100)",
            event.time,
            EVENT_TIME_RANGE.start,
            EVENT_TIME_RANGE.end - 1
        ));
    }
    for (name, value) in [("user", &event.user), ("page", &event.page)] {
        if value.is_empty() {
            return Err(format!("`{name}` is empty"));
        }
        if value.len() > MAX_FIELD_BYTES {
            return Err(format!(
                "`{name}` is {} bytes long, more than {MAX_FIELD_BYTES}",
                value.len()
            ));
        }
    }
    Ok(event)
}

/// Whether `req` says its body is JSON (`application/json`, parameters allowed).
fn is_json(req: &HttpRequest) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"))
}

/// The body, or the `413` answer once it passes [`MAX_BODY_BYTES`] (read no further).
async fn read_body(mut payload: web::Payload) -> Result<Vec<u8>, HttpResponse> {
    let mut body = Vec::new();
    while let Some(chunk) = payload.next().await {
        let chunk =
            chunk.map_err(|e| error(StatusCode::BAD_REQUEST, format!("reading the body: {e}")))?;
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the body is over {MAX_BODY_BYTES} bytes: not an event"),
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

async fn post_event(
    service: web::Data<Service>,
    req: HttpRequest,
    payload: web::Payload,
) -> HttpResponse {
    let deadline = Instant::now() + service.deadline;
    let ledger = &service.ledger;
    if !is_json(&req) {
        ledger.unsupported.fetch_add(1, Ordering::Relaxed);
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send the event as Content-Type: application/json".into(),
        );
    }
    let body = match read_body(payload).await {
        Ok(body) => body,
        Err(answer) => {
            if answer.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ledger.oversized.fetch_add(1, Ordering::Relaxed);
            } else {
                ledger.malformed.fetch_add(1, Ordering::Relaxed);
            }
            return answer;
        }
    };
    let event = match parse_event(&body) {
        Ok(event) => event,
        Err(reason) => {
            ledger.malformed.fetch_add(1, Ordering::Relaxed);
            return error(StatusCode::BAD_REQUEST, reason);
        }
    };
    let unavailable = |message: String, retry_after_secs: u64| {
        HttpResponse::build(StatusCode::SERVICE_UNAVAILABLE)
            .insert_header(("Retry-After", retry_after_secs.to_string()))
            .content_type("application/json")
            .body(
                serde_json::to_string(&ErrorBody { error: message })
                    .unwrap_or_else(|_| "{}".into()),
            )
    };
    match service.sessions.ingest(event, deadline).await {
        Ok(accepted) => json(StatusCode::OK, &accepted),
        Err(Refused::Overloaded { waited }) => unavailable(
            format!(
                "overloaded: the analytics are behind and the event waited {} ms for room; \
                 not stored, retry later",
                waited.as_millis()
            ),
            1,
        ),
        Err(Refused::Stopped) => unavailable("the service is stopping: not stored".into(), 5),
    }
}

async fn get_stats(service: web::Data<Service>) -> HttpResponse {
    match service.dashboard.send(GetStats).await {
        Ok(stats) => json(StatusCode::OK, &stats),
        Err(e) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the dashboard is gone: {e}"),
        ),
    }
}

async fn not_found() -> HttpResponse {
    error(
        StatusCode::NOT_FOUND,
        "no such resource: try POST /events or GET /stats".into(),
    )
}

/// Serves `service` on 127.0.0.1:`port` (0: a free port) with `workers` threads. Returns the
/// bound address and the server's handle (stop it with `handle.stop(true).await`). Must run
/// inside an actix `System`.
///
/// # Errors
/// When the port cannot be bound.
pub fn start(
    service: Service,
    port: u16,
    workers: usize,
) -> Result<(SocketAddr, ServerHandle), BoxError> {
    let data = web::Data::new(service);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .route("/events", web::post().to(post_event))
            .route("/stats", web::get().to(get_stats))
            .default_service(web::to(not_found))
    })
    .workers(workers)
    .disable_signals()
    .shutdown_timeout(5)
    .bind(("127.0.0.1", port))
    .map_err(|e| format!("--port {port}: cannot listen on 127.0.0.1:{port}: {e}"))?;
    let address = server
        .addrs()
        .first()
        .copied()
        .ok_or("the HTTP server bound no address")?;
    let running = server.run();
    let handle = running.handle();
    actix::spawn(async move {
        if let Err(e) = running.await {
            eprintln!("error: the HTTP server stopped: {e}");
        }
    });
    Ok((address, handle))
}
