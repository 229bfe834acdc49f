//! Delivery tokens: how a sink tells whoever produced an event what became of it.
//!
//! A source that must know whether its data arrived (a `file` source advancing its
//! read position, an HTTP ingest source answering 2xx, a disk buffer deleting
//! records) opens a [`Batch`] and attaches its token, an [`EventFinalizer`], to every
//! event it emits for that batch. Tokens travel with the data: a transform that
//! merges events (fold, dedup, merge, a sink's window) keeps every token of what it
//! merged; fan-out to several components gives each copy a token of its own. A sink
//! resolves the tokens of what it wrote with the outcome of the write
//! ([`EventStatus`]). When the last token of a batch is gone, the batch's
//! [`BatchReceiver`] learns the combined outcome, once.
//!
//! The combined outcome is the one that asks most of the producer:
//! `Delivered < Rejected < Errored`. A batch is `Delivered` only if every token was
//! resolved `Delivered`; `Errored` (retry) wins over `Rejected` (permanent), so a
//! record fanned out to two sinks is kept for the one that can still take it.
//!
//! A token dropped without an outcome (a component that lost an event through a
//! bug, an abort at shutdown) is *not* delivered: it counts as `Errored`, and in
//! [`unresolved_tokens`]. This is where we differ from Vector's finalizers, whose
//! default status is `Delivered` (a silent acknowledgement).

use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

/// What a sink says about the events it was given.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum EventStatus {
    /// Written or accepted by the destination; the producer may forget it.
    Delivered = 1,
    /// Refused for good (a 4xx, a record the destination cannot take, a drop by
    /// policy): counted and logged by whoever refused it, never retried.
    Rejected = 2,
    /// Not delivered this time (a timeout, a 5xx, an outage, a token lost without an
    /// outcome): the producer should keep the data and try again.
    Errored = 3,
}

impl EventStatus {
    fn from_u8(v: u8) -> Option<EventStatus> {
        match v {
            1 => Some(EventStatus::Delivered),
            2 => Some(EventStatus::Rejected),
            3 => Some(EventStatus::Errored),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            EventStatus::Delivered => "delivered",
            EventStatus::Rejected => "rejected",
            EventStatus::Errored => "errored",
        }
    }
}

impl fmt::Display for EventStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

static UNRESOLVED: AtomicU64 = AtomicU64::new(0);

/// Tokens dropped without an outcome since the process started (each counted as
/// `Errored` for its batch). Exported as `profpipe_delivery_tokens_unresolved_total`.
pub fn unresolved_tokens() -> u64 {
    UNRESOLVED.load(Ordering::Relaxed)
}

/// Whom a batch tells its outcome.
enum Listener {
    /// A [`BatchReceiver`].
    Receiver(oneshot::Sender<EventStatus>),
    /// A function, for a producer that tracks many small batches at once (a disk
    /// buffer's records): no task or future per batch.
    Callback(Box<dyn FnOnce(EventStatus) + Send>),
}

/// The shared end of a batch: holds the worst outcome so far and tells the listener
/// when the last token is gone.
struct Notifier {
    worst: AtomicU8,
    listener: Mutex<Option<Listener>>,
}

impl Notifier {
    fn update(&self, status: EventStatus) {
        self.worst.fetch_max(status as u8, Ordering::AcqRel);
    }
}

impl Drop for Notifier {
    fn drop(&mut self) {
        // No token was ever made (an empty batch): nothing was lost.
        let status = EventStatus::from_u8(self.worst.load(Ordering::Acquire))
            .unwrap_or(EventStatus::Delivered);
        match self.listener.get_mut().ok().and_then(Option::take) {
            Some(Listener::Receiver(tx)) => {
                let _ = tx.send(status);
            }
            Some(Listener::Callback(f)) => f(status),
            None => {}
        }
    }
}

/// A producer's handle on one batch: make tokens with [`Batch::token`], then drop
/// the batch (the receiver resolves once every token has been resolved or dropped).
pub struct Batch {
    notifier: Arc<Notifier>,
}

