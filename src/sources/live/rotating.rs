//! A long-running profiler child whose output file is rotated with SIGUSR2 at the
//! end of every window (`perf record --switch-output=signal`, PyPerf).
//!
//! [`RotatingChild`] holds the child, or its start in flight: it starts it under
//! the supervisor, restarts it with backoff after it ends (a long run resets the
//! backoff), signals it to rotate once it is ready, and [`wait_for_rotated`] waits
//! for the renamed file. What to do when the child dies, hangs or grows (perf's
//! RSS/age/size restarts, PyPerf's deleted-library restarts) stays with each
//! source.
//!
//! ```text
//! begin_start ─► started() ─► running ─► exited() / take()+ended() ─► begin_start ...
//!                (backoff before every start but the first)
//! ```

use std::collections::HashSet;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::Duration;

use tokio::time::Instant;

use crate::process::{
    Backoff, Child, ExitReport, Restarter, Signal, SignalError, SpawnError, Spec, Supervisor,
};

/// How often the scratch directory is checked for the rotated file.
pub const ROTATE_POLL: Duration = Duration::from_millis(20);

/// A start in progress: the backoff wait, then the spawn. It owns the restarter
/// meanwhile and hands it back.
type Starting = Pin<Box<dyn Future<Output = (Restarter, Result<Child, SpawnError>)> + Send>>;

/// A start that failed.
#[derive(Debug)]
pub struct StartFailed {
    pub error: SpawnError,
    /// It was the very first start (not a restart).
    pub first: bool,
}

/// What [`RotatingChild::next_change`] saw.
#[derive(Debug)]
pub enum Change {
    /// A start ended: the child runs (its pid), or it failed.
    Started(Result<u32, StartFailed>),
    /// The running child ended by itself.
    Exited(ExitReport),
}

/// What became of a request to rotate.
#[derive(Debug)]
pub enum Signalled {
    /// SIGUSR2 was sent.
    Sent,
    /// No child is running (it is starting, or backing off).
    NotRunning,
    /// The child has not created its live output file yet: until then it has not
    /// installed its SIGUSR2 handler, and the signal would kill it.
    NotReady,
    /// Signalling failed (the child has just exited, or the signal was refused).
    Failed(SignalError),
}

/// The child, or its start in flight, with its backoff.
pub struct RotatingChild {
    spec: Spec,
    child: Option<Child>,
    started_at: Option<Instant>,
    /// Lent to `starting` while a start (and its backoff wait) is in progress.
    restarter: Option<Restarter>,
    starting: Option<Starting>,
}

impl RotatingChild {
    /// Nothing runs until [`begin_start`](Self::begin_start).
    pub fn new(supervisor: &Supervisor, backoff: &Backoff, spec: Spec) -> RotatingChild {
        RotatingChild {
            spec,
            child: None,
            started_at: None,
            restarter: Some(Restarter::new(supervisor, backoff)),
            starting: None,
        }
    }

    /// The running child, if any.
    pub fn child(&self) -> Option<&Child> {
        self.child.as_ref()
    }

    /// The running child, if any, to wait on.
    pub fn child_mut(&mut self) -> Option<&mut Child> {
        self.child.as_mut()
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    pub fn is_starting(&self) -> bool {
        self.starting.is_some()
    }

    /// How long the running child has run.
    pub fn age(&self) -> Option<Duration> {
        self.started_at.map(|t| t.elapsed())
    }

    /// Starts the child (after the backoff delay, except the first time) unless it
    /// is running or already starting.
    pub fn begin_start(&mut self) {
        if self.child.is_some() || self.starting.is_some() {
            return;
        }
        let Some(mut restarter) = self.restarter.take() else {
            return;
        };
        let spec = self.spec.clone();
        self.starting = Some(Box::pin(async move {
            let result = restarter.start(spec).await;
            (restarter, result)
        }));
    }

    /// Resolves when the start in flight ends; never when there is none. On success
    /// the child is running and its pid is returned. Cancel-safe (for `select!`).
    pub async fn started(&mut self) -> Result<u32, StartFailed> {
        let (restarter, result) = match &mut self.starting {
            Some(f) => f.as_mut().await,
            None => std::future::pending().await,
        };
        self.starting = None;
        let first = restarter.starts() <= 1;
        self.restarter = Some(restarter);
        match result {
            Ok(child) => {
                let pid = child.pid();
                self.child = Some(child);
                self.started_at = Some(Instant::now());
                Ok(pid)
            }
            Err(error) => Err(StartFailed { error, first }),
        }
    }

    /// Resolves when the running child ends by itself; never when none runs. The
    /// backoff learns how long it ran. Cancel-safe (for `select!`).
    pub async fn exited(&mut self) -> ExitReport {
        let report = match &mut self.child {
            Some(c) => c.exited().await,
            None => std::future::pending().await,
        };
        self.child = None;
        self.started_at = None;
        self.ended(&report);
        report
    }

    /// Resolves when the start in flight ends or the running child ends, whichever
    /// there is (never both: a start is only begun when no child runs); never when
    /// there is neither. Cancel-safe (for `select!`).
    pub async fn next_change(&mut self) -> Change {
        if self.starting.is_some() {
            Change::Started(self.started().await)
        } else {
            Change::Exited(self.exited().await)
        }
    }

    /// Takes the running child out, to stop or reap it the source's way; pass its
    /// report to [`ended`](Self::ended).
    pub fn take(&mut self) -> Option<Child> {
        self.started_at = None;
        self.child.take()
    }

    /// Records how a child taken out ended: a long run resets the backoff.
    pub fn ended(&mut self, report: &ExitReport) {
        if let Some(r) = self.restarter.as_mut() {
            r.exited(report);
        }
    }

    /// Drops a start in progress: this cancels its backoff wait, or terminates and
    /// reaps a child it already forked.
    pub fn cancel_start(&mut self) {
        self.starting = None;
    }

    /// Sends SIGUSR2 to the running child once its live output file `live` exists.
    pub fn rotate(&self, live: &Path) -> Signalled {
        let Some(child) = &self.child else {
            return Signalled::NotRunning;
        };
        if !live.exists() {
            return Signalled::NotReady;
        }
        match child.signal(Signal::SIGUSR2) {
            Ok(()) => Signalled::Sent,
            Err(e) => Signalled::Failed(e),
        }
    }
}

/// What [`wait_for_rotated`] saw.
#[derive(Debug)]
pub enum Waited {
    /// A rotated file not there before appeared.
    Rotated,
    /// Nothing within the timeout.
    TimedOut,
    /// The child ended meanwhile.
    Exited(ExitReport),
}

/// Polls `rotated()` every [`ROTATE_POLL`] until it lists a file not in `before`,
/// for at most `timeout`; with `child`, stops early when it ends.
pub async fn wait_for_rotated(
    rotated: impl Fn() -> Vec<PathBuf>,
    before: &HashSet<PathBuf>,
    timeout: Duration,
    mut child: Option<&mut Child>,
) -> Waited {
    let deadline = Instant::now() + timeout;
    loop {
        if rotated().iter().any(|p| !before.contains(p)) {
            return Waited::Rotated;
        }
        if Instant::now() >= deadline {
            return Waited::TimedOut;
        }
        match child.as_deref_mut() {
            Some(c) => tokio::select! {
                _ = tokio::time::sleep(ROTATE_POLL) => {}
                report = c.exited() => return Waited::Exited(report),
            },
            None => tokio::time::sleep(ROTATE_POLL).await,
        }
    }
}
