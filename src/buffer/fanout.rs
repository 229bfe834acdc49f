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

    /// Puts `edge` in place of `consumer`'s edge, or adds it: an event sent from
    /// now on goes to the new edge, none to both. False when the producer has ended.
    pub fn replace(&self, consumer: &ComponentId, edge: EdgeSender) -> bool {
        let mut edges = self.edges.lock().unwrap();
        let Some(current) = edges.as_ref() else {
            return false;
        };
        let mut next: Vec<_> = current
            .iter()
            .filter(|(id, _)| id != consumer)
            .cloned()
            .collect();
        next.push((consumer.clone(), edge));
        *edges = Some(next.into());
        true
    }

    /// Lets go of `consumer`'s edge (its input closes once no producer and no send
    /// in progress holds it).
    pub fn detach(&self, consumer: &ComponentId) {
        let mut edges = self.edges.lock().unwrap();
        if let Some(current) = edges.as_ref() {
            let next: Vec<_> = current
                .iter()
                .filter(|(id, _)| id != consumer)
                .cloned()
                .collect();
            *edges = Some(next.into());
        }
    }

    /// The producer has ended: every edge is let go, and none is attached again.
    pub(super) fn close(&self) {
        self.edges.lock().unwrap().take();
    }
}
