//! Turning a finished window back into events for the next stage.

use crate::buffer::{Output, OutputClosed};
use crate::event::{Event, EventFinalizers, Labels, Profile, Stack, Window};

/// Most stacks in one event when a window is emitted, so that no single event
/// approaches an edge's whole budget.
pub const EMIT_BATCH: usize = 10_000;

/// A window's stacks as Profile events of at most [`EMIT_BATCH`] stacks each. Each
/// event carries tokens of every batch merged into the window (the last one the
/// originals, the others copies), since each may be delivered on its own.
pub fn profile_batches(
    window: Window,
    labels: &Labels,
    stacks: impl IntoIterator<Item = Stack>,
    finalizers: EventFinalizers,
) -> Vec<Event> {
    let mut events = Vec::new();
    let mut it = stacks.into_iter().peekable();
    while it.peek().is_some() {
        events.push(Profile::new(
            window,
            labels.clone(),
            it.by_ref().take(EMIT_BATCH).collect(),
        ));
    }
    match events.split_last_mut() {
        Some((last, rest)) => {
            for p in rest {
                p.finalizers = finalizers.clone();
            }
            last.finalizers = finalizers;
        }
        // Nothing left to deliver: the data was processed.
        None => finalizers.resolve(crate::event::EventStatus::Delivered),
    }
    events.into_iter().map(Event::Profile).collect()
}

/// Sends events in order; stops at the first failure (nothing downstream runs).
pub async fn send_all(out: &mut Output, events: Vec<Event>) -> Result<(), OutputClosed> {
    for ev in events {
        out.send(ev).await?;
    }
    Ok(())
}
