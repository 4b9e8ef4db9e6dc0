//! The status server (Spark: the web UI's Streaming tab): one HTML page with embedded
//! assets (uPlot 1.6.32, MIT, vendored in `assets/` with its license), Spark's status API
//! (`/api/v1/applications` and `/api/v1/applications/{app}/streaming/...`, each streaming
//! path also under the short alias `/api/v1/streaming/...`), and Prometheus `/metrics`,
//! served by actix-web on the address of `StreamingConfig::ui_address` while the context
//! runs, and `StreamingConfig::ui_linger` after it stops.
//!
//! It is fed by a listener that never waits: events go through a bounded queue to the
//! server's own thread, which keeps the last `ui_retained_batches` batches (oldest dropped
//! first) behind a lock that request handlers hold only to copy what they answer.

mod api;
mod history;
mod metrics;
mod state;

pub(crate) use self::api::{app_id, epoch_ms};
pub use self::history::HistoryServer;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};

use parking_lot::Mutex;
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpResponse, HttpServer};
use rivulet_framework::block::StreamId;
use rivulet_framework::config::StreamingConfig;
use rivulet_framework::dstream::GraphDescription;
use rivulet_framework::listener::StreamingListener;
use rivulet_framework::receiver::ReceiverCounters;
use rivulet_framework::scheduler::SchedulerCounters;
use rivulet_framework::{Error, Result};

use self::metrics::Metrics;
use self::state::{UiState, EVENT_QUEUE};
use crate::listener_bus::queued_listener;

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const UPLOT_JS: &str = include_str!("assets/uPlot.iife.min.js");
const UPLOT_CSS: &str = include_str!("assets/uPlot.min.css");
const UPLOT_LICENSE: &str = include_str!("assets/uPlot-LICENSE.txt");

/// What the request handlers share.
pub(crate) struct Shared {
    app_name: String,
    /// The application's id in Spark's paths (see [`api::app_id`]).
    app_id: String,
    /// Each receiver's buffer, read live for its counters (`recordsStored`, ...).
    sources: Vec<(StreamId, Arc<dyn ReceiverCounters>)>,
    state: Arc<Mutex<UiState>>,
    metrics: Arc<Metrics>,
    scheduler: Arc<SchedulerCounters>,
    /// When the run ended, for a run served from its event log that stopped cleanly;
    /// `None` while it runs.
    ended: Option<std::time::SystemTime>,
}

/// A running status server: its address, and the handle that stops it.
#[derive(Clone)]
pub(crate) struct StatusServer {
    address: SocketAddr,
    handle: ServerHandle,
    /// How long it keeps serving after [`stop`](Self::stop).
    linger: Duration,
    stopping: Arc<AtomicBool>,
}

impl std::fmt::Debug for StatusServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatusServer")
            .field("address", &self.address)
            .field("linger", &self.linger)
            .finish_non_exhaustive()
    }
}

fn asset(content_type: &'static str, body: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header(("Cache-Control", "no-cache"))
        .body(body)
}

