//! The agent's private directories: created mode 0700 (the agent runs as root and
//! reads and deletes what it finds there, so no other user may plant files), and
//! held by one process at a time with an exclusive `flock`, which the kernel
//! releases when the process dies, however it dies (no stale lock after `kill -9`).
//! Used for the state directory (one agent per state directory) and each disk
//! buffer's directory.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

/// Creates `dir` (and its parents) if needed and makes it mode 0700.
pub fn create(dir: &Path) -> io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// Replaces the file at `path` with `bytes` atomically (a crash leaves the old file
/// or the new one): a temporary `<name>.tmp` beside it (mode 0600), synced, renamed
/// over it, then the directory synced so the rename itself survives a crash.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    let tmp = path.with_file_name(name);
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    io::Write::write_all(&mut f, bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    File::open(dir.unwrap_or(Path::new(".")))?.sync_all()
}

/// The lock file that makes one agent per state directory.
const AGENT_LOCK: &str = "agent.lock";

/// Why [`claim`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    #[error(
        "another profpipe agent already runs with state directory {} (it holds {}); \
         stop it or give this one another [agent] state_dir",
        .0.display(), .0.join(AGENT_LOCK).display()
    )]
    AlreadyRunning(PathBuf),
    #[error("state directory {}: {}", .0.display(), .1)]
    Io(PathBuf, io::Error),
}

/// Creates the state directory if needed and takes its agent lock, without
/// waiting: held for the agent's life, it keeps a second agent (which would share
/// its buffers and command history) from starting on the same directory.
pub fn claim(state_dir: &Path) -> Result<DirLock, ClaimError> {
    let io = |e| ClaimError::Io(state_dir.to_path_buf(), e);
    create(state_dir).map_err(io)?;
    DirLock::acquire(state_dir, AGENT_LOCK, Duration::ZERO).map_err(|e| match e {
        LockError::Held(_) => ClaimError::AlreadyRunning(state_dir.to_path_buf()),
        LockError::Io(_, e) => io(e),
    })
}

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
    /// Takes the lock on `dir` (its file `name`), waiting up to `patience` for a
    /// holder to let go (a pipeline being replaced in this process releases its
    /// buffers a moment after it stops); a holder that keeps it is another agent,
    /// and refused.
    pub fn acquire(dir: &Path, name: &str, patience: Duration) -> Result<DirLock, LockError> {
        let path = dir.join(name);
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
        let first = DirLock::acquire(dir.path(), "lock", Duration::ZERO).unwrap();
        let err = DirLock::acquire(dir.path(), "lock", Duration::from_millis(50)).unwrap_err();
        assert!(matches!(err, LockError::Held(_)), "{err}");
        // A holder that lets go within the patience is waited for.
        let releaser = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            drop(first);
        });
        DirLock::acquire(dir.path(), "lock", Duration::from_secs(30)).unwrap();
        releaser.join().unwrap();
    }

    #[test]
    fn a_second_agent_on_a_state_directory_is_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let first = claim(&state).unwrap();
        let err = claim(&state).unwrap_err();
        assert!(matches!(err, ClaimError::AlreadyRunning(_)), "{err}");
        assert!(err.to_string().contains("agent.lock"), "{err}");
        drop(first);
        claim(&state).unwrap();
    }

    #[test]
    fn write_atomic_replaces_the_file_whole_and_privately() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        write_atomic(&path, b"first, longer").unwrap();
        write_atomic(&path, b"second").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        assert!(!dir.path().join("state.json.tmp").exists());
    }

    #[test]
    fn create_makes_the_directory_private_even_when_it_exists() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("a/b");
        create(&sub).unwrap();
        std::fs::set_permissions(&sub, std::fs::Permissions::from_mode(0o755)).unwrap();
        create(&sub).unwrap();
        assert_eq!(std::fs::metadata(&sub).unwrap().mode() & 0o777, 0o700);
    }
}
