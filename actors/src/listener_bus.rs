//! Delivers streaming events to listeners, on the coordinator, in event order. A listener
//! that panics is logged and skipped; it does not take the coordinator down.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::Arc;
use std::time::SystemTime;

use rivulet_framework::listener::{EventForwarder, StreamingEvent, StreamingListener};
use tracing::error;

/// The registered listeners.
#[derive(Default)]
pub(crate) struct ListenerBus {
    listeners: Vec<Box<dyn StreamingListener>>,
}

impl ListenerBus {
    pub(crate) fn add(&mut self, listener: Box<dyn StreamingListener>) {
        self.listeners.push(listener);
    }

    /// Calls `event` on every listener.
    pub(crate) fn post(&mut self, event: impl Fn(&mut dyn StreamingListener)) {
        for listener in &mut self.listeners {
            if catch_unwind(AssertUnwindSafe(|| event(&mut **listener))).is_err() {
                error!("A streaming listener panicked; event skipped for it.");
            }
        }
    }
}

/// A listener that hands each event, with the time it happened, to a thread of its own
/// through the bounded queue `events` (the status server's, the event log's), never
/// waiting: a full queue drops the event and counts it in `dropped`; a closed one (its
/// thread ended) drops it silently.
pub(crate) fn queued_listener(
    events: SyncSender<(StreamingEvent, SystemTime)>,
    dropped: Arc<AtomicU64>,
) -> Box<dyn StreamingListener> {
    Box::new(EventForwarder::new(move |event| {
        if let Err(TrySendError::Full(_)) = events.try_send((event, SystemTime::now())) {
            dropped.fetch_add(1, Ordering::Relaxed);
        }
    }))
}
