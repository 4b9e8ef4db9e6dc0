//! The micro-batch half of the service: the analytics over the events stream, and the
//! [`Dashboard`] actor that each batch's results are sent to (`send_to`) and that
//! `GET /stats` reads.
//!
//! Per batch: page views (`reduce_by_key`); top pages over the last `window` (the
//! incremental `reduce_by_key_and_window_with`, an inverse and a zero filter, so pages that
//! left the window leave its state); per-user totals (`map_with_state` with a session
//! timeout: a user idle for the timeout has their total reported once more, as ended, and
//! their state dropped) and the active users (`state_snapshots`). The four are unioned into
//! one stream of [`Update`]s, so the dashboard gets one message per batch and never shows a
//! batch's page views beside another batch's window.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use rivulet::prelude::*;
use serde::{Deserialize, Serialize};

use crate::digest::CountDigest;
use crate::sessions::Ledger;
use crate::PageEvent;

/// Pages listed in the top lists.
const TOP: usize = 5;

/// One record of a batch's results for the dashboard.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Update {
    /// Views of a page in the batch.
    BatchPage(String, u64),
    /// Views of a page in the window ending at the batch.
    WindowPage(String, u64),
    /// A user's total in their current session: updated in the batch, or `ended` (timed out).
    User {
        /// The user.
        user: String,
        /// Events in the session so far.
        total: u64,
        /// The session timed out: this is its final total.
        ended: bool,
    },
    /// Users with state (a session not timed out).
    ActiveUsers(u64),
}

/// Builds the analytics over `events` and sends each batch's [`Update`]s to `dashboard`.
/// `cost_per_event` slows each batch down by that much per event (to show what overload
/// does: the analytics then handle at most `1 s / cost_per_event` events per second).
///
/// # Errors
/// When `window` is not a multiple of the batch interval.
pub fn build(
    ssc: &StreamingContext,
    events: &DStream<PageEvent>,
    dashboard: Recipient<Batch<Update>>,
    window: Duration,
    session_timeout: Duration,
    cost_per_event: Duration,
) -> Result<(), BoxError> {
    let slide = ssc.config().get_batch_interval();
    let views = events.map(|e| (e.page, 1u64)).reduce_by_key(|a, b| a + b);
    let batch_pages = views.map(|(page, n)| Update::BatchPage(page, n));

    let spec = WindowReduce::new(|a: u64, b| a + b)
        .inverse(|a, b| a - b)
        .filter(|(_, n)| *n > 0);
    let window_pages = views
        .reduce_by_key_and_window_with(spec, window, slide)?
        .map(|(page, n)| Update::WindowPage(page, n));

    let sessions = events
        .map(|e| (e.user, 1u64))
        .reduce_by_key(|a, b| a + b)
        .map_with_state(
            StateSpec::function(|user: &String, n: Option<u64>, state: &mut State<u64>| {
                let so_far = state.get().copied().unwrap_or(0);
                if state.is_timing_out() {
                    return Update::User {
                        user: user.clone(),
                        total: so_far,
                        ended: true,
                    };
                }
                let total = so_far + n.unwrap_or(0);
                state.update(total);
                Update::User {
                    user: user.clone(),
                    total,
                    ended: false,
                }
            })
            .timeout(session_timeout),
        );
    let active = sessions.state_snapshots().count().map(Update::ActiveUsers);

    let updates = ssc.union(&[batch_pages, window_pages, sessions.mapped(), active])?;
    if !cost_per_event.is_zero() {
        events.foreach_rdd(move |rdd, _| {
            let n = u32::try_from(rdd.count()?).unwrap_or(u32::MAX);
            std::thread::sleep(cost_per_event.saturating_mul(n));
            Ok(())
        });
    }
    updates.send_to(dashboard);
    Ok(())
}

