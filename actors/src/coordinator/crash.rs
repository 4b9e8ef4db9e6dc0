//! Supervision of the coordinator itself: it is the root of the runtime, so when it dies
//! without a clean stop (a panic in it, an abrupt stop, the `CrashCoordinator` fault drill)
//! nothing can restart it in place; the failure escalates to the context instead. Its `Drop`
//! stops what it started and reports [`Status::Stopped`] with [`Error::Crashed`], so
//! `await_termination` returns that error rather than a clean stop. It also escalates the
//! executor pool giving up (no executor left).

use actix::{ActorContext, Context, Handler};
use rivulet_framework::Error;
use tracing::error;

use super::Coordinator;
use crate::messages::CrashCoordinator;
use crate::runtime::Status;

/// The error a coordinator that died without a clean stop leaves behind.
pub(crate) fn coordinator_crashed() -> Error {
    Error::Crashed {
        component: "the coordinator".into(),
        reason: "it died without a clean stop (a panic in it, or an abrupt stop); \
                 the streaming context stopped with it"
            .into(),
    }
}

impl Handler<CrashCoordinator> for Coordinator {
    type Result = ();

    fn handle(&mut self, _: CrashCoordinator, ctx: &mut Context<Self>) {
        error!(parent: &self.span, "Crashing the coordinator (fault drill).");
        // As a panic would: no stop sequence, no final status.
        ctx.stop();
    }
}

impl Coordinator {
    /// Stops the context with the pool's error once the executor pool gave up.
    pub(super) fn escalate_pool_failure(&mut self, ctx: &mut Context<Self>) {
        if let Some(error) = self.pool.take_failure() {
            self.fail(error, ctx);
        }
    }
}

impl Drop for Coordinator {
    fn drop(&mut self) {
        if self.stopping.as_ref().is_some_and(|s| s.is_final()) {
            return; // a clean stop: finish_stop did the rest
        }
        let error = coordinator_crashed();
        error!(parent: &self.span, %error, "The coordinator died.");
        // Stop what the coordinator started, as finish_stop would; nothing here may panic
        // (this may run while a panic unwinds).
        // Their threads are left to end on their own: a dying coordinator waits for nothing.
        drop(self.pool.stop());
        for r in &mut self.receivers {
            r.source.close();
            if let Some(arbiter) = r.arbiter.take() {
                arbiter.stop();
            }
        }
        self.graph.shutdown();
        self.waiters.clear();
        self.status.send_if_modified(|s| match s {
            Status::Stopped(_) => false,
            _ => {
                *s = Status::Stopped(Some(error));
                true
            }
        });
    }
}
