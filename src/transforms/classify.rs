//! `type = "classify"`: turns profiler exit statuses and stderr into reason classes.
//!
//! ```toml
//! [transforms.classify]
//! type = "classify"
//! inputs = ["fold", "python", "ruby"]
//! error_frames = true      # add `comm;[Profiling error: reason] 1` to the profile
//! log_interval = "60s"     # at most one log line per (profiler, reason) per interval
//! ```
//!
//! In a busy fleet most profiler failures are normal: the target exited, it embeds
//! Python, it maps a deleted library. Those are INFO; only what needs a human is
//! louder. Every diagnostic is counted in
//! `profpipe_profiler_errors_total{profiler,reason}`, and repeated log lines are
//! rate-limited (the number suppressed is reported with the next one). Other events
//! pass through unchanged.

use std::time::Duration;

use serde::Deserialize;

use crate::component::{BuildError, FieldError, Task, TransformConfig, TransformContext};
use crate::event::{Diagnostic, Event, EventStatus, RunEnd};
use crate::telemetry::RateLimited;
use crate::units::DurationStr;

/// Why a profiler run did not produce a normal profile.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    ProcessExited,
    NoSuchProcess,
    PermissionDenied,
    EmbeddedPython,
    DeletedLibrary,
    ProfilerCrashed,
    Timeout,
    NoSamples,
    DroppedTraces,
    UnsupportedEvent,
    AttachRefused,
    Unknown,
}

/// How loudly a reason is logged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Info,
    Warn,
}

impl Reason {
    pub const ALL: [Reason; 12] = [
        Reason::ProcessExited,
        Reason::NoSuchProcess,
        Reason::PermissionDenied,
        Reason::EmbeddedPython,
        Reason::DeletedLibrary,
        Reason::ProfilerCrashed,
        Reason::Timeout,
        Reason::NoSamples,
        Reason::DroppedTraces,
        Reason::UnsupportedEvent,
        Reason::AttachRefused,
        Reason::Unknown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::ProcessExited => "process_exited",
            Reason::NoSuchProcess => "no_such_process",
            Reason::PermissionDenied => "permission_denied",
            Reason::EmbeddedPython => "embedded_python",
            Reason::DeletedLibrary => "deleted_library",
            Reason::ProfilerCrashed => "profiler_crashed",
            Reason::Timeout => "timeout",
            Reason::NoSamples => "no_samples",
            Reason::DroppedTraces => "dropped_traces",
            Reason::UnsupportedEvent => "unsupported_event",
            Reason::AttachRefused => "attach_refused",
            Reason::Unknown => "unknown",
        }
    }

    /// What is normal on a busy host is INFO; what may need a human is WARN. Nothing
    /// here is ERROR: a profiler failing never stops the agent.
    pub fn level(self) -> Level {
        match self {
            Reason::ProcessExited
            | Reason::NoSuchProcess
            | Reason::EmbeddedPython
            | Reason::DeletedLibrary
            | Reason::NoSamples
            | Reason::DroppedTraces
            | Reason::AttachRefused => Level::Info,
            Reason::PermissionDenied
            | Reason::ProfilerCrashed
            | Reason::Timeout
            | Reason::UnsupportedEvent
            | Reason::Unknown => Level::Warn,
        }
    }

    /// A sentence for the log.
    pub fn explain(self) -> &'static str {
        match self {
            Reason::ProcessExited => {
                "the target process exited during profiling (normal for short-lived processes)"
            }
            Reason::NoSuchProcess => "the target process no longer exists",
            Reason::PermissionDenied => {
                "permission denied (is the agent root, or is ptrace restricted?)"
            }
            Reason::EmbeddedPython => "the process embeds Python but is not a Python interpreter",
            Reason::DeletedLibrary => {
                "the process maps deleted libraries (common in containers and Bazel builds)"
            }
            Reason::ProfilerCrashed => "the profiler crashed; samples already read were kept",
            Reason::Timeout => "the profiler did not finish before its deadline and was killed",
            Reason::NoSamples => "the profiler collected no samples",
            Reason::DroppedTraces => "the profiler dropped traces",
            Reason::UnsupportedEvent => "the perf event is not supported on this machine",
            Reason::AttachRefused => {
                "the JVM refused the attach that makes it write its perf map \
                 (-XX:+DisableAttachMechanism, -Xrs, another user namespace, no writable /tmp, \
                 or a JDK older than 17): its JIT frames stay unnamed; it is not asked again"
            }
            Reason::Unknown => "the profiler failed for an unrecognised reason",
        }
    }
}

