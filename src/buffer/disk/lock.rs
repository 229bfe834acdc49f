//! One agent per disk buffer: an exclusive `flock` on `<dir>/lock`, held while the
//! buffer is open and released by the kernel when the process dies, however it dies.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

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
    /// Takes the lock, waiting up to `patience` for a holder to let go (a pipeline
    /// being replaced in this process releases its buffers a moment after it
    /// stops); a holder that keeps it is another agent, and refused.
    pub fn acquire(dir: &Path, patience: Duration) -> Result<DirLock, LockError> {
        let path = dir.join("lock");
        let shown = path.display().to_string();
        let give_up = Instant::now() + patience;
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| LockError::Io(shown.clone(), e))?;
        loop {
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(lock) => return Ok(DirLock { _lock: lock }),
                Err((f, Errno::EWOULDBLOCK)) if Instant::now() < give_up => {
                    file = f;
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err((_, Errno::EWOULDBLOCK)) => return Err(LockError::Held(shown)),
                Err((_, e)) => return Err(LockError::Io(shown, e.into())),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_until_the_first_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let first = DirLock::acquire(dir.path(), Duration::ZERO).unwrap();
        let err = DirLock::acquire(dir.path(), Duration::from_millis(50)).unwrap_err();
        assert!(matches!(err, LockError::Held(_)), "{err}");
        // A holder that lets go within the patience is waited for.
        let releaser = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            drop(first);
        });
        DirLock::acquire(dir.path(), Duration::from_secs(30)).unwrap();
        releaser.join().unwrap();
    }
}
