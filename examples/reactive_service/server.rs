//! The HTTP side (actix-web, on 127.0.0.1 only): `POST /events` hands each event to its
//! user's session actor and answers with what the session says; `GET /stats` returns the
//! dashboard's latest batch and window.
//!
//! | Answer | When |
//! |---|---|
//! | `200` `{"user", "events", "session_events", "session_secs"}` | the event is in the stream |
//! | `400` `{"error"}` | the body is not an event (counted) |
//! | `503` `{"error"}` + `Retry-After` | the stream stayed full until the deadline, or stopped |

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use actix::Addr;
use actix_web::dev::ServerHandle;
use actix_web::http::StatusCode;
use actix_web::{web, App, HttpResponse, HttpServer};
use rivulet::prelude::BoxError;
use serde::Serialize;
use tokio::time::Instant;

use crate::analytics::{Dashboard, GetStats};
use crate::sessions::{Ingest, Ledger, Refused, Sessions};
use crate::PageEvent;

/// Longest accepted `user` and `page`, in bytes.
pub const MAX_FIELD_BYTES: usize = 2048;
/// Largest accepted request body, in bytes.
const MAX_BODY_BYTES: usize = 16 * 1024;

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

/// An event from a request body, or why it is not one.
pub fn parse_event(body: &[u8]) -> Result<PageEvent, String> {
    let event: PageEvent =
        serde_json::from_slice(body).map_err(|e| format!("not an event: {e}"))?;
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

async fn post_event(service: web::Data<Service>, body: web::Bytes) -> HttpResponse {
    let deadline = Instant::now() + service.deadline;
    let event = match parse_event(&body) {
        Ok(event) => event,
        Err(reason) => {
            service.ledger.malformed.fetch_add(1, Ordering::Relaxed);
            return error(StatusCode::BAD_REQUEST, reason);
        }
    };
    let session = service.sessions.of(&event.user);
    let unavailable = |message: String, retry_after_secs: u64| {
        HttpResponse::build(StatusCode::SERVICE_UNAVAILABLE)
            .insert_header(("Retry-After", retry_after_secs.to_string()))
            .content_type("application/json")
            .body(
                serde_json::to_string(&ErrorBody { error: message })
                    .unwrap_or_else(|_| "{}".into()),
            )
    };
    match session.send(Ingest { event, deadline }).await {
        Ok(Ok(accepted)) => json(StatusCode::OK, &accepted),
        Ok(Err(Refused::Overloaded { waited })) => unavailable(
            format!(
                "overloaded: the analytics are behind and the event waited {} ms for room; \
                 not stored, retry later",
                waited.as_millis()
            ),
            1,
        ),
        Ok(Err(Refused::Stopped)) | Err(_) => {
            unavailable("the service is stopping: not stored".into(), 5)
        }
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
            .app_data(web::PayloadConfig::new(MAX_BODY_BYTES))
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
