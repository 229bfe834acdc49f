//! A running child: the caller's handle ([`Child`]) and the reaper task behind it.
//!
//! The reaper task owns the child from spawn to reap, independently of what the
//! caller does: it collects the bounded stderr tail, enforces the deadline (SIGTERM
//! to the group, SIGKILL after the grace), reacts to cancellation (the handle was
//! dropped, [`Child::terminate`], or supervisor shutdown) the same way, reaps the
//! child, kills what is left of its process group, closes every pipe and only then
//! reports. So when [`Child::wait`] returns, the child is reaped and no descriptor
//! of it is open in the agent; a caller that forgets the handle still gets the
//! child terminated and reaped.

use std::fmt;
use std::future::Future;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::unix::pipe;
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

use super::metrics::ProcessMetrics;
use super::raw_child::RawChild;
use super::reap::{ChildProc, ExitWatch, RawStatus};
use super::stderr_tail::StderrTail;

/// The read end of a piped stdout.
pub type ChildStdout = pipe::Receiver;
/// The write end of a piped stdin.
pub type ChildStdin = pipe::Sender;

/// Bytes read from stderr per read call.
const STDERR_CHUNK: usize = 16 * 1024;
/// After the child is reaped (and its group killed), how long to keep reading
/// stderr: only a process that escaped the group could still hold it open.
const STDERR_DRAIN: Duration = Duration::from_millis(250);

/// How a child ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitOutcome {
    /// It exited by itself with this code.
    Exited(i32),
    /// A signal it did not ask for killed it (e.g. SIGSEGV).
    Signaled(i32),
    /// Its deadline passed and the supervisor terminated it.
    TimedOut,
    /// It was terminated because its handle was dropped, [`Child::terminate`] was
    /// called, or the supervisor shut down.
    Cancelled,
    /// Something else in the agent reaped it (SIGCHLD ignored, or a stray
    /// `waitpid(-1)`): the status is lost. Should never happen.
    Unknown,
}

impl ExitOutcome {
    /// Exited by itself with code 0.
    pub fn success(&self) -> bool {
        matches!(self, ExitOutcome::Exited(0))
    }

    /// The `reason` label of `process_children_exits_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            ExitOutcome::Exited(0) => "exited_ok",
            ExitOutcome::Exited(_) | ExitOutcome::Unknown => "exited_error",
            ExitOutcome::Signaled(_) => "signal",
            ExitOutcome::TimedOut => "timeout",
            ExitOutcome::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for ExitOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitOutcome::Exited(code) => write!(f, "exited with code {code}"),
            ExitOutcome::Signaled(sig) => match Signal::try_from(*sig) {
                Ok(s) => write!(f, "killed by {}", s.as_str()),
                Err(_) => write!(f, "killed by signal {sig}"),
            },
            ExitOutcome::TimedOut => f.write_str("terminated at its deadline"),
            ExitOutcome::Cancelled => f.write_str("cancelled"),
            ExitOutcome::Unknown => f.write_str("exit status lost"),
        }
    }
}

/// What is known about a child once it is reaped.
#[derive(Clone, Debug)]
pub struct ExitReport {
    pub pid: u32,
    pub outcome: ExitOutcome,
    /// The last bytes of its stderr (the supervisor's `stderr_tail`, 64 KiB by
    /// default), invalid UTF-8 replaced.
    pub stderr_tail: String,
    /// Everything it wrote to stderr, in bytes.
    pub stderr_bytes: u64,
    /// From spawn to reap.
    pub runtime: Duration,
}

/// Failure to signal a child.
#[derive(Debug, thiserror::Error)]
pub enum SignalError {
    #[error("process {pid} has already exited")]
    Exited { pid: u32 },
    #[error("cannot signal process {pid}: {errno}")]
    Os { pid: u32, errno: nix::errno::Errno },
}

/// A running child. Dropping it cancels the child: SIGTERM to its group, SIGKILL
/// after the grace, reaped in the background.
#[derive(Debug)]
pub struct Child {
    pid: u32,
    program: String,
    proc: Arc<ChildProc>,
    stdin: Option<ChildStdin>,
    stdout: Option<ChildStdout>,
    cancel: Option<oneshot::Sender<()>>,
    report: oneshot::Receiver<ExitReport>,
}

impl Child {
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The metrics label of the child's program.
    pub fn program(&self) -> &str {
        &self.program
    }

    /// The piped stdout (`Stdout::Piped`), to read as it is written. It is borrowed
    /// from the handle, so it cannot outlive the child's handle.
    pub fn stdout(&mut self) -> Option<&mut ChildStdout> {
        self.stdout.as_mut()
    }

    /// The piped stdin ([`Spec::stdin_piped`](super::Spec::stdin_piped)), taken once:
    /// the caller owns it, and dropping it closes the child's stdin.
    pub fn take_stdin(&mut self) -> Option<ChildStdin> {
        self.stdin.take()
    }

    /// The piped stdout, taken once, for a reader of its own (a task that outlives
    /// a `select!` loop); the caller must then read it to its end.
    pub fn take_stdout(&mut self) -> Option<ChildStdout> {
        self.stdout.take()
    }

