//! `type = "merge"`: gProfiler's merge of the system-wide perf profile with the
//! runtime profilers' (py-spy, rbspy, PyPerf) profiles of the same window.
//!
//! ```toml
//! [transforms.merged]
//! type = "merge"
//! inputs = ["host_cpu", "python"]     # perf, and one or more runtime profilers
//! max_pending_stacks = 1000000        # stacks held across windows not yet complete
//! max_pending_windows = 16
//! ```
//!
//! Per window and per pid (gprofiler-facts.md §1 "Merging", `merge.py`), where perf
//! stacks are those with `labels.profiler == "perf"` and runtime stacks all others:
//! - a pid only perf saw: perf's stacks pass through;
//! - a pid a runtime profiler saw and perf has samples for: the runtime stacks
//!   replace perf's, scaled so that their total is perf's sample count for the pid
//!   (each count times `perf / runtime`, rounded up with probability equal to the
//!   fractional part, zero counts dropped; the random draws are seeded from the
//!   window and the pid, so the same input always gives the same output);
//! - ... unless the runtime profiler only failed for the pid (a classified
//!   [`Diagnostic`], no stacks): then perf's stacks are kept and gProfiler's error
//!   frame `[Profiling error: reason]` is inserted after the comm in each of them;
//! - a pid a runtime profiler saw but perf has no samples for: the runtime stacks
//!   are kept unscaled (pinterest's "zero samples" fix);
//! - runtime stacks without a container take perf's container for the pid;
//! - stacks with pid 0 (unknown) are never merged.
//!
//! Diagnostics stay typed: those not turned into error frames leave as they came,
//! for the sink to encode.
//!
//! Windows are matched by their end (live sources share one wall-clock grid, see
//! `window_clock`) and kept in the component's window store. A window is merged once
//! every upstream source's watermark has passed its end, or when the input ends; its
//! stacks then leave as one or more [`Profile`]s per label set (at most
//! [`EMIT_BATCH`](crate::window::EMIT_BATCH) stacks each), each carrying the tokens of everything merged, and
//! each watermark is forwarded after the windows it completed.
//!
//! Memory is bounded: past `max_pending_stacks` stacks, `max_pending_bytes` bytes
//! (charged to `[agent] memory_limit`) or `max_pending_windows` windows held, the
//! oldest window is merged early with what it has, counted as
//! `component_errors_total{reason="merge_early"}`. A profile that arrives for a window
//! already complete cannot be merged any more: it passes through unchanged, counted
//! as `reason="merge_late"`.

use std::sync::Arc;

use rustc_hash::FxHashMap;
use serde::Deserialize;

use crate::component::{
    at_least_one, BuildError, FieldError, Task, TransformConfig, TransformContext,
};
use crate::event::{
    ComponentId, Diagnostic, Event, EventFinalizers, Labels, Profile, Stack, Window,
};
use crate::units::ByteSize;
use crate::window::{
    attach_finalizers, push_batches, send_each, Done, Scope, StoreLimits, WindowState, WindowStore,
};

/// The `profiler` label of the system-wide profiler.
pub const PERF: &str = "perf";

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MergeConfig {
    /// Most stacks held across all windows waiting for their watermarks. Past it,
    /// the oldest window is merged early.
    pub max_pending_stacks: usize,
    /// Most windows held at once. Past it, the oldest window is merged early.
    pub max_pending_windows: usize,
    /// Most bytes held across all windows (charged to `[agent] memory_limit`).
    /// Past it, the oldest window is merged early.
    pub max_pending_bytes: ByteSize,
}

impl Default for MergeConfig {
    fn default() -> Self {
        MergeConfig {
            max_pending_stacks: 1_000_000,
            max_pending_windows: 16,
            max_pending_bytes: ByteSize(crate::window::DEFAULT_STORE_BYTES),
        }
    }
}

impl TransformConfig for MergeConfig {
    fn inputs(&self) -> crate::event::DataTypes {
        crate::event::DataTypes::PROFILES_AND_DIAGNOSTICS
    }

    fn memory_bound(&self) -> u64 {
        self.max_pending_bytes.get()
    }

    fn validate(&self) -> Vec<FieldError> {
        let mut e = Vec::new();
        e.extend(at_least_one(
            &["max_pending_stacks"],
            self.max_pending_stacks,
        ));
        e.extend(at_least_one(
            &["max_pending_windows"],
            self.max_pending_windows,
        ));
        e
    }

