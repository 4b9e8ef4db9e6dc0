//! A finished run's status page, served again from its event log (Spark's History Server):
//! the same page, API and metrics as the live server, over the state its events rebuild.

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::{Duration, UNIX_EPOCH};

use actix_web::dev::ServerHandle;
use rivulet_framework::scheduler::SchedulerCounters;
use rivulet_framework::Result;

use super::metrics::Metrics;
use super::state::UiState;
use super::{api, serve, Shared};
use crate::event_log::EventLog;

/// Serves the status page, Spark's status API and `/metrics` of a run from its
/// [`EventLog`], as the run's own status server showed them when it stopped (or when it was
/// killed, for a log left `.inprogress`): the run's last `ui_retained_batches` batches and
/// its totals over every batch. Receivers' counters are those of their last event.
///
/// # Example
/// ```no_run
/// # async fn serve() -> rivulet_framework::Result<()> {
/// use rivulet_actors::{EventLog, HistoryServer};
/// let logs = EventLog::list(std::path::Path::new("/var/log/rivulet"))?;
/// if let Some(newest) = logs.first() {
///     let server = HistoryServer::start(&EventLog::read(newest)?, "127.0.0.1:4040")?;
///     println!("http://{}/", server.address());
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct HistoryServer {
    address: SocketAddr,
    handle: ServerHandle,
}

impl HistoryServer {
    /// Replays `log`'s events and serves the result on `address` (`ip:port`; port 0 picks a
    /// free one) until [`stop`](Self::stop). Must run inside an actix `System` (e.g. under
    /// `#[actix::main]`).
    ///
    /// # Errors
    /// [`Error::Config`](rivulet_framework::Error::Config) naming the address when it
    /// cannot be bound.
    pub fn start(log: &EventLog, address: &str) -> Result<HistoryServer> {
        let scheduler = Arc::new(SchedulerCounters::starting_at(&log.scheduler));
        let dropped = Arc::new(AtomicU64::new(log.dropped_events));
        let metrics = Arc::new(Metrics::new(scheduler.clone(), dropped));
        let mut state = UiState::new(
            log.run.ui_retained_batches,
            Duration::from_millis(log.run.batch_interval_ms),
            log.run.graph.clone(),
        );
        state.start_time = UNIX_EPOCH + Duration::from_millis(log.run.start_ms);
        for (at, event) in &log.events {
            state.apply(event.clone(), *at, &metrics);
        }
        let app_name = log.run.app_name.clone();
        let (address, handle) = serve(
            address,
            Shared {
                app_id: api::app_id(&app_name),
                app_name,
                sources: Vec::new(),
                state: Arc::new(Mutex::new(state)),
                metrics,
                scheduler,
                ended: log.end,
            },
        )?;
        tracing::info!(%address, log = %log.path.display(), "History server listening.");
        Ok(HistoryServer { address, handle })
    }

    /// The address the server bound.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Stops the server, closing open connections.
    pub async fn stop(&self) {
        self.handle.stop(false).await;
    }
}
