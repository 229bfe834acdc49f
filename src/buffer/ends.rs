//! The two ends of a buffer, as every component sees them: the interfaces a
//! buffer kind implements, and the handles that hide which kind it is.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::event::Event;

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

    pub(super) fn into_reader(self) -> Box<dyn BufferReader> {
        self.0
    }
}