    fn build(&self, cx: TransformContext) -> Result<Task, BuildError> {
        let c = self.clone();
        let limits = StoreLimits {
            max_bytes: c.max_pending_bytes.get(),
            max_windows: c.max_pending_windows,
        };
        let (cx, mut input, mut out) = cx.into_parts();
        Ok(Box::pin(async move {
            let mut pending = cx.window_store::<Pending>(Scope::AllSources, limits);
            while let Some(ev) = input.recv().await {
                let mut emit = Vec::new();
                match ev {
                    Event::Profile(p) if pending.is_complete(&p.window, &p.labels.source) => {
                        cx.metrics.errors("merge_late", 1);
                        emit.push(Event::Profile(p));
                    }
                    Event::Diagnostic(d) if pending.is_complete(&d.window, &d.labels.source) => {
                        emit.push(Event::Diagnostic(d));
                    }
                    Event::Profile(mut p) => {
                        let (bytes, finalizers) = (p.size_bytes(), p.finalizers.take());
                        let (window, source) = (p.window, p.labels.source.clone());
                        hold(&mut pending, window, &source, finalizers, bytes, |w| {
                            w.add(p)
                        });
                    }
                    Event::Diagnostic(mut d) => {
                        let (bytes, finalizers) = (d.size_bytes(), d.finalizers.take());
                        let (window, source) = (d.window, d.labels.source.clone());
                        let add = |w: &mut Pending| w.diagnostics.push(d);
                        hold(&mut pending, window, &source, finalizers, bytes, add);
                    }
                    Event::Watermark(wm) => {
                        for done in pending.observe(&wm) {
                            emit.extend(events(done));
                        }
                        emit.push(Event::Watermark(wm));
                    }
                    other => emit.push(other),
                }
                while pending.over_limit()
                    || pending.states().map(|w| w.stacks).sum::<usize>() > c.max_pending_stacks
                {
                    let Some(done) = pending.take_oldest() else {
                        break;
                    };
                    cx.metrics.errors("merge_early", 1);
                    tracing::debug!(
                        component = %cx.id,
                        window_end_ms = done.window.end_ms,
                        "merge bounds reached: merging the oldest window early"
                    );
                    emit.extend(events(done));
                }
                for ev in emit {
                    if out.send(ev).await.is_err() {
                        return Ok(());
                    }
                }
            }
            let _ = send_each(&mut out, pending.drain(), events).await;
            Ok(())
        }))
    }
}

/// Holds an arriving profile or diagnostic in its window (`add` puts it into the
/// window's state) until the window is complete.
fn hold(
    pending: &mut WindowStore<Pending>,
    window: Window,
    source: &ComponentId,
    finalizers: EventFinalizers,
    bytes: usize,
    add: impl FnOnce(&mut Pending),
) {
    pending.update(
        window,
        source,
        finalizers,
        bytes,
        Pending::default,
        |w, _| add(w),
    );
}

/// The stacks of one window, by label set, as they arrived.
type Parts = Vec<(Labels, Vec<Stack>)>;

/// One window waiting for its watermarks.
#[derive(Default)]
struct Pending {
    parts: Parts,
    diagnostics: Vec<Diagnostic>,
    /// Stacks held.
    stacks: usize,
    bytes: usize,
}

impl WindowState for Pending {
    fn size_bytes(&self) -> usize {
        self.bytes
    }
}

impl Pending {
    fn add(&mut self, p: Profile) {
        self.stacks += p.stacks.len();
        self.bytes += p.size_bytes();
        match self.parts.iter_mut().find(|(l, _)| *l == p.labels) {
            Some((_, stacks)) => stacks.extend(p.stacks),
            None => self.parts.push((p.labels, p.stacks.into_vec())),
        }
    }
}

/// Merges a window and cuts it into events of at most [`EMIT_BATCH`](crate::window::EMIT_BATCH) stacks, each
/// carrying the window's tokens.
fn events(done: Done<Pending>) -> Vec<Event> {
    let (window, state, finalizers) = done.release();
    let (merged, diagnostics) = merge_window(window, state.parts, state.diagnostics);
    let mut out = Vec::new();
    for (labels, stacks) in merged {
        push_batches(window, &labels, stacks, &mut out);
    }
    out.extend(diagnostics.into_iter().map(Event::Diagnostic));
    attach_finalizers(&mut out, finalizers);
    out
}

fn is_perf(labels: &Labels) -> bool {
    &*labels.profiler == PERF
}

/// What perf saw of one pid.
#[derive(Default)]
struct PerfPid {
    samples: u64,
    container: Option<Arc<str>>,
}