/// `counts` sorted by count (largest first, ties by page), the first `n`.
fn top(counts: &HashMap<String, u64>, n: usize) -> Vec<(String, u64)> {
    let mut all: Vec<(String, u64)> = counts.iter().map(|(p, c)| (p.clone(), *c)).collect();
    all.sort_by(|(pa, ca), (pb, cb)| cb.cmp(ca).then_with(|| pa.cmp(pb)));
    all.truncate(n);
    all
}

/// The latest batch, as `GET /stats` shows it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct BatchStats {
    /// The batch time (ms since the Unix epoch).
    pub time_ms: i64,
    /// Page views in the batch.
    pub views: u64,
    /// Users with events in the batch.
    pub users: u64,
    /// The batch's most viewed pages.
    pub top_pages: Vec<(String, u64)>,
}

/// The window ending at the latest batch, as `GET /stats` shows it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct WindowStats {
    /// The window's end, the batch time (ms since the Unix epoch).
    pub time_ms: i64,
    /// The window's length.
    pub window_secs: u64,
    /// Page views in the window.
    pub views: u64,
    /// Distinct pages viewed in the window.
    pub pages: u64,
    /// The window's most viewed pages.
    pub top_pages: Vec<(String, u64)>,
}

/// What `GET /stats` returns.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Stats {
    /// The latest batch.
    pub batch: BatchStats,
    /// The window ending at it.
    pub window: WindowStats,
    /// Users with an active session in the analytics (not timed out).
    pub active_users: u64,
    /// Sessions that timed out so far.
    pub ended_sessions: u64,
    /// Batches seen so far.
    pub batches: u64,
    /// Page views counted over all batches.
    pub total_views: u64,
    /// What the HTTP side answered so far.
    pub http: HttpStats,
}

/// The HTTP side's counts.
#[derive(Debug, Clone, Default, Serialize)]
pub struct HttpStats {
    /// Events accepted (answered 2xx).
    pub accepted: u64,
    /// Events refused with `503` (overloaded, or the stream stopped).
    pub unavailable: u64,
    /// Bodies refused with `400`.
    pub malformed: u64,
    /// Forwards that waited for room (backpressure).
    pub waited: u64,
}

/// Asks the dashboard for [`Stats`].
#[derive(Debug)]
pub struct GetStats;

impl Message for GetStats {
    type Result = Stats;
}

/// Asks the dashboard for its [`Totals`], for the final checks.
#[derive(Debug)]
pub struct GetTotals;

impl Message for GetTotals {
    type Result = Totals;
}

/// What the dashboard summed over every batch, in memory that does not grow with the
/// batches or the users.
#[derive(Debug, Clone, Default)]
pub struct Totals {
    /// Batches seen.
    pub batches: u64,
    /// Page views, summed over the batches.
    pub views: u64,
    /// Windows compared with the sum of their batches' views.
    pub windows: u64,
    /// Windows whose views differed from the sum of their batches' (in `(t - window, t]`).
    pub bad_windows: u64,
    /// Per user: the totals of their ended sessions plus the current one, as a digest.
    pub per_user: CountDigest,
    /// Users with a session now.
    pub active_users: usize,
    /// Sessions that timed out.
    pub ended_sessions: u64,
}

/// Holds the latest batch's and window's results; prints a progress line per batch.
pub struct Dashboard {
    stats: Stats,
    /// Totals of the users' ended sessions.
    closed: CountDigest,
    /// Users' totals in their current sessions.
    current: HashMap<String, u64>,
    /// Page views of the batches in the last window, by batch time.
    recent_views: BTreeMap<i64, u64>,
    windows: u64,
    bad_windows: u64,
    window: Duration,
    ledger: Arc<Ledger>,
    progress: bool,
}

impl Dashboard {
    /// An empty dashboard of `window`-long windows; reads the HTTP counts from `ledger`;
    /// prints a line per batch when `progress`.
    pub fn new(window: Duration, ledger: Arc<Ledger>, progress: bool) -> Dashboard {
        Dashboard {
            stats: Stats::default(),
            closed: CountDigest::default(),
            current: HashMap::new(),
            recent_views: BTreeMap::new(),
            windows: 0,
            bad_windows: 0,
            window,
            ledger,
            progress,
        }
    }

