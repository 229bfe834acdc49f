//! `type = "fold"`: `perf script` text → folded stacks, per source window and pid.
//!
//! ```toml
//! [transforms.fold]
//! type = "fold"
//! inputs = ["capture"]
//! kernel = true          # `_[k]` on kernel frames, like `inferno-collapse-perf --kernel`
//! unknown_as_dso = true  # gProfiler: `[unknown]` in a known DSO becomes `(dso)`
//! ```
//!
//! The options mirror `profpipe fold`'s flags. Chunks of a (source, window) go into
//! one folder, kept in the component's window store; the window is emitted when its
//! source's watermark passes it, carrying the delivery tokens of every chunk folded
//! into it. Folders hold at most `max_memory` bytes together, charged to `[agent]
//! memory_limit`: past either, the largest folder is emitted early as a partial
//! profile of its window (sinks merge partial profiles, so counts stay exact),
//! counted as `component_errors_total{reason="early_flush"}`. Profiles and
//! diagnostics pass through unchanged.
//!
//! A chunk may carry labels of single processes (the perf source's
//! `java_frame_pointers = "false"`): the stacks of those pids leave in profiles of
//! their own whose labels add them; at most [`MAX_PROCESS_LABELS`] pids per window
//! (more are counted as `component_errors_total{reason="process_labels"}`).

use std::collections::HashSet;

use rustc_hash::FxHashMap;

use serde::Deserialize;

use crate::component::{BuildError, Task, TransformConfig, TransformContext};
use crate::event::{Event, EventFinalizers, LabelSet, Labels, ProcessLabels, Stack, Window};
use crate::formats::perf_script::{FoldOptions, FoldStats, Folded, PerfFolder};
use crate::telemetry::ComponentMetrics;
use crate::units::ByteSize;
use crate::window::{attach_finalizers, push_batches, send_all, send_each, Done, WindowState};

/// Most pids with labels of their own kept per window.
pub const MAX_PROCESS_LABELS: usize = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CountUnit {
    Samples,
    Period,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default)]
#[serde(deny_unknown_fields)]
pub struct FoldConfig {
    /// Append the pid to the process name (`comm-PID`).
    pub pid: bool,
    /// Append pid and tid to the process name (`comm-PID/TID`).
    pub tid: bool,
    /// Annotate kernel frames with `_[k]`.
    pub kernel: bool,
    /// Annotate JIT frames with `_[j]`.
    pub jit: bool,
    /// Both `kernel` and `jit`.
    pub all: bool,
    /// Keep raw addresses of unknown frames.
    pub addrs: bool,
    /// gProfiler's convention: `[unknown]` in a known DSO becomes `(dso)`.
    pub unknown_as_dso: bool,
    /// Keep stacks of different pids apart (labels each stack with its pid).
    pub key_by_pid: bool,
    /// What a stack's count is: "samples" (gProfiler's unit, needed by `merge`) or
    /// "period" (sum of sample periods, as inferno and `profpipe fold` print).
    pub count: CountUnit,
    /// Most bytes all open windows may hold before the largest is emitted early.
    pub max_memory: ByteSize,
}

impl Default for FoldConfig {
    fn default() -> Self {
        FoldConfig {
            pid: false,
            tid: false,
            kernel: false,
            jit: false,
            all: false,
            addrs: false,
            unknown_as_dso: false,
            key_by_pid: true,
            count: CountUnit::Samples,
            max_memory: ByteSize(crate::window::DEFAULT_FOLD_BYTES),
        }
    }
}

impl FoldConfig {
    pub fn options(&self) -> FoldOptions {
        FoldOptions {
            include_pid: self.pid,
            include_tid: self.tid,
            annotate_kernel: self.kernel || self.all,
            annotate_jit: self.jit || self.all,
            include_addrs: self.addrs,
            unknown_as_dso: self.unknown_as_dso,
            key_by_pid: self.key_by_pid,
            count_samples: self.count == CountUnit::Samples,
        }
    }
}