const CRASH_SIGNALS: [i32; 4] = [
    4,  /* ILL */
    6,  /* ABRT */
    7,  /* BUS */
    11, /* SEGV */
];

/// Classifies one diagnostic. Rules follow the error strings py-spy, rbspy, PyPerf
/// and perf print (see gprofiler-facts.md §6); first match wins.
pub fn classify(d: &Diagnostic) -> Reason {
    let err = d.stderr.to_ascii_lowercase();
    let has = |s: &str| err.contains(s);
    let exited = d.target_alive == Some(false);
    match &d.end {
        RunEnd::TimedOut => return Reason::Timeout,
        RunEnd::Signaled(sig) if CRASH_SIGNALS.contains(sig) => return Reason::ProfilerCrashed,
        RunEnd::SpawnFailed(msg) => {
            let m = msg.to_ascii_lowercase();
            return if m.contains("permission denied") {
                Reason::PermissionDenied
            } else {
                Reason::Unknown
            };
        }
        _ => {}
    }
    if has("attach refused") {
        return Reason::AttachRefused;
    }
    if has("failed to iterate over elf symbols") && has("(deleted)") {
        return Reason::DeletedLibrary;
    }
    if has("failed to find python version") {
        return Reason::EmbeddedPython;
    }
    if has("dropped") && (has("trace") || has("no such file or directory")) {
        return Reason::DroppedTraces;
    }
    if has("died with") || has("segmentation fault") {
        return Reason::ProfilerCrashed;
    }
    if has("event syntax error") || has("not supported") || has("no supported event") {
        return Reason::UnsupportedEvent;
    }
    if has("failed to get process executable name") || has("no such file or directory") {
        return if exited {
            Reason::ProcessExited
        } else {
            Reason::NoSuchProcess
        };
    }
    if has("no such process")
        || has("invalid pid")
        || has("process not found")
        || has("process exited")
    {
        return if exited {
            Reason::ProcessExited
        } else {
            Reason::NoSuchProcess
        };
    }
    // After the process-gone rules: rbspy prints "no profile samples were collected"
    // also when its target vanished, together with the reason.
    if has("no profile samples were collected") || has("no samples") {
        return Reason::NoSamples;
    }
    if has("permission denied") || has("operation not permitted") {
        return Reason::PermissionDenied;
    }
    if exited {
        return Reason::ProcessExited;
    }
    Reason::Unknown
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default)]
#[serde(deny_unknown_fields)]
pub struct ClassifyConfig {
    /// Show each failed per-process run in the window's profile as gProfiler does:
    /// the diagnostic goes on, typed, with its reason, and `merge` or the sink
    /// writes it as the frame `[Profiling error: reason]`. False: diagnostics end
    /// here, counted and logged.
    pub error_frames: bool,
    /// At most one log line per (profiler, reason) per interval.
    pub log_interval: DurationStr,
}

impl Default for ClassifyConfig {
    fn default() -> Self {
        ClassifyConfig {
            error_frames: true,
            log_interval: DurationStr::from_secs(60),
        }
    }
}

impl TransformConfig for ClassifyConfig {
    fn inputs(&self) -> crate::event::DataTypes {
        crate::event::DataTypes::ALL
    }

    fn validate(&self) -> Vec<FieldError> {
        Vec::new()
    }

    fn build(&self, cx: TransformContext) -> Result<Task, BuildError> {
        let c = self.clone();
        let (cx, mut input, mut out) = cx.into_parts();
        Ok(Box::pin(async move {
            let mut limiter = RateLimiter::new(c.log_interval.get());
            while let Some(ev) = input.recv().await {
                let ev = match ev {
                    Event::Diagnostic(mut d) => {
                        let reason = classify(&d);
                        cx.telemetry
                            .profiler_error(&d.labels.profiler, reason.as_str());
                        limiter.log(&d, reason);
                        if !(c.error_frames && d.pid != 0) {
                            // Counted and logged: that is all a run of a system-wide
                            // profiler, or one nobody wants frames of, needs.
                            d.finalizers.take().resolve(EventStatus::Delivered);
                            continue;
                        }
                        d.reason = Some(reason.as_str());
                        Event::Diagnostic(d)
                    }
                    other => other,
                };
                if out.send(ev).await.is_err() {
                    break;
                }
            }
            Ok(())
        }))
    }
}

/// One log line per (profiler, reason) per interval. The map holds at most
/// profilers × reasons entries, a small fixed number.
struct RateLimiter {
    limit: RateLimited<(String, Reason)>,
}

