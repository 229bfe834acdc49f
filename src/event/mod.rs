//! The events that flow along pipeline edges.
//!
//! Three kinds travel between components:
//! - [`PerfScriptChunk`]: raw `perf script` text, cut on record boundaries, for `fold`;
//! - [`Profile`]: folded stacks with counts for one window and label set;
//! - [`Watermark`]: a source's promise that a window is complete, so stateful
//!   components (fold, dedup, sinks) know when to flush.
//!
//! Every event reports its size in bytes so that edges can budget memory by bytes,
//! not by event count (a 1 MiB chunk and a 40-byte watermark are not the same load),
//! and data events carry the delivery tokens of whoever waits on them
//! ([`finalization`]).

mod data_type;
pub mod finalization;
mod labels;
mod stacks;

use std::sync::Arc;

use bytes::Bytes;

pub use data_type::{DataType, DataTypes};
pub use finalization::{Batch, BatchReceiver, EventFinalizers, EventStatus};
pub use labels::{check_name, LabelError, LabelSet, MAX_LABELS, RESERVED};
pub use stacks::Stacks;

/// The id of a component: the key of its table in the config (`[sources.ID]`).
pub type ComponentId = Arc<str>;

/// Fixed per-event overhead counted on top of payload bytes, so that even empty
/// events have a cost and a byte budget also bounds the number of events.
pub const EVENT_OVERHEAD_BYTES: usize = 64;

/// A time range `[start_ms, end_ms)` in Unix milliseconds covered by a profile.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Window {
    pub start_ms: u64,
    pub end_ms: u64,
}

impl Window {
    pub fn new(start_ms: u64, end_ms: u64) -> Self {
        Window { start_ms, end_ms }
    }
}

/// Where a profile came from. Shared by every stack of the profile.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct Labels {
    /// Host name of the machine that produced the samples.
    pub host: Arc<str>,
    /// Id of the source component that produced the data.
    pub source: ComponentId,
    /// Which profiler produced the stacks: "perf", "py-spy", "rbspy", "pyperf", "file".
    pub profiler: Arc<str>,
    /// Every other label (service, env, pod, namespace, ...): open, bounded.
    pub extra: LabelSet,
}

/// The prefix of gProfiler's app id frame, the second frame of a stack:
/// `python3;appid: python: x.py (/srv/x.py);main (/srv/x.py:3)_[p]`.
pub const APPID_PREFIX: &str = "appid: ";

/// One folded stack: frames root first, joined by `;`, the first frame being the
/// process name (comm), as `inferno-collapse-perf` prints them; plus its count.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Stack {
    /// Process id, 0 when unknown.
    pub pid: u32,
    /// Container name, if known (gProfiler's second prefix frame).
    pub container: Option<Arc<str>>,
    /// `comm;frame1;frame2;...`
    pub frames: Box<str>,
    /// Number of samples (or sum of periods, for perf events that carry one).
    pub count: u64,
}

impl Stack {
    pub fn new(frames: impl Into<Box<str>>, count: u64) -> Self {
        Stack {
            pid: 0,
            container: None,
            frames: frames.into(),
            count,
        }
    }

    /// The process's app id, from gProfiler's `appid: X` frame right after the comm
    /// (put there by the `app_id` transform, or read from a gProfiler file).
    pub fn app(&self) -> Option<&str> {
        let mut f = self.frames.split(';');
        f.next();
        f.next()?.strip_prefix(APPID_PREFIX)
    }

    /// The frames, root first, without the `appid:` frame: what encodings that
    /// carry the app id as a label (json, pprof) list.
    pub fn frames_without_app(&self) -> impl Iterator<Item = &str> {
        let skip = usize::from(self.app().is_some());
        let mut f = self.frames.split(';');
        let comm = f.next();
        comm.into_iter().chain(f.skip(skip))
    }

    /// Approximate bytes this stack holds in memory.
    pub fn size_bytes(&self) -> usize {
        std::mem::size_of::<Stack>()
            + self.frames.len()
            + self.container.as_ref().map_or(0, |c| c.len())
    }
}

/// Folded stacks for one window and one label set.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Profile {
    pub window: Window,
    pub labels: Labels,
    /// Shared with the copies sent to other consumers (see [`Stacks`]).
    pub stacks: Stacks,
    /// Delivery tokens of everything merged into this profile.
    pub finalizers: EventFinalizers,
}

impl Profile {
    pub fn new(window: Window, labels: Labels, stacks: Vec<Stack>) -> Self {
        Profile {
            window,
            labels,
            stacks: stacks.into(),
            finalizers: EventFinalizers::default(),
        }
    }

    pub fn total_count(&self) -> u64 {
        self.stacks.iter().map(|s| s.count).sum()
    }

    pub fn size_bytes(&self) -> usize {
        EVENT_OVERHEAD_BYTES
            + self.finalizers.size_bytes()
            + self.stacks.iter().map(Stack::size_bytes).sum::<usize>()
    }
}