struct Open {
    labels: Labels,
    folder: PerfFolder,
    /// Labels of single pids, from the chunks' process labels.
    process_labels: FxHashMap<u32, LabelSet>,
}

impl Open {
    /// Takes a chunk's process labels (the first labels of a pid win); false if
    /// some did not fit under [`MAX_PROCESS_LABELS`].
    fn add_process_labels(&mut self, labels: &ProcessLabels) -> bool {
        let mut fit = true;
        for (pid, set) in labels.iter() {
            if self.process_labels.len() >= MAX_PROCESS_LABELS
                && !self.process_labels.contains_key(pid)
            {
                fit = false;
                continue;
            }
            self.process_labels
                .entry(*pid)
                .or_insert_with(|| set.clone());
        }
        fit
    }
}

impl WindowState for Open {
    fn size_bytes(&self) -> usize {
        self.folder.memory_bytes() + self.process_labels.len() * 64
    }
}

impl TransformConfig for FoldConfig {
    fn memory_bound(&self) -> u64 {
        self.max_memory.get()
    }

    fn inputs(&self) -> crate::event::DataTypes {
        crate::event::DataTypes::ALL
    }
    /// perf script text becomes profiles; everything else passes through.
    fn outputs(&self, inputs: crate::event::DataTypes) -> crate::event::DataTypes {
        let rest = inputs.without(crate::event::DataTypes::PERF_SCRIPT);
        if inputs.contains(crate::event::DataType::PerfScript) {
            rest.with(crate::event::DataTypes::PROFILE)
        } else {
            rest
        }
    }

