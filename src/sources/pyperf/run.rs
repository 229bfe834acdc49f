//! The `pyperf` source's task: one PyPerf under the supervisor, rotated with
//! SIGUSR2 at the end of every window, restarted with backoff when it dies or hangs.

use std::collections::HashSet;
use std::io;
use std::path::PathBuf;

use super::config::PyPerfSourceConfig;
use super::constants::{EMIT_BATCH, LOG_INTERVAL, MAX_FREQUENCY, OUTPUT_NAME, PROFILER};
use super::output::is_deleted_library_error;
use super::output::{outputs, read_outputs, remove_outputs};
use crate::buffer::OutputClosed;
use crate::component::{ComponentContext, ComponentError, SourceContext};
use crate::event::{RunEnd, Watermark, Window};
use crate::formats::pyperf::PyPerfReader;
use crate::process::python_versions::{Limits, PythonVersions};
use crate::process::{ExitOutcome, ExitReport, SignalError, SpawnError};
use crate::sources::live::binary::{self, Search};
use crate::sources::live::emitter::Emitter;
use crate::sources::live::rotating::{
    wait_for_rotated, Change, RotatingChild, Signalled, StartFailed, Waited,
};
use crate::telemetry::RateLimited;
use crate::window_clock::{Tick, WindowClock};

/// Runs the source until its windows are done, shutdown, or downstream is gone.
pub(super) async fn run(
    config: PyPerfSourceConfig,
    cx: SourceContext,
) -> Result<(), ComponentError> {
    let SourceContext { cx, out } = cx;
    let mut em = Emitter::new(out, &cx, PROFILER);
    let Some(binary) = usable_binary(&config, &cx) else {
        let _ = em.watermark(Watermark::FINISHED).await;
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
    let mut runner = Runner::new(config, binary, cx, em, dir);
    let result = runner.run().await;
    runner.stop().await;
    match result {
        Ok(()) => {
            let _ = runner.em.watermark(Watermark::FINISHED).await;
            Ok(())
        }
        Err(Stop::Downstream) => Ok(()),
        Err(Stop::Failed(e)) => Err(e),
    }
}

/// The binary to run, or None (after one INFO line) when the source is off.
fn usable_binary(config: &PyPerfSourceConfig, cx: &ComponentContext) -> Option<PathBuf> {
    let Some(binary) = config.binary.as_deref() else {
        tracing::info!(
            source = %cx.id,
            "pyperf source disabled: no `binary` configured (PyPerf is not bundled)"
        );
        return None;
    };
    let found = binary::find(binary, Search::Path);
    if found.is_none() {
        binary::log_missing(
            &cx.id,
            &binary.display(),
            format_args!("pyperf source disabled: PyPerf binary not found"),
        );
    }
    found
}

/// Why the run loop stopped early.
enum Stop {
    /// Every downstream component is gone.
    Downstream,
    /// A local failure (scratch directory unusable).
    Failed(ComponentError),
}

impl From<OutputClosed> for Stop {
    fn from(_: OutputClosed) -> Self {
        Stop::Downstream
    }
}

impl From<io::Error> for Stop {
    fn from(e: io::Error) -> Self {
        Stop::Failed(ComponentError::Io(e))
    }
}

/// Kinds of trouble that are logged at most once per [`LOG_INTERVAL`] each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum Trouble {
    DeletedLibrary,
    Exited,
    RotateTimeout,
    SpawnFailed,
}

struct Runner {
    config: PyPerfSourceConfig,
    cx: ComponentContext,
    em: Emitter,
    dir: PathBuf,
    output_path: PathBuf,
    /// PyPerf, or its start in flight.
    pyperf: RotatingChild,
    /// Kept across windows so malformed lines are warned about once per kind.
    reader: Option<PyPerfReader>,
    throttle: RateLimited<Trouble>,
    /// False once the first spawn failed with NotFound: the source finishes.
    enabled: bool,
    /// Python version tags, when `python_versions` is on.
    versions: Option<PythonVersions>,
}