    /// Sends `sig` to the child process itself (e.g. SIGUSR2 to make PyPerf or perf
    /// rotate its output, SIGINT to make perf finish). Never reaches another process:
    /// once the child is reaped this fails with [`SignalError::Exited`].
    pub fn signal(&self, sig: Signal) -> Result<(), SignalError> {
        self.proc.signal(sig).map_err(|errno| match errno {
            nix::errno::Errno::ESRCH => SignalError::Exited { pid: self.pid },
            errno => SignalError::Os {
                pid: self.pid,
                errno,
            },
        })
    }

    /// True once the child has ended and been reaped (its [`ExitReport`] is then
    /// ready moments later: [`wait`](Self::wait) returns promptly). Lets a caller that keeps the
    /// handle to signal it (perf rotation) notice that it died, without polling the
    /// pid, which could be reused.
    pub fn has_exited(&self) -> bool {
        self.proc.is_reaped()
    }

    /// Waits until the child has ended and is reaped (its deadline, if any, is
    /// enforced meanwhile). Stdout the caller did not read is discarded, so a child
    /// never blocks on a full pipe. When this returns, every descriptor of the child
    /// is closed.
    pub async fn wait(self) -> ExitReport {
        // The same loop, with a cancel that never comes.
        self.wait_or_terminate(std::future::pending()).await
    }

    /// Like [`wait`](Self::wait), but if `cancel` completes first the child is
    /// terminated as by [`terminate`](Self::terminate) and then waited for. For
    /// callers that must know the child is gone before they touch its output file.
    pub async fn wait_or_terminate(mut self, cancel: impl Future<Output = ()>) -> ExitReport {
        tokio::pin!(cancel);
        let mut stdout = self.stdout.take();
        let mut sink = vec![0u8; if stdout.is_some() { 8192 } else { 0 }];
        loop {
            tokio::select! {
                report = &mut self.report => {
                    return report.unwrap_or_else(|_| lost_report(self.pid));
                }
                n = read_some(&mut stdout, &mut sink), if stdout.is_some() => {
                    if n.is_none() {
                        stdout = None;
                    }
                }
                _ = &mut cancel, if self.cancel.is_some() => {
                    if let Some(cancel) = self.cancel.take() {
                        let _ = cancel.send(());
                    }
                }
            }
        }
    }

    /// Waits until the child has ended, keeping the handle: for a long-running child
    /// that is signalled (e.g. SIGUSR2 to rotate) while its exit is watched in a
    /// `select!` loop. Cancel-safe. Stdout is not read here (use `Stdout::Null` or
    /// `Stdout::File`, or read the pipe yourself). Once it has returned, later calls
    /// (and [`wait`](Self::wait)) return at once with an empty `Cancelled` report.
    pub async fn exited(&mut self) -> ExitReport {
        let report = (&mut self.report)
            .await
            .unwrap_or_else(|_| lost_report(self.pid));
        // A completed oneshot receiver must not be polled again: swap in a closed one.
        let (_, closed) = oneshot::channel();
        self.report = closed;
        report
    }

    /// Terminates the child (SIGTERM to its group, SIGKILL after the grace) and
    /// waits for it. The outcome is `Cancelled` unless it had already ended.
    pub async fn terminate(mut self) -> ExitReport {
        if let Some(cancel) = self.cancel.take() {
            let _ = cancel.send(());
        }
        self.wait().await
    }
}

/// The report of a child whose reaper task is gone (the runtime is shutting down; the
/// child is then terminated and reaped synchronously).
fn lost_report(pid: u32) -> ExitReport {
    ExitReport {
        pid,
        outcome: ExitOutcome::Cancelled,
        stderr_tail: String::new(),
        stderr_bytes: 0,
        runtime: Duration::ZERO,
    }
}

/// Reads one chunk; `None` at EOF or on error.
async fn read_some<R: AsyncRead + Unpin>(r: &mut Option<R>, buf: &mut [u8]) -> Option<usize> {
    match r.as_mut()?.read(buf).await {
        Ok(0) | Err(_) => None,
        Ok(n) => Some(n),
    }
}

fn receiver(fd: Option<OwnedFd>, pid: u32, what: &str) -> Option<pipe::Receiver> {
    match pipe::Receiver::from_owned_fd(fd?) {
        Ok(rx) => Some(rx),
        Err(e) => {
            tracing::warn!(pid, error = %e, "cannot read the child's {what}");
            None
        }
    }
}

/// Everything the reaper task needs besides the child.
pub(crate) struct ReaperContext {
    pub(crate) label: String,
    pub(crate) deadline: Option<Duration>,
    pub(crate) tail_bytes: usize,
    pub(crate) shutdown: watch::Receiver<bool>,
    pub(crate) metrics: Arc<ProcessMetrics>,
}

