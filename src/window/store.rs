//! The one structure that holds windows until their watermarks pass.
//!
//! Every stateful component (fold, dedup, merge, every sink) keeps its open windows
//! here. A window is keyed by its time range and, for components that close windows
//! per source ([`Scope::PerSource`]: fold, dedup), by the source. The store:
//! - follows watermarks ([`Watermarks`]) and hands back windows once complete;
//! - keeps the delivery tokens of everything merged into each window, so that the
//!   component that finally writes or emits the window resolves them;
//! - charges every byte it holds to the agent's memory budget ([`WindowCharge`]),
//!   within its own `max_bytes` and `max_windows`, and says when it is over either
//!   ([`WindowStore::over_limit`]); the component then applies its documented
//!   policy (an overflow stack, or flushing the oldest window early) and counts it.
//!
//! States grow in two ways. A state that can decide per item (a stack map: keep a
//! new distinct stack, or send it to the overflow stack) asks a [`Room`] before it
//! grows, so the store never passes its bounds. A state that grows as a side effect
//! of work (the perf folder's tables) is measured after each update; if its growth
//! cannot be charged the store is over its limit until the component flushes.

use std::collections::BTreeMap;

use crate::buffer::WindowCharge;
use crate::event::{ComponentId, EventFinalizers, Watermark, Window};
use crate::watermarks::Watermarks;

/// What a store can say about the size of one window's state.
pub trait WindowState {
    /// Bytes the state holds now.
    fn size_bytes(&self) -> usize;
}

/// Which watermarks complete a window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// A window of source S is complete when S's watermark passes it (for stages
    /// that keep sources apart and forward watermarks: fold, dedup).
    PerSource,
    /// A window is complete when every upstream source's watermark passes it (for
    /// stages that merge sources: merge, sinks).
    AllSources,
    /// As `AllSources`, but windows of different hosts are kept apart (a sink
    /// behind a gateway that receives many hosts' profiles: each host's window is
    /// its own profile). The `source` argument of the store's methods is then the
    /// host, and [`Done::source`] gives it back.
    PerHost,
}

/// Bounds of one store.
#[derive(Clone, Copy, Debug)]
pub struct StoreLimits {
    pub max_bytes: u64,
    pub max_windows: usize,
}

/// Key: windows sort by end, then start, then source, so "oldest" is the first.
type Key = (u64, u64, ComponentId);

struct Entry<S> {
    state: S,
    /// The earliest start merged into this window.
    start_ms: u64,
    finalizers: EventFinalizers,
    /// Bytes charged for this entry (state + tokens).
    bytes: u64,
    /// Bytes the entry holds beyond its charge (growth the budget refused).
    uncharged: u64,
    events: u64,
    event_bytes: u64,
}

/// A window taken out of the store.
pub struct Done<S> {
    pub window: Window,
    /// The source, for [`Scope::PerSource`] stores; the host for [`Scope::PerHost`];
    /// empty otherwise.
    pub source: ComponentId,
    pub state: S,
    pub finalizers: EventFinalizers,
    /// Events merged into this window, and their bytes as counted on edges.
    pub events: u64,
    pub event_bytes: u64,
    /// The window's bytes stay charged until this is dropped: a sink drops it once
    /// written; a transform drops it before sending downstream.
    pub charge: WindowCharge,
}

impl<S> Done<S> {
    /// The window, its state and its tokens, for a transform: the window's bytes
    /// are given back first, since the transform sends what it makes of them
    /// downstream, and an edge waiting for memory this window holds would never
    /// get it.
    pub fn release(self) -> (Window, S, EventFinalizers) {
        let Done {
            window,
            state,
            finalizers,
            charge,
            ..
        } = self;
        drop(charge);
        (window, state, finalizers)
    }
}

/// Lets a state ask for bytes before it grows.
pub struct Room<'a> {
    charge: &'a mut WindowCharge,
    limit: u64,
    granted: u64,
}

impl Room<'_> {
    /// Charges `n` bytes if both the store's bound and the agent budget allow.
    pub fn try_grow(&mut self, n: usize) -> bool {
        let n = n as u64;
        if self.charge.bytes() + n > self.limit || !self.charge.try_grow(n) {
            return false;
        }
        self.granted += n;
        true
    }
}

pub struct WindowStore<S> {
    scope: Scope,
    limits: StoreLimits,
    entries: BTreeMap<Key, Entry<S>>,
    marks: Watermarks,
    charge: WindowCharge,
    /// Growth that could not be charged (see the module doc).
    uncharged: u64,
}

impl<S: WindowState> WindowStore<S> {
    /// `upstream` are the sources whose watermarks count (see [`Watermarks::new`]).
    pub fn new(
        scope: Scope,
        limits: StoreLimits,
        upstream: Vec<ComponentId>,
        charge: WindowCharge,
    ) -> Self {
        WindowStore {
            scope,
            limits,
            entries: BTreeMap::new(),
            marks: Watermarks::new(upstream),
            charge,
            uncharged: 0,
        }
    }

