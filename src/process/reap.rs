//! The low level of one child: noticing its exit, signalling it and its process
//! group, and reaping it, without ever signalling a PID that may have been reused.
//!
//! The rule that makes signalling safe: a child's PID (which is also its process
//! group id) stays ours until we reap it, even after it exits, because an unreaped
//! zombie keeps the PID allocated. So:
//! - every signal goes through [`ChildProc`], under a lock that also guards reaping,
//!   and is refused once the child is reaped;
//! - the exit is first observed with `WNOWAIT` (the child stays a zombie), then the
//!   rest of its group is SIGKILLed (nothing may outlive the child), then it is reaped.
//!
//! Exit notification uses a pidfd (Linux 5.3+) registered with the runtime; on older
//! kernels it falls back to SIGCHLD plus a periodic check.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::{getpgid, Pid};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::signal::unix::{signal, SignalKind};

/// How a child ended, as the kernel reported it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RawStatus {
    Exited(i32),
    Signaled(i32),
    /// Reaped by someone else (SIGCHLD set to SIG_IGN, or a `waitpid(-1)` elsewhere
    /// in the process): the status is lost.
    Unknown,
}

/// One child process, shared by its reaper task and its handle.
#[derive(Debug)]
pub(crate) struct ChildProc {
    pid: Pid,
    /// `Some` once reaped; from then on the PID is not ours and is never signalled.
    reaped: Mutex<Option<RawStatus>>,
}

