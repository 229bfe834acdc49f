//! One agent per state directory: an exclusive `flock` on `<state_dir>/agent.lock`,
//! held for the life of the process (the kernel drops it when the process dies, even
//! by `kill -9`, so a crash never leaves a stale lock behind).

use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::Path;

use super::error::ControlError;

/// Holds the lock while alive.
#[derive(Debug)]
pub struct AgentLock {
    _file: std::fs::File,
}

impl AgentLock {
    /// Takes the lock without waiting: another agent holding it is
    /// [`ControlError::AlreadyRunning`].
    pub fn acquire(state_dir: &Path) -> Result<AgentLock, ControlError> {
        let path = state_dir.join("agent.lock");
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(|source| ControlError::StateDir {
                path: path.clone(),
                source,
            })?;
        // SAFETY: flock on a descriptor this function owns; no memory is involved.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let e = std::io::Error::last_os_error();
            return Err(if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
                ControlError::AlreadyRunning {
                    path: state_dir.to_path_buf(),
                }
            } else {
                ControlError::StateDir { path, source: e }
            });
        }
        Ok(AgentLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_until_the_first_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let first = AgentLock::acquire(dir.path()).unwrap();
        let second = AgentLock::acquire(dir.path());
        assert!(
            matches!(second, Err(ControlError::AlreadyRunning { .. })),
            "{second:?}"
        );
        drop(first);
        AgentLock::acquire(dir.path()).unwrap();
    }
}
