//! What profile-writing sinks share: merging the stacks of windows that are not
//! complete yet, within a bound, and the receive loop that decides when a window is
//! complete (see [`Watermarks`]).
//!
//! A window may arrive as many [`Profile`] events (one per label set, pid or batch).
//! They are merged: identical `(container, frames)` are summed, pids are dropped.
//! At most `max_unique` distinct stacks are held across all pending windows; beyond
//! that, new distinct stacks of a window are summed into one `[overflow]` stack of
//! that window, so totals stay exact, and counted as `dropped_stacks{reason="overflow"}`.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use rustc_hash::FxHashMap;

use crate::buffer::Input;
use crate::component::ComponentContext;
use crate::event::{Event, Profile, Stack, Window};
use crate::watermarks::Watermarks;

/// The frame of the stack that absorbs stacks beyond the limit.
pub const OVERFLOW_FRAME: &str = "[overflow]";

/// Most windows held at once. Windows only pile up when watermarks stop coming
/// (a stuck or misconfigured source); past this the oldest is written early.
pub const MAX_PENDING_WINDOWS: usize = 1024;

/// Default of `max_pending_stacks`.
pub const DEFAULT_MAX_PENDING_STACKS: usize = 1_000_000;

type Key = (Option<Arc<str>>, Box<str>);

#[derive(Default)]
struct Acc {
    start_ms: u64,
    stacks: FxHashMap<Key, u64>,
    overflow: u64,
    events: u64,
    bytes: u64,
}

/// A complete window, ready to be written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompleteWindow {
    /// `start_ms` is the earliest start among the profiles that ended at `end_ms`.
    pub window: Window,
    /// Merged stacks sorted by frames then container; pids are 0.
    pub stacks: Vec<Stack>,
    /// Profile events merged into this window.
    pub events: u64,
    /// Their size in bytes, as counted on the edges.
    pub bytes: u64,
}

/// Pending windows, keyed by end time.
pub struct PendingWindows {
    windows: BTreeMap<u64, Acc>,
    unique: usize,
    max_unique: usize,
}

impl PendingWindows {
    pub fn new(max_unique: usize) -> Self {
        PendingWindows {
            windows: BTreeMap::new(),
            unique: 0,
            max_unique,
        }
    }

    /// Merges a profile into its window. Returns how many of its stacks went into
    /// the overflow stack.
    pub fn add(&mut self, profile: Profile) -> u64 {
        let bytes = profile.size_bytes() as u64;
        let acc = self
            .windows
            .entry(profile.window.end_ms)
            .or_insert_with(|| Acc {
                start_ms: profile.window.start_ms,
                ..Acc::default()
            });
        acc.start_ms = acc.start_ms.min(profile.window.start_ms);
        acc.events += 1;
        acc.bytes += bytes;
        let mut overflowed = 0;
        for stack in profile.stacks {
            let key = (stack.container, stack.frames);
            if let Some(c) = acc.stacks.get_mut(&key) {
                *c = c.saturating_add(stack.count);
            } else if self.unique < self.max_unique {
                acc.stacks.insert(key, stack.count);
                self.unique += 1;
            } else {
                acc.overflow = acc.overflow.saturating_add(stack.count);
                overflowed += 1;
            }
        }
        overflowed
    }

    /// Windows held.
    pub fn len(&self) -> usize {
        self.windows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.windows.is_empty()
    }

    /// Distinct stacks held across all windows.
    pub fn unique_stacks(&self) -> usize {
        self.unique
    }

    /// Removes and returns the windows ending at or before `until`, oldest first.
    pub fn take_complete(&mut self, until: u64) -> Vec<CompleteWindow> {
        let mut out = Vec::new();
        while let Some(entry) = self.windows.first_entry() {
            if *entry.key() > until {
                break;
            }
            let (end, acc) = entry.remove_entry();
            out.push(self.finish(end, acc));
        }
        out
    }

    /// Removes and returns the oldest window.
    pub fn take_oldest(&mut self) -> Option<CompleteWindow> {
        let (end, acc) = self.windows.pop_first()?;
        Some(self.finish(end, acc))
    }

    fn finish(&mut self, end_ms: u64, acc: Acc) -> CompleteWindow {
        self.unique -= acc.stacks.len();
        let mut stacks: Vec<Stack> = acc
            .stacks
            .into_iter()
            .map(|((container, frames), count)| Stack {
                pid: 0,
                container,
                frames,
                count,
            })
            .collect();
        if acc.overflow > 0 {
            match stacks
                .iter_mut()
                .find(|s| s.container.is_none() && &*s.frames == OVERFLOW_FRAME)
            {
                Some(s) => s.count = s.count.saturating_add(acc.overflow),
                None => stacks.push(Stack::new(OVERFLOW_FRAME, acc.overflow)),
            }
        }
        stacks.sort_unstable_by(|a, b| (&a.frames, &a.container).cmp(&(&b.frames, &b.container)));
        CompleteWindow {
            window: Window::new(acc.start_ms, end_ms),
            stacks,
            events: acc.events,
            bytes: acc.bytes,
        }
    }
}

