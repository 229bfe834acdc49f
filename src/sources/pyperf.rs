//! `type = "pyperf"`: runs Granulate's PyPerf (eBPF Python profiler) for the whole
//! host and cuts its output into windows.
//!
//! ```toml
//! [sources.python]
//! type = "pyperf"
//! binary = "/opt/profpipe/bin/PyPerf"   # required: without it the source stays off
//! frequency = 11                        # Hz, at most 1000
//! window = "60s"
//! extra_args = ["--fs-offset", "24", "--stack-offset", "32"]
//! ```
//!
//! PyPerf runs as one long-lived child of the supervisor:
//!
//! ```text
//! PyPerf --output <scratch>/pyperf.col -F 11 --events-buffer-pages 256 --symbols-map-size 131072 <extra_args>
//! ```
//!
//! It appends one line per sample to `pyperf.col` (`comm-PID/TID;frames 1`, see
//! [`crate::formats::pyperf`]). At the end of each window the source sends it SIGUSR2;
//! PyPerf closes the file and renames it `pyperf.col.<YYYYmmddHHMMSSxx>`. The source
//! waits up to `rotate_timeout` for that file, unlinks it as soon as it is open, folds
//! identical lines, emits the window's [`Profile`]s (profiler `"pyperf"`) and then
//! the window's [`Watermark`].
//!
//! What can go wrong, and what happens (gprofiler-facts.md §3, journey §3.3, §4.5):
//! - the rotation times out: PyPerf is terminated and restarted, a `TimedOut`
//!   [`Diagnostic`] is emitted and the window is still closed (possibly empty);
//! - PyPerf exits by itself: whatever it wrote since the last rotation is delivered
//!   with the current window, a [`Diagnostic`] carries its stderr tail, and it is
//!   restarted with `backoff`. A stderr holding "Failed to iterate over ELF symbols"
//!   and "(deleted)" (a target maps a deleted library: containers, Bazel) is normal
//!   on busy hosts: logged at INFO at most once per [`LOG_INTERVAL`], never louder;
//!   other exits are WARN, rate-limited the same way. "Setup new python failed" and
//!   the per-dump statistics lines are DEBUG;
//! - `binary` is unset or does not exist: one INFO line, the source finishes at once.
//!
//! PyPerf is only signalled once its output file exists: like gProfiler, the source
//! takes the file as the sign that PyPerf has installed its SIGUSR2 handler (until
//! then SIGUSR2 would kill it). On shutdown, or after `max_windows`, the source
//! rotates once more to deliver the window in progress, stops PyPerf, removes its
//! scratch files and sends `Watermark::FINISHED`.

use std::future::Future;
use std::io::{self, BufReader};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustc_hash::FxHashMap;
use serde::Deserialize;

use crate::buffer::Output;
use crate::component::{
    BuildError, ComponentContext, ComponentError, FieldError, SourceConfig, SourceContext, Task,
};
use crate::event::{Diagnostic, Event, Labels, Profile, RunEnd, Stack, Watermark, Window};
use crate::formats::line;
use crate::formats::pyperf::PyPerfReader;
use crate::process::{
    Backoff, Child, ExitOutcome, ExitReport, Restarter, Signal, SignalError, SpawnError, Spec,
};
use crate::units::DurationStr;
use crate::window_clock::{Tick, WindowClock};

