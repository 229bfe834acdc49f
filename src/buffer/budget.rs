//! The agent-wide memory budget, `[agent] memory_limit`, shared by everything that
//! holds events: every edge (buffered events) and every window store (windows waiting
//! for their watermarks). The sum of both can never pass the limit.
//!
//! Edges *wait* for room (that is backpressure). Window stores never wait: a store
//! that cannot grow applies its documented policy (an overflow stack, an early
//! flush) instead, because it is the store's own progress that frees memory, and a
//! store waiting on an edge waiting on the store would never wake. For the same
//! reason window stores together may hold at most [`WINDOW_SHARE`] of the limit: the
//! rest is always left to edges, so events (and the watermarks behind them, which
//! are what let stores flush) can always move.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};

/// The part of the limit window stores may hold together: half. The other half is
/// the buffers' (see [`MemoryBudget::edge_share`]).
pub const WINDOW_SHARE: (u64, u64) = (1, 2);

/// Counts bytes held by edges and window stores together.
#[derive(Clone, Debug)]
pub struct MemoryBudget {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    sem: Arc<Semaphore>,
    limit: u32,
    /// Most bytes window stores may hold (0 for one edge's own budget).
    window_limit: u64,
    window_bytes: AtomicU64,
    peak: AtomicU64,
    gauges: MemoryGauges,
}

/// `profpipe_memory_{edge,window,used,peak,limit}_bytes`.
#[derive(Clone, Debug, Default)]
pub struct MemoryGauges {
    pub edge_bytes: Gauge,
    pub window_bytes: Gauge,
    pub used_bytes: Gauge,
    pub peak_bytes: Gauge,
    pub limit_bytes: Gauge,
}

impl MemoryBudget {
    /// The agent-wide budget: edges and window stores.
    pub fn new(limit_bytes: u64) -> Self {
        let limit = limit_bytes.clamp(1, u32::MAX as u64);
        Self::with_window_limit(limit, limit * WINDOW_SHARE.0 / WINDOW_SHARE.1)
    }

    /// One edge's own budget (`buffer.max_bytes`): events only.
    pub fn for_edge(limit_bytes: u64) -> Self {
        Self::with_window_limit(limit_bytes.clamp(1, u32::MAX as u64), 0)
    }

    fn with_window_limit(limit_bytes: u64, window_limit: u64) -> Self {
        let limit = limit_bytes as u32;
        let gauges = MemoryGauges::default();
        gauges.limit_bytes.set(limit as i64);
        MemoryBudget {
            inner: Arc::new(Inner {
                sem: Arc::new(Semaphore::new(limit as usize)),
                limit,
                window_limit,
                window_bytes: AtomicU64::new(0),
                peak: AtomicU64::new(0),
                gauges,
            }),
        }
    }

    pub fn limit(&self) -> u64 {
        self.inner.limit as u64
    }

    /// Bytes taken by edges and window stores together.
    pub fn in_use(&self) -> u64 {
        self.inner.limit as u64 - self.inner.sem.available_permits() as u64
    }

    /// Bytes taken by window stores.
    pub fn window_bytes(&self) -> u64 {
        self.inner.window_bytes.load(Ordering::Relaxed)
    }

    /// Bytes taken by events buffered on edges.
    pub fn edge_bytes(&self) -> u64 {
        self.in_use().saturating_sub(self.window_bytes())
    }

    /// The highest `in_use` seen.
    pub fn peak(&self) -> u64 {
        self.inner.peak.load(Ordering::Relaxed)
    }

    /// The gauges to register with the telemetry.
    pub fn gauges(&self) -> &MemoryGauges {
        &self.inner.gauges
    }

    fn changed(&self) {
        let used = self.in_use();
        let peak = self.inner.peak.fetch_max(used, Ordering::Relaxed).max(used);
        let g = &self.inner.gauges;
        let windows = self.window_bytes();
        g.used_bytes.set(used as i64);
        g.peak_bytes.set(peak as i64);
        g.window_bytes.set(windows as i64);
        g.edge_bytes.set(used.saturating_sub(windows) as i64);
    }

    /// Most bytes window stores may hold together.
    pub fn window_limit(&self) -> u64 {
        self.inner.window_limit
    }

    /// What buffers may hold together: the limit less the window stores' share.
    pub fn edge_share(&self) -> u64 {
        (self.limit() - self.window_limit()).max(1)
    }

    /// An event larger than the edges' share of the budget takes that whole share,
    /// so it can still pass (alone) instead of blocking forever.
    fn permits_for(&self, bytes: usize) -> u32 {
        let edge_share = self.edge_share().min(u32::MAX as u64) as u32;
        (bytes.min(u32::MAX as usize) as u32).min(edge_share)
    }

    /// Room for an event on an edge; waits until there is some.
    pub(super) async fn acquire(&self, bytes: usize) -> Permit {
        let n = self.permits_for(bytes);
        let p = self
            .inner
            .sem
            .clone()
            .acquire_many_owned(n)
            .await
            .expect("budget semaphore is never closed");
        self.changed();
        Permit {
            _permit: p,
            budget: self.clone(),
        }
    }