    /// Per source, windows are kept exactly; across sources, windows that end
    /// together are one window starting at the earliest start (a source that began
    /// late still belongs to the window everyone else reports).
    fn key(&self, window: Window, source: &ComponentId) -> Key {
        match self.scope {
            Scope::PerSource => (window.end_ms, window.start_ms, source.clone()),
            Scope::AllSources => (window.end_ms, 0, ComponentId::default()),
            Scope::PerHost => (window.end_ms, 0, source.clone()),
        }
    }

    /// True when data for this window can no longer be held: its watermark has
    /// passed (a late event).
    pub fn is_complete(&self, window: &Window, source: &ComponentId) -> bool {
        match self.scope {
            Scope::PerSource => window.end_ms <= self.marks.of(source),
            Scope::AllSources | Scope::PerHost => self.marks.is_complete(window),
        }
    }

    /// Merges into the window's state (made by `make` if new): `f` gets the state
    /// and a [`Room`] to ask for bytes; the event's tokens and size are recorded.
    pub fn update<R>(
        &mut self,
        window: Window,
        source: &ComponentId,
        finalizers: EventFinalizers,
        event_bytes: usize,
        make: impl FnOnce() -> S,
        f: impl FnOnce(&mut S, &mut Room<'_>) -> R,
    ) -> R {
        let key = self.key(window, source);
        let entry = self.entries.entry(key).or_insert_with(|| Entry {
            state: make(),
            start_ms: window.start_ms,
            finalizers: EventFinalizers::default(),
            bytes: 0,
            uncharged: 0,
            events: 0,
            event_bytes: 0,
        });
        let mut room = Room {
            charge: &mut self.charge,
            limit: self.limits.max_bytes,
            granted: 0,
        };
        entry.start_ms = entry.start_ms.min(window.start_ms);
        let r = f(&mut entry.state, &mut room);
        let granted = room.granted;
        entry.finalizers.merge(finalizers);
        entry.events += 1;
        entry.event_bytes += event_bytes as u64;
        entry.bytes += granted;
        let now = (entry.state.size_bytes() + entry.finalizers.size_bytes()) as u64;
        let tracked = entry.bytes + entry.uncharged;
        if now > tracked {
            let extra = now - tracked;
            if self.charge.bytes() + extra <= self.limits.max_bytes && self.charge.try_grow(extra) {
                entry.bytes += extra;
            } else {
                entry.uncharged += extra;
                self.uncharged += extra;
            }
        } else {
            // Shrinking pays off what was left uncharged first.
            let mut less = tracked - now;
            let forgiven = less.min(entry.uncharged);
            entry.uncharged -= forgiven;
            self.uncharged -= forgiven;
            less -= forgiven;
            entry.bytes -= less;
            self.charge.shrink(less);
        }
        r
    }

    /// Records a watermark; returns the windows it completed, oldest first.
    pub fn observe(&mut self, w: &Watermark) -> Vec<Done<S>> {
        if !self.marks.observe(w) && self.scope != Scope::PerSource {
            return Vec::new();
        }
        let complete: Vec<Key> = match self.scope {
            Scope::PerSource => self
                .entries
                .keys()
                .filter(|(end, _, s)| *s == w.source && *end <= w.complete_until_ms)
                .cloned()
                .collect(),
            Scope::AllSources | Scope::PerHost => {
                let until = self.marks.complete_until();
                self.entries
                    .keys()
                    .take_while(|(end, _, _)| *end <= until)
                    .cloned()
                    .collect()
            }
        };
        complete.into_iter().filter_map(|k| self.take(&k)).collect()
    }

    /// The latest point every upstream source has completed.
    pub fn complete_until(&self) -> u64 {
        self.marks.complete_until()
    }

    /// True when the store holds more than its bounds allow: more bytes than could
    /// be charged, or more windows than `max_windows`.
    pub fn over_limit(&self) -> bool {
        self.uncharged > 0 || self.entries.len() > self.limits.max_windows
    }

    /// Takes out the oldest window.
    pub fn take_oldest(&mut self) -> Option<Done<S>> {
        let key = self.entries.keys().next()?.clone();
        self.take(&key)
    }

    /// Takes out the window holding the most bytes.
    pub fn take_largest(&mut self) -> Option<Done<S>> {
        let key = self
            .entries
            .iter()
            .max_by_key(|(_, e)| e.state.size_bytes())
            .map(|(k, _)| k.clone())?;
        self.take(&key)
    }

    /// Takes out the window of `source` ending at `window`, if held.
    pub fn take_window(&mut self, window: Window, source: &ComponentId) -> Option<Done<S>> {
        let key = self.key(window, source);
        self.take(&key)
    }

    /// Takes out every window, oldest first.
    pub fn drain(&mut self) -> Vec<Done<S>> {
        let keys: Vec<Key> = self.entries.keys().cloned().collect();
        keys.iter().filter_map(|k| self.take(k)).collect()
    }

    fn take(&mut self, key: &Key) -> Option<Done<S>> {
        let e = self.entries.remove(key)?;
        // Growth left uncharged leaves with its window.
        self.uncharged -= e.uncharged;
        let (end, _, source) = key.clone();
        Some(Done {
            window: Window::new(e.start_ms, end),
            source,
            state: e.state,
            finalizers: e.finalizers,
            events: e.events,
            event_bytes: e.event_bytes,
            charge: self.charge.split(e.bytes),
        })
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes charged for the windows held.
    pub fn bytes(&self) -> u64 {
        self.charge.bytes()
    }

    pub fn states(&self) -> impl Iterator<Item = &S> {
        self.entries.values().map(|e| &e.state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buffer::MemoryBudget;
    use crate::event::{Batch, EventStatus};

    struct Bytes(usize);
    impl WindowState for Bytes {
        fn size_bytes(&self) -> usize {
            self.0
        }
    }

    fn wm(source: &str, until: u64) -> Watermark {
        Watermark {
            source: source.into(),
            complete_until_ms: until,
        }
    }

    fn store(scope: Scope, budget: &MemoryBudget, max_bytes: u64) -> WindowStore<Bytes> {
        let limits = StoreLimits {
            max_bytes,
            max_windows: 4,
        };
        let upstream = vec!["a".into(), "b".into()];
        WindowStore::new(scope, limits, upstream, budget.window_charge())
    }

    #[tokio::test]
    async fn windows_close_on_watermarks_and_keep_their_tokens() {
        let budget = MemoryBudget::new(1 << 20);
        let mut s = store(Scope::AllSources, &budget, 1 << 20);
        let (batch, rx) = Batch::new();
        let (a, b): (ComponentId, ComponentId) = ("a".into(), "b".into());
        s.update(
            Window::new(0, 10),
            &a,
            batch.finalizers(),
            100,
            || Bytes(0),
            |st, room| {
                assert!(room.try_grow(40));
                st.0 += 40;
            },
        );
        s.update(
            Window::new(0, 10),
            &b,
            batch.finalizers(),
            100,
            || Bytes(0),
            |_, _| {},
        );
        s.update(
            Window::new(10, 20),
            &a,
            EventFinalizers::default(),
            1,
            || Bytes(5),
            |_, _| {},
        );
        drop(batch);
        assert_eq!(s.len(), 2, "sources share windows in AllSources scope");
        let charged = s.bytes();
        assert_eq!(budget.window_bytes(), charged);
        assert!(s.observe(&wm("a", 10)).is_empty(), "b has not spoken");
        let done = s.observe(&wm("b", 15));
        assert_eq!(done.len(), 1);
        let d = done.into_iter().next().unwrap();
        assert_eq!(
            (d.window, d.events, d.event_bytes),
            (Window::new(0, 10), 2, 200)
        );
        assert!(s.is_complete(&Window::new(0, 10), &a));
        assert_eq!(
            budget.window_bytes(),
            charged,
            "still charged while written"
        );
        d.finalizers.resolve(EventStatus::Delivered);
        drop(d.charge);
        assert!(budget.window_bytes() < charged);
        assert_eq!(rx.wait().await, EventStatus::Delivered);
    }

    #[test]
    fn per_source_scope_closes_only_that_sources_windows() {
        let budget = MemoryBudget::new(1 << 20);
        let mut s = store(Scope::PerSource, &budget, 1 << 20);
        let (a, b): (ComponentId, ComponentId) = ("a".into(), "b".into());
        for src in [&a, &b] {
            s.update(
                Window::new(0, 10),
                src,
                Default::default(),
                1,
                || Bytes(1),
                |_, _| {},
            );
        }
        let done = s.observe(&wm("a", 10));
        assert_eq!(done.len(), 1);
        assert_eq!(&*done[0].source, "a");
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn bounds_are_never_passed_and_overage_is_reported() {
        let budget = MemoryBudget::new(1 << 20);
        let mut s = store(Scope::AllSources, &budget, 100);
        let a: ComponentId = "a".into();
        let granted = s.update(
            Window::new(0, 10),
            &a,
            Default::default(),
            1,
            || Bytes(0),
            |st, room| {
                let ok = [room.try_grow(60), room.try_grow(60)];
                st.0 += 60;
                ok
            },
        );
        assert_eq!(granted, [true, false], "the room never passes max_bytes");
        assert!(!s.over_limit());
        // Growth measured after the fact that does not fit makes the store over.
        s.update(
            Window::new(0, 10),
            &a,
            Default::default(),
            1,
            || Bytes(0),
            |st, _| st.0 += 80,
        );
        assert!(s.over_limit());
        assert!(budget.window_bytes() <= 100);
        let d = s.take_largest().unwrap();
        assert!(!s.over_limit(), "taking the window clears it");
        drop(d);
        assert_eq!(budget.window_bytes(), 0);
        for end in 1..=5 {
            s.update(
                Window::new(0, end),
                &a,
                Default::default(),
                1,
                || Bytes(1),
                |_, _| {},
            );
        }
        assert!(s.over_limit(), "5 windows > max_windows 4");
        assert_eq!(s.take_oldest().unwrap().window, Window::new(0, 1));
        assert!(!s.over_limit());
    }
}
