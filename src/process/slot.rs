//! A child's place under the supervisor: what a started child holds until it is
//! reaped.
//!
//! Its own file so that the spawner and the child handle, which carry a slot, need
//! not import the supervisor that hands slots out: the supervisor is reached only
//! through [`SlotOwner`].

use std::sync::Arc;

use tokio::sync::OwnedSemaphorePermit;

/// What gives out slots (the supervisor): told when one is released.
pub(crate) trait SlotOwner: Send + Sync {
    /// One slot was released: its child was reaped (or never started).
    fn release(&self);
}

/// One child's place: a permit under the cap, one unit of the live count and a
/// reference that keeps the supervisor (and so the spawner thread) alive. Released
/// when the child is reaped.
pub(crate) struct LiveSlot {
    owner: Arc<dyn SlotOwner>,
    _permit: OwnedSemaphorePermit,
}

impl LiveSlot {
    /// A slot already counted by `owner`.
    pub(crate) fn new(owner: Arc<dyn SlotOwner>, permit: OwnedSemaphorePermit) -> Self {
        LiveSlot {
            owner,
            _permit: permit,
        }
    }
}

impl Drop for LiveSlot {
    fn drop(&mut self) {
        self.owner.release();
    }
}