impl RateLimiter {
    fn new(interval: Duration) -> Self {
        RateLimiter {
            limit: RateLimited::new(interval),
        }
    }

    fn log(&mut self, d: &Diagnostic, reason: Reason) {
        let key = (d.labels.profiler.to_string(), reason);
        let Some(suppressed) = self.limit.allow(key) else {
            return;
        };
        let profiler = &*d.labels.profiler;
        let first_line = d
            .stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        match reason.level() {
            Level::Info => tracing::info!(
                profiler,
                pid = d.pid,
                comm = d.comm.as_deref(),
                reason = reason.as_str(),
                suppressed,
                detail = first_line,
                "{}",
                reason.explain()
            ),
            Level::Warn => tracing::warn!(
                profiler, pid = d.pid, comm = d.comm.as_deref(), reason = reason.as_str(),
                end = ?d.end, suppressed, detail = first_line, "{}", reason.explain()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Labels;

    fn diag(profiler: &str, end: RunEnd, stderr: &str, alive: Option<bool>) -> Diagnostic {
        Diagnostic {
            reason: None,
            finalizers: Default::default(),
            window: Default::default(),
            labels: Labels {
                profiler: profiler.into(),
                ..Default::default()
            },
            pid: 42,
            comm: Some("app".into()),
            end,
            stderr: stderr.into(),
            target_alive: alive,
        }
    }

    #[test]
    fn classifies_known_profiler_errors() {
        use Reason::*;
        let cases = [
            (diag("py-spy", RunEnd::Exited(1), "Error: Failed to get process executable name. Check that the process is running.", Some(false)), ProcessExited),
            (diag("py-spy", RunEnd::Exited(1), "Error: Failed to find python version from target process", Some(true)), EmbeddedPython),
            (diag("py-spy", RunEnd::Exited(1), "Error: No such file or directory (os error 2)", Some(false)), ProcessExited),
            (diag("py-spy", RunEnd::Exited(1), "Error: No such process (os error 3)", None), NoSuchProcess),
            (diag("py-spy", RunEnd::Signaled(11), "", Some(true)), ProfilerCrashed),
            (diag("py-spy", RunEnd::TimedOut, "", Some(true)), Timeout),
            (diag("py-spy", RunEnd::Exited(1), "Error: Permission denied (os error 13)", Some(true)), PermissionDenied),
            (diag("rbspy", RunEnd::Exited(1), "Error: no profile samples were collected", Some(true)), NoSamples),
            (diag("rbspy", RunEnd::Exited(1), "Failed to get process executable name\nno profile samples were collected", Some(false)), ProcessExited),
            (diag("rbspy", RunEnd::Exited(0), "Dropped 12 traces: No such file or directory", Some(true)), DroppedTraces),
            (diag("pyperf", RunEnd::Exited(1), "Failed to iterate over ELF symbols: /tmp/x.so (deleted)", Some(true)), DeletedLibrary),
            (diag("perf", RunEnd::Exited(129), "event syntax error: 'cycles'", None), UnsupportedEvent),
            (diag("perf", RunEnd::SpawnFailed("No such file or directory".into()), "", None), Unknown),
            (diag("py-spy", RunEnd::Exited(2), "something odd", Some(true)), Unknown),
            (diag("py-spy", RunEnd::Exited(2), "something odd", Some(false)), ProcessExited),
            (diag("jvm_attach", RunEnd::Exited(1), "jvm attach refused: no attach socket appeared after SIGQUIT (pid 7)", None), AttachRefused),
            (diag("jvm_attach", RunEnd::Exited(1), "jvm attach refused: cannot create the attach trigger file: Permission denied (os error 13)", None), AttachRefused),
        ];
        for (d, want) in cases {
            assert_eq!(classify(&d), want, "{d:?}");
        }
    }

    #[test]
    fn normal_fleet_events_are_info() {
        assert_eq!(Reason::ProcessExited.level(), Level::Info);
        assert_eq!(Reason::EmbeddedPython.level(), Level::Info);
        assert_eq!(Reason::AttachRefused.level(), Level::Info);
        assert_eq!(Reason::ProfilerCrashed.level(), Level::Warn);
    }

    #[test]
    fn error_frame_has_gprofiler_shape() {
        let mut d = diag("py-spy", RunEnd::TimedOut, "", Some(true));
        d.reason = Some(classify(&d).as_str());
        assert_eq!(d.error_frame(), "[Profiling error: timeout]");
    }
}