/// Binds `address` and serves the page, the API and the metrics over `shared` on one worker
/// thread of the current actix `System`; returns the bound address and the server's handle.
///
/// # Errors
/// [`Error::Config`] naming the address when it cannot be bound (in use, not local, ...).
fn serve(address: &str, shared: Shared) -> Result<(SocketAddr, ServerHandle)> {
    let shared = web::Data::new(shared);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(shared.clone())
            .route("/", web::get().to(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }))
            .route("/static/app.js", web::get().to(|| async { asset("text/javascript; charset=utf-8", APP_JS) }))
            .route("/static/uPlot.iife.min.js", web::get().to(|| async { asset("text/javascript; charset=utf-8", UPLOT_JS) }))
            .route("/static/uPlot.min.css", web::get().to(|| async { asset("text/css; charset=utf-8", UPLOT_CSS) }))
            .route("/static/uPlot-LICENSE.txt", web::get().to(|| async { asset("text/plain; charset=utf-8", UPLOT_LICENSE) }))
            .route("/api/v1/applications", web::get().to(api::applications))
            .route("/api/v1/applications/{app}", web::get().to(api::application))
            // Spark's paths, and the short ones as aliases: the same handlers.
            .service(web::scope("/api/v1/applications/{app}/streaming").configure(api::streaming_routes))
            .service(web::scope("/api/v1/streaming").configure(api::streaming_routes))
            .route("/metrics", web::get().to(api::metrics))
            .route("/metrics", web::head().to(api::metrics))
            .route("/metrics", web::route().to(api::metrics_method_not_allowed))
            .default_service(web::to(api::not_found))
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(1)
    .bind(address)
    .map_err(|e| {
        Error::Config(format!(
            "ui_address {address}: cannot listen there: {e} (is the port in use? port 0 picks a free one)"
        ))
    })?;
    let bound = server
        .addrs()
        .first()
        .copied()
        .ok_or_else(|| Error::Config(format!("ui_address {address}: nothing was bound")))?;
    let running = server.run();
    let handle = running.handle();
    actix_rt::spawn(async move {
        if let Err(e) = running.await {
            tracing::error!(error = %e, "The status server stopped with an error.");
        }
    });
    Ok((bound, handle))
}

impl StatusServer {
    /// Binds `address` and serves the page, the API and the metrics on one worker thread;
    /// `sources` are the receivers' buffers, whose counters the API reads live. Returns the
    /// server and the listener that feeds it (add it to the listener bus). Must run inside
    /// an actix `System`.
    ///
    /// # Errors
    /// [`Error::Config`] naming the address when it cannot be bound (in use, not local, ...).
    pub(crate) fn start(
        address: &str,
        config: &StreamingConfig,
        graph: GraphDescription,
        scheduler: Arc<SchedulerCounters>,
        sources: Vec<(StreamId, Arc<dyn ReceiverCounters>)>,
    ) -> Result<(StatusServer, Box<dyn StreamingListener>)> {
        let dropped = Arc::new(AtomicU64::new(0));
        let metrics = Arc::new(Metrics::new(scheduler.clone(), dropped.clone()));
        let state = Arc::new(Mutex::new(UiState::new(
            config.get_ui_retained_batches(),
            config.get_batch_interval(),
            graph,
        )));
        let app_name = config.get_app_name().to_string();
        let (bound, handle) = serve(
            address,
            Shared {
                app_id: api::app_id(&app_name),
                app_name,
                sources,
                state: state.clone(),
                metrics: metrics.clone(),
                scheduler,
                ended: None,
            },
        )?;
        let (events, inbox) = mpsc::sync_channel(EVENT_QUEUE);
        let feeder = std::thread::Builder::new()
            .name("rivulet-ui".into())
            .spawn(move || {
                // Ends when the coordinator drops the listener (the context stopped).
                while let Ok((event, at)) = inbox.recv() {
                    state.lock().apply(event, at, &metrics);
                }
            });
        if let Err(e) = feeder {
            drop(handle.stop(false));
            return Err(Error::Internal(format!(
                "cannot start the status server's thread: {e}"
            )));
        }
        tracing::info!(address = %bound, "Status server listening.");
        Ok((
            StatusServer {
                address: bound,
                handle,
                linger: config.get_ui_linger(),
                stopping: Arc::new(AtomicBool::new(false)),
            },
            queued_listener(events, dropped),
        ))
    }

    /// The address the server bound.
    pub(crate) fn address(&self) -> SocketAddr {
        self.address
    }

    /// Stops the server, closing open connections; with a linger, returns at once and stops
    /// it that much later (the state it serves no longer changes: the context has stopped).
    pub(crate) async fn stop(&self) {
        if self.linger.is_zero() {
            self.handle.stop(false).await;
        } else if !self.stopping.swap(true, Ordering::SeqCst) {
            let (handle, linger) = (self.handle.clone(), self.linger);
            tracing::info!(address = %self.address, ?linger, "Status server lingering after the stop.");
            actix_rt::spawn(async move {
                tokio::time::sleep(linger).await;
                handle.stop(false).await;
            });
        }
    }
}
