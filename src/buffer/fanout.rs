//! The edges one producer sends to, shared between its [`Output`](super::Output)
//! and the running topology, so that a reload can attach a new consumer's edge and
//! detach an old one while the producer keeps running.
//!
//! The producer takes a snapshot (an `Arc` of the edge list) for each send; a change
//! swaps the list, so a send in progress finishes on the edges it started with.
//! When the producer's output is dropped, the fanout closes: it lets go of every
//! edge (so edges still close in cascade as producers finish) and refuses new ones.

use std::sync::{Arc, Mutex};

use super::ends::EdgeSender;
use crate::event::ComponentId;

type Edges = Arc<[(ComponentId, EdgeSender)]>;

#[derive(Default)]
pub struct Fanout {
    /// `None` once the producer has ended.
    edges: Mutex<Option<Edges>>,
}

impl Fanout {
    /// A fanout over `edges`, each named by the consumer that reads it.
    pub fn new(edges: Vec<(ComponentId, EdgeSender)>) -> Arc<Fanout> {
        Arc::new(Fanout {
            edges: Mutex::new(Some(edges.into())),
        })
    }

    /// The edges to send the next event to (empty once closed).
    pub(super) fn snapshot(&self) -> Edges {
        self.edges
            .lock()
            .unwrap()
            .clone()
            .unwrap_or_else(|| Arc::new([]))
    }

    /// In one step, lets go of the edges of `detach` and adds `attach` (in place
    /// of an edge of the same consumer): an event sent from now on goes to the new
    /// edges, none to both, and the producer never sees no consumer in between.
    /// False when the producer has ended (the new senders are dropped).
    pub fn rewire(&self, detach: &[ComponentId], attach: Vec<(ComponentId, EdgeSender)>) -> bool {
        let mut edges = self.edges.lock().unwrap();
        let Some(current) = edges.as_ref() else {
            return false;
        };
        let mut next: Vec<_> = current
            .iter()
            .filter(|(id, _)| !detach.contains(id) && !attach.iter().any(|(a, _)| a == id))
            .cloned()
            .collect();
        next.extend(attach);
        *edges = Some(next.into());
        true
    }

    /// The producer has ended: every edge is let go, and none is attached again.
    pub(super) fn close(&self) {
        self.edges.lock().unwrap().take();
    }
}
