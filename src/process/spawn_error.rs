//! Why a child could not be started: the error of every spawn, shared by the
//! spawner thread that forks and the supervisor that reports it.

use std::io;
use std::path::PathBuf;

/// Why a child could not be started.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// The program does not exist (not on `PATH`, or the path is wrong).
    #[error("{program}: program not found")]
    NotFound { program: String },
    /// The program exists but may not be executed (no execute bit, a directory,
    /// a `noexec` mount, ...).
    #[error("{program}: permission denied")]
    PermissionDenied { program: String },
    /// The file the child's stdout should go to could not be opened.
    #[error("{program}: cannot open {} for its stdout: {source}", path.display())]
    Stdout {
        program: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Any other failure to start it.
    #[error("{program}: cannot start: {source}")]
    Io {
        program: String,
        #[source]
        source: io::Error,
    },
    /// The supervisor is shutting down and starts nothing more.
    #[error("the process supervisor is shutting down")]
    ShuttingDown,
}

impl SpawnError {
    pub(crate) fn from_io(program: String, e: io::Error) -> SpawnError {
        match e.kind() {
            io::ErrorKind::NotFound => SpawnError::NotFound { program },
            io::ErrorKind::PermissionDenied => SpawnError::PermissionDenied { program },
            _ => SpawnError::Io { program, source: e },
        }
    }

    /// The `reason` label of `process_spawn_failures_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            SpawnError::NotFound { .. } => "not_found",
            SpawnError::PermissionDenied { .. } => "permission_denied",
            SpawnError::Stdout { .. } => "stdout",
            SpawnError::Io { .. } => "io",
            SpawnError::ShuttingDown => "shutting_down",
        }
    }
}
