//! The long-running `perf record`, owned by one task.
//!
//! The task holds the [`Child`] and does three things, each at once when needed,
//! independently of the source's window loop (which may be blocked sending on a full
//! pipeline):
//! - rotates perf's data file when asked ([`RecorderHandle::rotate`]);
//! - once a second, checks that perf is alive and small: a perf that died is
//!   reported (a [`Failure`]) and restarted with backoff; a perf whose RSS passed
//!   `restart_rss`, whose age passed `restart_after` or whose live data file passed
//!   `max_data_bytes` is stopped (it writes its last rotated file) and started again;
//! - stops perf when asked ([`RecorderHandle::stop`]) or when the handle is dropped.
//!
//! perf is stopped with SIGINT, which makes it finish and rename its data file; the
//! supervisor's SIGTERM/SIGKILL follows if it does not exit within [`STOP_GRACE`].
//! While rotated files waiting for `perf script` already hold `max_data_bytes` (the
//! pipeline is stalled), a stopped perf is not started again: disk use stays bounded.

use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::event::RunEnd;
use crate::process::{
    Backoff, Child, ExitOutcome, ExitReport, Signal, SpawnError, Spec, Supervisor,
};
use crate::sources::live::rotating::{RotatingChild, Signalled, StartFailed};

use super::events::run_end;
use super::rotation;

/// How long perf gets to finish its file after SIGINT before it is terminated.
pub const STOP_GRACE: Duration = Duration::from_secs(5);
/// How often perf's liveness, RSS, age and data file size are checked.
const CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// A `perf record` that ended without being asked to.
#[derive(Debug)]
pub struct Failure {
    pub end: RunEnd,
    pub stderr: String,
}

/// What the recorder needs to run perf.
pub struct Settings {
    pub supervisor: Supervisor,
    pub spec: Spec,
    pub scratch: PathBuf,
    pub restart_rss: u64,
    pub restart_after: Duration,
    pub max_data_bytes: u64,
    pub backoff: Backoff,
}

enum Command {
    Rotate(oneshot::Sender<bool>),
    Stop(oneshot::Sender<()>),
}

/// The source's side of the recorder task.
pub struct RecorderHandle {
    tx: mpsc::Sender<Command>,
    /// Runs of perf that ended by themselves, to report as diagnostics.
    pub failures: mpsc::Receiver<Failure>,
}

impl RecorderHandle {
    /// Starts perf (at once) and the task that watches it.
    pub fn start(settings: Settings) -> RecorderHandle {
        let (tx, rx) = mpsc::channel(4);
        let (ftx, frx) = mpsc::channel(32);
        let perf = RotatingChild::new(
            &settings.supervisor,
            &settings.backoff,
            settings.spec.clone(),
        );
        let rec = Recorder {
            settings,
            perf,
            failures: ftx,
            paused: false,
        };
        tokio::spawn(rec.run(rx));
        RecorderHandle { tx, failures: frx }
    }