/// Learns a batch's combined outcome, once.
#[derive(Debug)]
pub struct BatchReceiver {
    rx: oneshot::Receiver<EventStatus>,
    /// The outcome once received (a oneshot hands it out only once).
    got: Option<EventStatus>,
}

impl Batch {
    pub fn new() -> (Batch, BatchReceiver) {
        let (tx, rx) = oneshot::channel();
        (
            Batch::with_listener(Listener::Receiver(tx)),
            BatchReceiver { rx, got: None },
        )
    }

    /// A batch whose combined outcome is passed to `f`, once, on the thread that
    /// resolves or drops its last token. `f` must not block.
    pub fn with_callback(f: impl FnOnce(EventStatus) + Send + 'static) -> Batch {
        Batch::with_listener(Listener::Callback(Box::new(f)))
    }

    fn with_listener(listener: Listener) -> Batch {
        Batch {
            notifier: Arc::new(Notifier {
                worst: AtomicU8::new(0),
                listener: Mutex::new(Some(listener)),
            }),
        }
    }

    /// A new token of this batch.
    pub fn token(&self) -> EventFinalizer {
        EventFinalizer {
            notifier: Some(self.notifier.clone()),
        }
    }

    /// The batch's tokens as the finalizers of one event.
    pub fn finalizers(&self) -> EventFinalizers {
        EventFinalizers(vec![self.token()])
    }
}

impl BatchReceiver {
    /// Waits for the combined outcome.
    pub async fn wait(mut self) -> EventStatus {
        self.ready().await
    }

    /// Waits until the outcome is known, keeping it for [`Self::try_status`].
    pub async fn ready(&mut self) -> EventStatus {
        if let Some(s) = self.got {
            return s;
        }
        // The notifier always sends before its sender is dropped.
        let s = (&mut self.rx).await.unwrap_or(EventStatus::Errored);
        self.got = Some(s);
        s
    }

    /// The outcome if it is known already.
    pub fn try_status(&mut self) -> Option<EventStatus> {
        if self.got.is_none() {
            self.got = self.rx.try_recv().ok();
        }
        self.got
    }
}

impl fmt::Debug for Batch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Batch")
    }
}

/// One delivery token. Resolve it with [`EventFinalizer::resolve`]; dropping it
/// unresolved counts as `Errored`. Cloning makes a second token of the same batch,
/// which must be resolved too (this is what fan-out does).
pub struct EventFinalizer {
    notifier: Option<Arc<Notifier>>,
}

impl EventFinalizer {
    pub fn resolve(mut self, status: EventStatus) {
        if let Some(n) = self.notifier.take() {
            n.update(status);
        }
    }

    fn batch_ptr(&self) -> usize {
        self.notifier
            .as_ref()
            .map_or(0, |n| Arc::as_ptr(n) as usize)
    }
}

impl Clone for EventFinalizer {
    fn clone(&self) -> Self {
        EventFinalizer {
            notifier: self.notifier.clone(),
        }
    }
}

impl Drop for EventFinalizer {
    fn drop(&mut self) {
        if let Some(n) = self.notifier.take() {
            UNRESOLVED.fetch_add(1, Ordering::Relaxed);
            n.update(EventStatus::Errored);
        }
    }
}

impl fmt::Debug for EventFinalizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EventFinalizer({:#x})", self.batch_ptr())
    }
}

/// The tokens an event carries: none for data nobody waits on (live profilers),
/// one per batch for the rest, all of them for merged data.
#[derive(Default, Debug, Clone)]
pub struct EventFinalizers(Vec<EventFinalizer>);

/// Past this many tokens a merge folds tokens of the same batch into one.
const COMPACT_AT: usize = 64;

/// Bytes one token holds, as charged to memory budgets.
pub const TOKEN_BYTES: usize = std::mem::size_of::<EventFinalizer>();

impl EventFinalizers {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Bytes these tokens hold.
    pub fn size_bytes(&self) -> usize {
        self.0.len() * TOKEN_BYTES
    }

