//! One agent per disk buffer: an exclusive `flock` on `<dir>/lock`, held while the
//! buffer is open and released by the kernel when the process dies, however it dies.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

/// The held lock; dropping it releases it.
#[derive(Debug)]
pub struct DirLock {
    _lock: Flock<File>,
}

/// Why the lock was not taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("another profpipe process holds it (lock file {0})")]
    Held(String),
    #[error("cannot lock {0}: {1}")]
    Io(String, io::Error),
}

impl DirLock {
    pub fn acquire(dir: &Path) -> Result<DirLock, LockError> {
        let path = dir.join("lock");
        let shown = path.display().to_string();
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| LockError::Io(shown.clone(), e))?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => Ok(DirLock { _lock: lock }),
            Err((_, Errno::EWOULDBLOCK)) => Err(LockError::Held(shown)),
            Err((_, e)) => Err(LockError::Io(shown, e.into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_until_the_first_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let first = DirLock::acquire(dir.path()).unwrap();
        let err = DirLock::acquire(dir.path()).unwrap_err();
        assert!(matches!(err, LockError::Held(_)), "{err}");
        drop(first);
        DirLock::acquire(dir.path()).unwrap();
    }
}