/// The highest sampling frequency PyPerf is run at (gProfiler's `MAX_FREQUENCY`).
pub const MAX_FREQUENCY: u32 = 1000;
/// Most stacks in one emitted event.
pub const EMIT_BATCH: usize = 10_000;
/// At most one INFO/WARN line per kind of PyPerf trouble per interval.
pub const LOG_INTERVAL: Duration = Duration::from_secs(60);
/// The name of PyPerf's live output file in the scratch directory.
const OUTPUT_NAME: &str = "pyperf.col";
/// How often the scratch directory is checked for the rotated file.
const ROTATE_POLL: Duration = Duration::from_millis(20);
/// The `profiler` label of everything this source emits.
const PROFILER: &str = "pyperf";

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PyPerfSourceConfig {
    /// Path to the PyPerf executable (a bare name is looked up in `PATH`). Required:
    /// when unset or missing the source logs one INFO line and finishes.
    pub binary: Option<PathBuf>,
    /// Sampling frequency in Hz (`-F`); values above 1000 are capped at 1000.
    pub frequency: u32,
    /// Length of a window; windows line up with every other live source's.
    pub window: DurationStr,
    /// Stop after this many windows (the first one may be partial). Unset: run until
    /// shutdown.
    pub max_windows: Option<u64>,
    /// Extra arguments appended to PyPerf's command line, e.g.
    /// `["--fs-offset", "24", "--stack-offset", "32", "--insert-dso-name"]`.
    pub extra_args: Vec<String>,
    /// `--events-buffer-pages`: perf ring-buffer pages per CPU.
    pub events_buffer_pages: u32,
    /// `--symbols-map-size`: entries of PyPerf's BPF symbols map.
    pub symbols_map_size: u32,
    /// How long to wait for PyPerf to rename its output after SIGUSR2 before it is
    /// considered hung and restarted.
    pub rotate_timeout: DurationStr,
    /// Delays between restarts of PyPerf after it exits or hangs.
    pub backoff: Backoff,
}

impl Default for PyPerfSourceConfig {
    fn default() -> Self {
        PyPerfSourceConfig {
            binary: None,
            frequency: 11,
            window: DurationStr::from_secs(60),
            max_windows: None,
            extra_args: Vec::new(),
            events_buffer_pages: 256,
            symbols_map_size: 131_072,
            rotate_timeout: DurationStr::from_secs(5),
            backoff: Backoff::default(),
        }
    }
}

impl PyPerfSourceConfig {
    /// PyPerf's command line for output file `output`.
    pub fn spec(&self, binary: &Path, output: &Path) -> Spec {
        Spec::new(binary)
            .label(PROFILER)
            .arg("--output")
            .arg(output)
            .arg("-F")
            .arg(self.frequency.min(MAX_FREQUENCY).to_string())
            .arg("--events-buffer-pages")
            .arg(self.events_buffer_pages.to_string())
            .arg("--symbols-map-size")
            .arg(self.symbols_map_size.to_string())
            .args(&self.extra_args)
    }
}

impl SourceConfig for PyPerfSourceConfig {
    fn outputs(&self) -> crate::event::DataTypes {
        crate::event::DataTypes::PROFILE.with(crate::event::DataTypes::DIAGNOSTIC)
    }

    fn override_windows(&mut self, window: Option<std::time::Duration>, max_windows: Option<u64>) {
        crate::window_clock::override_fields(
            &mut self.window,
            &mut self.max_windows,
            window,
            max_windows,
        );
    }

    fn validate(&self) -> Vec<FieldError> {
        let mut e = Vec::new();
        if self
            .binary
            .as_ref()
            .is_some_and(|b| b.as_os_str().is_empty())
        {
            e.push(FieldError::new(&["binary"], "binary must not be empty"));
        }
        if self.frequency == 0 {
            e.push(FieldError::new(
                &["frequency"],
                "frequency must be at least 1",
            ));
        }
        if self.window.get() < Duration::from_secs(1) {
            e.push(FieldError::new(&["window"], "window must be at least 1s"));
        }
        if self.max_windows == Some(0) {
            e.push(FieldError::new(
                &["max_windows"],
                "max_windows must be at least 1",
            ));
        }
        if self.rotate_timeout.get().is_zero() {
            e.push(FieldError::new(
                &["rotate_timeout"],
                "rotate_timeout must be positive",
            ));
        }
        if self.events_buffer_pages == 0 {
            e.push(FieldError::new(
                &["events_buffer_pages"],
                "events_buffer_pages must be at least 1",
            ));
        }
        if self.symbols_map_size == 0 {
            e.push(FieldError::new(
                &["symbols_map_size"],
                "symbols_map_size must be at least 1",
            ));
        }
        if let Err(msg) = self.backoff.validate() {
            e.push(FieldError::new(&["backoff"], msg));
        }
        e
    }

