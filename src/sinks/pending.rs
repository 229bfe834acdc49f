//! What profile-writing sinks share: the receive loop that merges a window's
//! profiles in the agent's [`WindowStore`], follows watermarks, writes each window
//! once complete, and resolves the delivery tokens of everything in it with the
//! outcome of the write.
//!
//! A window may arrive as many [`Profile`] events (one per label set, pid or batch).
//! They are merged: identical `(container, frames)` are summed, pids are dropped.
//! A classified [`Diagnostic`] is written as gProfiler's error stack
//! `comm;[Profiling error: reason]` with count 1. The store holds at most
//! `max_pending_stacks` distinct stacks per window and `max_pending_bytes` across
//! windows (charged to `[agent] memory_limit`); beyond that, new distinct stacks of a
//! window are summed into one `[overflow]` stack of that window, so totals stay
//! exact, and counted as `dropped_stacks{reason="overflow"}`.

use std::future::Future;

use serde::Deserialize;

use crate::buffer::Input;
use crate::component::{at_least_one, ComponentContext, FieldError};
use crate::event::{
    Diagnostic, Event, EventFinalizers, EventStatus, LabelSet, Profile, Stack, Window,
};
use crate::units::ByteSize;
use crate::window::{Done, Scope, StackCounts, StoreLimits, WindowState, WindowStore};

pub use crate::window::OVERFLOW_FRAME;

/// Most windows held at once. Windows only pile up when watermarks stop coming
/// (a stuck or misconfigured source); past this the oldest is written early.
pub const MAX_PENDING_WINDOWS: usize = 1024;

/// Default of `max_pending_stacks` (per window).
pub const DEFAULT_MAX_PENDING_STACKS: usize = 1_000_000;

/// Bounds of a sink's pending windows.
#[derive(Clone, Copy, Debug)]
pub struct PendingLimits {
    /// Most distinct stacks in one window.
    pub max_stacks: usize,
    /// Most bytes of all pending windows together.
    pub max_bytes: u64,
}

/// The keys every window-writing sink has for its pending windows:
///
/// ```toml
/// max_pending_stacks = 1000000   # distinct stacks per window; more go to `[overflow]`
/// max_pending_bytes = "64MiB"    # all pending windows together, charged to [agent] memory_limit
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct PendingConfig {
    /// Most distinct stacks held per window not yet complete; beyond it new stacks
    /// are summed into one `[overflow]` stack of that window.
    pub max_pending_stacks: usize,
    /// Most bytes all pending windows hold together (charged to `[agent]
    /// memory_limit`).
    pub max_pending_bytes: ByteSize,
}

impl Default for PendingConfig {
    fn default() -> Self {
        PendingConfig {
            max_pending_stacks: DEFAULT_MAX_PENDING_STACKS,
            max_pending_bytes: ByteSize(crate::window::DEFAULT_STORE_BYTES),
        }
    }
}

impl PendingConfig {
    pub fn validate(&self) -> Vec<FieldError> {
        at_least_one(&["max_pending_stacks"], self.max_pending_stacks)
            .into_iter()
            .collect()
    }

    pub fn limits(&self) -> PendingLimits {
        PendingLimits {
            max_stacks: self.max_pending_stacks,
            max_bytes: self.max_pending_bytes.get(),
        }
    }
}

/// A complete window, ready to be written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompleteWindow {
    pub window: Window,
    /// The host whose profiles these are: windows of different hosts (behind a
    /// gateway) are never merged.
    pub host: std::sync::Arc<str>,
    /// The labels every profile merged into the window shares.
    pub labels: LabelSet,
    /// Merged stacks sorted by frames then container; pids are 0.
    pub stacks: Vec<Stack>,
    /// Profile events merged into this window.
    pub events: u64,
    /// Their size in bytes, as counted on the edges.
    pub bytes: u64,
}

/// What [`run_windows`] hands each complete window and its delivery tokens to: a
/// local sink's writer (`sinks::local`) or the delivering sinks' spine
/// (`sinks::delivering`), which passes the tokens on with its requests and returns
/// once they are submitted (the wait for a free request slot is the sink's
/// backpressure).
pub(crate) trait HandleWindow: Send {
    fn handle(
        &mut self,
        window: CompleteWindow,
        finalizers: EventFinalizers,
    ) -> impl Future<Output = ()> + Send;
}

