//! Per-user session actors: the per-event half of the service. Each user's events go, in
//! order, through that user's [`Session`] actor, which forwards the event into the
//! `actor_stream` and answers with the user's running count and session length. The forward
//! waits while the stream is backpressured, but never past the request's deadline: then the
//! event is not stored and the request is answered `503`.
//!
//! A session actor lives while its user is active: after the session timeout without an
//! event (processing time, the analytics' `map_with_state` timeout) it leaves the registry
//! and stops, so memory follows the active users, not every user ever seen. The counts the
//! checks need are kept as [`CountDigest`]s, 16 bytes whatever the number of users.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use parking_lot::Mutex;
use rivulet::prelude::*;
use serde::Serialize;
use tokio::time::Instant;

use crate::digest::{AtomicCountDigest, CountDigest};
use crate::PageEvent;

/// A new session starts when a user's event comes this long (in event time) after the
/// previous one, as web analytics usually counts visits.
pub const SESSION_GAP_SECS: i64 = 30 * 60;

/// What the service answered, counted: the independent count the analytics are checked
/// against. `accepted` is per user (as a digest), counted by the session actors when the
/// stream took the event (so it holds exactly the events stored, whatever happened to the
/// HTTP response).
#[derive(Debug, Default)]
pub struct Ledger {
    accepted: AtomicCountDigest,
    /// Session actors started (a user's first event, or the first after an eviction).
    pub sessions_started: AtomicU64,
    /// Session actors stopped after the session timeout without an event.
    pub sessions_evicted: AtomicU64,
    /// Events answered `503` because the forward did not fit in the deadline.
    pub overloaded: AtomicU64,
    /// Events answered `503` because the stream has stopped.
    pub stopped: AtomicU64,
    /// Requests answered `400` (bodies that are not an event).
    pub malformed: AtomicU64,
    /// Requests answered `415` (a body that is not `application/json`).
    pub unsupported: AtomicU64,
    /// Requests answered `413` (a body over the limit).
    pub oversized: AtomicU64,
    /// Forwards that found the stream full and had to wait (backpressure).
    pub waited: AtomicU64,
}

impl Ledger {
    /// Events accepted, per user (as a digest).
    pub fn accepted_by_user(&self) -> CountDigest {
        self.accepted.get()
    }

    /// Events accepted, in all.
    pub fn accepted(&self) -> u64 {
        self.accepted.get().events
    }

    /// Counts `n` with `Relaxed` ordering (counters only).
    pub fn get(n: &AtomicU64) -> u64 {
        n.load(Ordering::Relaxed)
    }
}

/// The answer to an accepted event.
#[derive(Debug, Clone, Serialize)]
pub struct Accepted {
    /// The user.
    pub user: String,
    /// The user's events accepted since their session actor started (their first event, or
    /// the first after a session timeout), this one included.
    pub events: u64,
    /// Events in the user's current session (see [`SESSION_GAP_SECS`]).
    pub session_events: u64,
    /// The current session's length in event time: this event's time minus its first's.
    pub session_secs: i64,
}

/// Why an event was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// The stream stayed full until the request's deadline: nothing was stored.
    Overloaded {
        /// How long the forward waited.
        waited: Duration,
    },
    /// The stream has stopped (the service is shutting down).
    Stopped,
}

/// One event for a user's session, to be answered by `deadline`.
#[derive(Debug)]
pub struct Ingest {
    /// The event (its `user` is the session's).
    pub event: PageEvent,
    /// When the request must be answered; the forward gives up then.
    pub deadline: Instant,
}

impl Message for Ingest {
    type Result = Result<Accepted, Refused>;
}

/// One user's session: counts and forwards the user's events, one at a time, in order.
pub struct Session {
    user: String,
    source: ActorSource<PageEvent>,
    ledger: Arc<Ledger>,
    registry: Registry,
    idle_timeout: Duration,
    last_event: Instant,
    events: u64,
    session_events: u64,
    session_start: i64,
    last_time: i64,
}

impl Actor for Session {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let every = (self.idle_timeout / 4).max(Duration::from_millis(50));
        ctx.run_interval(every, |session, ctx| session.evict_if_idle(ctx));
    }
}

impl Session {
    /// Counts an accepted event at `time` (seconds since the epoch, validated to lie in
    /// [`crate::server::EVENT_TIME_RANGE`], so the differences below cannot overflow; they
    /// saturate all the same). Cannot fail: it runs after the stream took the event.
    fn record(&mut self, time: i64) -> Accepted {
        if self.events == 0 || time.saturating_sub(self.last_time) > SESSION_GAP_SECS {
            self.session_start = time;
            self.session_events = 0;
            self.last_time = time;
        }
        self.events += 1;
        self.session_events += 1;
        self.last_time = self.last_time.max(time);
        self.last_event = Instant::now();
        self.ledger.accepted.add_one(&self.user);
        Accepted {
            user: self.user.clone(),
            events: self.events,
            session_events: self.session_events,
            session_secs: self.last_time.saturating_sub(self.session_start).max(0),
        }
    }

