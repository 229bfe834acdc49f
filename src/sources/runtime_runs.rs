//! The shared driver of "one profiler run per discovered process per window"
//! sources (`py_spy`, `rbspy`).
//!
//! Every window of the shared [`WindowClock`]:
//! 1. `/proc` is scanned ([`Discovery`]) and the processes of the source's runtime
//!    are selected (minimum age, skip lists, busiest first, capped);
//! 2. one profiler child per process is started through the agent's supervisor, at
//!    most `max_concurrent` at once (and never more than the supervisor's global
//!    cap), each recording for the time left in the window, with a deadline of that
//!    time plus [`EXTRA_DEADLINE`] (gProfiler's `_EXTRA_TIMEOUT`);
//! 3. each output file is read with the profiler's parser, deleted at once, and its
//!    stacks are sent as one [`Profile`] for the window, prefixed with the process
//!    name and tagged with its pid and container;
//! 4. a run that did not simply succeed becomes a [`Diagnostic`] (exit status,
//!    stderr tail, whether the target was still alive) for the `classify`
//!    transform, which counts and logs it: this module logs failures at DEBUG only,
//!    since targets exiting mid-run are normal on a busy host;
//! 5. once every run of the window has ended, `Watermark { complete_until_ms:
//!    window.end_ms }` is sent.
//!
//! Window work runs in its own task so the clock never waits for a slow run: runs of
//! window k may still be ending (up to their deadline) while window k+1 starts. At
//! most [`MAX_WINDOWS_IN_FLIGHT`] windows are in flight; a window that would be a
//! third one starts when the oldest ends, with the time then left (a window with
//! less than half a second left is skipped). Watermarks leave in window order.
//!
//! On shutdown every running child is terminated (SIGTERM to its group, SIGKILL
//! after the supervisor's grace), whatever already finished is sent, then
//! `Watermark::FINISHED`. If the source's future is dropped instead, its tasks are
//! aborted, which cancels their children the same way; files they leave in the
//! scratch directory are removed when the source next starts.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::future::Future;
use std::io::{self, BufRead};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinSet;

use super::live::binary::{self, Search};
use super::live::emitter::{self, Emitter};
use crate::component::{at_least_one, ComponentContext, ComponentError, FieldError, SourceContext};
use crate::event::{
    Diagnostic, Event, LabelSet, Labels, Profile, RunEnd, Stack, Watermark, Window,
};
use crate::formats::line::FormatStats;
use crate::process::{
    Discovery, DiscoveryConfig, ExitOutcome, ProcessInfo, Runtime, SpawnError, Spec, Supervisor,
};
use crate::telemetry::ComponentMetrics;
use crate::window_clock::{now_ms, Tick, WindowClock};

/// Added to a run's duration to get its deadline (gProfiler: duration + 10 s).
pub const EXTRA_DEADLINE: Duration = Duration::from_secs(10);
/// Windows whose runs may be in progress at once.
pub const MAX_WINDOWS_IN_FLIGHT: usize = 2;
/// Where profpipe's helper scripts install profilers, relative to `$HOME`; searched
/// after `PATH`.
pub use super::live::binary::TOOLS_DIR;
/// Runs shorter than this are not started (the profilers take whole seconds).
const MIN_RUN_MS: u64 = 500;

/// How long before the window's end a run is made to end.
const RUN_END_MARGIN_MS: u64 = 2_000;

/// What differs between per-process profilers.
pub trait RuntimeProfiler: Send + Sync + 'static {
    /// The `profiler` label and the supervisor's program label: "py-spy", "rbspy".
    fn name(&self) -> &'static str;
    /// Which processes it profiles.
    fn runtime(&self) -> Runtime;
    /// How to install it, for the one log line when it is missing.
    fn install_hint(&self) -> &'static str;
    /// The arguments of one run of `duration_secs` against `pid`, writing `output`.
    fn args(&self, pid: u32, duration_secs: u64, output: &Path) -> Vec<OsString>;
    /// Reads an output file into stacks whose first frame is `comm`.
    fn read_output(
        &self,
        reader: &mut dyn BufRead,
        comm: &str,
    ) -> io::Result<(Vec<Stack>, FormatStats)>;
}