    fn build(&self, cx: SourceContext) -> Result<Task, BuildError> {
        let SourceContext { cx, out } = cx;
        let labels = Labels {
            extra: Default::default(),
            host: cx.host.clone(),
            source: cx.id.clone(),
            profiler: PROFILER.into(),
        };
        let config = self.clone();
        Ok(Box::pin(async move {
            let mut out = out;
            let finished = Event::Watermark(Watermark {
                source: cx.id.clone(),
                complete_until_ms: Watermark::FINISHED,
            });
            let Some(binary) = usable_binary(&config, &cx) else {
                let _ = out.send(finished).await;
                return Ok(());
            };
            if config.frequency > MAX_FREQUENCY {
                tracing::info!(
                    source = %cx.id,
                    frequency = config.frequency,
                    "PyPerf frequency capped at {MAX_FREQUENCY} Hz"
                );
            }
            let dir = cx.scratch_dir()?;
            let mut runner = Runner::new(config, binary, cx, out, labels, dir);
            let result = runner.run().await;
            runner.stop().await;
            match result {
                Ok(()) => {
                    let _ = runner.out.send(finished).await;
                    Ok(())
                }
                Err(Stop::Downstream) => Ok(()),
                Err(Stop::Failed(e)) => Err(e),
            }
        }))
    }
}

/// The binary to run, or None (after one INFO line) when the source is off.
fn usable_binary(config: &PyPerfSourceConfig, cx: &ComponentContext) -> Option<PathBuf> {
    let Some(binary) = config.binary.clone() else {
        tracing::info!(
            source = %cx.id,
            "pyperf source disabled: no `binary` configured (PyPerf is not bundled)"
        );
        return None;
    };
    // A bare name is found through PATH at spawn time; a path can be checked now.
    let is_path = binary.components().count() > 1;
    if is_path && std::fs::metadata(&binary).is_err() {
        tracing::info!(
            source = %cx.id,
            binary = %binary.display(),
            "pyperf source disabled: PyPerf binary not found"
        );
        return None;
    }
    Some(binary)
}

/// Why the run loop stopped early.
enum Stop {
    /// Every downstream component is gone.
    Downstream,
    /// A local failure (scratch directory unusable).
    Failed(ComponentError),
}

impl From<io::Error> for Stop {
    fn from(e: io::Error) -> Self {
        Stop::Failed(ComponentError::Io(e))
    }
}

type Starting = Pin<Box<dyn Future<Output = (Restarter, Result<Child, SpawnError>)> + Send>>;

/// Kinds of trouble that are logged at most once per [`LOG_INTERVAL`] each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Trouble {
    DeletedLibrary,
    Exited,
    RotateTimeout,
    SpawnFailed,
}

/// One log line per kind per interval; the number held back is reported with the
/// next line.
#[derive(Default)]
struct Throttle {
    last: Vec<(Trouble, Instant, u64)>,
}

impl Throttle {
    /// Returns `Some(suppressed)` when a line may be logged now.
    fn allow(&mut self, kind: Trouble) -> Option<u64> {
        let now = Instant::now();
        match self.last.iter_mut().find(|(k, _, _)| *k == kind) {
            Some((_, at, held)) if now.duration_since(*at) < LOG_INTERVAL => {
                *held += 1;
                None
            }
            Some((_, at, held)) => {
                *at = now;
                Some(std::mem::take(held))
            }
            None => {
                self.last.push((kind, now, 0));
                Some(0)
            }
        }
    }
}

struct Runner {
    config: PyPerfSourceConfig,
    binary: PathBuf,
    cx: ComponentContext,
    out: Output,
    labels: Labels,
    dir: PathBuf,
    output_path: PathBuf,
    child: Option<Child>,
    /// None while a start is in flight (the future owns it).
    restarter: Option<Restarter>,
    starting: Option<Starting>,
    /// Kept across windows so malformed lines are warned about once per kind.
    reader: Option<PyPerfReader>,
    throttle: Throttle,
    /// False once the first spawn failed with NotFound: the source finishes.
    enabled: bool,
}

impl Runner {
    fn new(
        config: PyPerfSourceConfig,
        binary: PathBuf,
        cx: ComponentContext,
        out: Output,
        labels: Labels,
        dir: PathBuf,
    ) -> Runner {
        let restarter = Restarter::new(&cx.supervisor, &config.backoff);
        Runner {
            output_path: dir.join(OUTPUT_NAME),
            config,
            binary,
            cx,
            out,
            labels,
            dir,
            child: None,
            restarter: Some(restarter),
            starting: None,
            reader: Some(PyPerfReader::new()),
            throttle: Throttle::default(),
            enabled: true,
        }
    }

