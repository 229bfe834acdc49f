//! A window's stacks merged by identity, in bounded memory: the state of `dedup`
//! and of every sink's window.
//!
//! Identical stacks (same frames and container, and same pid when pids are kept
//! apart) are summed. A new distinct stack is kept only if the store's [`Room`]
//! grants its bytes and fewer than `max_unique` are held; otherwise its count goes
//! to one overflow stack, so the window's total stays exact, and it is counted as
//! overflowed.

use std::sync::Arc;

use rustc_hash::FxHashMap;

use super::store::{Room, WindowState};
use crate::event::{Labels, Stack};

/// The frame of the stack that absorbs stacks beyond the limit.
pub const OVERFLOW_FRAME: &str = "[overflow]";

/// Map overhead per distinct stack, on top of the stack's own bytes.
const ENTRY_OVERHEAD: usize = 16;

type Key = (u32, Option<Arc<str>>, Box<str>);

pub struct StackCounts {
    /// The labels of the first profile merged (what a sink writes in its header).
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
        let key = (pid, stack.container, stack.frames);
        if let Some(c) = self.counts.get_mut(&key) {
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

    /// Merges a profile's stacks; returns how many went to the overflow stack.
    pub fn add_all(&mut self, labels: &Labels, stacks: Vec<Stack>, room: &mut Room<'_>) -> u64 {
        if self.labels.is_none() {
            self.labels = Some(labels.clone());
        }
        let mut overflowed = 0;
        for s in stacks {
            if !self.add(s, room) {
                overflowed += 1;
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
            .map(|((pid, container, frames), count)| Stack {
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