/// The driver settings every such source has.
#[derive(Clone, Debug)]
pub struct RunSettings {
    pub window: Duration,
    pub max_windows: Option<u64>,
    pub max_concurrent: usize,
    pub discovery: DiscoveryConfig,
    /// A path, or a name looked up with [`resolve_binary`].
    pub binary: String,
}

/// Checks every such source makes (no I/O).
pub fn validate(frequency: u32, s: &RunSettings) -> Vec<FieldError> {
    let mut e = Vec::new();
    e.extend(at_least_one(&["frequency"], frequency));
    if s.window < Duration::from_secs(1) {
        e.push(FieldError::new(&["window"], "window must be at least 1s"));
    }
    e.extend(
        s.max_windows
            .and_then(|n| at_least_one(&["max_windows"], n)),
    );
    if s.binary.trim().is_empty() {
        e.push(FieldError::new(&["binary"], "binary must not be empty"));
    }
    e.extend(at_least_one(&["max_concurrent"], s.max_concurrent));
    e.extend(at_least_one(
        &["discovery", "max_processes"],
        s.discovery.max_processes,
    ));
    e
}

/// Finds a profiler binary: a name containing `/` is used as is; a bare name is
/// looked up in `PATH`, then in `$HOME/.cache/profpipe-tools/bin`. `None` when
/// there is no executable file there.
pub fn resolve_binary(name: &str) -> Option<PathBuf> {
    binary::find(name, Search::PathThenTools)
}

/// The process one run profiles.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub pid: u32,
    /// Its process name, the first frame of its stacks.
    pub comm: Arc<str>,
    pub container: Option<Arc<str>>,
    /// Its start time in clock ticks since boot, when known: tells a PID reused
    /// during the run from the target itself.
    pub start_ticks: Option<u64>,
    /// What discovery knows of it (`container`, `pod`, `namespace`, ...), put in
    /// the `labels.extra` of its profiles and diagnostics.
    pub labels: LabelSet,
}

impl Target {
    /// A target known only by its pid and name.
    pub fn new(pid: u32, comm: &str) -> Target {
        Target {
            pid,
            comm: comm.into(),
            container: None,
            start_ticks: None,
            labels: LabelSet::default(),
        }
    }
}

impl From<&ProcessInfo> for Target {
    fn from(p: &ProcessInfo) -> Target {
        Target {
            pid: p.pid,
            comm: p.comm.as_str().into(),
            container: p.container.as_deref().map(Arc::from),
            start_ticks: Some(p.start_ticks),
            labels: p
                .label_pairs()
                .into_iter()
                .fold(LabelSet::default(), |l, (k, v)| l.with(k, v).unwrap_or(l)),
        }
    }
}

/// What one run produced.
#[derive(Debug, Default)]
pub struct RunResult {
    /// The stacks read from its output file, if any.
    pub profile: Option<Profile>,
    /// Set when the run did not simply succeed (including: it succeeded but its
    /// target exited meanwhile).
    pub diagnostic: Option<Diagnostic>,
    /// How the child ended; `None` if it never started.
    pub outcome: Option<ExitOutcome>,
    /// From spawn to the output file being read.
    pub elapsed: Duration,
}

impl RunResult {
    /// The events to send: the profile first, then the diagnostic.
    pub fn into_events(self) -> impl Iterator<Item = Event> {
        self.profile
            .map(Event::Profile)
            .into_iter()
            .chain(self.diagnostic.map(Event::Diagnostic))
    }
}