/// Labels of single processes, added to the labels of those pids' stacks only (the
/// perf source's `java_frame_pointers = "false"`, `node_perf_map = "false"`):
/// `(pid, labels)` pairs. Shared by every chunk of a window.
pub type ProcessLabels = Arc<[(u32, LabelSet)]>;

/// Bytes counted per entry of a [`ProcessLabels`].
const PROCESS_LABELS_ENTRY_BYTES: usize = 64;

/// Raw `perf script` output, cut so that it holds whole sample records only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PerfScriptChunk {
    pub window: Window,
    pub labels: Labels,
    pub data: Bytes,
    /// Labels for the stacks of some pids of this text (usually none).
    pub process_labels: ProcessLabels,
    pub finalizers: EventFinalizers,
}

impl PerfScriptChunk {
    pub fn size_bytes(&self) -> usize {
        EVENT_OVERHEAD_BYTES
            + self.data.len()
            + self.process_labels.len() * PROCESS_LABELS_ENTRY_BYTES
            + self.finalizers.size_bytes()
    }
}

/// "Everything this source will ever send for windows ending at or before
/// `complete_until_ms` has been sent." `u64::MAX` means the source has finished.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Watermark {
    pub source: ComponentId,
    pub complete_until_ms: u64,
}

impl Watermark {
    pub const FINISHED: u64 = u64::MAX;
}

/// How a profiler run ended, as reported by the process supervisor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunEnd {
    /// Exited with this status code.
    Exited(i32),
    /// Killed by this signal (e.g. 11 for SIGSEGV).
    Signaled(i32),
    /// Killed at its deadline.
    TimedOut,
    /// Could not be started: the error text.
    SpawnFailed(String),
}

/// A profiler run that did not simply succeed: what the `classify` transform turns
/// into a reason class, a counted metric, a rate-limited log line and, optionally, an
/// error frame in the profile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub window: Window,
    /// `labels.profiler` says which profiler ran.
    pub labels: Labels,
    /// The target process, 0 for system-wide profilers.
    pub pid: u32,
    /// The target's process name, when known.
    pub comm: Option<Arc<str>>,
    pub end: RunEnd,
    /// The tail of the profiler's stderr (bounded by the supervisor).
    pub stderr: Arc<str>,
    /// Whether the target process still existed after the run (None: not checked).
    pub target_alive: Option<bool>,
    /// The reason class `classify` gave it (`process_exited`, `timeout`, ...); None
    /// until it has passed `classify`.
    pub reason: Option<&'static str>,
    pub finalizers: EventFinalizers,
}

impl Diagnostic {
    pub fn size_bytes(&self) -> usize {
        EVENT_OVERHEAD_BYTES + self.stderr.len() + self.finalizers.size_bytes()
    }

    /// gProfiler's error frame for this diagnostic: `[Profiling error: reason]`.
    pub fn error_frame(&self) -> String {
        format!("[Profiling error: {}]", self.reason.unwrap_or("unknown"))
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    PerfScript(PerfScriptChunk),
    Profile(Profile),
    Watermark(Watermark),
    Diagnostic(Diagnostic),
}

impl Event {
    /// Bytes this event holds, as counted against edge and agent memory budgets.
    pub fn size_bytes(&self) -> usize {
        match self {
            Event::PerfScript(c) => c.size_bytes(),
            Event::Profile(p) => p.size_bytes(),
            Event::Watermark(_) => EVENT_OVERHEAD_BYTES,
            Event::Diagnostic(d) => d.size_bytes(),
        }
    }

    pub fn is_watermark(&self) -> bool {
        matches!(self, Event::Watermark(_))
    }

    /// What kind of data this is; None for watermarks, which every component takes.
    pub fn data_type(&self) -> Option<DataType> {
        match self {
            Event::PerfScript(_) => Some(DataType::PerfScript),
            Event::Profile(_) => Some(DataType::Profile),
            Event::Diagnostic(_) => Some(DataType::Diagnostic),
            Event::Watermark(_) => None,
        }
    }

    /// The event's open label set; None for watermarks, which carry no labels.
    pub fn extra_labels_mut(&mut self) -> Option<&mut LabelSet> {
        match self {
            Event::PerfScript(c) => Some(&mut c.labels.extra),
            Event::Profile(p) => Some(&mut p.labels.extra),
            Event::Diagnostic(d) => Some(&mut d.labels.extra),
            Event::Watermark(_) => None,
        }
    }

    /// The event's delivery tokens; None for watermarks, which carry none.
    pub fn finalizers_mut(&mut self) -> Option<&mut EventFinalizers> {
        match self {
            Event::PerfScript(c) => Some(&mut c.finalizers),
            Event::Profile(p) => Some(&mut p.finalizers),
            Event::Diagnostic(d) => Some(&mut d.finalizers),
            Event::Watermark(_) => None,
        }
    }

    /// The event's delivery tokens, taken out of it.
    pub fn take_finalizers(&mut self) -> EventFinalizers {
        match self {
            Event::PerfScript(c) => c.finalizers.take(),
            Event::Profile(p) => p.finalizers.take(),
            Event::Diagnostic(d) => d.finalizers.take(),
            Event::Watermark(_) => EventFinalizers::default(),
        }
    }
}
