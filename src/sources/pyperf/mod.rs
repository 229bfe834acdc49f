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

mod config;
mod constants;
mod output;
mod run;
mod source;
#[cfg(test)]
mod tests;

pub use config::PyPerfSourceConfig;
pub use constants::{EMIT_BATCH, LOG_INTERVAL, MAX_FREQUENCY};
pub use output::is_deleted_library_error;
