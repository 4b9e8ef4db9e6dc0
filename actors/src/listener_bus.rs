//! Delivers streaming events to listeners, on the coordinator, in event order. A listener
//! that panics is logged and skipped; it does not take the coordinator down.

use std::panic::{catch_unwind, AssertUnwindSafe};

use rivulet_framework::listener::StreamingListener;
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
