//! A component's output: the input edges of every component that reads it.

use super::{Closed, EdgeSender};
use crate::event::Event;
use crate::telemetry::ComponentMetrics;

/// Every downstream component has stopped; the producer should stop too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no downstream component is running")]
pub struct OutputClosed;

pub struct Output {
    edges: Vec<EdgeSender>,
    metrics: ComponentMetrics,
}

impl Output {
    pub fn new(edges: Vec<EdgeSender>, metrics: ComponentMetrics) -> Self {
        Output { edges, metrics }
    }

    /// Sends an event to every downstream edge (cloning it for all but the last; the
    /// payloads of events are cheap to clone). Counts it once as sent.
    pub async fn send(&mut self, event: Event) -> Result<(), OutputClosed> {
        if !event.is_watermark() {
            self.metrics.sent(event.size_bytes());
        }
        let mut open = 0;
        if let Some((last, rest)) = self.edges.split_last() {
            for e in rest {
                if e.send(event.clone()).await != Err(Closed) {
                    open += 1;
                }
            }
            if last.send(event).await != Err(Closed) {
                open += 1;
            }
        }
        if open == 0 {
            Err(OutputClosed)
        } else {
            Ok(())
        }
    }
}
