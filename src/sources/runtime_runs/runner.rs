//! One profiler run against one process: spawn, wait, read the output file, and
//! turn what happened into a profile and, when it did not simply succeed, a
//! diagnostic.

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::component::ComponentContext;
use crate::event::{Diagnostic, Event, Labels, Profile, RunEnd, Stack, Window};
use crate::formats::line::FormatStats;
use crate::process::{ExitOutcome, SpawnError, Spec, Supervisor};
use crate::sources::live::emitter;
use crate::telemetry::ComponentMetrics;

use super::profiler::{RuntimeProfiler, EXTRA_DEADLINE};
use super::target::{target_alive, Target};

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

    /// The profiler's name, for logs.
    pub fn profiler_name(&self) -> &'static str {
        self.profiler.name()
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
            stacks: stacks.into(),
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
        let (pid, metrics) = (target.pid, self.metrics.clone());
        let read = tokio::task::spawn_blocking(move || {
            let result = std::fs::File::open(&path).and_then(|f| {
                let mut reader = io::BufReader::with_capacity(64 * 1024, f);
                let (mut stacks, stats) = profiler.read_output(&mut reader, &comm)?;
                profiler.finish(pid, &mut stacks, &metrics);
                Ok((stacks, stats))
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
pub fn sanitize_comm(comm: &str) -> String {
    comm.replace([';', '\n', '\r'], "_")
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
}
