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

mod runner;
mod target;
mod windows;

use std::ffi::OsString;
use std::io::{self, BufRead};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::live::binary::{self, Search};
use crate::component::{at_least_one, FieldError};
use crate::event::Stack;
use crate::formats::line::FormatStats;
use crate::process::{DiscoveryConfig, Runtime};

pub use runner::{decorate_frames, RunResult, Runner};
pub use target::{target_alive, Target};
pub use windows::drive;

/// Added to a run's duration to get its deadline (gProfiler: duration + 10 s).
pub const EXTRA_DEADLINE: Duration = Duration::from_secs(10);
/// Windows whose runs may be in progress at once.
pub const MAX_WINDOWS_IN_FLIGHT: usize = 2;
/// Where profpipe's helper scripts install profilers, relative to `$HOME`; searched
/// after `PATH`.
pub use super::live::binary::TOOLS_DIR;

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
