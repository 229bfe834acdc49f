//! Which perf event works on this host.
//!
//! Each candidate gets a short system-wide recording, which must hold at least one
//! sample (counted in-process, no `perf script`):
//!
//! ```text
//! perf record -F 11 -a -g [-e cpu-clock] -o <scratch>/discovery.data -- sleep 0.5
//! ```
//!
//! Candidates in order: perf's default event (hardware `cycles` on bare metal), then
//! `cpu-clock`, then `task-clock` (software timers, which work in virtual machines
//! without a PMU). The first one with a sample wins.

use std::path::Path;
use std::time::Duration;

use crate::event::RunEnd;
use crate::process::{ExitOutcome, SpawnError, Spec, Supervisor};

use super::rotation::{self, DISCOVERY};

/// The candidates; None is perf's default event.
pub const CANDIDATES: [Option<&str>; 3] = [None, Some("cpu-clock"), Some("task-clock")];

/// Deadline of one trial recording (it records for half a second).
const RECORD_DEADLINE: Duration = Duration::from_secs(10);

/// What discovery found.
#[derive(Debug)]
pub enum Discovered {
    /// This event works (None: perf's default event).
    Event(Option<String>),
    /// No candidate yielded a sample: how the last attempt ended, and what each
    /// attempt said.
    NoneWorks { end: RunEnd, stderr: String },
    /// The perf binary does not exist.
    NotFound,
    /// The agent is shutting down.
    ShuttingDown,
}

pub async fn discover(supervisor: &Supervisor, binary: &str, scratch: &Path) -> Discovered {
    let file = scratch.join(DISCOVERY);
    let mut report = String::new();
    let mut last_end = RunEnd::Exited(0);
    for candidate in CANDIDATES {
        let name = candidate.unwrap_or("default");
        let r = try_event(supervisor, binary, candidate, &file).await;
        rotation::remove(&file);
        rotation::remove(&scratch.join(format!("{DISCOVERY}.old")));
        match r {
            Ok(samples) => {
                tracing::debug!(event = name, samples, "perf event works");
                return Discovered::Event(candidate.map(String::from));
            }
            Err(Trial::Spawn(SpawnError::NotFound { .. })) => return Discovered::NotFound,
            Err(Trial::Spawn(SpawnError::ShuttingDown)) => return Discovered::ShuttingDown,
            Err(Trial::Spawn(e)) => {
                last_end = RunEnd::SpawnFailed(e.to_string());
                report.push_str(&format!("[{name}] {e}\n"));
            }
            Err(Trial::Failed { end, stderr }) => {
                tracing::debug!(event = name, ?end, "perf event does not work");
                report.push_str(&format!("[{name}] {end:?}: {}\n", stderr.trim()));
                last_end = end;
            }
        }
    }
    // The summary goes last: classify logs the last line.
    report.push_str("perf: no supported event (tried the default event, cpu-clock and task-clock)");
    Discovered::NoneWorks {
        end: last_end,
        stderr: report,
    }
}

enum Trial {
    Spawn(SpawnError),
    Failed { end: RunEnd, stderr: String },
}

/// Records half a second with `event`, returns the number of samples (at least 1).
async fn try_event(
    supervisor: &Supervisor,
    binary: &str,
    event: Option<&str>,
    file: &Path,
) -> Result<u64, Trial> {
    let mut spec = Spec::new(binary)
        .args(["record", "-F", "11", "-a", "-g"])
        .deadline(RECORD_DEADLINE)
        .label("perf");
    if let Some(e) = event {
        spec = spec.args(["-e", e]);
    }
    let spec = spec.arg("-o").arg(file).args(["--", "sleep", "0.5"]);
    let rec = supervisor
        .spawn(spec)
        .await
        .map_err(Trial::Spawn)?
        .wait()
        .await;
    if !rec.outcome.success() {
        return Err(Trial::Failed {
            end: run_end(rec.outcome),
            stderr: rec.stderr_tail,
        });
    }
    let path = file.to_path_buf();
    let counted =
        tokio::task::spawn_blocking(move || crate::formats::perf_data::count_samples(&path))
            .await
            .unwrap_or(Ok(0));
    match counted {
        Ok(samples) if samples > 0 => Ok(samples),
        Ok(_) => Err(Trial::Failed {
            end: RunEnd::Exited(0),
            stderr: format!("0 samples recorded; {}", rec.stderr_tail),
        }),
        Err(e) => Err(Trial::Failed {
            end: RunEnd::Exited(0),
            stderr: format!("{e}; {}", rec.stderr_tail),
        }),
    }
}

/// How a profiler run ended, for a diagnostic. A clean exit maps to `Exited(0)`.
pub fn run_end(outcome: ExitOutcome) -> RunEnd {
    match outcome {
        ExitOutcome::Exited(c) => RunEnd::Exited(c),
        ExitOutcome::Signaled(s) => RunEnd::Signaled(s),
        ExitOutcome::TimedOut => RunEnd::TimedOut,
        ExitOutcome::Cancelled => RunEnd::Exited(0),
        ExitOutcome::Unknown => RunEnd::Exited(-1),
    }
}