struct SinkWindow(StackCounts);

impl WindowState for SinkWindow {
    fn size_bytes(&self) -> usize {
        self.0.size_bytes()
    }
}

/// gProfiler's error stack for a classified diagnostic: `comm;[Profiling error: r]`.
pub fn error_stack(d: &Diagnostic) -> Stack {
    let comm = d.comm.as_deref().unwrap_or(&d.labels.profiler);
    Stack {
        pid: d.pid,
        container: None,
        frames: format!("{comm};{}", d.error_frame()).into(),
        count: 1,
    }
}

/// The receive loop of a window-writing sink (see the module documentation).
pub(crate) async fn run_windows<W: HandleWindow>(
    mut input: Input,
    cx: &ComponentContext,
    limits: PendingLimits,
    writer: &mut W,
) {
    let metrics = &cx.metrics;
    let mut store: WindowStore<SinkWindow> = cx.window_store(
        Scope::PerHost,
        StoreLimits {
            max_bytes: limits.max_bytes,
            max_windows: MAX_PENDING_WINDOWS,
        },
    );
    while let Some(event) = input.recv().await {
        let profile = match event {
            Event::Profile(p) => p,
            Event::Diagnostic(d) if d.reason.is_some() && d.pid != 0 => Profile {
                stacks: vec![error_stack(&d)].into(),
                window: d.window,
                labels: d.labels,
                finalizers: d.finalizers,
            },
            // Never classified (no `classify` upstream) or system-wide: nothing a
            // profile file can show.
            Event::Diagnostic(mut d) => {
                metrics.discarded("unclassified_diagnostic", d.size_bytes());
                d.finalizers.take().resolve(EventStatus::Rejected);
                continue;
            }
            Event::Watermark(w) => {
                for done in store.observe(&w) {
                    write(writer, done).await;
                }
                continue;
            }
            // Typed edges keep perf text away from sinks; count it if it comes.
            Event::PerfScript(mut c) => {
                metrics.errors("unexpected_event", 1);
                c.finalizers.take().resolve(EventStatus::Rejected);
                continue;
            }
        };
        let host = profile.labels.host.clone();
        // A late profile (its window already written) is written on its own. Behind
        // a push gateway that is normal (hosts push when they like), so it is
        // counted, not warned about.
        let late = store.is_complete(&profile.window, &host);
        if late {
            metrics.late(1);
            tracing::debug!(component = %cx.id, window_end_ms = profile.window.end_ms, "late profile");
        }
        let window = profile.window;
        let overflowed = add(&mut store, limits.max_stacks, profile);
        if overflowed > 0 {
            metrics.dropped_stacks("overflow", overflowed);
        }
        if late {
            if let Some(done) = store.take_window(window, &host) {
                write(writer, done).await;
            }
        }
        while store.over_limit() {
            metrics.errors("pending_windows_limit", 1);
            match store.take_oldest() {
                Some(done) => write(writer, done).await,
                None => break,
            }
        }
    }
    for done in store.drain() {
        write(writer, done).await;
    }
}

/// Merges a profile into its window; returns how many stacks overflowed.
fn add(store: &mut WindowStore<SinkWindow>, max_stacks: usize, mut p: Profile) -> u64 {
    let bytes = p.size_bytes();
    let finalizers = p.finalizers.take();
    let Profile {
        window,
        labels,
        stacks,
        ..
    } = p;
    store.update(
        window,
        &labels.host,
        finalizers,
        bytes,
        || SinkWindow(StackCounts::new(false, max_stacks)),
        |w, room| w.0.add_all(&labels, stacks, room),
    )
}

async fn write<W: HandleWindow>(writer: &mut W, done: Done<SinkWindow>) {
    let Done {
        window,
        source: host,
        state,
        finalizers,
        events,
        event_bytes,
        charge,
        ..
    } = done;
    let labels = state
        .0
        .labels
        .as_ref()
        .map(|l| l.extra.clone())
        .unwrap_or_default();
    let complete = CompleteWindow {
        window,
        host,
        labels,
        stacks: state.0.into_stacks(OVERFLOW_FRAME),
        events,
        bytes: event_bytes,
    };
    writer.handle(complete, finalizers).await;
    // The window's bytes stay charged until it is handed over.
    drop(charge);
}