impl ChildProc {
    pub(crate) fn new(pid: u32) -> ChildProc {
        ChildProc {
            pid: Pid::from_raw(pid as i32),
            reaped: Mutex::new(None),
        }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.pid.as_raw() as u32
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<RawStatus>> {
        // A poisoned lock only means a panic elsewhere; the state itself is valid.
        self.reaped.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn is_reaped(&self) -> bool {
        self.lock().is_some()
    }

    /// Sends `sig` to the child itself (not its group). `ESRCH` once reaped.
    pub(crate) fn signal(&self, sig: Signal) -> nix::Result<()> {
        let reaped = self.lock();
        if reaped.is_some() {
            return Err(Errno::ESRCH);
        }
        kill(self.pid, sig)
    }

    /// Sends `sig` to the child's process group, and to the child directly if it
    /// has moved to another group. Does nothing once reaped.
    pub(crate) fn signal_group(&self, sig: Signal) {
        let reaped = self.lock();
        if reaped.is_some() {
            return;
        }
        let _ = killpg(self.pid, sig);
        if getpgid(Some(self.pid)) != Ok(self.pid) {
            let _ = kill(self.pid, sig);
        }
    }

    /// The child's status if it has exited, without reaping it.
    pub(crate) fn peek(&self) -> Option<RawStatus> {
        let mut reaped = self.lock();
        if let Some(status) = *reaped {
            return Some(status);
        }
        match waitid(self.pid, libc::WEXITED | libc::WNOHANG | libc::WNOWAIT) {
            Ok(status) => status,
            Err(Errno::ECHILD) => {
                *reaped = Some(RawStatus::Unknown);
                Some(RawStatus::Unknown)
            }
            Err(e) => {
                tracing::debug!(pid = self.pid.as_raw(), error = %e, "waitid failed");
                None
            }
        }
    }

    /// Waits (blocking) until the child has exited, SIGKILLs whatever is left of its
    /// process group, and reaps it. Returns at once when the exit was already seen.
    pub(crate) fn reap(&self) -> RawStatus {
        let mut reaped = self.lock();
        if let Some(status) = *reaped {
            return status;
        }
        let status = match waitid(self.pid, libc::WEXITED | libc::WNOWAIT) {
            Ok(Some(status)) => status,
            Ok(None) | Err(_) => {
                // ECHILD: someone else reaped it and the PID may already be reused.
                *reaped = Some(RawStatus::Unknown);
                return RawStatus::Unknown;
            }
        };
        // The zombie still holds the PID, so the group id cannot have been reused.
        let _ = killpg(self.pid, Signal::SIGKILL);
        let _ = waitid(self.pid, libc::WEXITED);
        *reaped = Some(status);
        status
    }

    /// The synchronous way out, for when no runtime is left to wait on (a reaper task
    /// dropped at runtime shutdown, a spawn whose caller went away): SIGTERM to the
    /// group, up to `grace` for it to exit, SIGKILL, reap. Blocks the calling thread.
    pub(crate) fn terminate_blocking(&self, grace: Duration) -> RawStatus {
        if self.peek().is_none() {
            self.signal_group(Signal::SIGTERM);
            let end = Instant::now() + grace;
            while Instant::now() < end && self.peek().is_none() {
                std::thread::sleep(Duration::from_millis(5));
            }
            self.signal_group(Signal::SIGKILL);
        }
        self.reap()
    }
}

/// `waitid(P_PID, pid, flags)`; `Ok(None)` when `WNOHANG` found the child running.
fn waitid(pid: Pid, flags: libc::c_int) -> Result<Option<RawStatus>, Errno> {
    loop {
        // SAFETY: siginfo_t is plain data; zeroed is a valid value and waitid fills it.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let rc = unsafe { libc::waitid(libc::P_PID, pid.as_raw() as libc::id_t, &mut info, flags) };
        if rc == -1 {
            match Errno::last() {
                Errno::EINTR => continue,
                e => return Err(e),
            }
        }
        // SAFETY: waitid succeeded, so the SIGCHLD fields of the union are set.
        let (si_pid, status) = unsafe { (info.si_pid(), info.si_status()) };
        if si_pid == 0 {
            return Ok(None);
        }
        return Ok(Some(match info.si_code {
            libc::CLD_EXITED => RawStatus::Exited(status),
            libc::CLD_KILLED | libc::CLD_DUMPED => RawStatus::Signaled(status),
            _ => RawStatus::Unknown,
        }));
    }
}

/// `pidfd_open(2)`: a descriptor that becomes readable when the process exits.
/// `None` on kernels older than 5.3.
pub(crate) fn pidfd_open(pid: u32) -> Option<OwnedFd> {
    // SAFETY: a plain syscall; on success it returns a new descriptor we own
    // (opened with O_CLOEXEC by the kernel).
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        tracing::debug!(pid, error = %io::Error::last_os_error(), "pidfd_open unavailable");
        return None;
    }
    Some(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Waits for one child's exit.
pub(crate) enum ExitWatch {
    /// The pidfd, registered with the runtime's reactor.
    PidFd(AsyncFd<OwnedFd>),
    /// Older kernels: wake on any SIGCHLD (and at least every 250 ms) and check.
    Poll(Option<tokio::signal::unix::Signal>),
}

const POLL_FALLBACK: Duration = Duration::from_millis(250);

impl ExitWatch {
    /// Must be called inside a runtime.
    pub(crate) fn new(pidfd: Option<OwnedFd>) -> ExitWatch {
        if let Some(fd) = pidfd {
            // SAFETY: the AsyncFd owns the OwnedFd, which stays open and refers to
            // the same pidfd until the AsyncFd is dropped.
            match unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) } {
                Ok(afd) => return ExitWatch::PidFd(afd),
                Err(e) => tracing::debug!(error = %e, "cannot register pidfd; polling"),
            }
        }
        ExitWatch::sigchld()
    }

    pub(crate) fn sigchld() -> ExitWatch {
        ExitWatch::Poll(signal(SignalKind::child()).ok())
    }

    /// Resolves once the child has exited (it is not reaped: see [`ChildProc::reap`]).
    /// Cancel-safe.
    pub(crate) async fn exited(&mut self, proc: &ChildProc) -> RawStatus {
        loop {
            if let Some(status) = proc.peek() {
                return status;
            }
            match self {
                ExitWatch::PidFd(afd) => match afd.readable().await {
                    Ok(mut guard) => {
                        if let Some(status) = proc.peek() {
                            return status;
                        }
                        guard.clear_ready();
                    }
                    Err(_) => *self = ExitWatch::sigchld(),
                },
                ExitWatch::Poll(sig) => match sig {
                    Some(s) => {
                        tokio::select! {
                            r = s.recv() => if r.is_none() { *sig = None },
                            _ = tokio::time::sleep(POLL_FALLBACK) => {}
                        }
                    }
                    None => tokio::time::sleep(POLL_FALLBACK).await,
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    // The std Child is dropped unwaited on purpose: ChildProc reaps it.
    #[allow(clippy::zombie_processes)]
    fn spawn(cmd: &str) -> ChildProc {
        let child = Command::new("sh").args(["-c", cmd]).spawn().unwrap();
        ChildProc::new(child.id())
    }

    #[tokio::test]
    async fn pidfd_watch_sees_exit_and_reap_reports_status() {
        let proc = spawn("exit 7");
        let mut watch = ExitWatch::new(pidfd_open(proc.pid()));
        assert!(matches!(watch, ExitWatch::PidFd(_)));
        assert_eq!(watch.exited(&proc).await, RawStatus::Exited(7));
        assert!(!proc.is_reaped(), "exit is observed without reaping");
        assert_eq!(proc.reap(), RawStatus::Exited(7));
        assert!(proc.is_reaped());
        assert_eq!(
            proc.signal(Signal::SIGTERM),
            Err(Errno::ESRCH),
            "never signal a reaped pid"
        );
    }

    #[tokio::test]
    async fn sigchld_fallback_sees_exit() {
        let proc = spawn("sleep 0.1; kill -USR1 $$");
        let mut watch = ExitWatch::sigchld();
        let status = tokio::time::timeout(Duration::from_secs(5), watch.exited(&proc))
            .await
            .unwrap();
        assert_eq!(status, RawStatus::Signaled(libc::SIGUSR1));
        assert_eq!(proc.reap(), RawStatus::Signaled(libc::SIGUSR1));
    }

    #[test]
    fn terminate_blocking_kills_a_child_that_ignores_term() {
        let proc = spawn("trap '' TERM; exec sleep 30");
        std::thread::sleep(Duration::from_millis(100));
        let t = Instant::now();
        let status = proc.terminate_blocking(Duration::from_millis(100));
        assert_eq!(status, RawStatus::Signaled(libc::SIGKILL));
        assert!(t.elapsed() < Duration::from_secs(5));
    }
}