    async fn run(&mut self) -> Result<(), Stop> {
        // Outputs of an earlier agent belong to no window of this one.
        remove_outputs(&self.dir);
        let mut clock = WindowClock::new(
            self.cx.origin_ms,
            self.config.window.get(),
            self.config.max_windows,
        );
        let mut shutdown = self.cx.shutdown.clone();
        self.begin_start();
        while let Some(window) = clock.current() {
            tokio::select! {
                tick = clock.tick(&mut shutdown) => match tick {
                    None => break,
                    Some(Tick::Ended(w)) => self.end_window(w).await?,
                    Some(Tick::Shutdown(w)) => {
                        self.end_window(w).await?;
                        break;
                    }
                },
                report = exited(&mut self.child), if self.child.is_some() => {
                    self.child = None;
                    self.on_exit(report, window).await?;
                    self.begin_start();
                }
                (restarter, result) = starting(&mut self.starting), if self.starting.is_some() => {
                    self.starting = None;
                    self.restarter = Some(restarter);
                    self.on_started(result, window).await?;
                    if !self.enabled {
                        break;
                    }
                }
            }
        }
        Ok(())
    }

    /// Starts PyPerf (after the backoff delay, except the first time) unless it is
    /// running or already starting.
    fn begin_start(&mut self) {
        if self.child.is_some() || self.starting.is_some() {
            return;
        }
        let Some(mut restarter) = self.restarter.take() else {
            return;
        };
        let spec = self.config.spec(&self.binary, &self.output_path);
        self.starting = Some(Box::pin(async move {
            let result = restarter.start(spec).await;
            (restarter, result)
        }));
    }

    async fn on_started(
        &mut self,
        result: Result<Child, SpawnError>,
        window: Window,
    ) -> Result<(), Stop> {
        let first = self.restarter.as_ref().is_some_and(|r| r.starts() <= 1);
        match result {
            Ok(child) => {
                tracing::debug!(source = %self.cx.id, pid = child.pid(), "PyPerf started");
                self.child = Some(child);
            }
            Err(SpawnError::ShuttingDown) => self.enabled = false,
            Err(SpawnError::NotFound { program }) if first => {
                tracing::info!(
                    source = %self.cx.id,
                    %program,
                    "pyperf source disabled: PyPerf binary not found"
                );
                self.enabled = false;
            }
            Err(e) => {
                if let Some(suppressed) = self.throttle.allow(Trouble::SpawnFailed) {
                    tracing::warn!(source = %self.cx.id, error = %e, suppressed, "cannot start PyPerf; retrying with backoff");
                }
                self.diagnostic(window, RunEnd::SpawnFailed(e.to_string()), String::new())
                    .await?;
                self.begin_start();
            }
        }
        Ok(())
    }

    /// PyPerf ended while it should be running: deliver what it wrote, report why.
    async fn on_exit(&mut self, report: ExitReport, window: Window) -> Result<(), Stop> {
        if let Some(r) = self.restarter.as_mut() {
            r.exited(&report);
        }
        self.deliver(window, true).await?;
        self.report_exit(&report, window).await
    }

    async fn report_exit(&mut self, report: &ExitReport, window: Window) -> Result<(), Stop> {
        let stderr = &report.stderr_tail;
        for line in stderr.lines().filter(|l| !l.trim().is_empty()) {
            // "Setup new python failed", per-dump statistics ("N samples collected"),
            // and everything else PyPerf says: details, not news.
            tracing::debug!(source = %self.cx.id, pid = report.pid, "PyPerf: {line}");
        }
        let end = match report.outcome {
            ExitOutcome::Cancelled => return Ok(()),
            ExitOutcome::Exited(code) => RunEnd::Exited(code),
            ExitOutcome::Signaled(sig) => RunEnd::Signaled(sig),
            ExitOutcome::TimedOut => RunEnd::TimedOut,
            ExitOutcome::Unknown => RunEnd::Exited(-1),
        };
        let detail = stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        if is_deleted_library_error(stderr) {
            if let Some(suppressed) = self.throttle.allow(Trouble::DeletedLibrary) {
                tracing::info!(
                    source = %self.cx.id,
                    suppressed,
                    detail,
                    "PyPerf stopped on a process that maps deleted libraries (common with \
                     containers and Bazel); restarting it"
                );
            }
        } else if let Some(suppressed) = self.throttle.allow(Trouble::Exited) {
            tracing::warn!(
                source = %self.cx.id,
                outcome = %report.outcome,
                suppressed,
                detail,
                "PyPerf exited unexpectedly; restarting it"
            );
        }
        self.diagnostic(window, end, stderr.clone()).await
    }