/// Runs one profiler against one process and turns the outcome into events.
pub struct Runner {
    profiler: Arc<dyn RuntimeProfiler>,
    binary: PathBuf,
    supervisor: Supervisor,
    scratch: PathBuf,
    labels: Labels,
    metrics: ComponentMetrics,
}

impl Runner {
    /// A runner writing its output files under the component's scratch directory
    /// (created, mode 0700).
    pub fn new(
        profiler: Arc<dyn RuntimeProfiler>,
        binary: PathBuf,
        cx: &ComponentContext,
    ) -> io::Result<Runner> {
        let scratch = cx.scratch_dir()?;
        let labels = emitter::labels(cx, profiler.name());
        Ok(Runner {
            profiler,
            binary,
            supervisor: cx.supervisor.clone(),
            scratch,
            labels,
            metrics: cx.metrics.clone(),
        })
    }

    pub fn scratch_dir(&self) -> &Path {
        &self.scratch
    }

    /// Removes every file in the scratch directory: output files of runs that a
    /// crash or an abort left behind. Only this source writes there.
    pub fn clear_scratch(&self) {
        let Ok(entries) = std::fs::read_dir(&self.scratch) else {
            return;
        };
        let mut removed = 0u32;
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_file()) && std::fs::remove_file(e.path()).is_ok() {
                removed += 1;
            }
        }
        if removed > 0 {
            tracing::debug!(removed, dir = %self.scratch.display(), "removed stale output files");
        }
    }

    /// Profiles `target` for `duration` (whole seconds, at least one) as part of
    /// `window`. If `cancel` completes first the child is terminated; what it wrote
    /// is still read. The output file is always deleted before this returns.
    pub async fn run(
        &self,
        target: &Target,
        window: Window,
        duration: Duration,
        cancel: impl Future<Output = ()>,
    ) -> RunResult {
        let name = self.profiler.name();
        let secs = duration.as_secs().max(1);
        let output = self.scratch.join(format!(
            "{name}.{}.{}.{:016x}.out",
            target.pid,
            window.start_ms,
            fastrand::u64(..)
        ));
        let spec = Spec::new(&self.binary)
            .args(self.profiler.args(target.pid, secs, &output))
            .deadline(Duration::from_secs(secs) + EXTRA_DEADLINE)
            .label(name);
        let started = Instant::now();
        let child = match self.supervisor.spawn(spec).await {
            Ok(child) => child,
            Err(SpawnError::ShuttingDown) => return RunResult::default(),
            Err(e) => {
                tracing::debug!(profiler = name, pid = target.pid, error = %e, "cannot start profiler");
                return RunResult {
                    diagnostic: Some(self.diagnostic(
                        target,
                        window,
                        RunEnd::SpawnFailed(e.to_string()),
                        "",
                        None,
                    )),
                    elapsed: started.elapsed(),
                    ..RunResult::default()
                };
            }
        };
        let report = child.wait_or_terminate(cancel).await;
        let alive = target_alive(target);
        let stacks = self.collect(&output, target).await;
        let elapsed = started.elapsed();
        tracing::debug!(
            profiler = name,
            pid = target.pid,
            comm = %target.comm,
            outcome = %report.outcome,
            target_alive = alive,
            stacks = stacks.len(),
            elapsed_ms = elapsed.as_millis() as u64,
            "profiler run ended"
        );
        let end = match report.outcome {
            ExitOutcome::Exited(0) if alive => None,
            // It worked, but the target exited during the run (py-spy: "Stopped
            // sampling because process exited"): counted as `process_exited`.
            ExitOutcome::Exited(code) => Some(RunEnd::Exited(code)),
            ExitOutcome::Signaled(sig) => Some(RunEnd::Signaled(sig)),
            ExitOutcome::TimedOut => Some(RunEnd::TimedOut),
            // We stopped it (shutdown): not the profiler's failure.
            ExitOutcome::Cancelled => None,
            // Someone else reaped it; the status is lost.
            ExitOutcome::Unknown => Some(RunEnd::Exited(-1)),
        };
        let diagnostic = end.map(|end| {
            tracing::debug!(
                profiler = name,
                pid = target.pid,
                outcome = %report.outcome,
                stderr = report.stderr_tail.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or(""),
                "profiler run did not succeed"
            );
            self.diagnostic(target, window, end, &report.stderr_tail, Some(alive))
        });
        let profile = (!stacks.is_empty()).then(|| Profile {
            finalizers: Default::default(),
            window,
            labels: Labels {
                extra: target.labels.clone(),
                ..self.labels.clone()
            },
            stacks,
        });
        RunResult {
            profile,
            diagnostic,
            outcome: Some(report.outcome),
            elapsed,
        }
    }

    /// Reads and deletes the output file. A missing file is no stacks (the
    /// profiler failed before writing it).
    async fn collect(&self, output: &Path, target: &Target) -> Vec<Stack> {
        let profiler = self.profiler.clone();
        let path = output.to_path_buf();
        let comm = sanitize_comm(&target.comm);
        let read = tokio::task::spawn_blocking(move || {
            let result = std::fs::File::open(&path).and_then(|f| {
                let mut reader = io::BufReader::with_capacity(64 * 1024, f);
                profiler.read_output(&mut reader, &comm)
            });
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => tracing::warn!(path = %path.display(), error = %e, "cannot delete profiler output"),
            }
            result
        })
        .await;
        let (mut stacks, stats) = match read {
            Ok(Ok(r)) => r,
            Ok(Err(e)) if e.kind() == io::ErrorKind::NotFound => return Vec::new(),
            Ok(Err(e)) => {
                tracing::debug!(pid = target.pid, error = %e, "cannot read profiler output");
                self.metrics.errors("read_output", 1);
                return Vec::new();
            }
            Err(e) => {
                tracing::warn!(pid = target.pid, error = %e, "reading profiler output panicked");
                let _ = std::fs::remove_file(output);
                return Vec::new();
            }
        };
        stats.report_since(&FormatStats::default(), &self.metrics);
        for s in &mut stacks {
            s.pid = target.pid;
            s.container = target.container.clone();
        }
        stacks
    }

    fn diagnostic(
        &self,
        target: &Target,
        window: Window,
        end: RunEnd,
        stderr: &str,
        target_alive: Option<bool>,
    ) -> Diagnostic {
        Diagnostic {
            reason: None,
            finalizers: Default::default(),
            window,
            labels: Labels {
                extra: target.labels.clone(),
                ..self.labels.clone()
            },
            pid: target.pid,
            comm: Some(target.comm.clone()),
            end,
            stderr: stderr.into(),
            target_alive,
        }
    }
}