/// Where a sink puts complete windows.
pub trait WindowWriter: Send {
    /// Writes one window, counting `sent` or errors itself; failures must not end
    /// the sink.
    fn write(&mut self, window: CompleteWindow) -> impl Future<Output = ()> + Send;
}

/// The receive loop of a window-writing sink: merges profiles, follows watermarks,
/// writes each window once it is complete, and every pending window when the input
/// ends.
pub async fn run_windows<W: WindowWriter>(
    mut input: Input,
    cx: &ComponentContext,
    max_pending_stacks: usize,
    writer: &mut W,
) {
    let metrics = &cx.metrics;
    let mut marks = Watermarks::new(cx.upstream_sources.clone());
    let mut pending = PendingWindows::new(max_pending_stacks);
    let mut warned_late = false;
    while let Some(event) = input.recv().await {
        match event {
            Event::Profile(profile) => {
                let late = marks.is_complete(&profile.window);
                if late {
                    metrics.errors("late_event", 1);
                    if !std::mem::replace(&mut warned_late, true) {
                        tracing::warn!(
                            component = %cx.id,
                            window_end_ms = profile.window.end_ms,
                            "profile arrived after its window was complete; writing it \
                             separately (further late profiles are only counted)"
                        );
                    }
                }
                let overflowed = pending.add(profile);
                if overflowed > 0 {
                    metrics.dropped_stacks("overflow", overflowed);
                }
                if late {
                    for w in pending.take_complete(marks.complete_until()) {
                        writer.write(w).await;
                    }
                }
            }
            Event::Watermark(w) => {
                if marks.observe(&w) {
                    for w in pending.take_complete(marks.complete_until()) {
                        writer.write(w).await;
                    }
                }
            }
            Event::PerfScript(_) => metrics.errors("unexpected_event", 1),
            // Profiler reports are for `classify`; a sink has nothing to write.
            Event::Diagnostic(_) => {}
        }
        while pending.len() > MAX_PENDING_WINDOWS {
            metrics.errors("pending_windows_limit", 1);
            if let Some(w) = pending.take_oldest() {
                writer.write(w).await;
            }
        }
    }
    for w in pending.take_complete(u64::MAX) {
        writer.write(w).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(start: u64, end: u64, stacks: &[(&str, Option<&str>, u64)]) -> Profile {
        Profile {
            window: Window::new(start, end),
            stacks: stacks
                .iter()
                .map(|(f, c, n)| {
                    let mut s = Stack::new(*f, *n);
                    s.container = c.map(Arc::from);
                    s.pid = 42;
                    s
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn merges_profiles_of_a_window() {
        let mut p = PendingWindows::new(100);
        p.add(profile(0, 60, &[("a;b", None, 1), ("a;c", Some("web"), 2)]));
        p.add(profile(0, 60, &[("a;b", None, 3), ("a;c", None, 4)]));
        p.add(profile(60, 120, &[("z", None, 1)]));
        assert_eq!(p.unique_stacks(), 4);
        let done = p.take_complete(60);
        assert_eq!(done.len(), 1);
        let w = &done[0];
        assert_eq!(w.window, Window::new(0, 60));
        assert_eq!(w.events, 2);
        let got: Vec<_> = w
            .stacks
            .iter()
            .map(|s| (&*s.frames, s.container.as_deref(), s.count, s.pid))
            .collect();
        assert_eq!(
            got,
            vec![
                ("a;b", None, 4, 0),
                ("a;c", None, 4, 0),
                ("a;c", Some("web"), 2, 0)
            ]
        );
        assert_eq!(p.unique_stacks(), 1);
        assert_eq!(p.len(), 1);
    }

    #[test]
    fn overflow_keeps_totals_exact() {
        let mut p = PendingWindows::new(2);
        assert_eq!(p.add(profile(0, 60, &[("a", None, 1), ("b", None, 2)])), 0);
        // Known stacks still merge; new ones overflow.
        assert_eq!(
            p.add(profile(
                0,
                60,
                &[("a", None, 5), ("c", None, 7), ("d", None, 1)]
            )),
            2
        );
        assert_eq!(p.add(profile(60, 120, &[("e", None, 3)])), 1);
        let all = p.take_complete(u64::MAX);
        let w0: Vec<_> = all[0]
            .stacks
            .iter()
            .map(|s| (&*s.frames, s.count))
            .collect();
        assert_eq!(w0, vec![("[overflow]", 8), ("a", 6), ("b", 2)]);
        let w1: Vec<_> = all[1]
            .stacks
            .iter()
            .map(|s| (&*s.frames, s.count))
            .collect();
        assert_eq!(w1, vec![("[overflow]", 3)]);
        assert_eq!(p.unique_stacks(), 0);
        // Room again once windows are written.
        assert_eq!(
            p.add(profile(120, 180, &[("x", None, 1), ("y", None, 1)])),
            0
        );
    }
}
