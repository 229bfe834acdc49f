//! The data files perf leaves in the scratch directory.
//!
//! ```text
//! <scratch>/perf.data                     the file perf is writing now
//! <scratch>/perf.data.2026112615313890    rotated on SIGUSR2 (or written at exit)
//! <scratch>/perf.data.old                 perf's backup of a previous perf.data
//! <scratch>/discovery.data                event discovery's short recordings
//! ```
//!
//! `perf record --switch-output` renames the finished file to `perf.data.<timestamp>`
//! (`YYYYmmddHHMMSScc`, so names sort in time order) and only then opens a new
//! `perf.data`: a rotated file is complete as soon as it appears.

use std::collections::HashSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::sources::live::rotating::{self, Waited};

/// The file perf records into.
pub const LIVE: &str = "perf.data";
/// The file event discovery records into.
pub const DISCOVERY: &str = "discovery.data";

/// Rotated files: `perf.data.<digits>`, oldest first.
pub fn rotated(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .flatten()
            .map(|e| e.file_name())
            .filter(is_rotated)
            .map(|n| dir.join(n))
            .collect(),
        Err(_) => Vec::new(),
    };
    v.sort();
    v
}

fn is_rotated(name: &OsString) -> bool {
    name.to_str()
        .and_then(|n| n.strip_prefix("perf.data."))
        .is_some_and(|ts| !ts.is_empty() && ts.bytes().all(|b| b.is_ascii_digit()))
}

/// Bytes held by rotated files not yet scripted.
pub fn pending_bytes(dir: &Path) -> u64 {
    rotated(dir)
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum()
}

/// Size of the live data file, 0 if there is none.
pub fn live_bytes(dir: &Path) -> u64 {
    std::fs::metadata(dir.join(LIVE)).map_or(0, |m| m.len())
}

/// Removes every data file a previous run (or a perf killed mid-write) may have left:
/// `perf.data*` and `discovery.data*`. Returns how many were removed.
pub fn clean(dir: &Path) -> usize {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut n = 0;
    for e in rd.flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        if (name.starts_with(LIVE) || name.starts_with(DISCOVERY))
            && std::fs::remove_file(e.path()).is_ok()
        {
            n += 1;
        }
    }
    n
}

/// Removes what a perf that was killed before finishing its file left behind: the
/// unfinished `perf.data` and perf's `perf.data.old` backup. Called before each start.
pub fn clean_unfinished(dir: &Path) {
    for name in [LIVE, "perf.data.old"] {
        let _ = std::fs::remove_file(dir.join(name));
    }
}

/// Names of the rotated files present now.
pub fn snapshot(dir: &Path) -> HashSet<PathBuf> {
    rotated(dir).into_iter().collect()
}

/// Polls until a rotated file not in `before` appears, for at most `timeout`.
pub async fn wait_for_new(dir: &Path, before: &HashSet<PathBuf>, timeout: Duration) -> bool {
    let waited = rotating::wait_for_rotated(|| rotated(dir), before, timeout, None).await;
    matches!(waited, Waited::Rotated)
}

/// Deletes a file, ignoring a file that is already gone.
pub fn remove(path: &Path) {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot delete perf data file")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_timestamped_files_are_rotated_and_clean_removes_all() {
        let dir = tempfile::tempdir().unwrap();
        for n in [
            "perf.data",
            "perf.data.old",
            "perf.data.2026112615313998",
            "perf.data.2026112615313890",
            "discovery.data",
            "other",
        ] {
            std::fs::write(dir.path().join(n), b"x").unwrap();
        }
        let names: Vec<_> = rotated(dir.path())
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            ["perf.data.2026112615313890", "perf.data.2026112615313998"]
        );
        assert_eq!(pending_bytes(dir.path()), 2);
        assert_eq!(clean(dir.path()), 5);
        assert!(dir.path().join("other").exists());
    }
}