    /// Closes window `w`: rotate PyPerf's output, emit its stacks, then the watermark.
    async fn end_window(&mut self, w: Window) -> Result<(), Stop> {
        if let Some(child) = self.child.as_mut() {
            if !self.output_path.exists() {
                // PyPerf has not opened its output yet (it is still loading its BPF
                // program): signalling it now would kill it.
                tracing::debug!(source = %self.cx.id, "PyPerf not ready; window is empty");
            } else {
                match rotate(child, &self.dir, self.config.rotate_timeout.get()).await {
                    Rotation::Done => self.deliver(w, false).await?,
                    Rotation::Exited(report) => {
                        self.child = None;
                        self.on_exit(report, w).await?;
                        self.begin_start();
                    }
                    Rotation::TimedOut => self.rotate_timed_out(w).await?,
                }
            }
        } else {
            // PyPerf is down (backing off): anything left over belongs here.
            self.deliver(w, true).await?;
        }
        self.send(Event::Watermark(Watermark {
            source: self.cx.id.clone(),
            complete_until_ms: w.end_ms,
        }))
        .await
    }

    /// PyPerf did not rotate in time: stop it, keep what it wrote, restart it.
    async fn rotate_timed_out(&mut self, w: Window) -> Result<(), Stop> {
        if let Some(suppressed) = self.throttle.allow(Trouble::RotateTimeout) {
            tracing::warn!(
                source = %self.cx.id,
                timeout = %self.config.rotate_timeout,
                suppressed,
                "PyPerf did not rotate its output in time; restarting it"
            );
        }
        let stderr = match self.child.take() {
            Some(child) => {
                let report = child.terminate().await;
                if let Some(r) = self.restarter.as_mut() {
                    r.exited(&report);
                }
                report.stderr_tail
            }
            None => String::new(),
        };
        self.deliver(w, true).await?;
        self.diagnostic(w, RunEnd::TimedOut, stderr).await?;
        self.begin_start();
        Ok(())
    }

    /// Reads, deletes and emits every rotated output (and the live one too when
    /// `with_live`, i.e. PyPerf is not running) as stacks of window `w`.
    async fn deliver(&mut self, w: Window, with_live: bool) -> Result<(), Stop> {
        let files = outputs(&self.dir, with_live)?;
        if files.is_empty() {
            return Ok(());
        }
        let reader = self.reader.take().unwrap_or_default();
        let before = reader.stats().clone();
        let (stacks, reader) = tokio::task::spawn_blocking(move || read_outputs(&files, reader))
            .await
            .map_err(|e| Stop::Failed(ComponentError::Other(format!("reader task: {e}"))))?;
        reader.stats().report_since(&before, &self.cx.metrics);
        self.reader = Some(reader);
        let mut stacks = stacks.into_iter().peekable();
        while stacks.peek().is_some() {
            let batch: Vec<Stack> = stacks.by_ref().take(EMIT_BATCH).collect();
            self.send(Event::Profile(Profile {
                finalizers: Default::default(),
                window: w,
                labels: self.labels.clone(),
                stacks: batch,
            }))
            .await?;
        }
        Ok(())
    }

    async fn diagnostic(
        &mut self,
        window: Window,
        end: RunEnd,
        stderr: String,
    ) -> Result<(), Stop> {
        self.send(Event::Diagnostic(Diagnostic {
            reason: None,
            finalizers: Default::default(),
            window,
            labels: self.labels.clone(),
            pid: 0,
            comm: None,
            end,
            stderr: Arc::from(stderr),
            target_alive: None,
        }))
        .await
    }

    async fn send(&mut self, ev: Event) -> Result<(), Stop> {
        self.out.send(ev).await.map_err(|_| Stop::Downstream)
    }

    /// Stops PyPerf (or its pending start) and removes what is left in the scratch
    /// directory.
    async fn stop(&mut self) {
        self.starting = None; // a child forked meanwhile is terminated and reaped
        if let Some(child) = self.child.take() {
            let report = child.terminate().await;
            tracing::debug!(
                source = %self.cx.id,
                pid = report.pid,
                outcome = %report.outcome,
                "PyPerf stopped"
            );
        }
        remove_outputs(&self.dir);
    }
}