    /// Leaves the registry and stops once the user has been idle for the timeout. A request
    /// that took this actor's address just before finds its mailbox closed, its event not
    /// handled, and asks the registry again (see [`Sessions::ingest`]).
    fn evict_if_idle(&mut self, ctx: &mut Context<Self>) {
        if self.last_event.elapsed() < self.idle_timeout {
            return;
        }
        let me = ctx.address();
        let mut registry = self.registry.lock();
        if registry.get(&self.user) == Some(&me) {
            registry.remove(&self.user);
            // Give the memory back as users come and go.
            if registry.capacity() > 4 * registry.len().max(64) {
                registry.shrink_to_fit();
            }
        }
        drop(registry);
        self.ledger.sessions_evicted.fetch_add(1, Ordering::Relaxed);
        ctx.stop();
    }
}

impl Handler<Ingest> for Session {
    type Result = AtomicResponse<Self, Result<Accepted, Refused>>;

    fn handle(
        &mut self,
        Ingest { event, deadline }: Ingest,
        _: &mut Context<Self>,
    ) -> Self::Result {
        let time = event.time;
        // The fast path: room in the stream now.
        let event = match self.source.try_send(event) {
            Ok(()) => return AtomicResponse::new(Box::pin(fut::ready(Ok(self.record(time))))),
            Err(TrySendError::Closed(_)) => {
                self.ledger.stopped.fetch_add(1, Ordering::Relaxed);
                return AtomicResponse::new(Box::pin(fut::ready(Err(Refused::Stopped))));
            }
            Err(TrySendError::Full(event)) => event,
        };
        // Backpressure: wait for room, but not past the deadline. Atomic, so the user's next
        // event waits behind this one (order kept). Cancelling `send` of one event is safe: a
        // cancelled send stored nothing.
        self.ledger.waited.fetch_add(1, Ordering::Relaxed);
        let (source, started) = (self.source.clone(), Instant::now());
        let forward = async move { tokio::time::timeout_at(deadline, source.send(event)).await };
        AtomicResponse::new(Box::pin(forward.into_actor(self).map(
            move |sent, session, _| match sent {
                Ok(Ok(())) => Ok(session.record(time)),
                Ok(Err(_)) => {
                    session.ledger.stopped.fetch_add(1, Ordering::Relaxed);
                    Err(Refused::Stopped)
                }
                Err(_) => {
                    session.ledger.overloaded.fetch_add(1, Ordering::Relaxed);
                    Err(Refused::Overloaded {
                        waited: started.elapsed(),
                    })
                }
            },
        )))
    }
}

type Registry = Arc<Mutex<HashMap<String, Addr<Session>>>>;

/// The active users' session actors, made on first use on the service's main arbiter (HTTP
/// workers run on threads of their own and share this registry).
#[derive(Clone)]
pub struct Sessions {
    sessions: Registry,
    arbiter: ArbiterHandle,
    source: ActorSource<PageEvent>,
    ledger: Arc<Ledger>,
    idle_timeout: Duration,
}

impl Sessions {
    /// No sessions yet; they will forward into `source`, count into `ledger`, run on the
    /// current arbiter and stop after `idle_timeout` without an event.
    pub fn new(
        source: ActorSource<PageEvent>,
        ledger: Arc<Ledger>,
        idle_timeout: Duration,
    ) -> Sessions {
        Sessions {
            sessions: Arc::default(),
            arbiter: Arbiter::current(),
            source,
            ledger,
            idle_timeout,
        }
    }

    /// The session actor of `user`, started if it has none (or its actor stopped).
    fn of(&self, user: &str) -> Addr<Session> {
        let mut sessions = self.sessions.lock();
        if let Some(addr) = sessions.get(user).filter(|a| a.connected()) {
            return addr.clone();
        }
        let session = Session {
            user: user.to_string(),
            source: self.source.clone(),
            ledger: self.ledger.clone(),
            registry: self.sessions.clone(),
            idle_timeout: self.idle_timeout,
            last_event: Instant::now(),
            events: 0,
            session_events: 0,
            session_start: 0,
            last_time: 0,
        };
        self.ledger.sessions_started.fetch_add(1, Ordering::Relaxed);
        let addr = Session::start_in_arbiter(&self.arbiter, move |_| session);
        sessions.insert(user.to_string(), addr.clone());
        addr
    }

    /// Hands `event` to its user's session actor and returns its answer. An actor that was
    /// evicted between the look-up and the send never handled the event (its mailbox was
    /// closed): the event goes to a new actor, at most a few times.
    pub async fn ingest(&self, event: PageEvent, deadline: Instant) -> Result<Accepted, Refused> {
        for _ in 0..3 {
            let session = self.of(&event.user);
            match session
                .send(Ingest {
                    event: event.clone(),
                    deadline,
                })
                .await
            {
                Ok(answer) => return answer,
                Err(MailboxError::Closed) => continue,
                Err(MailboxError::Timeout) => break,
            }
        }
        self.ledger.stopped.fetch_add(1, Ordering::Relaxed);
        Err(Refused::Stopped)
    }
}
