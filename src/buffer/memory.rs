//! The in-memory buffer: a channel whose capacity is a byte budget.

use std::sync::Arc;

use tokio::sync::mpsc;

use super::budget::{MemoryBudget, Permit};
use super::config::{BufferConfig, WhenFull};
use super::ends::{BoxFuture, BufferReader, BufferWriter, Closed, EdgeSender, Input};
use crate::event::{Event, EventStatus};
use crate::telemetry::ComponentMetrics;

/// An event in flight with the bytes it holds in both budgets; dropping it gives
/// them back.
enum Slot {
    Data {
        event: Event,
        _edge: Permit,
        _agent: Permit,
    },
    Watermark(Event),
}

/// The writing side. Cloned (through [`EdgeSender`]) by every upstream component.
struct MemoryWriter {
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

/// The reading side.
struct MemoryReader {
    rx: mpsc::UnboundedReceiver<Slot>,
    shared: Arc<Shared>,
}

/// Creates the in-memory input buffer of a component whose metrics are `metrics`.
pub fn edge(
    config: BufferConfig,
    agent: MemoryBudget,
    metrics: ComponentMetrics,
) -> (EdgeSender, Input) {
    let (tx, rx) = mpsc::unbounded_channel();
    metrics.set_buffer_max_bytes(config.max_bytes.get());
    let shared = Arc::new(Shared {
        edge: MemoryBudget::for_edge(config.max_bytes.get()),
        agent,
        when_full: config.when_full,
        metrics,
    });
    (
        EdgeSender::new(MemoryWriter {
            tx,
            shared: shared.clone(),
        }),
        Input::new(MemoryReader { rx, shared }),
    )
}

impl BufferWriter for MemoryWriter {
    fn send(&self, event: Event) -> BoxFuture<'_, Result<(), Closed>> {
        Box::pin(self.send_event(event))
    }
}

impl BufferReader for MemoryReader {
    fn recv(&mut self) -> BoxFuture<'_, Option<Event>> {
        Box::pin(self.recv_event())
    }
}

/// Discards an event by policy: counted, and its tokens resolved `Rejected`.
fn discard(metrics: &ComponentMetrics, reason: &str, mut event: Event, bytes: usize) {
    metrics.discarded(reason, bytes);
    event.take_finalizers().resolve(EventStatus::Rejected);
}

impl MemoryWriter {
    /// Offers an event to the consumer. With `when_full = "block"` this waits for room;
    /// with `"drop_newest"` a data event that does not fit is counted and discarded.
    /// Watermarks are never discarded: losing one would stall every window after it.
    async fn send_event(&self, event: Event) -> Result<(), Closed> {
        if self.tx.is_closed() {
            return Err(Closed);
        }
        let s = &*self.shared;
        let bytes = event.size_bytes();
        let data = !event.is_watermark();
        if data {
            s.metrics.received(bytes);
        }
        if !data {
            // Watermarks take no room: they are tiny, bounded by sources × windows,
            // and they are what lets window stores flush, so they must never wait
            // for memory those stores hold.
            return self.tx.send(Slot::Watermark(event)).map_err(|_| Closed);
        }
        // The agent is charged what the edge is: an event larger than its buffer is
        // charged at the buffer's size, so no edge ever takes more of the agent's
        // budget than its own `max_bytes` (the builder keeps their sum within the
        // edges' share, so one edge can never starve another).
        let charged = bytes.min(s.edge.limit() as usize);
        let (edge, agent) = if s.when_full == WhenFull::Block {
            let edge = s.edge.acquire(charged).await;
            (edge, s.agent.acquire(charged).await)
        } else {
            match s.edge.try_acquire(charged) {
                Some(edge) => match s.agent.try_acquire(charged) {
                    Some(agent) => (edge, agent),
                    None => {
                        discard(&s.metrics, "memory_limit", event, bytes);
                        return Ok(());
                    }
                },
                None => {
                    discard(&s.metrics, "buffer_full", event, bytes);
                    return Ok(());
                }
            }
        };
        s.metrics.set_buffer_bytes(s.edge.in_use());
        self.tx
            .send(Slot::Data {
                event,
                _edge: edge,
                _agent: agent,
            })
            .map_err(|_| Closed)
    }
}

impl MemoryReader {
    async fn recv_event(&mut self) -> Option<Event> {
        let event = match self.rx.recv().await? {
            Slot::Data { event, .. } => event, // permits are released here
            Slot::Watermark(event) => event,
        };
        self.shared
            .metrics
            .set_buffer_bytes(self.shared.edge.in_use());
        Some(event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Batch, Profile, Stack};
    use crate::telemetry::Telemetry;
    use crate::units::ByteSize;

    fn profile(n: usize, batch: &Batch) -> Event {
        Event::Profile(Profile {
            stacks: vec![Stack::new("x".repeat(n), 1)].into(),
            finalizers: batch.finalizers(),
            ..Default::default()
        })
    }

    async fn drain(mut rx: Input) -> usize {
        let mut got = 0;
        while let Some(mut ev) = rx.recv().await {
            ev.take_finalizers().resolve(EventStatus::Delivered);
            got += 1;
        }
        got
    }

    #[tokio::test]
    async fn drop_newest_keeps_what_fits_and_rejects_the_rest() {
        let t = Telemetry::new();
        let m = t.component("sink", "sink", "test");
        let cfg = BufferConfig {
            max_bytes: ByteSize(4096),
            when_full: WhenFull::DropNewest,
            ..Default::default()
        };
        let (tx, rx) = edge(cfg, MemoryBudget::new(1 << 30), m.clone());
        let (kept, kept_rx) = Batch::new();
        let (dropped, dropped_rx) = Batch::new();
        let size = profile(500, &Batch::new().0).size_bytes();
        let fit = 4096 / size;
        for i in 0..100 {
            let b = if i < fit { &kept } else { &dropped };
            tx.send(profile(500, b)).await.unwrap();
        }
        drop((tx, kept, dropped));
        assert_eq!(drain(rx).await, fit, "exactly what fits in 4096 bytes");
        assert_eq!(m.received_events(), 100);
        assert_eq!(m.discarded_events(), (100 - fit) as u64);
        assert_eq!(kept_rx.wait().await, EventStatus::Delivered);
        assert_eq!(dropped_rx.wait().await, EventStatus::Rejected);
    }

    #[tokio::test]
    async fn the_agent_budget_caps_all_edges_together() {
        let t = Telemetry::new();
        let budget = MemoryBudget::new(2048);
        let cfg = BufferConfig {
            max_bytes: ByteSize(1 << 20),
            when_full: WhenFull::DropNewest,
            ..Default::default()
        };
        let (a, ra) = edge(cfg, budget.clone(), t.component("a", "sink", "test"));
        let (b, rb) = edge(cfg, budget.clone(), t.component("b", "sink", "test"));
        let (batch, _) = Batch::new();
        let size = profile(300, &batch).size_bytes();
        for _ in 0..20 {
            a.send(profile(300, &batch)).await.unwrap();
            b.send(profile(300, &batch)).await.unwrap();
        }
        assert_eq!(budget.edge_bytes() as usize, (2048 / size) * size);
        drop((a, b));
        assert_eq!(drain(ra).await + drain(rb).await, 2048 / size);
        assert_eq!(budget.in_use(), 0, "every byte is given back");
    }
}