/// Starts the reaper task of a freshly spawned child and returns its handle. Must be
/// called inside the runtime.
pub(crate) fn start(mut raw: RawChild, cx: ReaperContext) -> Child {
    let pid = raw.proc.pid();
    let stdin = raw
        .stdin
        .take()
        .and_then(|fd| match pipe::Sender::from_owned_fd(fd) {
            Ok(tx) => Some(tx),
            Err(e) => {
                tracing::warn!(pid, error = %e, "cannot write the child's stdin");
                None
            }
        });
    let stdout = receiver(raw.stdout.take(), pid, "stdout");
    let stderr = receiver(raw.stderr.take(), pid, "stderr");
    let (cancel_tx, cancel_rx) = oneshot::channel();
    let (report_tx, report_rx) = oneshot::channel();
    let child = Child {
        pid,
        program: cx.label.clone(),
        proc: raw.proc.clone(),
        stdin,
        stdout,
        cancel: Some(cancel_tx),
        report: report_rx,
    };
    tokio::spawn(reap_task(raw, stderr, cx, cancel_rx, report_tx));
    child
}

#[derive(Clone, Copy, Debug)]
enum Ending {
    TimedOut,
    Cancelled,
}

async fn reap_task(
    mut raw: RawChild,
    mut stderr: Option<pipe::Receiver>,
    mut cx: ReaperContext,
    mut cancel: oneshot::Receiver<()>,
    report: oneshot::Sender<ExitReport>,
) {
    let proc = raw.proc.clone();
    let pid = proc.pid();
    let started = Instant::from_std(raw.started);
    let far = started + Duration::from_secs(86400 * 365);
    let deadline = cx.deadline.map(|d| started + d);
    let mut watch = ExitWatch::new(raw.pidfd.take());
    let mut tail = StderrTail::new(cx.tail_bytes);
    let mut buf = vec![0u8; STDERR_CHUNK];
    let mut ending: Option<Ending> = None;
    let mut kill_at: Option<Instant> = None;

    let end = |why: Ending, kill_at: &mut Option<Instant>| {
        match why {
            Ending::TimedOut => {
                tracing::info!(pid, program = %cx.label, "child passed its deadline; terminating it")
            }
            Ending::Cancelled => tracing::debug!(pid, program = %cx.label, "cancelling child"),
        }
        proc.signal_group(Signal::SIGTERM);
        *kill_at = Some(Instant::now() + raw.grace);
        Some(why)
    };

    loop {
        tokio::select! {
            _ = watch.exited(&proc) => break,
            n = read_some(&mut stderr, &mut buf), if stderr.is_some() => match n {
                Some(n) => tail.push(&buf[..n]),
                None => stderr = None,
            },
            _ = tokio::time::sleep_until(deadline.unwrap_or(far)), if ending.is_none() && deadline.is_some() => {
                ending = end(Ending::TimedOut, &mut kill_at);
            }
            _ = &mut cancel, if ending.is_none() => {
                ending = end(Ending::Cancelled, &mut kill_at);
            }
            _ = shutdown_fired(&mut cx.shutdown), if ending.is_none() => {
                ending = end(Ending::Cancelled, &mut kill_at);
            }
            _ = tokio::time::sleep_until(kill_at.unwrap_or(far)), if kill_at.is_some() => {
                tracing::info!(pid, program = %cx.label, "child ignored SIGTERM; killing its process group");
                proc.signal_group(Signal::SIGKILL);
                kill_at = None;
            }
        }
    }

    // The child is a zombie now: kill the rest of its group, then reap it.
    let status = proc.reap();
    if stderr.is_some() {
        let drain = async {
            while let Some(n) = read_some(&mut stderr, &mut buf).await {
                tail.push(&buf[..n]);
            }
        };
        let _ = tokio::time::timeout(STDERR_DRAIN, drain).await;
    }
    drop(stderr);
    drop(watch);
    let runtime = raw.started.elapsed();
    // Releases the child's slot under the cap and the `alive` count.
    drop(raw);

    let outcome = match (ending, status) {
        (Some(Ending::TimedOut), _) => ExitOutcome::TimedOut,
        (Some(Ending::Cancelled), _) => ExitOutcome::Cancelled,
        (None, RawStatus::Exited(code)) => ExitOutcome::Exited(code),
        (None, RawStatus::Signaled(sig)) => ExitOutcome::Signaled(sig),
        (None, RawStatus::Unknown) => ExitOutcome::Unknown,
    };
    cx.metrics
        .exits
        .get_or_create(&ProcessMetrics::reason(&cx.label, outcome.reason()))
        .inc();
    tracing::debug!(
        pid,
        program = %cx.label,
        %outcome,
        runtime_ms = runtime.as_millis() as u64,
        stderr_bytes = tail.total_bytes(),
        "child reaped"
    );
    let _ = report.send(ExitReport {
        pid,
        outcome,
        stderr_bytes: tail.total_bytes(),
        stderr_tail: tail.into_string(),
        runtime,
    });
}

/// Resolves when the supervisor's shutdown flag is (or becomes) true.
async fn shutdown_fired(rx: &mut watch::Receiver<bool>) {
    loop {
        if *rx.borrow_and_update() {
            return;
        }
        if rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}
