//! What the control plane remembers across restarts, in `<state_dir>/control.json`
//! (directory 0700, file 0600, written atomically: temporary file, fsync, rename,
//! fsync of the directory):
//!
//! - `executed`: ids of commands acted on, oldest first, the newest
//!   [`MAX_HISTORY`] kept. A command whose id is here is never run again, whatever
//!   the server re-sends (it re-sends the current command on every heartbeat).
//! - `continuous`: the continuous command in force (desired state), resumed at
//!   start without being reported again.
//! - `inflight`: ad-hoc commands accepted but not finished. An id is added (and the
//!   file written) *before* its profiling starts, so a crash can never make it run
//!   twice; at the next start each is reported `failed`, since its work was cut.
//! - `outbox`: completions not yet accepted by the server, sent again each
//!   heartbeat (at most [`MAX_OUTBOX`], oldest dropped first).

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::command::{CommandId, ProfilingRequest};
use super::error::ControlError;

/// Command ids remembered (gProfiler's bound, kept here in order).
pub const MAX_HISTORY: usize = 1000;
/// Completion reports waiting for the server.
pub const MAX_OUTBOX: usize = 64;
/// Ad-hoc commands accepted and not finished (one running, the rest queued).
pub const MAX_INFLIGHT: usize = 8;

const FILE: &str = "control.json";

/// A finished command, as `POST /api/metrics/command_completion` reports it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Completion {
    pub command_id: CommandId,
    /// `completed` or `failed`.
    pub status: String,
    /// Seconds from start to end of the work.
    pub execution_time: u64,
    pub error_message: Option<String>,
}

impl Completion {
    pub fn completed(id: &str, secs: u64) -> Completion {
        Completion {
            command_id: id.to_string(),
            status: "completed".into(),
            execution_time: secs,
            error_message: None,
        }
    }

    pub fn failed(id: &str, secs: u64, why: impl Into<String>) -> Completion {
        Completion {
            command_id: id.to_string(),
            status: "failed".into(),
            execution_time: secs,
            error_message: Some(why.into()),
        }
    }
}

/// The continuous command in force.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Continuous {
    pub id: CommandId,
    pub request: ProfilingRequest,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Persisted {
    pub executed: VecDeque<CommandId>,
    pub continuous: Option<Continuous>,
    pub inflight: Vec<CommandId>,
    pub outbox: VecDeque<Completion>,
    /// Times the control plane has started with this state directory.
    pub starts: u64,
}

/// The state and where it lives.
#[derive(Debug)]
pub struct State {
    dir: PathBuf,
    pub data: Persisted,
}

impl State {
    /// Creates the directory (0700) if needed and reads the file. A file that
    /// cannot be parsed is set aside as `control.json.bad` and the state starts
    /// empty (logged at WARN): refusing to start would leave the host unmanaged.
    pub fn open(dir: &Path) -> Result<State, ControlError> {
        ensure_dir(dir)?;
        let path = dir.join(FILE);
        let data = match std::fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice::<Persisted>(&bytes) {
                Ok(d) => d,
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e,
                        "command history unreadable; set aside as control.json.bad, starting empty");
                    let _ = std::fs::rename(&path, dir.join("control.json.bad"));
                    Persisted::default()
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Persisted::default(),
            Err(e) => {
                return Err(ControlError::StateDir {
                    path: path.clone(),
                    source: e,
                })
            }
        };
        Ok(State {
            dir: dir.to_path_buf(),
            data,
        })
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join(FILE)
    }

    pub fn was_executed(&self, id: &str) -> bool {
        self.data.executed.iter().any(|e| e == id)
    }

    /// Records `id` as acted on, keeping the newest [`MAX_HISTORY`].
    pub fn mark_executed(&mut self, id: &str) {
        if self.was_executed(id) {
            return;
        }
        self.data.executed.push_back(id.to_string());
        while self.data.executed.len() > MAX_HISTORY {
            self.data.executed.pop_front();
        }
    }

    pub fn push_outbox(&mut self, c: Completion) {
        self.data.inflight.retain(|i| *i != c.command_id);
        self.data.outbox.push_back(c);
        while self.data.outbox.len() > MAX_OUTBOX {
            if let Some(dropped) = self.data.outbox.pop_front() {
                tracing::info!(command = %dropped.command_id, "completion report dropped: too many unsent");
            }
        }
    }

    /// Writes the file atomically: a crash leaves the old file or the new one.
    pub fn save(&self) -> Result<(), std::io::Error> {
        let bytes = serde_json::to_vec(&self.data).map_err(std::io::Error::other)?;
        crate::state_dir::write_atomic(&self.path(), &bytes)
    }
}

/// Creates `dir` with mode 0700, or tightens an existing one to it.
fn ensure_dir(dir: &Path) -> Result<(), ControlError> {
    crate::state_dir::create(dir).map_err(|source| ControlError::StateDir {
        path: dir.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn history_keeps_the_newest_thousand_in_order_and_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("state");
        let mut s = State::open(&sub).unwrap();
        for i in 0..5000 {
            s.mark_executed(&format!("c{i}"));
        }
        s.mark_executed("c4999");
        s.save().unwrap();
        let again = State::open(&sub).unwrap();
        assert_eq!(again.data.executed.len(), MAX_HISTORY);
        assert_eq!(again.data.executed.front().unwrap(), "c4000");
        assert_eq!(again.data.executed.back().unwrap(), "c4999");
        assert!(again.was_executed("c4500") && !again.was_executed("c3999"));
        assert_eq!(std::fs::metadata(&sub).unwrap().mode() & 0o777, 0o700);
        assert_eq!(
            std::fs::metadata(again.path()).unwrap().mode() & 0o777,
            0o600
        );
        assert!(!sub.join("control.json.tmp").exists());
    }

    #[test]
    fn a_corrupt_file_is_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE), b"{not json").unwrap();
        let s = State::open(dir.path()).unwrap();
        assert_eq!(s.data, Persisted::default());
        assert!(dir.path().join("control.json.bad").exists());
    }
}
