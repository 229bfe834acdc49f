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
//!
//! [`WindowClock`]: crate::window_clock::WindowClock
//! [`Discovery`]: crate::process::Discovery
//! [`Profile`]: crate::event::Profile
//! [`Diagnostic`]: crate::event::Diagnostic

mod profiler;
mod runner;
mod target;
mod windows;

pub use profiler::{
    resolve_binary, validate, Mode, RunSettings, RuntimeProfiler, EXTRA_DEADLINE,
    MAX_WINDOWS_IN_FLIGHT, TOOLS_DIR,
};
pub use runner::{decorate_frames, sanitize_comm, RunResult, Runner};
pub use target::{target_alive, Target};
pub use windows::drive;
