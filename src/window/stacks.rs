//! A window's stacks merged by identity, in bounded memory: the state of `dedup`
//! and of every sink's window.
//!
//! Identical stacks (same frames and container, and same pid when pids are kept
//! apart) are summed. A new distinct stack is kept only if the store's [`Room`]
//! grants its bytes and fewer than `max_unique` are held; otherwise its count goes
//! to one overflow stack, so the window's total stays exact, and it is counted as
//! overflowed.

use std::borrow::Borrow;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use rustc_hash::FxHashMap;

use super::store::{Room, WindowState};
use crate::event::{Labels, Stack, Stacks};

/// The frame of the stack that absorbs stacks beyond the limit.
pub const OVERFLOW_FRAME: &str = "[overflow]";

/// Map overhead per distinct stack, on top of the stack's own bytes.
const ENTRY_OVERHEAD: usize = 16;

/// A distinct stack: pid (0 unless kept apart), container, frames.
struct Key(u32, Option<Arc<str>>, Box<str>);

/// A key seen without owning it, so a stack shared with other consumers is looked
/// up without copying its frames (they are copied only when it is new here).
trait KeyView {
    fn view(&self) -> (u32, Option<&str>, &str);
}

impl KeyView for Key {
    fn view(&self) -> (u32, Option<&str>, &str) {
        (self.0, self.1.as_deref(), &self.2)
    }
}

struct Borrowed<'a>(u32, Option<&'a str>, &'a str);

impl KeyView for Borrowed<'_> {
    fn view(&self) -> (u32, Option<&str>, &str) {
        (self.0, self.1, self.2)
    }
}

impl<'a> Borrow<dyn KeyView + 'a> for Key {
    fn borrow(&self) -> &(dyn KeyView + 'a) {
        self
    }
}

// Owned and borrowed keys hash and compare by their view, so they agree.
impl Hash for dyn KeyView + '_ {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.view().hash(h)
    }
}
impl PartialEq for dyn KeyView + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.view() == other.view()
    }
}
impl Eq for dyn KeyView + '_ {}
impl Hash for Key {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.view().hash(h)
    }
}
impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.view() == other.view()
    }
}
impl Eq for Key {}

pub struct StackCounts {
    /// The labels of the profiles merged: those of the first, with the open set cut
    /// down to what every profile shares (what a sink writes in its header).
    pub labels: Option<Labels>,
    keep_pid: bool,
    max_unique: usize,
    counts: FxHashMap<Key, u64>,
    overflow: u64,
    /// Distinct stacks sent to the overflow stack.
    pub overflowed: u64,
    bytes: usize,
}

impl StackCounts {
    /// `keep_pid`: stacks of different pids stay apart (dedup); sinks merge them.
    pub fn new(keep_pid: bool, max_unique: usize) -> Self {
        StackCounts {
            labels: None,
            keep_pid,
            max_unique,
            counts: FxHashMap::default(),
            overflow: 0,
            overflowed: 0,
            bytes: 0,
        }
    }

    /// Merges one stack; false when it went to the overflow stack.
    pub fn add(&mut self, stack: Stack, room: &mut Room<'_>) -> bool {
        let pid = if self.keep_pid { stack.pid } else { 0 };
        let cost = stack.size_bytes() + ENTRY_OVERHEAD;
        let key = Key(pid, stack.container, stack.frames);
        if let Some(c) = self.counts.get_mut(&key as &dyn KeyView) {
            *c = c.saturating_add(stack.count);
            return true;
        }
        if self.counts.len() < self.max_unique && room.try_grow(cost) {
            self.bytes += cost;
            self.counts.insert(key, stack.count);
            true
        } else {
            self.overflow = self.overflow.saturating_add(stack.count);
            self.overflowed += 1;
            false
        }
    }

    /// [`add`](Self::add) of a stack another consumer holds too: its frames are
    /// copied only if it is new here.
    fn add_shared(&mut self, stack: &Stack, room: &mut Room<'_>) -> bool {
        let pid = if self.keep_pid { stack.pid } else { 0 };
        let key = Borrowed(pid, stack.container.as_deref(), &stack.frames);
        if let Some(c) = self.counts.get_mut(&key as &dyn KeyView) {
            *c = c.saturating_add(stack.count);
            return true;
        }
        self.add(stack.clone(), room)
    }