    fn build(&self, cx: TransformContext) -> Result<Task, BuildError> {
        let opts = self.options();
        let max_bytes = self.max_memory.get();
        let (cx, mut input, mut out) = cx.into_parts();
        Ok(Box::pin(async move {
            let mut open = cx.per_source_store::<Open>(max_bytes);
            let mut warned = HashSet::new();
            let mut stats = FoldStats::default();
            while let Some(ev) = input.recv().await {
                let emit = match ev {
                    Event::PerfScript(mut chunk) => {
                        let bytes = chunk.size_bytes();
                        let finalizers = chunk.finalizers.take();
                        let labels = &chunk.labels;
                        let mut fit = true;
                        open.update(
                            chunk.window,
                            &labels.source,
                            finalizers,
                            bytes,
                            || Open {
                                labels: labels.clone(),
                                folder: PerfFolder::new(opts.clone()),
                                process_labels: FxHashMap::default(),
                            },
                            |o, _| {
                                fit = o.add_process_labels(&chunk.process_labels);
                                // Folding is CPU work; keep it off the async worker's queue.
                                tokio::task::block_in_place(|| o.folder.feed(&chunk.data))
                            },
                        );
                        if !fit {
                            cx.metrics.errors("process_labels", 1);
                        }
                        let mut evs = Vec::new();
                        while open.over_limit() {
                            let Some(done) = open.take_largest() else {
                                break;
                            };
                            cx.metrics.errors("early_flush", 1);
                            evs.extend(finish(done, &mut stats, &cx.metrics, &mut warned));
                        }
                        evs
                    }
                    Event::Watermark(w) => {
                        let mut evs = Vec::new();
                        for done in open.observe(&w) {
                            evs.extend(finish(done, &mut stats, &cx.metrics, &mut warned));
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
            let finish_one = |done| finish(done, &mut stats, &cx.metrics, &mut warned);
            let _ = send_each(&mut out, open.drain(), finish_one).await;
            Ok(())
        }))
    }
}

/// Ends a window: folds what remains, counts malformed input (warning once per kind
/// per component), and returns its profile events.
fn finish(
    done: Done<Open>,
    total: &mut FoldStats,
    metrics: &ComponentMetrics,
    warned: &mut HashSet<&'static str>,
) -> Vec<Event> {
    let (window, mut o, finalizers) = done.release();
    tokio::task::block_in_place(|| o.folder.finish());
    o.folder.release_caches();
    tracing::debug!(
        component = metrics.id(),
        window_end_ms = window.end_ms,
        stacks = o.folder.len(),
        folder_bytes = o.folder.memory_bytes(),
        "window folded"
    );
    let stats = o.folder.stats().clone();
    for (kind, n) in stats.problems() {
        metrics.errors(kind, n);
        if warned.insert(kind) {
            tracing::warn!(
                component = metrics.id(),
                kind,
                count = n,
                "skipped malformed perf script input (further ones are only counted)"
            );
        }
    }
    total.merge(&stats);
    let folded = o.folder.drain();
    // Free the folder's tables before building events from its stacks.
    drop(o.folder);
    profile_events(window, o.labels, &o.process_labels, folded, finalizers)
}

/// The window's stacks as profiles: those of pids with labels of their own apart,
/// under the window's labels plus theirs.
fn profile_events(
    window: Window,
    labels: Labels,
    process_labels: &FxHashMap<u32, LabelSet>,
    folded: Vec<Folded>,
    finalizers: EventFinalizers,
) -> Vec<Event> {
    let mut plain = Vec::with_capacity(folded.len());
    let mut apart: FxHashMap<&LabelSet, Vec<Stack>> = FxHashMap::default();
    for f in folded {
        let stack = Stack {
            pid: f.pid,
            container: None,
            frames: f.stack.into_boxed_str(),
            count: f.count,
        };
        match process_labels.get(&f.pid) {
            Some(set) => apart.entry(set).or_default().push(stack),
            None => plain.push(stack),
        }
    }
    let mut events = Vec::new();
    push_batches(window, &labels, plain, &mut events);
    for (set, stacks) in apart {
        let mut own = labels.clone();
        for (name, value) in set.iter() {
            // Past the label bound the stacks keep the window's labels.
            if let Ok(extra) = own.extra.with(name, value) {
                own.extra = extra;
            }
        }
        push_batches(window, &own, stacks, &mut events);
    }
    attach_finalizers(&mut events, finalizers);
    events
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folded(pid: u32, stack: &str) -> Folded {
        Folded {
            pid,
            stack: stack.into(),
            count: 1,
        }
    }

    #[test]
    fn stacks_of_labelled_pids_leave_in_profiles_of_their_own() {
        let base = Labels {
            extra: LabelSet::default().with("service", "shop").unwrap(),
            ..Labels::default()
        };
        let mut pl = FxHashMap::default();
        pl.insert(
            7,
            LabelSet::default()
                .with("java_frame_pointers", "false")
                .unwrap(),
        );
        let events = profile_events(
            Window::new(0, 1),
            base,
            &pl,
            vec![folded(7, "java;long Busy.spin_[j]"), folded(8, "sh;main")],
            EventFinalizers::default(),
        );
        let profiles: Vec<_> = events
            .iter()
            .map(|e| match e {
                Event::Profile(p) => p,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(profiles.len(), 2);
        assert_eq!(profiles[0].stacks[0].pid, 8);
        assert_eq!(profiles[0].labels.extra.get("java_frame_pointers"), None);
        assert_eq!(profiles[1].stacks[0].pid, 7);
        assert_eq!(
            profiles[1].labels.extra.get("java_frame_pointers"),
            Some("false")
        );
        assert_eq!(profiles[1].labels.extra.get("service"), Some("shop"));
    }

    #[test]
    fn process_labels_are_bounded() {
        let mut o = Open {
            labels: Labels::default(),
            folder: PerfFolder::new(FoldOptions::default()),
            process_labels: FxHashMap::default(),
        };
        let set = LabelSet::default().with("node_perf_map", "false").unwrap();
        let many: ProcessLabels = (0..MAX_PROCESS_LABELS as u32 + 1)
            .map(|pid| (pid, set.clone()))
            .collect();
        assert!(!o.add_process_labels(&many));
        assert_eq!(o.process_labels.len(), MAX_PROCESS_LABELS);
        // A pid already held still fits.
        assert!(o.add_process_labels(&many[..1].iter().cloned().collect()));
    }
}
