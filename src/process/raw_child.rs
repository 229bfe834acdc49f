//! A child just forked, before its reaper task owns it: what the spawner thread
//! hands back and `child::start` takes over.

use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::reap::ChildProc;
use super::slot::LiveSlot;

/// A started child that nobody waits for yet. If it is dropped before being reaped
/// (its spawn call was cancelled, or its reaper task died with the runtime), it is
/// terminated and reaped on a short-lived thread of its own.
pub(crate) struct RawChild {
    pub(crate) proc: Arc<ChildProc>,
    pub(crate) pidfd: Option<OwnedFd>,
    pub(crate) stdin: Option<OwnedFd>,
    pub(crate) stdout: Option<OwnedFd>,
    pub(crate) stderr: Option<OwnedFd>,
    pub(crate) started: Instant,
    pub(crate) grace: Duration,
    pub(crate) slot: Option<LiveSlot>,
}

impl Drop for RawChild {
    fn drop(&mut self) {
        if self.proc.is_reaped() {
            return;
        }
        // Close our pipe ends first: the child must not block writing to them.
        self.stdin = None;
        self.stdout = None;
        self.stderr = None;
        self.pidfd = None;
        let proc = self.proc.clone();
        let grace = self.grace;
        let slot = self.slot.take();
        tracing::debug!(
            pid = proc.pid(),
            "child handle lost; terminating it synchronously"
        );
        let reaper = std::thread::Builder::new()
            .name("profpipe-reap".into())
            .spawn(move || {
                proc.terminate_blocking(grace);
                drop(slot);
            });
        if reaper.is_err() {
            self.proc.signal_group(nix::sys::signal::Signal::SIGKILL);
            self.proc.reap();
        }
    }
}
