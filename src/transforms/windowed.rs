//! Per-(source, window) state for stateful transforms.
//!
//! A stream from one source is ordered, so a source's watermark closes that source's
//! windows: `fold` and `dedup` keep one state per (source, window) and emit it when the
//! source says the window is complete, or when the input ends.

use std::collections::BTreeMap;

use crate::buffer::{Output, OutputClosed};
use crate::event::{ComponentId, Event, Labels, Profile, Stack, Window};

/// Most stacks in one event when a window is emitted.
pub const EMIT_BATCH: usize = 10_000;

/// A window's stacks as Profile events of at most [`EMIT_BATCH`] stacks each.
pub fn profile_batches(
    window: Window,
    labels: &Labels,
    stacks: impl IntoIterator<Item = Stack>,
) -> Vec<Event> {
    let mut events = Vec::new();
    let mut it = stacks.into_iter().peekable();
    while it.peek().is_some() {
        events.push(Event::Profile(Profile {
            finalizers: Default::default(),
            window,
            labels: labels.clone(),
            stacks: it.by_ref().take(EMIT_BATCH).collect(),
        }));
    }
    events
}

/// Sends events in order; stops at the first failure (nothing downstream runs).
pub async fn send_all(out: &mut Output, events: Vec<Event>) -> Result<(), OutputClosed> {
    for ev in events {
        out.send(ev).await?;
    }
    Ok(())
}

pub struct Windowed<S> {
    states: BTreeMap<(ComponentId, Window), S>,
}

impl<S> Default for Windowed<S> {
    fn default() -> Self {
        Windowed {
            states: BTreeMap::new(),
        }
    }
}

impl<S> Windowed<S> {
    pub fn get_or_insert_with(
        &mut self,
        source: &ComponentId,
        window: Window,
        f: impl FnOnce() -> S,
    ) -> &mut S {
        self.states
            .entry((source.clone(), window))
            .or_insert_with(f)
    }

    /// Removes and returns, oldest first, the states of `source` whose window ends at or
    /// before `until`.
    pub fn close_through(&mut self, source: &ComponentId, until: u64) -> Vec<(Window, S)> {
        let keys: Vec<(ComponentId, Window)> = self
            .states
            .keys()
            .filter(|(s, w)| s == source && w.end_ms <= until)
            .cloned()
            .collect();
        keys.into_iter()
            .filter_map(|k| self.states.remove(&k).map(|s| (k.1, s)))
            .collect()
    }

    /// Removes every state, oldest window first.
    pub fn drain_all(&mut self) -> Vec<(Window, S)> {
        let mut all: Vec<(Window, S)> = std::mem::take(&mut self.states)
            .into_iter()
            .map(|((_, w), s)| (w, s))
            .collect();
        all.sort_by_key(|(w, _)| *w);
        all
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.states.len()
    }

    pub fn values(&self) -> impl Iterator<Item = &S> {
        self.states.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closes_only_that_sources_finished_windows() {
        let (a, b): (ComponentId, ComponentId) = ("a".into(), "b".into());
        let mut w = Windowed::default();
        *w.get_or_insert_with(&a, Window::new(0, 10), || 0) += 1;
        *w.get_or_insert_with(&a, Window::new(10, 20), || 0) += 2;
        *w.get_or_insert_with(&b, Window::new(0, 10), || 0) += 3;
        let closed = w.close_through(&a, 10);
        assert_eq!(closed, vec![(Window::new(0, 10), 1)]);
        assert_eq!(w.len(), 2);
        let rest = w.drain_all();
        assert_eq!(rest.len(), 2);
        assert_eq!(rest[0].0, Window::new(0, 10));
    }
}