    /// Asks perf to rotate its data file. False when no perf is recording now
    /// (it died and waits for its restart, or it has not opened its file yet).
    pub async fn rotate(&self) -> bool {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Command::Rotate(tx)).await.is_err() {
            return false;
        }
        rx.await.unwrap_or(false)
    }

    /// Stops perf (it writes its last rotated file) and waits until it is reaped.
    pub async fn stop(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Command::Stop(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

struct Recorder {
    settings: Settings,
    /// perf record, or its start in flight.
    perf: RotatingChild,
    failures: mpsc::Sender<Failure>,
    /// A start is held back because rotated files fill the data budget.
    paused: bool,
}

impl Recorder {
    async fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        self.begin_start();
        let mut check = tokio::time::interval(CHECK_INTERVAL);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                cmd = rx.recv() => match cmd {
                    Some(Command::Rotate(reply)) => {
                        let _ = reply.send(self.rotate());
                    }
                    Some(Command::Stop(reply)) => {
                        self.stop().await;
                        let _ = reply.send(());
                        return;
                    }
                    None => {
                        self.stop().await;
                        return;
                    }
                },
                result = self.perf.started() => self.started(result),
                _ = check.tick() => self.check().await,
            }
        }
    }

    fn rotate(&self) -> bool {
        // perf creates its output file after installing its SIGUSR2 handler: before
        // that, SIGUSR2 would kill it (`rotate` checks).
        let live = self.settings.scratch.join(rotation::LIVE);
        matches!(self.perf.rotate(&live), Signalled::Sent)
    }

    /// Starts perf, after the restarter's backoff if this is a restart.
    fn begin_start(&mut self) {
        if self.perf.is_starting() || self.perf.is_running() {
            return;
        }
        let s = &self.settings;
        let pending = rotation::pending_bytes(&s.scratch);
        if pending >= s.max_data_bytes {
            if !self.paused {
                tracing::info!(
                    pending_bytes = pending,
                    "perf paused: rotated data files waiting for perf script fill max_data_bytes"
                );
                self.paused = true;
            }
            return;
        }
        self.paused = false;
        rotation::clean_unfinished(&s.scratch);
        self.perf.begin_start();
    }

    fn started(&mut self, result: Result<u32, StartFailed>) {
        match result {
            Ok(pid) => tracing::debug!(pid, "perf record started"),
            Err(StartFailed {
                error: SpawnError::ShuttingDown,
                ..
            }) => {}
            Err(StartFailed { error: e, .. }) => {
                tracing::info!(error = %e, "cannot start perf record; retrying with backoff");
                self.report(Failure {
                    end: RunEnd::SpawnFailed(e.to_string()),
                    stderr: e.to_string(),
                });
                self.begin_start();
            }
        }
    }

    async fn check(&mut self) {
        let Some(child) = self.perf.child() else {
            // Not running: either starting, or paused on the data budget.
            self.begin_start();
            return;
        };
        if child.has_exited() {
            let Some(child) = self.perf.take() else {
                return;
            };
            let report = child.wait().await;
            tracing::info!(
                pid = report.pid,
                outcome = %report.outcome,
                ran_ms = report.runtime.as_millis() as u64,
                "perf record ended; restarting it with backoff"
            );
            self.report(Failure {
                end: run_end(report.outcome),
                // The summary goes last: classify logs the last line.
                stderr: format!(
                    "{}\nperf record {}",
                    report.stderr_tail.trim_end(),
                    describe(report.outcome)
                ),
            });
            self.perf.ended(&report);
            self.begin_start();
            return;
        }
        let s = &self.settings;
        let rss = rss_bytes(child.pid()).unwrap_or(0);
        let age = self.perf.age().unwrap_or_default();
        let data = rotation::live_bytes(&s.scratch);
        let reason = if rss > s.restart_rss {
            Some("rss")
        } else if age >= s.restart_after {
            Some("age")
        } else if data > s.max_data_bytes {
            Some("data_size")
        } else {
            None
        };
        if let Some(reason) = reason {
            tracing::info!(
                reason,
                rss_bytes = rss,
                age_s = age.as_secs(),
                data_bytes = data,
                "restarting perf record"
            );
            if let Some(child) = self.perf.take() {
                let report = stop_child(child).await;
                self.perf.ended(&report);
            }
            self.begin_start();
        }
    }

    async fn stop(&mut self) {
        // Dropping a start in progress cancels its backoff wait, or terminates and
        // reaps a child it already forked.
        self.perf.cancel_start();
        if let Some(child) = self.perf.take() {
            let report = stop_child(child).await;
            tracing::debug!(outcome = %report.outcome, "perf record stopped");
        }
    }

    fn report(&self, f: Failure) {
        if self.failures.try_send(f).is_err() {
            tracing::debug!("perf failure not reported: too many pending");
        }
    }
}

/// SIGINT (perf finishes and renames its data file), then terminate if it is still
/// running after [`STOP_GRACE`].
async fn stop_child(child: Child) -> ExitReport {
    let _ = child.signal(Signal::SIGINT);
    let until = Instant::now() + STOP_GRACE;
    while !child.has_exited() && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.terminate().await
}

/// "died with SIGKILL" / "exited with code 1", as the classify transform reads it.
pub(super) fn describe(outcome: ExitOutcome) -> String {
    match outcome {
        ExitOutcome::Signaled(sig) => match Signal::try_from(sig) {
            Ok(s) => format!("died with {}", s.as_str()),
            Err(_) => format!("died with signal {sig}"),
        },
        other => other.to_string(),
    }
}

/// Resident memory of a process, from `VmRSS` in `/proc/<pid>/status`.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_rss() {
        let rss = rss_bytes(std::process::id()).unwrap();
        assert!(rss > 1024 * 1024, "{rss}");
    }

    #[test]
    fn describes_crashes_as_classify_expects() {
        assert_eq!(describe(ExitOutcome::Signaled(9)), "died with SIGKILL");
        assert_eq!(describe(ExitOutcome::Signaled(11)), "died with SIGSEGV");
        assert_eq!(describe(ExitOutcome::Exited(1)), "exited with code 1");
    }
}
