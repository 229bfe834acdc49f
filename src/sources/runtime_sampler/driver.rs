//! The agent's side of a sampler child: start it under the supervisor, tell it the
//! targets discovery selected each window, ask it for batches, fold them into one
//! profile per target per window, and restart it when it dies or stalls.
//!
//! Batches and windows: at each window's end the driver sends a flush whose number
//! it records for that window; the child answers flushes in order, so a batch
//! numbered `n` belongs to the oldest closing window whose flush is `>= n` (or to
//! the current one), and the window is complete when the batch of its own flush
//! arrives. Windows longer than [`FLUSH_EVERY`] are flushed in between too, which
//! bounds what the child holds and proves it alive.
//!
//! A child that answers no flush for [`STALL_FLUSHES`] flush intervals is stalled:
//! it is killed (SIGTERM, SIGKILL after the supervisor's grace) and, like one that
//! exits or crashes, restarted with the supervisor's backoff. The windows waiting
//! for it are closed with what they have and a diagnostic per target, which
//! `classify` counts (`profiler_crashed`, `timeout`, ...), so nothing is lost
//! silently.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustc_hash::FxHashMap;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::component::{ComponentError, SourceContext};
use crate::event::{Diagnostic, Event, Labels, Profile, RunEnd, Watermark, Window};
use crate::formats::line::FormatStats;
use crate::process::{
    Backoff, Child, ChildStdin, ChildStdout, Discovery, ExitOutcome, ExitReport, ProcessInfo,
    Restarter, SpawnError, Spec, Stdout,
};
use crate::sources::live::binary;
use crate::sources::live::emitter::{self, Emitter};
use crate::sources::runtime_runs::{sanitize_comm, RunSettings, RuntimeProfiler, Target};
use crate::telemetry::ComponentMetrics;
use crate::window_clock::{Tick, WindowClock};

use super::child::{Kind, Options};
use super::protocol::{Batch, Control, FrameStyle, TargetBatch, TargetId};

/// Longest time between two flushes.
pub const FLUSH_EVERY: Duration = Duration::from_secs(5);
/// Flush intervals without an answer after which the child counts as stalled.
pub const STALL_FLUSHES: u32 = 3;
/// Distinct folded stacks kept per target per window in the agent; the samples of
/// further stacks are counted (`dropped_stacks{reason="sampler_overflow"}`).
pub const MAX_STACKS_PER_WINDOW: usize = 16_384;
/// Longest batch line read from a child; a longer one ends the session (the child is
/// restarted) and is counted.
const MAX_BATCH_LINE: usize = 64 << 20;
/// How long a final flush at shutdown may take.
const SHUTDOWN_FLUSH: Duration = Duration::from_secs(1);
/// What py-spy prints when its target ends; `classify` reads it as `process_exited`.
const TARGET_EXITED: &str = "Stopped sampling because process exited";

/// What the sampler child of a source is.
#[derive(Clone, Debug)]
pub struct SamplerSettings {
    pub kind: Kind,
    pub style: FrameStyle,
    pub options: Options,
    /// Do not sample targets that used no CPU since the previous scan.
    pub skip_idle_targets: bool,
    /// profpipe's own binary, or empty to find it ([`resolve_self`]).
    pub binary: String,
}

/// profpipe's binary for the sampler child: `configured` when given (a path, or a
/// name looked up like the profilers), else the running executable when it is
/// `profpipe`, else a `profpipe` next to it or one directory up (an embedding
/// program or a test binary in cargo's `target/*/deps`).
pub fn resolve_self(configured: &str) -> Option<PathBuf> {
    if !configured.trim().is_empty() {
        return binary::find(configured, binary::Search::PathThenTools);
    }
    let exe = std::env::current_exe().ok()?;
    if exe.file_name().is_some_and(|n| n == "profpipe") {
        return Some(exe);
    }
    let dir = exe.parent()?;
    let found = [Some(dir), dir.parent()]
        .into_iter()
        .flatten()
        .map(|d| d.join("profpipe"))
        .find(|p| binary::find(p, binary::Search::PathThenTools).is_some());
    found
}

/// One target's stacks in one window.
struct TargetAcc {
    target: Target,
    folded: FxHashMap<String, u64>,
    overflow: u64,
    diagnostics: Vec<(RunEnd, String, Option<bool>)>,
}

/// One window's targets and what the child sent for them.
struct WindowAcc {
    window: Window,
    targets: HashMap<TargetId, TargetAcc>,
}

