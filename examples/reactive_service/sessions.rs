//! Per-user session actors: the per-event half of the service. Each user's events go, in
//! order, through that user's [`Session`] actor, which forwards the event into the
//! `actor_stream` and answers with the user's running count and session length. The forward
//! waits while the stream is backpressured, but never past the request's deadline: then the
//! event is not stored and the request is answered `503`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use actix::prelude::*;
use rivulet::prelude::*;
use serde::Serialize;
use tokio::time::Instant;

use crate::PageEvent;

/// A new session starts when a user's event comes this long (in event time) after the
/// previous one, as web analytics usually counts visits.
pub const SESSION_GAP_SECS: i64 = 30 * 60;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What the service answered, counted: the independent count the analytics are checked
/// against. `accepted` is per user, counted by the session actors when the stream took the
/// event (so it holds exactly the events stored, whatever happened to the HTTP response).
#[derive(Debug, Default)]
pub struct Ledger {
    accepted: Mutex<HashMap<String, u64>>,
    /// Events answered `503` because the forward did not fit in the deadline.
    pub overloaded: AtomicU64,
    /// Events answered `503` because the stream has stopped.
    pub stopped: AtomicU64,
    /// Requests answered `400` (bodies that are not an event).
    pub malformed: AtomicU64,
    /// Forwards that found the stream full and had to wait (backpressure).
    pub waited: AtomicU64,
}

impl Ledger {
    /// Events accepted, per user.
    pub fn accepted_by_user(&self) -> HashMap<String, u64> {
        lock(&self.accepted).clone()
    }

    /// Events accepted, in all.
    pub fn accepted(&self) -> u64 {
        lock(&self.accepted).values().sum()
    }

    fn accept(&self, user: &str) {
        *lock(&self.accepted).entry(user.to_string()).or_default() += 1;
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
    /// The user's events accepted so far, this one included.
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
    events: u64,
    session_events: u64,
    session_start: i64,
    last_time: i64,
}

impl Actor for Session {
    type Context = Context<Self>;
}

impl Session {
    fn record(&mut self, time: i64) -> Accepted {
        if self.events == 0 || time - self.last_time > SESSION_GAP_SECS {
            self.session_start = time;
            self.session_events = 0;
        }
        self.events += 1;
        self.session_events += 1;
        self.last_time = self.last_time.max(time);
        self.ledger.accept(&self.user);
        Accepted {
            user: self.user.clone(),
            events: self.events,
            session_events: self.session_events,
            session_secs: (self.last_time - self.session_start).max(0),
        }
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

/// The users' session actors, made on first use on the service's main arbiter (HTTP workers
/// run on threads of their own and share this registry).
#[derive(Clone)]
pub struct Sessions {
    sessions: Arc<Mutex<HashMap<String, Addr<Session>>>>,
    arbiter: ArbiterHandle,
    source: ActorSource<PageEvent>,
    ledger: Arc<Ledger>,
}

impl Sessions {
    /// No sessions yet; they will forward into `source`, count into `ledger` and run on the
    /// current arbiter.
    pub fn new(source: ActorSource<PageEvent>, ledger: Arc<Ledger>) -> Sessions {
        Sessions {
            sessions: Arc::default(),
            arbiter: Arbiter::current(),
            source,
            ledger,
        }
    }

    /// The session actor of `user`, started if it has none (or its actor stopped).
    pub fn of(&self, user: &str) -> Addr<Session> {
        let mut sessions = lock(&self.sessions);
        if let Some(addr) = sessions.get(user).filter(|a| a.connected()) {
            return addr.clone();
        }
        let session = Session {
            user: user.to_string(),
            source: self.source.clone(),
            ledger: self.ledger.clone(),
            events: 0,
            session_events: 0,
            session_start: 0,
            last_time: 0,
        };
        let addr = Session::start_in_arbiter(&self.arbiter, move |_| session);
        sessions.insert(user.to_string(), addr.clone());
        addr
    }
}
