//! When is a window complete? When every upstream source has promised so.
//!
//! A stateful component (fold, dedup, a sink) holds data per [`Window`] until, for
//! every source upstream of it, it has seen a [`Watermark`] from that source with
//! `complete_until_ms >= window.end_ms`. A source that has not spoken yet holds every
//! window back; a source that has finished (`u64::MAX`) holds nothing back.

use std::collections::HashMap;

use crate::event::{ComponentId, Watermark, Window};

/// The latest watermark of each upstream source.
#[derive(Clone, Debug, Default)]
pub struct Watermarks {
    upstream: Vec<ComponentId>,
    seen: HashMap<ComponentId, u64>,
}

impl Watermarks {
    /// Tracks the given sources. With no sources given (a component built without
    /// graph information, e.g. in a tool), every source that sends a watermark is
    /// tracked, and nothing is complete until one has.
    pub fn new(upstream: Vec<ComponentId>) -> Self {
        Watermarks {
            upstream,
            seen: HashMap::new(),
        }
    }

    /// Records a watermark. Watermarks never go back: a lower value than one already
    /// seen from the same source is ignored. Watermarks from sources that are not
    /// upstream are ignored too. Returns true when [`complete_until`] may have grown.
    ///
    /// [`complete_until`]: Watermarks::complete_until
    pub fn observe(&mut self, w: &Watermark) -> bool {
        if !self.upstream.is_empty() && !self.upstream.contains(&w.source) {
            return false;
        }
        match self.seen.get_mut(&w.source) {
            Some(v) if *v >= w.complete_until_ms => false,
            Some(v) => {
                *v = w.complete_until_ms;
                true
            }
            None => {
                self.seen.insert(w.source.clone(), w.complete_until_ms);
                true
            }
        }
    }

    /// Every window with `end_ms <= complete_until()` is complete: the minimum over
    /// the upstream sources, 0 for a source not yet heard from.
    pub fn complete_until(&self) -> u64 {
        if self.upstream.is_empty() {
            return self.seen.values().copied().min().unwrap_or(0);
        }
        self.upstream
            .iter()
            .map(|id| self.seen.get(id).copied().unwrap_or(0))
            .min()
            .unwrap_or(0)
    }

    /// The latest watermark seen from `source`, 0 if none.
    pub fn of(&self, source: &ComponentId) -> u64 {
        self.seen.get(source).copied().unwrap_or(0)
    }

    pub fn is_complete(&self, window: &Window) -> bool {
        window.end_ms <= self.complete_until()
    }

    /// True once every tracked source has finished.
    pub fn all_finished(&self) -> bool {
        self.complete_until() == Watermark::FINISHED
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wm(source: &str, until: u64) -> Watermark {
        Watermark {
            source: source.into(),
            complete_until_ms: until,
        }
    }

    #[test]
    fn minimum_over_upstream_sources() {
        let mut w = Watermarks::new(vec!["a".into(), "b".into()]);
        assert_eq!(w.complete_until(), 0);
        assert!(w.observe(&wm("a", 100)));
        assert_eq!(w.complete_until(), 0, "b has not spoken");
        assert!(w.observe(&wm("b", 60)));
        assert_eq!(w.complete_until(), 60);
        assert!(w.is_complete(&Window::new(0, 60)));
        assert!(!w.is_complete(&Window::new(60, 120)));
        assert!(!w.observe(&wm("b", 50)), "watermarks never go back");
        assert_eq!(w.complete_until(), 60);
        assert!(!w.observe(&wm("stranger", 1000)));
        w.observe(&wm("b", Watermark::FINISHED));
        assert_eq!(w.complete_until(), 100);
        assert!(!w.all_finished());
        w.observe(&wm("a", Watermark::FINISHED));
        assert!(w.all_finished());
        assert!(w.is_complete(&Window::new(0, u64::MAX)));
    }

    #[test]
    fn without_upstream_list_tracks_whoever_speaks() {
        let mut w = Watermarks::new(Vec::new());
        assert_eq!(w.complete_until(), 0);
        w.observe(&wm("x", 30));
        w.observe(&wm("y", 20));
        assert_eq!(w.complete_until(), 20);
    }
}
