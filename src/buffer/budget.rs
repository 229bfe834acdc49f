//! The agent-wide memory budget shared by all edges.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};

/// Counts bytes of events buffered on all edges together.
#[derive(Clone, Debug)]
pub struct MemoryBudget {
    sem: Arc<Semaphore>,
    limit: u32,
}

impl MemoryBudget {
    pub fn new(limit_bytes: u64) -> Self {
        let limit = limit_bytes.clamp(1, u32::MAX as u64) as u32;
        MemoryBudget {
            sem: Arc::new(Semaphore::new(limit as usize)),
            limit,
        }
    }

    pub fn limit(&self) -> u64 {
        self.limit as u64
    }

    /// Bytes currently taken by buffered events.
    pub fn in_use(&self) -> u64 {
        self.limit as u64 - self.sem.available_permits() as u64
    }

    /// An event larger than the whole budget takes the whole budget, so it can still
    /// pass (alone) instead of blocking forever.
    fn permits_for(&self, bytes: usize) -> u32 {
        (bytes.min(u32::MAX as usize) as u32).min(self.limit)
    }

    pub(super) async fn acquire(&self, bytes: usize) -> OwnedSemaphorePermit {
        let n = self.permits_for(bytes);
        self.sem
            .clone()
            .acquire_many_owned(n)
            .await
            .expect("budget semaphore is never closed")
    }

    pub(super) fn try_acquire(&self, bytes: usize) -> Option<OwnedSemaphorePermit> {
        let n = self.permits_for(bytes);
        match self.sem.clone().try_acquire_many_owned(n) {
            Ok(p) => Some(p),
            Err(TryAcquireError::NoPermits) => None,
            Err(TryAcquireError::Closed) => unreachable!("budget semaphore is never closed"),
        }
    }
}
