//! Finding a live source's profiler program (`perf`, `py-spy`, `rbspy`, PyPerf), and
//! the one INFO line a source logs when it is missing.
//!
//! A missing profiler is not an error: the source says so once, with how to
//! install it, and finishes; the other sources keep running.

use std::fmt;
use std::path::{Path, PathBuf};

/// Where profpipe's helper scripts install profilers, relative to `$HOME`.
pub const TOOLS_DIR: &str = ".cache/profpipe-tools/bin";

/// Where a bare program name is looked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Search {
    /// The directories of `PATH` (perf: a system package).
    Path,
    /// `PATH`, then `$HOME/.cache/profpipe-tools/bin` (py-spy, rbspy: installed by
    /// the helper scripts).
    PathThenTools,
}

/// Whether `name` is a path (used as is) rather than a name to look up.
pub fn is_path(name: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    name.as_os_str().as_bytes().contains(&b'/')
}

/// Finds a program: a name containing `/` is used as is; a bare name is looked up
/// as `search` says. `None` when there is no executable file there.
pub fn find(name: impl AsRef<Path>, search: Search) -> Option<PathBuf> {
    let name = name.as_ref();
    if is_path(name) {
        return is_executable(name).then(|| name.to_path_buf());
    }
    let path_dirs = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    let tools = match search {
        Search::Path => None,
        Search::PathThenTools => std::env::var_os("HOME").map(|h| PathBuf::from(h).join(TOOLS_DIR)),
    };
    path_dirs
        .into_iter()
        .chain(tools)
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The one INFO line of a source whose profiler is missing: `message` says what
/// is missing and how to install it.
pub fn log_missing(source: &dyn fmt::Display, binary: &dyn fmt::Display, message: fmt::Arguments) {
    tracing::info!(source = %source, binary = %binary, "{message}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binaries_resolve_by_path_or_name() {
        let find = |n: &str| find(n, Search::PathThenTools);
        assert_eq!(find("/bin/sh"), Some(PathBuf::from("/bin/sh")));
        assert!(find("sh").is_some());
        assert_eq!(find("/nonexistent/py-spy"), None);
        assert_eq!(find("profpipe-no-such-profiler"), None);
        // A directory is not a program.
        assert_eq!(find("/tmp/"), None);
    }

    #[test]
    fn finds_binaries_on_path_and_by_path() {
        let find = |n: &str| find(n, Search::Path);
        assert!(find("sh").is_some());
        assert!(find("/bin/sh").is_some());
        assert!(find("/nonexistent/perf").is_none());
        assert!(find("profpipe-no-such-program").is_none());
    }
}