/// A comm may hold any byte but `/` and NUL; a `;` would split it into two frames.
fn sanitize_comm(comm: &str) -> String {
    comm.replace([';', '\n', '\r'], "_")
}

/// Whether the target still exists: `/proc/PID` is there, is not a zombie, and
/// (when known) started when the target did, so a reused PID does not count.
pub fn target_alive(target: &Target) -> bool {
    let Ok(proc) = procfs::process::Process::new(target.pid as i32) else {
        return false;
    };
    match proc.stat() {
        Ok(stat) => {
            !matches!(stat.state, 'Z' | 'X' | 'x')
                && target.start_ticks.is_none_or(|t| t == stat.starttime)
        }
        Err(_) => false,
    }
}

/// Prepends `comm` to `frames` and, when `suffix` is given, appends it to every
/// frame that does not already end with it: `a;b` → `comm;a_[rb];b_[rb]`.
pub fn decorate_frames(comm: &str, frames: &str, suffix: Option<&str>) -> String {
    let Some(suffix) = suffix else {
        return format!("{comm};{frames}");
    };
    let frame_count = frames.split(';').count();
    let mut out = String::with_capacity(comm.len() + 1 + frames.len() + frame_count * suffix.len());
    out.push_str(comm);
    for frame in frames.split(';') {
        out.push(';');
        out.push_str(frame);
        if !frame.ends_with(suffix) {
            out.push_str(suffix);
        }
    }
    out
}