impl WindowAcc {
    fn new(window: Window) -> WindowAcc {
        WindowAcc {
            window,
            targets: HashMap::new(),
        }
    }

    fn entry(&mut self, id: TargetId, known: &HashMap<TargetId, Target>) -> Option<&mut TargetAcc> {
        match self.targets.entry(id) {
            std::collections::hash_map::Entry::Occupied(e) => Some(e.into_mut()),
            std::collections::hash_map::Entry::Vacant(e) => {
                let target = known.get(&id)?.clone();
                Some(e.insert(TargetAcc {
                    target,
                    folded: FxHashMap::default(),
                    overflow: 0,
                    diagnostics: Vec::new(),
                }))
            }
        }
    }
}

/// A window waiting for the batch of its flush.
struct Closing {
    acc: WindowAcc,
    flush: u64,
}

/// A running child and the ends of its pipes.
struct Session {
    child: Child,
    stdin: ChildStdin,
    batches: mpsc::Receiver<Batch>,
    /// The oldest flush not answered yet, and when it was sent.
    unanswered: Option<(u64, Instant)>,
    reader_done: bool,
}

type Starting = Pin<Box<dyn Future<Output = (Restarter, Result<Child, SpawnError>)> + Send>>;

/// Runs a runtime source through a long-lived sampler child until its windows are
/// done or shutdown.
pub async fn drive(
    profiler: Arc<dyn RuntimeProfiler>,
    settings: RunSettings,
    sampler: SamplerSettings,
    cx: SourceContext,
) -> Result<(), ComponentError> {
    let SourceContext { cx, out } = cx;
    let mut out = Emitter::new(out, &cx, profiler.name());
    let Some(binary) = resolve_self(&sampler.binary) else {
        binary::log_missing(
            &cx.id,
            &sampler.binary,
            format_args!(
                "profpipe's own binary (for its {} sampler child) was not found; this source \
                 does nothing. Set `sampler_binary`",
                profiler.name()
            ),
        );
        let _ = out.watermark(Watermark::FINISHED).await;
        return Ok(());
    };
    let spec = Spec::new(&binary)
        .args(["--log", "warn", "sampler"])
        .arg(sampler.kind.arg())
        .args(sampler.options.to_args())
        .stdout(Stdout::Piped)
        .stdin_piped()
        .label(format!("{}-sampler", profiler.name()));
    let flush_every = settings.window.min(FLUSH_EVERY);
    let mut d = Driver {
        labels: emitter::labels(&cx, profiler.name()),
        profiler,
        style: sampler.style,
        skip_idle: sampler.skip_idle_targets,
        metrics: cx.metrics.clone(),
        discovery: Arc::new(Mutex::new(Discovery::new(settings.discovery.clone()))),
        known: HashMap::new(),
        wanted: Vec::new(),
        next_flush_seq: 0,
        closing: VecDeque::new(),
        stall_after: flush_every * STALL_FLUSHES,
    };
    let mut clock = WindowClock::new(cx.origin_ms, settings.window, settings.max_windows);
    let mut shutdown = cx.shutdown.clone();
    let mut session: Option<Session> = None;
    // The restarter lives in `starting` while a start (and its backoff) runs, and in
    // `idle_restarter` while a child runs, so the backoff grows across restarts.
    let mut idle_restarter: Option<Restarter> = None;
    let mut starting: Option<Starting> = Some(start(
        Restarter::new(&cx.supervisor, &Backoff::default()),
        spec.clone(),
    ));
    // Discovery runs beside the loop: on a loaded host a /proc scan can take longer
    // than a window, and the clock must not wait for it.
    let mut discovering: Option<tokio::task::JoinHandle<Vec<ProcessInfo>>> = None;
    let mut current = clock.current().map(WindowAcc::new);
    if current.is_some() {
        discovering = Some(d.discover());
    }
    let mut next_flush = Instant::now() + flush_every;
    let mut downstream_closed = false;

    while current.is_some() || !d.closing.is_empty() {
        let stall_at = session
            .as_ref()
            .and_then(|s| s.unanswered)
            .map(|(_, at)| at + d.stall_after);
        let far = Instant::now() + Duration::from_secs(86_400);
        tokio::select! {
            tick = clock.tick(&mut shutdown), if current.is_some() => {
                let last = !matches!(tick, Some(Tick::Ended(_)));
                let acc = current.take().expect("a window is open");
                d.close_window(acc, session.as_mut()).await;
                if last {
                    // Shutdown: wait a little for the final batch, then stop.
                    starting = None;
                    if let Some(s) = session.as_mut() {
                        let deadline = Instant::now() + SHUTDOWN_FLUSH;
                        while !d.closing.is_empty() {
                            match tokio::time::timeout_at(deadline, s.batches.recv()).await {
                                Ok(Some(b)) => downstream_closed |= d.batch(b, &mut current, &mut out).await,
                                _ => break,
                            }
                        }
                    }
                    downstream_closed |= d.abandon_closing(&mut out, None).await;
                } else if let Some(w) = clock.current() {
                    current = Some(WindowAcc::new(w));
                    if discovering.is_none() {
                        discovering = Some(d.discover());
                    }
                }
                if session.is_none() {
                    // No child (it is being restarted): nothing will answer the flush.
                    downstream_closed |= d.abandon_closing(&mut out, None).await;
                }
                next_flush = Instant::now() + flush_every;
            }
            ev = session_event(&mut session) => match ev {
            SessionEvent::Batch(batch) => {
                if let Some(s) = session.as_mut() {
                    if s.unanswered.is_some_and(|(n, _)| n <= batch.batch) {
                        s.unanswered = None;
                    }
                }
                downstream_closed |= d.batch(batch, &mut current, &mut out).await;
            }
            SessionEvent::ReaderDone => {
                if let Some(s) = session.as_mut() {
                    s.reader_done = true;
                }
            }
            SessionEvent::Exited(report) => {
                let mut s = session.take().expect("a session ran");
                drop(s.stdin);
                // What it wrote before it ended is still in the pipe.
                while let Ok(Some(b)) = tokio::time::timeout(Duration::from_millis(200), s.batches.recv()).await {
                    downstream_closed |= d.batch(b, &mut current, &mut out).await;
                }
                tracing::debug!(profiler = d.profiler.name(), outcome = %report.outcome, "sampler child ended");
                let end = match report.outcome {
                    ExitOutcome::Exited(c) => RunEnd::Exited(c),
                    ExitOutcome::Signaled(s) => RunEnd::Signaled(s),
                    ExitOutcome::TimedOut => RunEnd::TimedOut,
                    ExitOutcome::Cancelled | ExitOutcome::Unknown => RunEnd::Exited(-1),
                };
                downstream_closed |= d.child_lost(end, &report, &mut current, &mut out).await;
                if current.is_some() {
                    let mut r = idle_restarter.take().unwrap_or_else(|| Restarter::new(&cx.supervisor, &Backoff::default()));
                    r.exited(&report);
                    starting = Some(start(r, spec.clone()));
                }
            }
            },
            _ = tokio::time::sleep_until(stall_at.unwrap_or(far)), if stall_at.is_some() => {
                tracing::info!(profiler = d.profiler.name(), "the sampler child answers no flush; restarting it");
                d.metrics.errors("sampler_stalled", 1);
                if let Some(s) = session.take() {
                    drop(s.stdin);
                    let report = s.child.terminate().await;
                    downstream_closed |= d.child_lost(RunEnd::TimedOut, &report, &mut current, &mut out).await;
                    if current.is_some() {
                        let mut r = idle_restarter.take().unwrap_or_else(|| Restarter::new(&cx.supervisor, &Backoff::default()));
                        r.exited(&report);
                        starting = Some(start(r, spec.clone()));
                    }
                }
            }
            (restarter, started) = poll_starting(&mut starting) => {
                starting = None;
                match started {
                    Ok(mut child) => match (child.take_stdin(), child.take_stdout()) {
                        (Some(stdin), Some(stdout)) => {
                            let (tx, batches) = mpsc::channel(4);
                            tokio::spawn(read_batches(stdout, tx, d.metrics.clone()));
                            let mut s = Session { child, stdin, batches, unanswered: None, reader_done: false };
                            d.send_targets(&mut s).await;
                            session = Some(s);
                            idle_restarter = Some(restarter);
                        }
                        _ => {
                            tracing::warn!("the sampler child has no pipes");
                            let _ = child.terminate().await;
                            starting = Some(start(restarter, spec.clone()));
                        }
                    },
                    Err(SpawnError::ShuttingDown) => {}
                    Err(e) => {
                        tracing::warn!(profiler = d.profiler.name(), error = %e, "cannot start the sampler child");
                        starting = Some(start(restarter, spec.clone()));
                    }
                }
            }
            procs = join_discovery(&mut discovering) => {
                discovering = None;
                d.set_targets(procs);
                if let Some(s) = session.as_mut() {
                    d.send_targets(s).await;
                }
            }
            _ = tokio::time::sleep_until(next_flush) => {
                if let Some(s) = session.as_mut() {
                    d.flush(s).await;
                }
                next_flush = Instant::now() + flush_every;
            }
        }
        if downstream_closed {
            tracing::debug!(source = %cx.id, "downstream closed; stopping the sampler");
            break;
        }
    }
    if let Some(s) = session.take() {
        drop(s.stdin);
        let _ = s.child.terminate().await;
    }
    if let Some(h) = discovering {
        h.abort();
    }
    if !downstream_closed {
        let _ = out.watermark(Watermark::FINISHED).await;
    }
    Ok(())
}