    /// Merges a profile's stacks; returns how many went to the overflow stack.
    pub fn add_all(&mut self, labels: &Labels, stacks: Stacks, room: &mut Room<'_>) -> u64 {
        match &mut self.labels {
            None => self.labels = Some(labels.clone()),
            Some(l) if l.extra != labels.extra => l.extra = l.extra.common(&labels.extra),
            Some(_) => {}
        }
        let mut overflowed = 0;
        if stacks.is_shared() {
            for s in stacks.iter() {
                if !self.add_shared(s, room) {
                    overflowed += 1;
                }
            }
        } else {
            for s in stacks.into_vec() {
                if !self.add(s, room) {
                    overflowed += 1;
                }
            }
        }
        overflowed
    }

    /// Distinct stacks held (not counting the overflow stack).
    pub fn len(&self) -> usize {
        self.counts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.counts.is_empty() && self.overflow == 0
    }

    /// The stacks, sorted by frames, then container, then pid; the overflow stack
    /// (frame `overflow_frame`) among them when any count went there.
    pub fn into_stacks(self, overflow_frame: &str) -> Vec<Stack> {
        let mut stacks: Vec<Stack> = self
            .counts
            .into_iter()
            .map(|(Key(pid, container, frames), count)| Stack {
                pid,
                container,
                frames,
                count,
            })
            .collect();
        if self.overflow > 0 {
            match stacks
                .iter_mut()
                .find(|s| s.container.is_none() && s.pid == 0 && &*s.frames == overflow_frame)
            {
                Some(s) => s.count = s.count.saturating_add(self.overflow),
                None => stacks.push(Stack::new(overflow_frame, self.overflow)),
            }
        }
        stacks.sort_unstable_by(|a, b| {
            (&a.frames, &a.container, a.pid).cmp(&(&b.frames, &b.container, b.pid))
        });
        stacks
    }
}

impl WindowState for StackCounts {
    fn size_bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buffer::MemoryBudget;
    use crate::window::{Scope, StoreLimits, WindowStore};

    fn stack(frames: &str, container: Option<&str>, count: u64) -> Stack {
        let mut s = Stack::new(frames, count);
        s.container = container.map(Arc::from);
        s.pid = 42;
        s
    }

    fn merge(max_unique: usize, max_bytes: u64, stacks: Vec<Stack>) -> (Vec<Stack>, u64) {
        let budget = MemoryBudget::new(1 << 30);
        let limits = StoreLimits {
            max_bytes,
            max_windows: 8,
        };
        let mut store = WindowStore::new(Scope::AllSources, limits, vec![], budget.window_charge());
        let w = crate::event::Window::new(0, 60);
        let over = store.update(
            w,
            &"a".into(),
            Default::default(),
            0,
            || StackCounts::new(false, max_unique),
            |s, room| s.add_all(&Labels::default(), stacks.into(), room),
        );
        let done = store.drain().pop().unwrap();
        (done.state.into_stacks(OVERFLOW_FRAME), over)
    }

    fn view(stacks: &[Stack]) -> Vec<(&str, Option<&str>, u64, u32)> {
        stacks
            .iter()
            .map(|s| (&*s.frames, s.container.as_deref(), s.count, s.pid))
            .collect()
    }

    #[test]
    fn identical_stacks_are_summed_and_pids_dropped() {
        let (out, over) = merge(
            100,
            1 << 20,
            vec![
                stack("a;b", None, 1),
                stack("a;c", Some("web"), 2),
                stack("a;b", None, 3),
                stack("a;c", None, 4),
            ],
        );
        assert_eq!(over, 0);
        assert_eq!(
            view(&out),
            vec![
                ("a;b", None, 4, 0),
                ("a;c", None, 4, 0),
                ("a;c", Some("web"), 2, 0)
            ]
        );
    }

    #[test]
    fn overflow_keeps_totals_exact_under_either_bound() {
        let input = || {
            vec![
                stack("a", None, 1),
                stack("b", None, 2),
                stack("a", None, 5),
                stack("c", None, 7),
                stack("d", None, 1),
            ]
        };
        let (out, over) = merge(2, 1 << 20, input());
        assert_eq!(over, 2);
        let got: Vec<_> = out.iter().map(|s| (&*s.frames, s.count)).collect();
        assert_eq!(got, vec![("[overflow]", 8), ("a", 6), ("b", 2)]);
        // The byte bound: room for exactly one distinct stack.
        let one = stack("a", None, 1).size_bytes() + ENTRY_OVERHEAD;
        let (out, over) = merge(100, one as u64, input());
        assert_eq!(over, 3);
        let got: Vec<_> = out.iter().map(|s| (&*s.frames, s.count)).collect();
        assert_eq!(got, vec![("[overflow]", 10), ("a", 6)]);
    }
}