/// What becomes of one pid that a runtime profiler saw.
#[derive(Debug)]
enum Plan {
    /// Keep perf's stacks, with this error frame after the comm.
    AttachError(Box<str>),
    /// Drop perf's stacks; scale the runtime stacks by this factor (None: unscaled).
    Replace(Option<f64>),
    /// The runtime stacks hold no samples: keep perf's, drop them.
    KeepPerf,
}

/// Merges one window (see the module documentation). Label sets keep their order of
/// arrival; sets left without stacks are omitted. Returns the merged stacks and the
/// diagnostics that were not turned into error frames.
pub fn merge_window(
    window: Window,
    parts: Parts,
    diagnostics: Vec<Diagnostic>,
) -> (Parts, Vec<Diagnostic>) {
    let mut perf: FxHashMap<u32, PerfPid> = FxHashMap::default();
    // pid -> (runtime samples, the runtime profiler only failed, first error frame)
    let mut runtime: FxHashMap<u32, (u64, bool, Option<Box<str>>)> = FxHashMap::default();
    for d in diagnostics
        .iter()
        .filter(|d| d.pid != 0 && d.reason.is_some())
    {
        let r = runtime.entry(d.pid).or_insert((0, true, None));
        if r.2.is_none() {
            r.2 = Some(d.error_frame().into());
        }
    }
    for (labels, stacks) in &parts {
        for s in stacks.iter().filter(|s| s.pid != 0) {
            if is_perf(labels) {
                let p = perf.entry(s.pid).or_default();
                p.samples += s.count;
                if p.container.is_none() {
                    p.container.clone_from(&s.container);
                }
            } else {
                let r = runtime.entry(s.pid).or_insert((0, true, None));
                r.0 += s.count;
                r.1 = false;
            }
        }
    }
    let plans: FxHashMap<u32, Plan> = runtime
        .into_iter()
        .map(|(pid, (samples, only_errors, error))| {
            let perf_samples = perf.get(&pid).map_or(0, |p| p.samples);
            let plan = match error {
                Some(frame) if only_errors && perf_samples > 0 => Plan::AttachError(frame),
                _ if perf_samples == 0 => Plan::Replace(None),
                _ if samples == 0 => Plan::KeepPerf,
                _ => Plan::Replace(Some(perf_samples as f64 / samples as f64)),
            };
            (pid, plan)
        })
        .collect();

    // Runtime stacks to scale, per pid, in a fixed order so the draws are
    // reproducible whatever the arrival order of the sources.
    let mut to_scale: FxHashMap<u32, Vec<(usize, Stack)>> = FxHashMap::default();
    let mut out: Parts = Vec::with_capacity(parts.len());
    for (set, (labels, stacks)) in parts.into_iter().enumerate() {
        let perf_set = is_perf(&labels);
        let mut kept = Vec::with_capacity(stacks.len());
        for mut s in stacks {
            let plan = if s.pid == 0 { None } else { plans.get(&s.pid) };
            match (perf_set, plan) {
                (_, None) => kept.push(s),
                (true, Some(Plan::AttachError(frame))) => {
                    s.frames = insert_after_comm(&s.frames, frame);
                    kept.push(s);
                }
                (true, Some(Plan::KeepPerf)) => kept.push(s),
                (true, Some(Plan::Replace(_))) => {}
                (false, Some(Plan::AttachError(_) | Plan::KeepPerf)) => {}
                (false, Some(Plan::Replace(None))) => {
                    inherit_container(&mut s, &perf);
                    kept.push(s);
                }
                (false, Some(Plan::Replace(Some(_)))) => {
                    to_scale.entry(s.pid).or_default().push((set, s));
                }
            }
        }
        out.push((labels, kept));
    }

    let mut pids: Vec<u32> = to_scale.keys().copied().collect();
    pids.sort_unstable();
    for pid in pids {
        let Some(Plan::Replace(Some(factor))) = plans.get(&pid) else {
            continue;
        };
        let mut stacks = to_scale.remove(&pid).unwrap_or_default();
        stacks.sort_by(|(sa, a), (sb, b)| {
            let (la, lb) = (&out[*sa].0, &out[*sb].0);
            a.frames
                .cmp(&b.frames)
                .then_with(|| la.source.cmp(&lb.source))
                .then_with(|| la.profiler.cmp(&lb.profiler))
                .then_with(|| a.count.cmp(&b.count))
        });
        let mut rng = fastrand::Rng::with_seed(seed(window, pid));
        for (set, mut s) in stacks {
            s.count = scale(s.count, *factor, &mut rng);
            if s.count > 0 {
                inherit_container(&mut s, &perf);
                out[set].1.push(s);
            }
        }
    }
    out.retain(|(_, stacks)| !stacks.is_empty());
    // A diagnostic whose error frame now marks perf's stacks has been shown.
    let diagnostics = diagnostics
        .into_iter()
        .filter(|d| !matches!(plans.get(&d.pid), Some(Plan::AttachError(_))))
        .collect();
    (out, diagnostics)
}