/// What became of a SIGUSR2.
enum Rotation {
    /// The rotated file is there.
    Done,
    /// PyPerf ended instead.
    Exited(ExitReport),
    /// Nothing happened within the timeout.
    TimedOut,
}

async fn rotate(child: &mut Child, dir: &Path, timeout: Duration) -> Rotation {
    // A rotated file left from before (a rename that came after a timeout) is not
    // the answer to this signal.
    let before = outputs(dir, false).unwrap_or_default();
    match child.signal(Signal::SIGUSR2) {
        Ok(()) => {}
        Err(SignalError::Exited { .. }) => return Rotation::Exited(child.exited().await),
        Err(e) => {
            tracing::debug!(error = %e, "cannot signal PyPerf");
            return Rotation::TimedOut;
        }
    }
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if matches!(outputs(dir, false), Ok(f) if f.iter().any(|p| !before.contains(p))) {
            return Rotation::Done;
        }
        if tokio::time::Instant::now() >= deadline {
            return Rotation::TimedOut;
        }
        tokio::select! {
            _ = tokio::time::sleep(ROTATE_POLL) => {}
            report = child.exited() => return Rotation::Exited(report),
        }
    }
}

async fn exited(child: &mut Option<Child>) -> ExitReport {
    match child {
        Some(c) => c.exited().await,
        None => std::future::pending().await,
    }
}

async fn starting(s: &mut Option<Starting>) -> (Restarter, Result<Child, SpawnError>) {
    match s {
        Some(f) => f.as_mut().await,
        None => std::future::pending().await,
    }
}

/// gProfiler's `_is_elf_symbol_error`: PyPerf hit a target that maps a deleted library.
pub fn is_deleted_library_error(stderr: &str) -> bool {
    stderr.contains("Failed to iterate over ELF symbols") && stderr.contains("(deleted)")
}

/// PyPerf's output files in `dir`, oldest first: the rotated `pyperf.col.<stamp>`
/// ones, plus the live `pyperf.col` when `with_live`.
fn outputs(dir: &Path, with_live: bool) -> io::Result<Vec<PathBuf>> {
    let rotated_prefix = format!("{OUTPUT_NAME}.");
    let mut files = Vec::new();
    let mut live = None;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.starts_with(&rotated_prefix) {
            files.push(entry.path());
        } else if with_live && name == OUTPUT_NAME {
            live = Some(entry.path());
        }
    }
    files.sort();
    files.extend(live);
    Ok(files)
}

/// Deletes every PyPerf output in `dir`.
fn remove_outputs(dir: &Path) {
    for f in outputs(dir, true).unwrap_or_default() {
        if let Err(e) = std::fs::remove_file(&f) {
            tracing::debug!(file = %f.display(), error = %e, "cannot remove PyPerf output");
        }
    }
}