fn start(mut r: Restarter, spec: Spec) -> Starting {
    Box::pin(async move {
        let started = r.start(spec).await;
        (r, started)
    })
}

async fn join_discovery(
    h: &mut Option<tokio::task::JoinHandle<Vec<ProcessInfo>>>,
) -> Vec<ProcessInfo> {
    match h.as_mut() {
        Some(h) => h.await.unwrap_or_default(),
        None => std::future::pending().await,
    }
}

async fn poll_starting(s: &mut Option<Starting>) -> (Restarter, Result<Child, SpawnError>) {
    match s.as_mut() {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}

enum SessionEvent {
    Batch(Batch),
    /// The child's stdout ended (it is exiting, or wrote a line too long).
    ReaderDone,
    Exited(ExitReport),
}

/// The next thing the running child did; batches first, so that what it wrote
/// before it ended is taken before its exit.
async fn session_event(s: &mut Option<Session>) -> SessionEvent {
    let Some(s) = s.as_mut() else {
        return std::future::pending().await;
    };
    tokio::select! {
        biased;
        b = s.batches.recv(), if !s.reader_done => match b {
            Some(b) => SessionEvent::Batch(b),
            None => SessionEvent::ReaderDone,
        },
        r = s.child.exited() => SessionEvent::Exited(r),
    }
}

/// Writes one control line; a child that cannot take it is left to its exit or
/// stall to be noticed.
async fn send(s: &mut Session, c: &Control) {
    let mut line = serde_json::to_vec(c).expect("control messages serialize");
    line.push(b'\n');
    if let Err(e) = s.stdin.write_all(&line).await {
        tracing::debug!(error = %e, "cannot write to the sampler child");
    }
}

/// Reads batch lines until EOF or a line too long or unreadable (counted; the child
/// is then left to exit or stall).
async fn read_batches(stdout: ChildStdout, tx: mpsc::Sender<Batch>, metrics: ComponentMetrics) {
    let mut r = BufReader::with_capacity(64 * 1024, stdout);
    let mut line = Vec::new();
    loop {
        line.clear();
        match (&mut r)
            .take(MAX_BATCH_LINE as u64 + 1)
            .read_until(b'\n', &mut line)
            .await
        {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if line.len() > MAX_BATCH_LINE {
            metrics.errors("sampler_line_too_long", 1);
            return;
        }
        match serde_json::from_slice::<Batch>(&line) {
            Ok(b) => {
                if tx.send(b).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "bad batch line from the sampler child");
                metrics.errors("sampler_bad_line", 1);
            }
        }
    }
}

struct Driver {
    profiler: Arc<dyn RuntimeProfiler>,
    labels: Labels,
    style: FrameStyle,
    skip_idle: bool,
    metrics: ComponentMetrics,
    discovery: Arc<Mutex<Discovery>>,
    /// The targets of the last two discoveries, to name what a late batch holds.
    known: HashMap<TargetId, Target>,
    /// The targets of the current window, in the order discovery ranked them.
    wanted: Vec<TargetId>,
    next_flush_seq: u64,
    closing: VecDeque<Closing>,
    stall_after: Duration,
}

impl Driver {
    /// Scans `/proc` for the window's targets, on a blocking thread.
    fn discover(&self) -> tokio::task::JoinHandle<Vec<ProcessInfo>> {
        let discovery = self.discovery.clone();
        let runtime = self.profiler.runtime();
        let skip_idle = self.skip_idle;
        tokio::task::spawn_blocking(move || {
            let mut d = discovery.lock().unwrap_or_else(|e| e.into_inner());
            let procs = d.scan();
            let mut selected = d.select(&procs, runtime);
            if skip_idle {
                selected.retain(|p| p.cpu_ticks_delta > 0);
            }
            selected
        })
    }

    /// The targets discovery selected, from now on.
    fn set_targets(&mut self, procs: Vec<ProcessInfo>) {
        let targets: Vec<Target> = procs.iter().map(Target::from).collect();
        tracing::debug!(
            profiler = self.profiler.name(),
            targets = targets.len(),
            "sampling targets"
        );
        let previous = std::mem::take(&mut self.wanted);
        self.wanted = targets.iter().map(id_of).collect();
        self.known
            .retain(|id, _| previous.contains(id) || self.wanted.contains(id));
        for t in targets {
            self.known.insert(id_of(&t), t);
        }
    }

    async fn send_targets(&self, s: &mut Session) {
        send(s, &Control::Targets(self.wanted.clone())).await;
    }

    async fn flush(&mut self, s: &mut Session) -> u64 {
        let n = self.next_flush_seq;
        self.next_flush_seq += 1;
        send(s, &Control::Flush(n)).await;
        if s.unanswered.is_none() {
            s.unanswered = Some((n, Instant::now()));
        }
        n
    }

    /// Asks for the window's last batch; it is emitted when that batch arrives.
    async fn close_window(&mut self, acc: WindowAcc, session: Option<&mut Session>) {
        let flush = match session {
            Some(s) => self.flush(s).await,
            // No child: nothing will come for it; `abandon_closing` or the next
            // child's loss closes it.
            None => self.next_flush_seq.saturating_sub(1),
        };
        self.closing.push_back(Closing { acc, flush });
    }

    /// Adds a batch to its window and emits the windows it completes. True when
    /// downstream is closed.
    async fn batch(
        &mut self,
        batch: Batch,
        current: &mut Option<WindowAcc>,
        out: &mut Emitter,
    ) -> bool {
        if batch.dropped > 0 {
            self.metrics
                .dropped_stacks("sampler_pipe_full", batch.dropped);
        }
        let n = batch.batch;
        let Driver {
            closing,
            known,
            style,
            metrics,
            ..
        } = self;
        let acc = match closing.iter_mut().find(|c| c.flush >= n) {
            Some(c) => Some(&mut c.acc),
            None => current.as_mut(),
        };
        if let Some(acc) = acc {
            for t in batch.targets {
                add(*style, metrics, acc_entry(acc, known, t.id()), t);
            }
        }
        let mut closed = false;
        while self.closing.front().is_some_and(|c| c.flush <= n) {
            let c = self.closing.pop_front().expect("front exists");
            closed |= self.emit(c.acc, out).await;
        }
        closed
    }

    /// The child is gone: every window waiting for it closes with what it has, and a
    /// diagnostic for each of its targets.
    async fn child_lost(
        &mut self,
        end: RunEnd,
        report: &ExitReport,
        current: &mut Option<WindowAcc>,
        out: &mut Emitter,
    ) -> bool {
        let lost = Some((end, report.stderr_tail.clone()));
        let closed = self.abandon_closing(out, lost.clone()).await;
        if let Some(acc) = current.as_mut() {
            for id in self.wanted.clone() {
                if let Some(t) = acc_entry(acc, &self.known, id) {
                    let (end, tail) = lost.clone().expect("set");
                    let alive = crate::sources::runtime_runs::target_alive(&t.target);
                    t.diagnostics.push((end, tail, Some(alive)));
                }
            }
        }
        closed
    }

    /// Emits every closing window without waiting for its batch; with `lost`, each
    /// of its targets gets that diagnostic.
    async fn abandon_closing(&mut self, out: &mut Emitter, lost: Option<(RunEnd, String)>) -> bool {
        let mut closed = false;
        while let Some(mut c) = self.closing.pop_front() {
            if let Some((end, tail)) = &lost {
                for id in self.wanted.clone() {
                    if let Some(t) = acc_entry(&mut c.acc, &self.known, id) {
                        let alive = crate::sources::runtime_runs::target_alive(&t.target);
                        t.diagnostics.push((end.clone(), tail.clone(), Some(alive)));
                    }
                }
            }
            closed |= self.emit(c.acc, out).await;
        }
        closed
    }

    /// One profile per target with stacks, its diagnostics, then the watermark.
    async fn emit(&self, acc: WindowAcc, out: &mut Emitter) -> bool {
        let window = acc.window;
        let mut targets: Vec<TargetAcc> = acc.targets.into_values().collect();
        targets.sort_by_key(|t| t.target.pid);
        for t in targets {
            if t.overflow > 0 {
                self.metrics.dropped_stacks("sampler_overflow", t.overflow);
            }
            let stacks = self.fold(&t);
            let labels = Labels {
                extra: t.target.labels.clone(),
                ..self.labels.clone()
            };
            if !stacks.is_empty() {
                let ev = Event::Profile(Profile {
                    finalizers: Default::default(),
                    window,
                    labels: labels.clone(),
                    stacks: stacks.into(),
                });
                if out.send(ev).await.is_err() {
                    return true;
                }
            }
            for (end, stderr, target_alive) in t.diagnostics {
                tracing::debug!(
                    profiler = self.profiler.name(),
                    pid = t.target.pid,
                    ?end,
                    "sampling did not simply succeed"
                );
                let ev = Event::Diagnostic(Diagnostic {
                    reason: None,
                    finalizers: Default::default(),
                    window,
                    labels: labels.clone(),
                    pid: t.target.pid,
                    comm: Some(t.target.comm.clone()),
                    end,
                    stderr: stderr.into(),
                    target_alive,
                });
                if out.send(ev).await.is_err() {
                    return true;
                }
            }
        }
        out.watermark(window.end_ms).await.is_err()
    }

    /// The window's stacks of one target, read by the profiler's own parser from
    /// the lines its CLI would have written (`frames count`).
    fn fold(&self, t: &TargetAcc) -> Vec<crate::event::Stack> {
        if t.folded.is_empty() {
            return Vec::new();
        }
        let mut text = String::new();
        for (frames, count) in &t.folded {
            use std::fmt::Write;
            let _ = writeln!(text, "{frames} {count}");
        }
        let comm = sanitize_comm(&t.target.comm);
        match self.profiler.read_output(&mut text.as_bytes(), &comm) {
            Ok((mut stacks, stats)) => {
                stats.report_since(&FormatStats::default(), &self.metrics);
                for s in &mut stacks {
                    s.pid = t.target.pid;
                    s.container = t.target.container.clone();
                }
                // The same enrichment as a per-window run (Python version tags).
                self.profiler
                    .finish(t.target.pid, &mut stacks, &self.metrics);
                stacks
            }
            Err(e) => {
                tracing::debug!(pid = t.target.pid, error = %e, "cannot read sampled stacks");
                self.metrics.errors("read_output", 1);
                Vec::new()
            }
        }
    }
}

/// Adds one target's part of a batch to its window.
fn add(style: FrameStyle, metrics: &ComponentMetrics, acc: Option<&mut TargetAcc>, t: TargetBatch) {
    let Some(acc) = acc else {
        // Not a target of the last two windows: its window is gone.
        metrics.dropped_stacks(
            "sampler_unknown_target",
            t.stacks.iter().map(|s| s.count).sum(),
        );
        return;
    };
    let mut key = String::new();
    for s in t.stacks {
        key.clear();
        style.fold(&s.frames, &mut key);
        if let Some(n) = acc.folded.get_mut(key.as_str()) {
            *n += s.count;
        } else if acc.folded.len() < MAX_STACKS_PER_WINDOW {
            acc.folded.insert(key.clone(), s.count);
        } else {
            acc.overflow += s.count;
        }
    }
    acc.overflow += t.overflow;
    if t.errors > 0 {
        metrics.errors("sampler_sample_failed", t.errors);
    }
    let attach_failed = t.attach_error.is_some();
    if let Some(e) = t.attach_error {
        let alive = crate::sources::runtime_runs::target_alive(&acc.target);
        acc.diagnostics.push((RunEnd::Exited(1), e, Some(alive)));
    }
    // A process gone before the attach has said so in its attach error.
    if t.ended && !attach_failed {
        acc.diagnostics
            .push((RunEnd::Exited(0), TARGET_EXITED.into(), Some(false)));
    }
}

fn acc_entry<'a>(
    acc: &'a mut WindowAcc,
    known: &HashMap<TargetId, Target>,
    id: TargetId,
) -> Option<&'a mut TargetAcc> {
    acc.entry(id, known)
}

fn id_of(t: &Target) -> TargetId {
    TargetId {
        pid: t.pid,
        start_ticks: t.start_ticks.unwrap_or(0),
    }
}
