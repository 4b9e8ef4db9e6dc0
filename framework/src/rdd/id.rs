//! Derived RDD ids (DESIGN: "RDD ids are derived, not counted").
//!
//! An [`RddId`] is `(scope, batch time, position)`: the DStream whose batch computation
//! created the RDD, the batch time, and the RDD's position among the RDDs that computation
//! created. The same program therefore names the same RDDs in every run and every process.
//! RDDs built outside a batch (`parallelize`) live in the static scope, at [`Time::MAX`].

use std::cell::RefCell;
use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::time::Time;

/// The scope of RDDs created outside any DStream's batch computation.
pub const STATIC_SCOPE: u32 = u32::MAX;

/// Names an RDD: the DStream (scope) and batch time that created it, and its position there.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
pub struct RddId {
    /// The id of the DStream whose batch computation created the RDD, or [`STATIC_SCOPE`].
    pub scope: u32,
    /// The batch time in ms ([`Time::MAX`] for static RDDs).
    pub time_ms: i64,
    /// The RDD's position among the RDDs created in that scope, from 0.
    pub seq: u32,
}

impl RddId {
    /// The batch this RDD belongs to; `None` for static RDDs.
    pub fn batch_time(&self) -> Option<Time> {
        (self.scope != STATIC_SCOPE).then_some(Time::from_ms(self.time_ms))
    }
}

impl fmt::Display for RddId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.scope == STATIC_SCOPE {
            write!(f, "static.{}", self.seq)
        } else {
            write!(f, "{}.{}.{}", self.scope, self.time_ms, self.seq)
        }
    }
}

/// Names a shuffle: the id of the RDD that reads it.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
pub struct ShuffleId(pub RddId);

impl fmt::Display for ShuffleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Hands out the positions of one scope.
#[derive(Debug)]
pub(crate) struct IdScope {
    scope: u32,
    time_ms: i64,
    next: AtomicU32,
}

impl IdScope {
    pub(crate) fn new(scope: u32, time: Time) -> Arc<IdScope> {
        Arc::new(IdScope {
            scope,
            time_ms: time.as_ms(),
            next: AtomicU32::new(0),
        })
    }

    pub(crate) fn new_static() -> Arc<IdScope> {
        IdScope::new(STATIC_SCOPE, Time::MAX)
    }

    fn next_id(&self) -> RddId {
        RddId {
            scope: self.scope,
            time_ms: self.time_ms,
            seq: self.next.fetch_add(1, Ordering::Relaxed),
        }
    }
}

thread_local! {
    static CURRENT: RefCell<Option<Arc<IdScope>>> = const { RefCell::new(None) };
}

/// The id and scope of a new RDD: the scope of the DStream computing on this thread, else the
/// scope of the RDD it derives from.
pub(crate) fn next_id(inherited: &Arc<IdScope>) -> (RddId, Arc<IdScope>) {
    let scope = CURRENT
        .with(|c| c.borrow().clone())
        .unwrap_or_else(|| inherited.clone());
    (scope.next_id(), scope)
}

/// Runs `f` with `scope` as the current scope, restoring the previous one after (also on panic).
pub(crate) fn with_scope<R>(scope: Arc<IdScope>, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<Arc<IdScope>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let prev = self.0.take();
            CURRENT.with(|c| *c.borrow_mut() = prev);
        }
    }
    let _restore = Restore(CURRENT.with(|c| c.borrow_mut().replace(scope)));
    f()
}