    /// Takes the tokens of `other` too (what merging two events does). Tokens of one
    /// batch are then folded into one, so a window that merged ten thousand chunks of
    /// one batch holds one token, not ten thousand. Folding is exact: the spare token
    /// is resolved `Delivered`, the least of outcomes, so the batch's result is that
    /// of the token kept.
    pub fn merge(&mut self, mut other: EventFinalizers) {
        if self.0.is_empty() {
            *self = other;
            return;
        }
        self.0.append(&mut other.0);
        if self.0.len() >= COMPACT_AT {
            self.compact();
        }
    }

    fn compact(&mut self) {
        self.0.sort_unstable_by_key(EventFinalizer::batch_ptr);
        let mut kept: Vec<EventFinalizer> = Vec::with_capacity(self.0.len());
        for f in self.0.drain(..) {
            match kept.last() {
                Some(last) if last.batch_ptr() == f.batch_ptr() => {
                    f.resolve(EventStatus::Delivered)
                }
                _ => kept.push(f),
            }
        }
        self.0 = kept;
    }

    /// Resolves every token with `status`.
    pub fn resolve(self, status: EventStatus) {
        for f in self.0 {
            f.resolve(status);
        }
    }

    /// Takes the tokens out, leaving none.
    pub fn take(&mut self) -> EventFinalizers {
        std::mem::take(self)
    }
}

/// Tokens are not part of an event's value: two events with the same data are equal
/// whoever waits on them.
impl PartialEq for EventFinalizers {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for EventFinalizers {}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_batch_is_delivered_only_when_every_token_is() {
        let (batch, rx) = Batch::new();
        let a = batch.token();
        let b = a.clone();
        drop(batch);
        a.resolve(EventStatus::Delivered);
        b.resolve(EventStatus::Delivered);
        assert_eq!(rx.wait().await, EventStatus::Delivered);

        let (batch, rx) = Batch::new();
        let (a, b) = (batch.token(), batch.token());
        drop(batch);
        a.resolve(EventStatus::Rejected);
        b.resolve(EventStatus::Errored);
        assert_eq!(rx.wait().await, EventStatus::Errored, "retry wins");

        let (batch, rx) = Batch::new();
        batch.token().resolve(EventStatus::Rejected);
        batch.token().resolve(EventStatus::Delivered);
        drop(batch);
        assert_eq!(rx.wait().await, EventStatus::Rejected);
    }

    #[tokio::test]
    async fn a_dropped_token_is_not_delivered() {
        let before = unresolved_tokens();
        let (batch, mut rx) = Batch::new();
        let (a, b) = (batch.token(), batch.token());
        drop(batch);
        a.resolve(EventStatus::Delivered);
        assert_eq!(rx.try_status(), None, "one token is still out");
        drop(b);
        assert_eq!(rx.wait().await, EventStatus::Errored);
        assert!(unresolved_tokens() > before);
    }

    #[tokio::test]
    async fn merging_folds_tokens_of_one_batch_exactly() {
        let (b1, r1) = Batch::new();
        let (b2, r2) = Batch::new();
        let mut all = EventFinalizers::default();
        for i in 0..500 {
            let b = if i % 2 == 0 { &b1 } else { &b2 };
            all.merge(b.finalizers());
        }
        assert!(all.len() < COMPACT_AT, "{} tokens held", all.len());
        drop((b1, b2));
        let mut r1 = r1;
        assert_eq!(r1.try_status(), None, "folding resolved nothing for good");
        all.resolve(EventStatus::Errored);
        assert_eq!(r1.wait().await, EventStatus::Errored);
        assert_eq!(r2.wait().await, EventStatus::Errored);
    }

    #[test]
    fn a_callback_hears_the_combined_outcome_once() {
        let heard = Arc::new(Mutex::new(Vec::new()));
        let h = heard.clone();
        let batch = Batch::with_callback(move |s| h.lock().unwrap().push(s));
        let (a, b) = (batch.token(), batch.token());
        drop(batch);
        a.resolve(EventStatus::Delivered);
        assert!(heard.lock().unwrap().is_empty(), "one token is still out");
        drop(b);
        assert_eq!(*heard.lock().unwrap(), [EventStatus::Errored]);
    }

    #[tokio::test]
    async fn an_empty_batch_is_delivered() {
        let (batch, rx) = Batch::new();
        drop(batch);
        assert_eq!(rx.wait().await, EventStatus::Delivered);
    }
}
