//! Buffers: what sits in front of every transform and sink.
//!
//! A buffer has a writing side, cloned by every upstream component
//! ([`EdgeSender`]), and a reading side, the component's [`Input`]. Both are
//! interfaces ([`BufferWriter`], [`BufferReader`]) so that the component reading a
//! buffer cannot tell which kind it is: today the byte-budgeted in-memory edge
//! ([`memory`]), later a disk buffer. Every event in a buffer holds its bytes against
//! the buffer's `max_bytes` and the agent-wide [`MemoryBudget`]; a disk buffer holds
//! only what it keeps in memory.
//!
//! At the limit a buffer does what `when_full` says: `block` makes the writer wait
//! (backpressure reaches the source); `drop_newest` discards the event, counts it and
//! resolves its delivery tokens `Rejected` (dropped by policy, never retried).

mod budget;
mod config;
pub mod memory;
mod output;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::event::Event;

pub use budget::{MemoryBudget, MemoryGauges, Permit, WindowCharge};
pub use config::{BufferConfig, WhenFull};
pub use memory::edge;
pub use output::{Output, OutputClosed};

/// A boxed future, as the buffer interfaces return (they are used as trait objects).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The buffer is closed: its reader has stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the downstream component has stopped")]
pub struct Closed;

/// The writing side of a buffer.
pub trait BufferWriter: Send + Sync {
    /// Offers an event; returns when it is buffered, discarded by policy (counted),
    /// or the reader is gone.
    fn send(&self, event: Event) -> BoxFuture<'_, Result<(), Closed>>;
}

/// The reading side of a buffer.
pub trait BufferReader: Send {
    /// The next event, or `None` once every writer is gone and the buffer is empty.
    fn recv(&mut self) -> BoxFuture<'_, Option<Event>>;
}

/// A component's handle on a downstream buffer. Cheap to clone.
#[derive(Clone)]
pub struct EdgeSender(Arc<dyn BufferWriter>);

impl EdgeSender {
    pub fn new(writer: impl BufferWriter + 'static) -> Self {
        EdgeSender(Arc::new(writer))
    }

    pub async fn send(&self, event: Event) -> Result<(), Closed> {
        self.0.send(event).await
    }
}

/// A component's input: the reading side of its buffer, whatever kind it is.
pub struct Input(Box<dyn BufferReader>);

impl Input {
    pub fn new(reader: impl BufferReader + 'static) -> Self {
        Input(Box::new(reader))
    }

    /// The next event, or `None` once every upstream writer is gone and the buffer
    /// is empty. The event's bytes leave the buffer's budget here: a component that
    /// keeps data charges it to its window store.
    pub async fn recv(&mut self) -> Option<Event> {
        self.0.recv().await
    }
}
