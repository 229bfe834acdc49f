//! `type = "dedup"`: merges identical stacks within a window, in bounded memory.
//!
//! ```toml
//! [transforms.merge]
//! type = "dedup"
//! inputs = ["collapsed_files"]
//! max_unique_stacks = 100000
//! ```
//!
//! Stacks are identical when pid, container and frames are equal. A window holds at
//! most `max_unique_stacks` distinct stacks and `max_bytes` of them; past either
//! bound, counts of new stacks go to one overflow stack (`overflow_frame`) so the
//! window's total stays exact. Merged-into-overflow stacks are counted in
//! `profpipe_component_dropped_stacks_total{reason="overflow"}`.

use std::sync::Arc;

use rustc_hash::FxHashMap;
use serde::Deserialize;

use super::windowed::{profile_batches, send_all, Windowed};
use crate::component::{BuildError, FieldError, Task, TransformConfig, TransformContext};
use crate::event::{Event, Labels, Stack};
use crate::units::ByteSize;

#[derive(Clone, Debug, Deserialize)]
#[serde(default)]
#[serde(deny_unknown_fields)]
pub struct DedupConfig {
    /// Most distinct stacks kept per window (per source).
    pub max_unique_stacks: usize,
    /// Most bytes of distinct stacks kept per window (per source).
    pub max_bytes: ByteSize,
    /// The frame of the overflow stack.
    pub overflow_frame: String,
}

impl Default for DedupConfig {
    fn default() -> Self {
        DedupConfig {
            max_unique_stacks: 100_000,
            max_bytes: ByteSize::mib(32),
            overflow_frame: "[overflow]".into(),
        }
    }
}

impl TransformConfig for DedupConfig {
    fn inputs(&self) -> crate::event::DataTypes {
        crate::event::DataTypes::PROFILE.with(crate::event::DataTypes::DIAGNOSTIC)
    }
    fn outputs(&self, inputs: crate::event::DataTypes) -> crate::event::DataTypes {
        inputs
    }

    fn validate(&self) -> Vec<FieldError> {
        let mut e = Vec::new();
        if self.max_unique_stacks == 0 {
            e.push(FieldError::new(
                &["max_unique_stacks"],
                "max_unique_stacks must be at least 1",
            ));
        }
        if self.overflow_frame.is_empty() || self.overflow_frame.contains(';') {
            e.push(FieldError::new(
                &["overflow_frame"],
                "overflow_frame must be non-empty and contain no ';'",
            ));
        }
        e
    }

    fn build(&self, cx: TransformContext) -> Result<Task, BuildError> {
        let c = self.clone();
        let TransformContext {
            cx,
            mut input,
            mut out,
        } = cx;
        Ok(Box::pin(async move {
            let mut windows: Windowed<Merger> = Windowed::default();
            while let Some(ev) = input.recv().await {
                let emit = match ev {
                    Event::Profile(p) => {
                        let m = windows.get_or_insert_with(&p.labels.source, p.window, || {
                            Merger::new(&c, p.labels.clone())
                        });
                        for s in p.stacks {
                            m.add(s);
                        }
                        continue;
                    }
                    Event::Watermark(w) => {
                        let mut evs = Vec::new();
                        for (window, m) in windows.close_through(&w.source, w.complete_until_ms) {
                            cx.metrics.dropped_stacks("overflow", m.overflowed);
                            evs.extend(m.into_events(window));
                        }
                        evs.push(Event::Watermark(w));
                        evs
                    }
                    other => vec![other],
                };
                if send_all(&mut out, emit).await.is_err() {
                    return Ok(());
                }
            }
            for (window, m) in windows.drain_all() {
                cx.metrics.dropped_stacks("overflow", m.overflowed);
                if send_all(&mut out, m.into_events(window)).await.is_err() {
                    return Ok(());
                }
            }
            Ok(())
        }))
    }
}

type Key = (u32, Option<Arc<str>>, Box<str>);

/// The distinct stacks of one window.
struct Merger {
    labels: Labels,
    counts: FxHashMap<Key, u64>,
    bytes: usize,
    max_unique: usize,
    max_bytes: usize,
    overflow_frame: Box<str>,
    overflow_count: u64,
    /// Stacks merged into the overflow stack.
    overflowed: u64,
}

impl Merger {
    fn new(c: &DedupConfig, labels: Labels) -> Self {
        Merger {
            labels,
            counts: FxHashMap::default(),
            bytes: 0,
            max_unique: c.max_unique_stacks,
            max_bytes: c.max_bytes.get() as usize,
            overflow_frame: c.overflow_frame.clone().into(),
            overflow_count: 0,
            overflowed: 0,
        }
    }

    fn add(&mut self, s: Stack) {
        let size = s.size_bytes();
        let key = (s.pid, s.container, s.frames);
        if let Some(c) = self.counts.get_mut(&key) {
            *c += s.count;
        } else if self.counts.len() < self.max_unique && self.bytes + size <= self.max_bytes {
            self.bytes += size;
            self.counts.insert(key, s.count);
        } else {
            self.overflow_count += s.count;
            self.overflowed += 1;
        }
    }

    fn into_events(self, window: crate::event::Window) -> Vec<Event> {
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
        if self.overflow_count > 0 {
            stacks.push(Stack::new(self.overflow_frame, self.overflow_count));
        }
        stacks.sort_by(|a, b| a.frames.cmp(&b.frames).then(a.pid.cmp(&b.pid)));
        profile_batches(window, &self.labels, stacks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overflow_keeps_totals_exact() {
        let c = DedupConfig {
            max_unique_stacks: 2,
            ..Default::default()
        };
        let mut m = Merger::new(&c, Labels::default());
        for (f, n) in [("a;x", 1), ("a;y", 2), ("a;x", 3), ("a;z", 4), ("a;w", 5)] {
            m.add(Stack::new(f, n));
        }
        assert_eq!(m.overflowed, 2);
        let evs = m.into_events(Default::default());
        let Event::Profile(p) = &evs[0] else { panic!() };
        assert_eq!(p.total_count(), 15);
        let got: Vec<(&str, u64)> = p.stacks.iter().map(|s| (&*s.frames, s.count)).collect();
        assert_eq!(got, vec![("[overflow]", 9), ("a;x", 4), ("a;y", 2)]);
    }
}
