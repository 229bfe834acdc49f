//! What the child keeps of one target between two flushes: distinct stacks and
//! their counts, bounded, with what did not fit counted.

use rustc_hash::FxHashMap;

use super::protocol::{FrameRecord, StackRecord, TargetBatch, TargetId};

/// Distinct (thread, idle, frames) keys kept per target between two flushes; the
/// samples of further keys are counted in `overflow` and not kept.
pub const MAX_STACKS_PER_TARGET: usize = 4096;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    tid: u64,
    thread: Option<String>,
    idle: bool,
    frames: Vec<FrameRecord>,
}

/// One target's counts since the last flush.
#[derive(Debug)]
pub struct TargetStacks {
    id: TargetId,
    counts: FxHashMap<Key, u64>,
    max_stacks: usize,
    samples: u64,
    overflow: u64,
    errors: u64,
    attach_error: Option<String>,
    ended: bool,
}

impl TargetStacks {
    pub fn new(id: TargetId, max_stacks: usize) -> TargetStacks {
        TargetStacks {
            id,
            counts: FxHashMap::default(),
            max_stacks: max_stacks.max(1),
            samples: 0,
            overflow: 0,
            errors: 0,
            attach_error: None,
            ended: false,
        }
    }

    /// Counts one sample; `keep` false for one the options filter out (idle, not
    /// holding the GIL), which still counts as taken.
    pub fn add(
        &mut self,
        tid: u64,
        thread: Option<String>,
        idle: bool,
        frames: Vec<FrameRecord>,
        keep: bool,
    ) {
        self.samples += 1;
        if !keep {
            return;
        }
        let key = Key {
            tid,
            thread,
            idle,
            frames,
        };
        if let Some(n) = self.counts.get_mut(&key) {
            *n += 1;
        } else if self.counts.len() < self.max_stacks {
            self.counts.insert(key, 1);
        } else {
            self.overflow += 1;
        }
    }

    pub fn error(&mut self) {
        self.errors += 1;
    }

    pub fn attach_failed(&mut self, error: String) {
        self.attach_error = Some(error);
    }

    pub fn set_ended(&mut self) {
        self.ended = true;
    }

    /// Whether a flush has anything to say about this target.
    pub fn is_empty(&self) -> bool {
        self.samples == 0 && self.errors == 0 && self.attach_error.is_none() && !self.ended
    }

    /// Everything since the last flush; the counts start again from nothing.
    pub fn take(&mut self) -> TargetBatch {
        let stacks = std::mem::take(&mut self.counts)
            .into_iter()
            .map(|(k, count)| StackRecord {
                tid: k.tid,
                thread: k.thread,
                idle: k.idle,
                frames: k.frames,
                count,
            })
            .collect();
        let b = TargetBatch {
            pid: self.id.pid,
            start_ticks: self.id.start_ticks,
            samples: std::mem::take(&mut self.samples),
            overflow: std::mem::take(&mut self.overflow),
            errors: std::mem::take(&mut self.errors),
            attach_error: self.attach_error.take(),
            ended: self.ended,
            stacks,
        };
        self.ended = false;
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_with_overflow_counted() {
        let id = TargetId {
            pid: 1,
            start_ticks: 1,
        };
        let mut t = TargetStacks::new(id, 2);
        let f = |n: &str| vec![FrameRecord(n.into(), "x.py".into(), Some(1))];
        t.add(1, None, false, f("a"), true);
        t.add(1, None, false, f("a"), true);
        t.add(1, None, false, f("b"), true);
        t.add(1, None, false, f("c"), true);
        t.add(1, None, true, f("d"), false);
        let b = t.take();
        assert_eq!((b.samples, b.overflow, b.stacks.len()), (5, 1, 2));
        let total: u64 = b.stacks.iter().map(|s| s.count).sum();
        assert_eq!(total, 3);
        assert!(t.is_empty());
        assert_eq!(t.take().samples, 0);
    }
}