/// Opens each file, unlinks it at once, and folds its lines: identical (pid, frames)
/// are summed (PyPerf writes one line per sample). Stacks come out sorted.
fn read_outputs(files: &[PathBuf], mut reader: PyPerfReader) -> (Vec<Stack>, PyPerfReader) {
    let mut folded: FxHashMap<(u32, Box<str>), u64> = FxHashMap::default();
    for path in files {
        let file = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) => {
                tracing::debug!(file = %path.display(), error = %e, "cannot open PyPerf output");
                continue;
            }
        };
        if let Err(e) = std::fs::remove_file(path) {
            tracing::debug!(file = %path.display(), error = %e, "cannot remove PyPerf output");
        }
        let result = line::read_stacks(BufReader::new(file), &mut reader, |s| {
            *folded.entry((s.pid, s.frames)).or_insert(0) += s.count;
        });
        if let Err(e) = result {
            tracing::debug!(file = %path.display(), error = %e, "error reading PyPerf output");
        }
    }
    let mut stacks: Vec<Stack> = folded
        .into_iter()
        .map(|((pid, frames), count)| Stack {
            pid,
            container: None,
            frames,
            count,
        })
        .collect();
    stacks.sort_by(|a, b| a.pid.cmp(&b.pid).then_with(|| a.frames.cmp(&b.frames)));
    (stacks, reader)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/pyperf")
            .join(name)
    }

    #[test]
    fn reads_folds_and_deletes_outputs() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("pyperf.col.2024010100000000");
        let b = dir.path().join("pyperf.col");
        std::fs::copy(fixture("mixed.col"), &a).unwrap();
        std::fs::write(
            &b,
            "python3-1234/1240;<module>_[p];main_[p];compute_[p];_PyObject_Call_[pn] 1\nbad line\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("other"), "x").unwrap();
        assert_eq!(outputs(dir.path(), false).unwrap(), vec![a.clone()]);
        let files = outputs(dir.path(), true).unwrap();
        assert_eq!(files, vec![a.clone(), b.clone()]);
        let (stacks, reader) = read_outputs(&files, PyPerfReader::new());
        assert!(!a.exists() && !b.exists());
        assert!(dir.path().join("other").exists());
        assert_eq!(reader.stats().bad_lines, 1);
        let got: Vec<(u32, &str, u64)> = stacks
            .iter()
            .map(|s| (s.pid, &*s.frames, s.count))
            .collect();
        assert_eq!(
            got,
            vec![
                (5, "gunicorn: worker;<module>_[p];[Error (errnos) 14]_[pe]", 1),
                (5, "gunicorn: worker;[Sample Error ERROR_THREAD_STATE_NULL]_[pe]", 1),
                (77, "my-app-worker;[Lost Symbol]_[pe]", 1),
                (77, "my-app-worker;run_[p];(missing)_[pe]", 1),
                (1234, "python3;<module>_[p];main_[p];compute_[p];_PyObject_Call_[pn]", 2),
                (
                    1234,
                    "python3;<module>_[p];main_[p];handle_[p];PyEval_EvalFrameDefault_[pn];do_syscall_64_[k];__x64_sys_read_[k]",
                    2
                ),
                (1234, "python3;<module>_[p];worker_[p];[Truncated]_[pe]", 1),
            ]
        );
    }

    #[test]
    fn command_line_follows_gprofiler() {
        let c = PyPerfSourceConfig {
            frequency: 5000,
            extra_args: vec!["--fs-offset".into(), "24".into()],
            ..Default::default()
        };
        let spec = c.spec(Path::new("/opt/PyPerf"), Path::new("/s/pyperf.col"));
        assert_eq!(spec.get_label(), "pyperf");
        let args: Vec<String> = spec
            .args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            args,
            [
                "--output",
                "/s/pyperf.col",
                "-F",
                "1000",
                "--events-buffer-pages",
                "256",
                "--symbols-map-size",
                "131072",
                "--fs-offset",
                "24"
            ]
        );
    }

    #[test]
    fn recognises_deleted_library_errors() {
        assert!(is_deleted_library_error(
            "x\nFailed to iterate over ELF symbols: /tmp/libfoo.so (deleted)\n"
        ));
        assert!(!is_deleted_library_error(
            "Failed to iterate over ELF symbols: /usr/lib/libfoo.so"
        ));
        assert!(!is_deleted_library_error("Setup new python failed"));
    }

    #[test]
    fn validation_and_defaults() {
        let c: PyPerfSourceConfig = toml::from_str("binary = \"/x/PyPerf\"").unwrap();
        assert_eq!(c.frequency, 11);
        assert_eq!(c.rotate_timeout.get(), Duration::from_secs(5));
        assert!(c.validate().is_empty());
        assert!(toml::from_str::<PyPerfSourceConfig>("binry = \"x\"").is_err());
        let bad = PyPerfSourceConfig {
            frequency: 0,
            window: DurationStr(Duration::from_millis(10)),
            rotate_timeout: DurationStr(Duration::ZERO),
            ..Default::default()
        };
        let fields: Vec<String> = bad
            .validate()
            .into_iter()
            .map(|e| e.path[0].clone())
            .collect();
        assert_eq!(fields, ["frequency", "window", "rotate_timeout"]);
    }

    #[test]
    fn throttle_allows_one_line_per_interval_per_kind() {
        let mut t = Throttle::default();
        assert_eq!(t.allow(Trouble::DeletedLibrary), Some(0));
        assert_eq!(t.allow(Trouble::DeletedLibrary), None);
        assert_eq!(t.allow(Trouble::Exited), Some(0));
        assert_eq!(t.allow(Trouble::DeletedLibrary), None);
    }
}