    /// Room for an event on an edge if there is some now.
    pub(super) fn try_acquire(&self, bytes: usize) -> Option<Permit> {
        let n = self.permits_for(bytes);
        match self.inner.sem.clone().try_acquire_many_owned(n) {
            Ok(p) => {
                self.changed();
                Some(Permit {
                    _permit: p,
                    budget: self.clone(),
                })
            }
            Err(TryAcquireError::NoPermits) => None,
            Err(TryAcquireError::Closed) => unreachable!("budget semaphore is never closed"),
        }
    }

    /// A window store's account, empty at first.
    pub fn window_charge(&self) -> WindowCharge {
        WindowCharge {
            budget: self.clone(),
            bytes: 0,
        }
    }
}

/// Bytes of one buffered event; given back when dropped.
#[derive(Debug)]
pub struct Permit {
    _permit: OwnedSemaphorePermit,
    budget: MemoryBudget,
}

impl Drop for Permit {
    fn drop(&mut self) {
        // The semaphore permit is released after this body; count it as released.
        let n = self._permit.num_permits() as u64;
        let used = self.budget.in_use().saturating_sub(n);
        let g = &self.budget.inner.gauges;
        let windows = self.budget.window_bytes();
        g.used_bytes.set(used as i64);
        g.edge_bytes.set(used.saturating_sub(windows) as i64);
    }
}

/// The bytes one window store holds against the budget. Never waits: growing
/// either succeeds now or fails, and the store applies its policy.
#[derive(Debug)]
pub struct WindowCharge {
    budget: MemoryBudget,
    bytes: u64,
}

impl WindowCharge {
    /// Bytes charged.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Charges `n` more bytes if the budget has room for them now.
    pub fn try_grow(&mut self, n: u64) -> bool {
        if n == 0 {
            return true;
        }
        let Ok(n32) = u32::try_from(n) else {
            return false;
        };
        let inner = &self.budget.inner;
        // Reserve the stores' share first, atomically: stores on other threads
        // charge the same share, and a check-then-add would let two of them pass.
        let limit = self.budget.window_limit();
        let reserved = inner
            .window_bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |w| {
                (w + n <= limit).then_some(w + n)
            });
        if reserved.is_err() {
            return false;
        }
        match inner.sem.try_acquire_many(n32) {
            Ok(p) => {
                p.forget();
                self.bytes += n;
                self.budget.changed();
                true
            }
            Err(_) => {
                inner.window_bytes.fetch_sub(n, Ordering::AcqRel);
                false
            }
        }
    }

    /// Gives `n` bytes back (at most what is charged).
    pub fn shrink(&mut self, n: u64) {
        let n = n.min(self.bytes);
        if n == 0 {
            return;
        }
        self.bytes -= n;
        let inner = &self.budget.inner;
        inner.window_bytes.fetch_sub(n, Ordering::Relaxed);
        inner.sem.add_permits(n as usize);
        self.budget.changed();
    }

    /// Moves `n` of these bytes (at most what is charged) to a new charge, e.g. for
    /// a window taken out of its store that a sink is still writing.
    pub fn split(&mut self, n: u64) -> WindowCharge {
        let n = n.min(self.bytes);
        self.bytes -= n;
        WindowCharge {
            budget: self.budget.clone(),
            bytes: n,
        }
    }

    /// Sets the charge to `n` bytes, if the budget allows; false (charge unchanged)
    /// when growing is refused.
    pub fn try_set(&mut self, n: u64) -> bool {
        if n >= self.bytes {
            self.try_grow(n - self.bytes)
        } else {
            self.shrink(self.bytes - n);
            true
        }
    }
}

impl Drop for WindowCharge {
    fn drop(&mut self) {
        self.shrink(self.bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn edges_and_windows_share_one_limit() {
        let b = MemoryBudget::new(1000);
        assert_eq!((b.window_limit(), b.edge_share()), (500, 500));
        let mut w = b.window_charge();
        assert!(w.try_grow(400));
        let e = b.try_acquire(200).unwrap();
        let e2 = b.try_acquire(100).unwrap();
        assert_eq!(
            (b.edge_bytes(), b.window_bytes(), b.in_use()),
            (300, 400, 700)
        );
        assert!(
            !w.try_grow(101),
            "window stores hold at most half the limit"
        );
        let e3 = b.try_acquire(300).unwrap();
        assert!(b.try_acquire(1).is_none(), "the limit is full");
        assert!(!w.try_grow(1), "so no store may grow either");
        drop((e, e2, e3));
        assert_eq!(b.in_use(), 400);
        let big = b.try_acquire(900).unwrap();
        assert_eq!(
            b.edge_bytes(),
            500,
            "an event takes at most the edges' share"
        );
        drop(big);
        assert!(w.try_set(500) && !w.try_set(501));
        let part = w.split(450);
        assert_eq!((w.bytes(), part.bytes(), b.window_bytes()), (50, 450, 500));
        drop(part);
        assert_eq!(b.in_use(), 50);
        drop(w);
        assert_eq!(b.in_use(), 0);
        assert_eq!(b.peak(), 1000);
        let edge = MemoryBudget::for_edge(1000);
        assert_eq!(edge.try_acquire(900).map(|_| edge.in_use()), Some(900));
        assert_eq!(b.gauges().used_bytes.get(), 0);
    }
}
