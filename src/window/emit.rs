//! Turning a finished window back into events for the next stage.

use crate::buffer::{Output, OutputClosed};
use crate::event::{Event, EventFinalizers, EventStatus, Labels, Profile, Stack, Window};

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
    push_batches(window, labels, stacks, &mut events);
    attach_finalizers(&mut events, finalizers);
    events
}

/// Appends `stacks` to `events` as Profile events of at most [`EMIT_BATCH`] stacks
/// each, without tokens: the caller attaches them once every event is there.
pub fn push_batches(
    window: Window,
    labels: &Labels,
    stacks: impl IntoIterator<Item = Stack>,
    events: &mut Vec<Event>,
) {
    let mut it = stacks.into_iter().peekable();
    while it.peek().is_some() {
        events.push(Event::Profile(Profile::new(
            window,
            labels.clone(),
            it.by_ref().take(EMIT_BATCH).collect(),
        )));
    }
}

/// Gives every event tokens of the batches in `finalizers` (copies to all but the
/// last, the originals to the last). With no events, nothing is left to deliver:
/// the data was consumed, and the tokens are resolved `Delivered`.
pub fn attach_finalizers(events: &mut [Event], finalizers: EventFinalizers) {
    let mut slots: Vec<&mut EventFinalizers> = events
        .iter_mut()
        .filter_map(Event::finalizers_mut)
        .collect();
    match slots.split_last_mut() {
        Some((last, rest)) => {
            for f in rest {
                f.merge(finalizers.clone());
            }
            last.merge(finalizers);
        }
        None => finalizers.resolve(EventStatus::Delivered),
    }
}

/// Sends events in order; stops at the first failure (nothing downstream runs).
pub async fn send_all(out: &mut Output, events: Vec<Event>) -> Result<(), OutputClosed> {
    for ev in events {
        out.send(ev).await?;
    }
    Ok(())
}

/// Sends the events of each item in turn (`to_events` is called only once the
/// previous item's events are sent); stops at the first failure, as [`send_all`].
pub async fn send_each<T>(
    out: &mut Output,
    items: impl IntoIterator<Item = T>,
    mut to_events: impl FnMut(T) -> Vec<Event>,
) -> Result<(), OutputClosed> {
    for item in items {
        send_all(out, to_events(item)).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Batch;

    #[tokio::test]
    async fn batches_each_carry_tokens_of_the_window() {
        let (batch, rx) = Batch::new();
        let stacks = (0..25_001).map(|i| Stack::new(format!("a;{i}"), 1));
        let events = profile_batches(
            Window::new(0, 1),
            &Labels::default(),
            stacks,
            batch.finalizers(),
        );
        drop(batch);
        let sizes: Vec<usize> = events
            .iter()
            .map(|e| match e {
                Event::Profile(p) => p.stacks.len(),
                _ => 0,
            })
            .collect();
        assert_eq!(sizes, [10_000, 10_000, 5_001]);
        let mut events = events.into_iter();
        for mut ev in events.by_ref().take(2) {
            ev.take_finalizers().resolve(EventStatus::Delivered);
        }
        drop(events); // the last batch is lost
        assert_eq!(rx.wait().await, EventStatus::Errored);

        let (batch, rx) = Batch::new();
        assert!(profile_batches(
            Window::new(0, 1),
            &Labels::default(),
            [],
            batch.finalizers()
        )
        .is_empty());
        drop(batch);
        assert_eq!(
            rx.wait().await,
            EventStatus::Delivered,
            "nothing to deliver"
        );
    }
}