/// `count * factor`, rounded up with probability equal to the fractional part
/// (gProfiler's `scale_sample_counts`).
fn scale(count: u64, factor: f64, rng: &mut fastrand::Rng) -> u64 {
    let exact = count as f64 * factor;
    let floor = exact.floor();
    let up = rng.f64() < exact - floor;
    floor as u64 + u64::from(up)
}

/// A seed from the window and the pid (splitmix64 of their mix).
fn seed(window: Window, pid: u32) -> u64 {
    let mut z = window
        .start_ms
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(window.end_ms.rotate_left(21))
        .wrapping_add(u64::from(pid).wrapping_mul(0xBF58_476D_1CE4_E5B9));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn inherit_container(s: &mut Stack, perf: &FxHashMap<u32, PerfPid>) {
    if s.container.is_none() {
        if let Some(p) = perf.get(&s.pid) {
            s.container.clone_from(&p.container);
        }
    }
}

/// `comm;a;b` + `E` → `comm;E;a;b`.
fn insert_after_comm(frames: &str, frame: &str) -> Box<str> {
    match frames.split_once(';') {
        Some((comm, rest)) => format!("{comm};{frame};{rest}").into(),
        None => format!("{frames};{frame}").into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn merge(window: Window, parts: Parts) -> Parts {
        merge_window(window, parts, Vec::new()).0
    }

    fn failed(pid: u32, reason: &'static str) -> Diagnostic {
        Diagnostic {
            window: W,
            labels: labels("py", "py-spy"),
            pid,
            comm: Some("python".into()),
            end: crate::event::RunEnd::Exited(1),
            stderr: "".into(),
            target_alive: Some(false),
            reason: Some(reason),
            finalizers: Default::default(),
        }
    }

    const W: Window = Window {
        start_ms: 60_000,
        end_ms: 120_000,
    };

    fn labels(source: &str, profiler: &str) -> Labels {
        Labels {
            extra: Default::default(),
            host: "h".into(),
            source: source.into(),
            profiler: profiler.into(),
        }
    }

    fn stack(pid: u32, frames: &str, count: u64) -> Stack {
        Stack {
            pid,

            ..Stack::new(frames, count)
        }
    }

    fn in_container(mut s: Stack, c: &str) -> Stack {
        s.container = Some(c.into());
        s
    }

    fn find<'a>(out: &'a Parts, profiler: &str) -> Option<&'a Vec<Stack>> {
        out.iter()
            .find(|(l, _)| &*l.profiler == profiler)
            .map(|(_, s)| s)
    }

    fn total(stacks: &[Stack], pid: u32) -> u64 {
        stacks
            .iter()
            .filter(|s| s.pid == pid)
            .map(|s| s.count)
            .sum()
    }

    #[test]
    fn runtime_stacks_replace_perf_scaled_to_perf_samples() {
        let perf = vec![
            stack(10, "python;_PyEval_EvalFrame", 700),
            stack(10, "python;[unknown]", 300),
            stack(20, "nginx;ngx_process", 50),
        ];
        // 7 runtime stacks, 3 samples each: factor 1000/21 = 47.619...
        let py: Vec<Stack> = (0..7)
            .map(|i| stack(10, &format!("python;f{i}_[p]"), 3))
            .collect();
        let out = merge(
            W,
            vec![
                (labels("cpu", "perf"), perf),
                (labels("py", "py-spy"), py.clone()),
            ],
        );
        let perf_out = find(&out, "perf").unwrap();
        assert_eq!(
            total(perf_out, 10),
            0,
            "perf's stacks of pid 10 are replaced"
        );
        assert_eq!(perf_out, &vec![stack(20, "nginx;ngx_process", 50)]);
        let py_out = find(&out, "py-spy").unwrap();
        assert_eq!(py_out.len(), 7);
        let sum = total(py_out, 10);
        assert!((1000 - 7..=1000 + 7).contains(&sum), "{sum}");
        for s in py_out {
            assert!(s.count == 142 || s.count == 143, "{}", s.count);
        }
        // Reproducible: same input, same output.
        let again = merge(
            W,
            vec![
                (labels("py", "py-spy"), py),
                (
                    labels("cpu", "perf"),
                    vec![
                        stack(10, "python;_PyEval_EvalFrame", 700),
                        stack(10, "python;[unknown]", 300),
                    ],
                ),
            ],
        );
        assert_eq!(find(&again, "py-spy").unwrap(), py_out);
    }

    #[test]
    fn rounding_is_probabilistic_and_drops_zeros() {
        // factor 1/3 over many stacks of 1: each kept with probability 1/3.
        let py: Vec<Stack> = (0..300)
            .map(|i| stack(10, &format!("python;f{i}_[p]"), 1))
            .collect();
        let out = merge(
            W,
            vec![
                (labels("cpu", "perf"), vec![stack(10, "python;x", 100)]),
                (labels("py", "pyperf"), py),
            ],
        );
        let py_out = find(&out, "pyperf").unwrap();
        assert!(py_out.iter().all(|s| s.count == 1));
        let n = py_out.len() as u64;
        assert!((60..=140).contains(&n), "{n} of 300 kept, expected ~100");
        assert!(find(&out, "perf").is_none(), "perf has nothing left");
    }

    #[test]
    fn runtime_without_perf_samples_is_kept_unscaled() {
        let out = merge(
            W,
            vec![
                (labels("cpu", "perf"), vec![stack(20, "nginx;x", 5)]),
                (
                    labels("rb", "rbspy"),
                    vec![stack(30, "ruby;a_[rb]", 7), stack(30, "ruby;b_[rb]", 0)],
                ),
            ],
        );
        assert_eq!(
            find(&out, "rbspy").unwrap(),
            &vec![stack(30, "ruby;a_[rb]", 7), stack(30, "ruby;b_[rb]", 0)]
        );
        assert_eq!(find(&out, "perf").unwrap(), &vec![stack(20, "nginx;x", 5)]);
    }

    #[test]
    fn a_failed_runtime_run_marks_perf_stacks() {
        let perf = vec![
            stack(10, "python;main;work", 4),
            stack(10, "python", 1),
            stack(11, "other;x", 2),
        ];
        let (out, left) = merge_window(
            W,
            vec![(labels("cpu", "perf"), perf)],
            vec![failed(10, "process_exited")],
        );
        assert!(left.is_empty(), "the diagnostic is shown as frames");
        assert_eq!(
            find(&out, "perf").unwrap(),
            &vec![
                stack(10, "python;[Profiling error: process_exited];main;work", 4),
                stack(10, "python;[Profiling error: process_exited]", 1),
                stack(11, "other;x", 2),
            ]
        );
        // Without perf samples the diagnostic itself is kept, for the sink.
        let (out, left) = merge_window(W, vec![], vec![failed(10, "timeout")]);
        assert!(out.is_empty());
        assert_eq!(left, vec![failed(10, "timeout")]);
        // With runtime stacks too, they replace perf's and the diagnostic stays.
        let (out, left) = merge_window(
            W,
            vec![
                (labels("cpu", "perf"), vec![stack(10, "python;x", 6)]),
                (labels("py", "py-spy"), vec![stack(10, "python;f_[p]", 3)]),
            ],
            vec![failed(10, "dropped_traces")],
        );
        assert_eq!(
            find(&out, "py-spy").unwrap(),
            &vec![stack(10, "python;f_[p]", 6)]
        );
        assert_eq!(left.len(), 1);
    }

    #[test]
    fn runtime_stacks_inherit_perf_container() {
        let out = merge(
            W,
            vec![
                (
                    labels("cpu", "perf"),
                    vec![in_container(stack(10, "python;x", 10), "web")],
                ),
                (
                    labels("py", "py-spy"),
                    vec![
                        stack(10, "python;a_[p]", 5),
                        in_container(stack(10, "python;b_[p]", 5), "own"),
                    ],
                ),
            ],
        );
        let py = find(&out, "py-spy").unwrap();
        assert_eq!(py[0].container.as_deref(), Some("web"));
        assert_eq!(py[1].container.as_deref(), Some("own"));
        assert_eq!(total(py, 10), 10);
    }

    #[test]
    fn unmatched_and_unknown_pids_pass_through() {
        let perf = vec![
            stack(0, "swapper;idle", 9),
            stack(5, "bash;x", 1),
            in_container(stack(6, "java;y", 2), "c"),
        ];
        let py = vec![stack(0, "python;z_[p]", 3)];
        let out = merge(
            W,
            vec![
                (labels("cpu", "perf"), perf.clone()),
                (labels("py", "py-spy"), py.clone()),
            ],
        );
        assert_eq!(find(&out, "perf").unwrap(), &perf);
        assert_eq!(find(&out, "py-spy").unwrap(), &py);
    }
}
