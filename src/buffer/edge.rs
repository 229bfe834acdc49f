//! One edge: a channel whose capacity is a byte budget.

use std::sync::Arc;

use tokio::sync::{mpsc, OwnedSemaphorePermit};

use super::{BufferConfig, MemoryBudget, WhenFull};
use crate::event::Event;
use crate::telemetry::ComponentMetrics;

/// An event in flight with the bytes it holds in both budgets; dropping it gives
/// them back.
struct Slot {
    event: Event,
    _edge: OwnedSemaphorePermit,
    _agent: OwnedSemaphorePermit,
}

/// The sending half of a component's input. Cloned by every upstream component.
#[derive(Clone)]
pub struct EdgeSender {
    tx: mpsc::UnboundedSender<Slot>,
    shared: Arc<Shared>,
}

struct Shared {
    edge: MemoryBudget,
    agent: MemoryBudget,
    when_full: WhenFull,
    /// Metrics of the consuming component: its input buffer is this edge.
    metrics: ComponentMetrics,
}

/// The receiving half: a component's input.
pub struct Input {
    rx: mpsc::UnboundedReceiver<Slot>,
    shared: Arc<Shared>,
}

/// The edge is closed: its consumer has stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the downstream component has stopped")]
pub struct Closed;

/// Creates the input edge of a component whose metrics are `metrics`.
pub fn edge(
    config: BufferConfig,
    agent: MemoryBudget,
    metrics: ComponentMetrics,
) -> (EdgeSender, Input) {
    let (tx, rx) = mpsc::unbounded_channel();
    metrics.set_buffer_max_bytes(config.max_bytes.get());
    let shared = Arc::new(Shared {
        edge: MemoryBudget::new(config.max_bytes.get()),
        agent,
        when_full: config.when_full,
        metrics,
    });
    (
        EdgeSender {
            tx,
            shared: shared.clone(),
        },
        Input { rx, shared },
    )
}

impl EdgeSender {
    /// Offers an event to the consumer. With `when_full = "block"` this waits for room;
    /// with `"drop_newest"` a data event that does not fit is counted and discarded.
    /// Watermarks are never discarded: losing one would stall every window after it.
    pub async fn send(&self, event: Event) -> Result<(), Closed> {
        if self.tx.is_closed() {
            return Err(Closed);
        }
        let s = &*self.shared;
        let bytes = event.size_bytes();
        let data = !event.is_watermark();
        if data {
            s.metrics.received(bytes);
        }
        let (edge, agent) = if s.when_full == WhenFull::Block || !data {
            let edge = s.edge.acquire(bytes).await;
            (edge, s.agent.acquire(bytes).await)
        } else {
            match s.edge.try_acquire(bytes) {
                Some(edge) => match s.agent.try_acquire(bytes) {
                    Some(agent) => (edge, agent),
                    None => {
                        s.metrics.discarded("memory_limit", bytes);
                        return Ok(());
                    }
                },
                None => {
                    s.metrics.discarded("buffer_full", bytes);
                    return Ok(());
                }
            }
        };
        s.metrics.set_buffer_bytes(s.edge.in_use());
        self.tx
            .send(Slot {
                event,
                _edge: edge,
                _agent: agent,
            })
            .map_err(|_| Closed)
    }

    /// Bytes buffered on this edge now.
    pub fn buffered_bytes(&self) -> u64 {
        self.shared.edge.in_use()
    }
}

impl Input {
    /// The next event, or `None` once every upstream sender is gone and the buffer is
    /// empty.
    pub async fn recv(&mut self) -> Option<Event> {
        let slot = self.rx.recv().await?;
        let Slot { event, .. } = slot; // permits are released here
        self.shared
            .metrics
            .set_buffer_bytes(self.shared.edge.in_use());
        Some(event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Profile, Stack};
    use crate::telemetry::Telemetry;
    use crate::units::ByteSize;

    fn profile(n: usize) -> Event {
        Event::Profile(Profile {
            stacks: vec![Stack::new("x".repeat(n), 1)],
            ..Default::default()
        })
    }

    #[tokio::test]
    async fn drop_newest_counts_exactly() {
        let t = Telemetry::new();
        let m = t.component("sink", "sink", "test");
        let cfg = BufferConfig {
            max_bytes: ByteSize(4096),
            when_full: WhenFull::DropNewest,
        };
        let (tx, mut rx) = edge(cfg, MemoryBudget::new(1 << 30), m.clone());
        let size = profile(500).size_bytes() as u64;
        for _ in 0..100 {
            tx.send(profile(500)).await.unwrap();
        }
        // Exactly as many events as fit were kept (the edge's own in-use count is
        // bounded by construction; the count of events that got through is not).
        let fit = 4096 / size;
        assert_eq!(tx.buffered_bytes(), fit * size);
        drop(tx);
        let mut got = 0;
        while rx.recv().await.is_some() {
            got += 1;
        }
        assert_eq!(m.received_events(), 100);
        assert_eq!(got, fit);
        assert_eq!(got + m.discarded_events(), 100);
        assert_eq!(m.buffer_peak_bytes(), fit * size);
    }

    #[tokio::test]
    async fn agent_budget_caps_all_edges() {
        let t = Telemetry::new();
        let budget = MemoryBudget::new(2048);
        let cfg = BufferConfig {
            max_bytes: ByteSize(1 << 20),
            when_full: WhenFull::DropNewest,
        };
        let (ma, mb) = (
            t.component("a", "sink", "test"),
            t.component("b", "sink", "test"),
        );
        let (a, mut ra) = edge(cfg, budget.clone(), ma.clone());
        let (b, mut rb) = edge(cfg, budget.clone(), mb.clone());
        let size = profile(300).size_bytes() as u64;
        for _ in 0..20 {
            a.send(profile(300)).await.unwrap();
            b.send(profile(300)).await.unwrap();
        }
        // Each edge has room for all 40 events; the shared budget for `fit` of them,
        // taken alternately, the rest dropped for the memory limit.
        let fit = 2048 / size;
        assert_eq!(a.buffered_bytes() + b.buffered_bytes(), fit * size);
        drop((a, b));
        let (mut got_a, mut got_b) = (0, 0);
        while ra.recv().await.is_some() {
            got_a += 1;
        }
        while rb.recv().await.is_some() {
            got_b += 1;
        }
        assert_eq!(got_a + got_b, fit);
        assert_eq!((got_a, got_b), (fit.div_ceil(2), fit / 2));
        assert_eq!(
            ma.discarded_events() + mb.discarded_events(),
            40 - fit,
            "every event that did not fit was dropped"
        );
        assert_eq!(budget.in_use(), 0, "draining gives every byte back");
    }
}
