//! Which operator's user function is running on this thread, so that a panic inside a fused
//! chain of narrow operators is reported against the operator that panicked, not the chain.
//!
//! Each operator marks itself right before calling its user function; the mark costs one
//! thread-local write per record per operator.

use std::cell::Cell;

use crate::error::OpInfo;

thread_local! {
    static CURRENT: Cell<Option<OpInfo>> = const { Cell::new(None) };
}

/// Marks `op` as the operator whose user function runs next on this thread.
#[inline]
pub(crate) fn enter(op: OpInfo) {
    CURRENT.with(|c| c.set(Some(op)));
}

/// Takes (and clears) the last marked operator.
pub(crate) fn take() -> Option<OpInfo> {
    CURRENT.with(|c| c.take())
}