impl Runner {
    fn new(
        config: PyPerfSourceConfig,
        binary: PathBuf,
        cx: ComponentContext,
        em: Emitter,
        dir: PathBuf,
    ) -> Runner {
        let output_path = dir.join(OUTPUT_NAME);
        let spec = config.spec(&binary, &output_path);
        let pyperf = RotatingChild::new(&cx.supervisor, &config.backoff, spec);
        let versions = config
            .python_versions
            .then(|| PythonVersions::new(Limits::default()));
        Runner {
            output_path,
            pyperf,
            config,
            cx,
            em,
            dir,
            reader: Some(PyPerfReader::new()),
            throttle: RateLimited::new(LOG_INTERVAL),
            enabled: true,
            versions,
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
                change = self.pyperf.next_change() => match change {
                    Change::Exited(report) => {
                        self.on_exit(report, window).await?;
                        self.begin_start();
                    }
                    Change::Started(result) => {
                        self.on_started(result, window).await?;
                        if !self.enabled {
                            break;
                        }
                    }
                },
            }
        }
        Ok(())
    }

    /// Starts PyPerf (after the backoff delay, except the first time) unless it is
    /// running or already starting.
    fn begin_start(&mut self) {
        self.pyperf.begin_start();
    }

    async fn on_started(
        &mut self,
        result: Result<u32, StartFailed>,
        window: Window,
    ) -> Result<(), Stop> {
        let (e, first) = match result {
            Ok(pid) => {
                tracing::debug!(source = %self.cx.id, pid, "PyPerf started");
                return Ok(());
            }
            Err(StartFailed { error, first }) => (error, first),
        };
        match e {
            SpawnError::ShuttingDown => self.enabled = false,
            SpawnError::NotFound { program } if first => {
                tracing::info!(
                    source = %self.cx.id,
                    %program,
                    "pyperf source disabled: PyPerf binary not found"
                );
                self.enabled = false;
            }
            e => {
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

    /// PyPerf ended while it should be running (the backoff already knows): deliver
    /// what it wrote, report why.
    async fn on_exit(&mut self, report: ExitReport, window: Window) -> Result<(), Stop> {
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
        if self.pyperf.is_running() {
            match self.rotate().await {
                Rotation::NotReady => {
                    // PyPerf has not opened its output yet (it is still loading its
                    // BPF program): signalling it now would kill it.
                    tracing::debug!(source = %self.cx.id, "PyPerf not ready; window is empty");
                }
                Rotation::Done => self.deliver(w, false).await?,
                Rotation::Exited(report) => {
                    self.pyperf.take();
                    self.pyperf.ended(&report);
                    self.on_exit(report, w).await?;
                    self.begin_start();
                }
                Rotation::TimedOut => self.rotate_timed_out(w).await?,
            }
        } else {
            // PyPerf is down (backing off): anything left over belongs here.
            self.deliver(w, true).await?;
        }
        Ok(self.em.watermark(w.end_ms).await?)
    }

    /// Sends SIGUSR2 and waits up to `rotate_timeout` for the rotated file.
    async fn rotate(&mut self) -> Rotation {
        // A rotated file left from before (a rename that came after a timeout) is not
        // the answer to this signal.
        let before: HashSet<PathBuf> = outputs(&self.dir, false)
            .unwrap_or_default()
            .into_iter()
            .collect();
        match self.pyperf.rotate(&self.output_path) {
            Signalled::Sent => {}
            Signalled::NotReady => return Rotation::NotReady,
            Signalled::NotRunning => return Rotation::TimedOut,
            Signalled::Failed(SignalError::Exited { .. }) => {
                return match self.pyperf.child_mut() {
                    Some(child) => Rotation::Exited(child.exited().await),
                    None => Rotation::TimedOut,
                };
            }
            Signalled::Failed(e) => {
                tracing::debug!(error = %e, "cannot signal PyPerf");
                return Rotation::TimedOut;
            }
        }
        let dir = &self.dir;
        let rotated = || outputs(dir, false).unwrap_or_default();
        let timeout = self.config.rotate_timeout.get();
        match wait_for_rotated(rotated, &before, timeout, self.pyperf.child_mut()).await {
            Waited::Rotated => Rotation::Done,
            Waited::TimedOut => Rotation::TimedOut,
            Waited::Exited(report) => Rotation::Exited(report),
        }
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
        let stderr = match self.pyperf.take() {
            Some(child) => {
                let report = child.terminate().await;
                self.pyperf.ended(&report);
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
        let versions = self.versions.clone();
        let (stacks, reader) = tokio::task::spawn_blocking(move || {
            let (mut stacks, reader) = read_outputs(&files, reader);
            if let Some(v) = versions {
                // Stacks come sorted by pid: tag each process's run of them.
                for run in stacks.chunk_by_mut(|a, b| a.pid == b.pid) {
                    if run[0].pid != 0 {
                        v.tag_stacks(run[0].pid, run);
                    }
                }
            }
            (stacks, reader)
        })
        .await
        .map_err(|e| Stop::Failed(ComponentError::Other(format!("reader task: {e}"))))?;
        reader.stats().report_since(&before, &self.cx.metrics);
        if let Some(v) = &self.versions {
            self.cx
                .metrics
                .cache_evictions("python_versions", v.new_evictions());
        }
        self.reader = Some(reader);
        Ok(self.em.profiles(w, stacks, EMIT_BATCH).await?)
    }

    async fn diagnostic(
        &mut self,
        window: Window,
        end: RunEnd,
        stderr: String,
    ) -> Result<(), Stop> {
        Ok(self.em.diagnostic(window, end, stderr).await?)
    }

    /// Stops PyPerf (or its pending start) and removes what is left in the scratch
    /// directory.
    async fn stop(&mut self) {
        self.pyperf.cancel_start(); // a child forked meanwhile is terminated and reaped
        if let Some(child) = self.pyperf.take() {
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
    /// PyPerf has not opened its output yet; it was not signalled.
    NotReady,
    /// The rotated file is there.
    Done,
    /// PyPerf ended instead.
    Exited(ExitReport),
    /// Nothing happened within the timeout.
    TimedOut,
}