    fn http(&self) -> HttpStats {
        let l = &self.ledger;
        HttpStats {
            accepted: l.accepted(),
            unavailable: Ledger::get(&l.overloaded) + Ledger::get(&l.stopped),
            malformed: Ledger::get(&l.malformed),
            waited: Ledger::get(&l.waited),
        }
    }
}

impl Actor for Dashboard {
    type Context = Context<Self>;
}

impl Handler<Batch<Update>> for Dashboard {
    type Result = ();

    fn handle(&mut self, batch: Batch<Update>, _: &mut Context<Self>) {
        let time = batch.time.as_ms();
        let (mut batch_pages, mut window_pages) = (HashMap::new(), HashMap::new());
        let mut users = 0;
        for update in batch.records {
            match update {
                Update::BatchPage(page, n) => *batch_pages.entry(page).or_default() += n,
                Update::WindowPage(page, n) => *window_pages.entry(page).or_default() += n,
                Update::User {
                    user,
                    total,
                    ended: false,
                } => {
                    users += 1;
                    self.current.insert(user, total);
                }
                Update::User {
                    user, ended: true, ..
                } => {
                    // The last report of a session: its total is the latest one seen.
                    let total = self.current.remove(&user).unwrap_or(0);
                    self.closed.add(&user, total);
                    self.stats.ended_sessions += 1;
                }
                Update::ActiveUsers(n) => self.stats.active_users = n,
            }
        }
        let views: u64 = batch_pages.values().sum();
        let window_total: u64 = window_pages.values().sum();
        // The window ending at this batch covers the batches in (time - window, time].
        let window_ms = self.window.as_millis() as i64;
        self.recent_views.insert(time, views);
        self.recent_views = self.recent_views.split_off(&(time - window_ms + 1));
        self.windows += 1;
        if self.recent_views.values().sum::<u64>() != window_total {
            self.bad_windows += 1;
        }
        if self.current.capacity() > 4 * self.current.len().max(64) {
            self.current.shrink_to_fit();
        }
        self.stats.batches += 1;
        self.stats.total_views += views;
        self.stats.batch = BatchStats {
            time_ms: time,
            views,
            users,
            top_pages: top(&batch_pages, TOP),
        };
        self.stats.window = WindowStats {
            time_ms: time,
            window_secs: self.window.as_secs(),
            views: window_total,
            pages: window_pages.len() as u64,
            top_pages: top(&window_pages, TOP),
        };
        if self.progress {
            let http = self.http();
            let tops: Vec<String> = self
                .stats
                .window
                .top_pages
                .iter()
                .take(3)
                .map(|(p, n)| format!("{p}:{n}"))
                .collect();
            println!(
                "[batch {time}] {views} views, {users} users | last {}s: {window_total} views, top {} | sessions: {} active, {} ended | HTTP: {} accepted, {} waited, {} 503, {} 400",
                self.window.as_secs(),
                tops.join(" "),
                self.stats.active_users,
                self.stats.ended_sessions,
                http.accepted,
                http.waited,
                http.unavailable,
                http.malformed,
            );
        }
    }
}

impl Handler<GetStats> for Dashboard {
    type Result = MessageResult<GetStats>;

    fn handle(&mut self, _: GetStats, _: &mut Context<Self>) -> Self::Result {
        let mut stats = self.stats.clone();
        stats.http = self.http();
        MessageResult(stats)
    }
}

impl Handler<GetTotals> for Dashboard {
    type Result = MessageResult<GetTotals>;

    fn handle(&mut self, _: GetTotals, _: &mut Context<Self>) -> Self::Result {
        let mut per_user = self.closed;
        for (user, n) in &self.current {
            per_user.add(user, *n);
        }
        MessageResult(Totals {
            batches: self.stats.batches,
            views: self.stats.total_views,
            windows: self.windows,
            bad_windows: self.bad_windows,
            per_user,
            active_users: self.current.len(),
            ended_sessions: self.stats.ended_sessions,
        })
    }
}