/// What window tasks tell the driver.
enum Msg {
    Run(Box<RunResult>),
    WindowDone(u64),
}

struct Shared {
    runner: Runner,
    runtime: Runtime,
    discovery: Mutex<Discovery>,
    permits: Semaphore,
}

struct InFlight {
    seq: u64,
    window: Window,
    done: bool,
}

/// Runs a per-process profiler source until its windows are done or shutdown.
pub async fn drive(
    profiler: Arc<dyn RuntimeProfiler>,
    settings: RunSettings,
    cx: SourceContext,
) -> Result<(), ComponentError> {
    let SourceContext { cx, out } = cx;
    let mut out = Emitter::new(out, &cx, profiler.name());
    let Some(binary) = resolve_binary(&settings.binary) else {
        binary::log_missing(
            &cx.id,
            &settings.binary,
            format_args!(
                "{} is not installed (not on PATH nor in ~/{TOOLS_DIR}); this source does nothing. \
                 Install it with `{}`",
                profiler.name(),
                profiler.install_hint()
            ),
        );
        let _ = out.watermark(Watermark::FINISHED).await;
        return Ok(());
    };
    let runtime = profiler.runtime();
    let runner = Runner::new(profiler, binary, &cx)?;
    runner.clear_scratch();
    let shared = Arc::new(Shared {
        runner,
        runtime,
        discovery: Mutex::new(Discovery::new(settings.discovery.clone())),
        permits: Semaphore::new(settings.max_concurrent.max(1)),
    });
    let mut clock = WindowClock::new(cx.origin_ms, settings.window, settings.max_windows);
    let mut shutdown = cx.shutdown.clone();
    let (tx, mut rx) = mpsc::channel::<Msg>(64);
    let (cancel_tx, cancel_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let mut in_flight: VecDeque<InFlight> = VecDeque::new();
    let mut pending = clock.current();
    let mut clock_done = pending.is_none();
    let mut next_seq = 0u64;
    let mut downstream_closed = false;

    loop {
        if let Some(window) = pending {
            if in_flight.len() < MAX_WINDOWS_IN_FLIGHT && !*cancel_tx.borrow() {
                pending = None;
                let seq = next_seq;
                next_seq += 1;
                in_flight.push_back(InFlight {
                    seq,
                    window,
                    done: false,
                });
                tasks.spawn(run_window(
                    shared.clone(),
                    seq,
                    window,
                    tx.clone(),
                    cancel_rx.clone(),
                ));
            }
        }
        if clock_done && pending.is_none() && in_flight.is_empty() {
            break;
        }
        tokio::select! {
            Some(msg) = rx.recv() => match msg {
                Msg::Run(result) => {
                    if downstream_closed {
                        continue;
                    }
                    for ev in result.into_events() {
                        if out.send(ev).await.is_err() {
                            downstream_closed = true;
                            break;
                        }
                    }
                }
                Msg::WindowDone(seq) => {
                    if let Some(w) = in_flight.iter_mut().find(|w| w.seq == seq) {
                        w.done = true;
                    }
                    while in_flight.front().is_some_and(|w| w.done) {
                        let w = in_flight.pop_front().expect("front exists");
                        if !downstream_closed
                            && out.watermark(w.window.end_ms).await.is_err()
                        {
                            downstream_closed = true;
                        }
                    }
                }
            },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            tick = clock.tick(&mut shutdown), if !clock_done => match tick {
                Some(Tick::Ended(_)) => {
                    if let Some(skipped) = pending.take() {
                        tracing::debug!(
                            source = %cx.id,
                            window_start_ms = skipped.start_ms,
                            "skipping a window: earlier windows' runs are still ending"
                        );
                    }
                    pending = clock.current();
                    clock_done = pending.is_none();
                }
                Some(Tick::Shutdown(_)) | None => {
                    clock_done = true;
                    pending = None;
                    let _ = cancel_tx.send(true);
                }
            },
        }
        if downstream_closed && !*cancel_tx.borrow() {
            tracing::debug!(source = %cx.id, "downstream closed; stopping runs");
            clock_done = true;
            pending = None;
            let _ = cancel_tx.send(true);
        }
    }
    if !downstream_closed {
        let _ = out.watermark(Watermark::FINISHED).await;
    }
    Ok(())
}

/// Resolves once `cancel` is set (or its sender is gone).
async fn cancelled(mut cancel: watch::Receiver<bool>) {
    let _ = cancel.wait_for(|c| *c).await;
}

/// One window: discover, run every selected process (bounded), report each run,
/// then say the window is done.
async fn run_window(
    shared: Arc<Shared>,
    seq: u64,
    window: Window,
    tx: mpsc::Sender<Msg>,
    cancel: watch::Receiver<bool>,
) {
    let scan_shared = shared.clone();
    let targets = tokio::task::spawn_blocking(move || {
        let mut d = scan_shared
            .discovery
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let procs = d.scan();
        d.select(&procs, scan_shared.runtime)
    })
    .await
    .unwrap_or_default();
    tracing::debug!(
        profiler = shared.runner.profiler.name(),
        window_start_ms = window.start_ms,
        targets = targets.len(),
        "profiling window"
    );
    let mut runs = JoinSet::new();
    for p in &targets {
        let target = Target::from(p);
        let (shared, tx, cancel) = (shared.clone(), tx.clone(), cancel.clone());
        runs.spawn(async move {
            let permit = tokio::select! {
                p = shared.permits.acquire() => match p {
                    Ok(p) => p,
                    Err(_) => return,
                },
                _ = cancelled(cancel.clone()) => return,
            };
            let left_ms = window.end_ms.saturating_sub(now_ms());
            if left_ms < MIN_RUN_MS {
                tracing::debug!(
                    pid = target.pid,
                    "no time left in the window for this process"
                );
                return;
            }
            // Whole seconds, ending two seconds before the window does: the
            // profiler's start-up and exit then fall inside the window, so its runs do
            // not overlap the next window's (which would double the children and fds
            // at every boundary) and its results are in before the watermark is due.
            let secs = (left_ms.saturating_sub(RUN_END_MARGIN_MS) / 1000).max(1);
            let result = shared
                .runner
                .run(
                    &target,
                    window,
                    Duration::from_secs(secs),
                    cancelled(cancel),
                )
                .await;
            drop(permit);
            let _ = tx.send(Msg::Run(Box::new(result))).await;
        });
    }
    while runs.join_next().await.is_some() {}
    let _ = tx.send(Msg::WindowDone(seq)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decorate_adds_comm_and_suffixes_once() {
        assert_eq!(
            decorate_frames("ruby", "a - x.rb:1;b_[rb]", Some("_[rb]")),
            "ruby;a - x.rb:1_[rb];b_[rb]"
        );
        assert_eq!(decorate_frames("ruby", "a;b", None), "ruby;a;b");
    }

    #[test]
    fn comm_cannot_split_frames() {
        assert_eq!(sanitize_comm("a;b\nc"), "a_b_c");
    }

    #[test]
    fn liveness_checks_start_time() {
        let me = std::process::id();
        assert!(target_alive(&Target::new(me, "me")));
        let stat = procfs::process::Process::myself().unwrap().stat().unwrap();
        let mut t = Target::new(me, "me");
        t.start_ticks = Some(stat.starttime + 1);
        assert!(
            !target_alive(&t),
            "a different start time is another process"
        );
        assert!(!target_alive(&Target::new(u32::MAX - 7, "gone")));
    }
}
