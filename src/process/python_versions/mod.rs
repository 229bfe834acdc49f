//! gProfiler's Python version tags: `main (/app/x.py:8)_[p]` becomes
//! `main (/app/x.py:8 [attrs==24.2.0])_[p]` for a file an installed distribution
//! owns, and `[standard-library==3.11.7]` for the interpreter's own library
//! (gprofiler-facts.md §3, `_add_versions_to_process_stacks`).
//!
//! A frame's file is looked up through `/proc/PID/root` (so a container's files are
//! its own), and:
//! - under a `/pythonX.Y/` directory and not under `site-packages`/`dist-packages`
//!   (gProfiler's rule), it is the standard library: the tag is the version of the
//!   process's interpreter (its mapped `libpython*.so`, else `/proc/PID/exe`), read
//!   cheaply (`interpreter.rs`) and only if its `X.Y` is the directory's;
//! - under `.../site-packages/` or `.../dist-packages/`, that directory's
//!   distributions (`dist.rs`) say who owns it;
//! - anywhere else (a `pip install --target` directory on `PYTHONPATH`, a vendored
//!   tree), each parent directory, nearest first and at most [`MAX_PARENTS`], is
//!   asked the same way.
//!
//! Everything is cached and bounded ([`Limits`]): a file's tag by the file's
//! identity (device, inode, mtime), a directory's distributions by the directory's
//! (a `pip install` changes its mtime, so it is read again), an interpreter's
//! version by its binary's. Eviction is oldest first and counted.

mod dist;
mod interpreter;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rustc_hash::FxHashMap;

pub use dist::DirIndex;
pub use interpreter::{format_hex, from_elf, from_patchlevel};

use super::bounded_map::BoundedMap;
use crate::event::Stack;

/// Parent directories searched for distributions, for a file outside any
/// `site-packages`.
pub const MAX_PARENTS: usize = 8;

/// How many entries each cache keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Files and their tags (or that they have none).
    pub files: usize,
    /// Directories and their distributions.
    pub dirs: usize,
    /// Interpreter binaries and their versions.
    pub interpreters: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            files: 65_536,
            dirs: 512,
            interpreters: 64,
        }
    }
}

/// What the caches hold, for metrics and measurements.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub files: usize,
    pub dirs: usize,
    pub interpreters: usize,
    /// Approximate bytes held by the directory indexes and file entries.
    pub bytes: usize,
    /// Entries evicted at the bounds, all caches together.
    pub evictions: u64,
}

/// (device, inode, mtime seconds, mtime nanoseconds).
type FileId = (u64, u64, i64, i64);

fn file_id(m: &fs::Metadata) -> FileId {
    (m.dev(), m.ino(), m.mtime(), m.mtime_nsec())
}

struct Caches {
    files: BoundedMap<FileId, Option<Arc<str>>>,
    dirs: BoundedMap<FileId, Arc<DirIndex>>,
    interpreters: BoundedMap<FileId, Option<Arc<str>>>,
}

/// The tagger, shared by every run of a source (cheap to clone).
#[derive(Clone)]
pub struct PythonVersions {
    caches: Arc<Mutex<Caches>>,
    /// Evictions already reported by [`new_evictions`](Self::new_evictions).
    reported: Arc<AtomicU64>,
}

impl std::fmt::Debug for PythonVersions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PythonVersions")
            .field("stats", &self.stats())
            .finish()
    }
}

impl PythonVersions {
    pub fn new(limits: Limits) -> Self {
        PythonVersions {
            caches: Arc::new(Mutex::new(Caches {
                files: BoundedMap::new(limits.files),
                dirs: BoundedMap::new(limits.dirs),
                interpreters: BoundedMap::new(limits.interpreters),
            })),
            reported: Arc::new(AtomicU64::new(0)),
        }
    }

    pub fn stats(&self) -> CacheStats {
        let c = self.caches.lock().unwrap();
        CacheStats {
            files: c.files.len(),
            dirs: c.dirs.len(),
            interpreters: c.interpreters.len(),
            bytes: c.dirs.values().map(|d| d.size_bytes()).sum::<usize>()
                + c.files.len() * (std::mem::size_of::<(FileId, Option<Arc<str>>)>() + 16),
            evictions: c.files.evictions() + c.dirs.evictions() + c.interpreters.evictions(),
        }
    }

    /// Evictions since the last call, for a counter (each counted once, whatever
    /// the number of callers).
    pub fn new_evictions(&self) -> u64 {
        let total = self.stats().evictions;
        total.saturating_sub(self.reported.fetch_max(total, Ordering::Relaxed))
    }

    /// Tags the frames of `pid`'s stacks in place. Returns how many frames got a tag.
    pub fn tag_stacks(&self, pid: u32, stacks: &mut [Stack]) -> u64 {
        let root = PathBuf::from(format!("/proc/{pid}/root"));
        let mut process = Process {
            root,
            pid: Some(pid),
            interpreter: None,
            seen: FxHashMap::default(),
        };
        self.tag_with(&mut process, stacks)
    }

    /// As [`tag_stacks`](Self::tag_stacks), for files under `root` and an
    /// interpreter of version `python` (tests).
    pub fn tag_stacks_under(&self, root: &Path, python: Option<&str>, stacks: &mut [Stack]) -> u64 {
        let mut process = Process {
            root: root.to_path_buf(),
            pid: None,
            interpreter: Some(python.map(Arc::from)),
            seen: FxHashMap::default(),
        };
        self.tag_with(&mut process, stacks)
    }

    fn tag_with(&self, process: &mut Process, stacks: &mut [Stack]) -> u64 {
        let mut tagged = 0;
        for s in stacks.iter_mut() {
            let mut out = String::new();
            let mut last = 0;
            for (path, close) in file_refs(&s.frames) {
                let path = &s.frames[path];
                if !path.starts_with('/') {
                    continue;
                }
                let Some(tag) = self.resolve(process, path) else {
                    continue;
                };
                // `(path:N)` → `(path:N [tag])`: the tag goes before the `)`.
                out.push_str(&s.frames[last..close]);
                out.push_str(" [");
                out.push_str(&tag);
                out.push(']');
                last = close;
                tagged += 1;
            }
            if last > 0 {
                out.push_str(&s.frames[last..]);
                s.frames = out.into_boxed_str();
            }
        }
        tagged
    }

    /// The tag of one file of the process, once per run, else from the caches.
    fn resolve(&self, process: &mut Process, path: &str) -> Option<Arc<str>> {
        if let Some(t) = process.seen.get(path) {
            return t.clone();
        }
        let tag = self.resolve_file(process, path);
        if process.seen.len() < 4096 {
            process.seen.insert(path.into(), tag.clone());
        }
        tag
    }

    fn resolve_file(&self, process: &mut Process, path: &str) -> Option<Arc<str>> {
        let host = process.host_path(path);
        let id = file_id(&fs::metadata(&host).ok()?);
        if let Some(t) = self.caches.lock().unwrap().files.get(&id) {
            return t.clone();
        }
        let tag = match stdlib_version(path) {
            Some(xy) => process
                .interpreter(self, path, &xy)
                .map(|v| Arc::from(format!("standard-library=={v}"))),
            None => self.package(process, path),
        };
        self.caches.lock().unwrap().files.insert(id, tag.clone());
        tag
    }

    /// The distribution that owns `path`: in its `site-packages` if it is under
    /// one, else in the nearest parent directory that has it.
    fn package(&self, process: &Process, path: &str) -> Option<Arc<str>> {
        let packages = ["/site-packages/", "/dist-packages/"]
            .iter()
            .filter_map(|sep| path.rfind(sep).map(|i| i + sep.len() - 1))
            .max();
        let candidates: Vec<usize> = match packages {
            Some(end) => vec![end],
            None => path
                .match_indices('/')
                .map(|(i, _)| i)
                .filter(|&i| i > 0)
                .rev()
                .take(MAX_PARENTS)
                .collect(),
        };
        for end in candidates {
            let (dir, rel) = (&path[..end], &path[end + 1..]);
            let host = process.host_path(dir);
            let Ok(meta) = fs::metadata(&host) else {
                continue;
            };
            let id = file_id(&meta);
            let cached = self.caches.lock().unwrap().dirs.get(&id).cloned();
            let index = match cached {
                Some(i) => i,
                None => {
                    let i = Arc::new(DirIndex::read(&host));
                    self.caches.lock().unwrap().dirs.insert(id, i.clone());
                    i
                }
            };
            if let Some(tag) = index.owner(rel) {
                return Some(tag.clone());
            }
        }
        None
    }

    /// An interpreter's version, cached by its binary's identity.
    fn binary_version(&self, binary: &Path, include: &Path) -> Option<Arc<str>> {
        let f = fs::File::open(binary).ok()?;
        let id = file_id(&f.metadata().ok()?);
        if let Some(v) = self.caches.lock().unwrap().interpreters.get(&id) {
            return v.clone();
        }
        let v = from_elf(&f)
            .ok()
            .flatten()
            .or_else(|| from_patchlevel(include))
            .map(Arc::from);
        self.caches
            .lock()
            .unwrap()
            .interpreters
            .insert(id, v.clone());
        v
    }
}

/// The `(path.py:N)` references of a stack, as gProfiler's
/// `\((?P<filename>[^\)]+?\.py):\d+\)` finds them: each as the byte range of the
/// path and the index of its closing `)`.
///
/// ```text
/// python3;main (/srv/x.py:8)_[p];<module> (x.py:2)_[p]
///               ^^^^^^^^^^  ^          ^^^^   ^
/// ```
fn file_refs(frames: &str) -> impl Iterator<Item = (std::ops::Range<usize>, usize)> + '_ {
    let b = frames.as_bytes();
    let mut from = 0;
    std::iter::from_fn(move || loop {
        let at = from + memchr::memmem::find(&b[from..], b".py:")?;
        let digits = at + 4;
        let end = digits
            + b[digits..]
                .iter()
                .take_while(|c| c.is_ascii_digit())
                .count();
        let region = &frames[from..at];
        from = at + 4;
        if end == digits || b.get(end) != Some(&b')') {
            continue;
        }
        // The path: from the first `(` after the last `)` (a path holds no `)`).
        let after_close = region.rfind(')').map_or(0, |i| i + 1);
        let Some(open) = region[after_close..].find('(') else {
            continue;
        };
        let start = from - 4 - region.len() + after_close + open + 1;
        if start == at {
            continue; // `(.py:3)`: no file name
        }
        from = end + 1;
        return Some((start..at + 3, end));
    })
}

/// `X.Y` when `path` is in a standard library directory: under `/pythonX.Y/` and
/// not then under `site-packages`/`dist-packages` (gProfiler's
/// `_STANDARD_LIB_PATTERN`).
fn stdlib_version(path: &str) -> Option<String> {
    for (i, _) in path.match_indices("/python") {
        let rest = &path[i + 7..];
        let major = rest.bytes().next().filter(u8::is_ascii_digit)?;
        let Some(minor_part) = rest[1..].strip_prefix('.') else {
            continue;
        };
        let minor_len = minor_part.bytes().take_while(u8::is_ascii_digit).count();
        if !(1..=2).contains(&minor_len) || minor_part.as_bytes().get(minor_len) != Some(&b'/') {
            continue;
        }
        let after = &minor_part[minor_len..];
        if after.contains("site-packages") || after.contains("dist-packages") {
            return None;
        }
        return Some(format!("{}.{}", major as char, &minor_part[..minor_len]));
    }
    None
}

/// One process being tagged: where its files are, its interpreter's version (read
/// once, when a standard-library frame first needs it) and the files seen.
struct Process {
    root: PathBuf,
    pid: Option<u32>,
    interpreter: Option<Option<Arc<str>>>,
    seen: FxHashMap<Box<str>, Option<Arc<str>>>,
}

impl Process {
    fn host_path(&self, path: &str) -> PathBuf {
        self.root.join(path.trim_start_matches('/'))
    }

    /// The interpreter's version if it is `X.Y` (the standard library directory's).
    fn interpreter(&mut self, v: &PythonVersions, stdlib_file: &str, xy: &str) -> Option<Arc<str>> {
        if self.interpreter.is_none() {
            self.interpreter = Some(self.find_interpreter(v, stdlib_file, xy));
        }
        let version = self.interpreter.clone().flatten()?;
        let matches = version
            .strip_prefix(xy)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'));
        matches.then_some(version)
    }

    fn find_interpreter(
        &self,
        v: &PythonVersions,
        stdlib_file: &str,
        xy: &str,
    ) -> Option<Arc<str>> {
        let pid = self.pid?;
        // `<prefix>/lib/pythonX.Y/os.py` → `<prefix>/include/pythonX.Y/patchlevel.h`.
        let marker = format!("/lib/python{xy}/");
        let include = stdlib_file
            .find(&marker)
            .map(|i| {
                self.host_path(&format!(
                    "{}/include/python{xy}/patchlevel.h",
                    &stdlib_file[..i]
                ))
            })
            .unwrap_or_default();
        let maps = fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
        let libpython = maps.lines().find_map(|l| {
            let path = l.split_whitespace().nth(5)?;
            let name = path.rsplit('/').next()?;
            (name.starts_with("libpython") && name.contains(".so")).then_some(path)
        });
        match libpython {
            Some(lib) => v.binary_version(&self.host_path(lib), &include),
            None => v.binary_version(Path::new(&format!("/proc/{pid}/exe")), &include),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, rel: &str, text: &str) {
        let p = dir.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }

    fn tag(v: &PythonVersions, root: &Path, frames: &str) -> String {
        let mut stacks = vec![Stack::new(frames, 1)];
        v.tag_stacks_under(root, Some("3.11.7"), &mut stacks);
        stacks[0].frames.to_string()
    }

    #[test]
    fn frames_get_package_and_standard_library_tags() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        write(root, "usr/lib/python3.11/json/encoder.py", "");
        write(
            root,
            "usr/lib/python3.11/site-packages/attrs-24.2.0.dist-info/RECORD",
            "attr/_make.py,,\n",
        );
        write(root, "usr/lib/python3.11/site-packages/attr/_make.py", "");
        write(
            root,
            "opt/tools/attrs-24.2.0.dist-info/RECORD",
            "attr/_make.py,,\n",
        );
        write(root, "opt/tools/attr/_make.py", "");
        write(root, "app/x.py", "");
        let v = PythonVersions::new(Limits::default());
        assert_eq!(
            tag(&v, root, "python3;<module> (/app/x.py:3)_[p];dumps (/usr/lib/python3.11/json/encoder.py:200)_[p];attrs (/usr/lib/python3.11/site-packages/attr/_make.py:12)_[p]"),
            "python3;<module> (/app/x.py:3)_[p];dumps (/usr/lib/python3.11/json/encoder.py:200 [standard-library==3.11.7])_[p];attrs (/usr/lib/python3.11/site-packages/attr/_make.py:12 [attrs==24.2.0])_[p]"
        );
        // Outside site-packages (pip --target on PYTHONPATH): found in a parent.
        assert_eq!(
            tag(&v, root, "python3;f (/opt/tools/attr/_make.py:5)"),
            "python3;f (/opt/tools/attr/_make.py:5 [attrs==24.2.0])"
        );
        // Relative names (py-spy without --full-filenames), missing files, and a
        // stdlib of another X.Y than the interpreter's get nothing.
        write(root, "usr/lib/python3.9/os.py", "");
        for untouched in [
            "python3;f (x.py:5)_[p]",
            "python3;f (/gone/x.py:5)_[p]",
            "python3;f (/usr/lib/python3.9/os.py:5)_[p]",
        ] {
            assert_eq!(tag(&v, root, untouched), untouched);
        }
        let stats = v.stats();
        assert!(
            stats.files >= 4 && stats.dirs >= 2 && stats.bytes > 0,
            "{stats:?}"
        );
    }

    #[test]
    fn file_references_as_gprofiler_finds_them() {
        let refs = |f: &str| -> Vec<(String, char)> {
            file_refs(f)
                .map(|(p, close)| (f[p].to_string(), f.as_bytes()[close] as char))
                .collect()
        };
        assert_eq!(
            refs("c;main (/srv/x.py:8)_[p];<module> (x.py:2);f (a) (/b.py:10)"),
            [
                ("/srv/x.py".into(), ')'),
                ("x.py".into(), ')'),
                ("/b.py".into(), ')')
            ]
        );
        for none in [
            "c;f (/x.py:)",
            "c;f (/x.py:3",
            "c;f /x.py:3)",
            "c;f (.py:3)",
            "c;f (/x.pyc:3)",
        ] {
            assert!(refs(none).is_empty(), "{none}");
        }
        assert_eq!(
            stdlib_version("/usr/lib/python3.11/json/x.py").as_deref(),
            Some("3.11")
        );
        assert_eq!(
            stdlib_version("/opt/python2.7/os.py").as_deref(),
            Some("2.7")
        );
        assert_eq!(
            stdlib_version("/usr/lib/python3.11/site-packages/a.py"),
            None
        );
        assert_eq!(stdlib_version("/usr/lib/python3/dist-packages/a.py"), None);
        assert_eq!(stdlib_version("/srv/python3.x/a.py"), None);
    }

    #[test]
    fn caches_are_bounded_and_follow_file_identity() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        for i in 0..5 {
            write(root, &format!("app/m{i}.py"), "");
        }
        let v = PythonVersions::new(Limits {
            files: 2,
            dirs: 1,
            interpreters: 1,
        });
        for i in 0..5 {
            tag(&v, root, &format!("p;f (/app/m{i}.py:1)"));
        }
        let s = v.stats();
        assert!(s.files <= 2 && s.dirs <= 1, "{s:?}");
        assert!(s.evictions >= 3, "{s:?}");
        // A distribution installed later: the directory's mtime changes, its files
        // are new, so their tags are read afresh.
        write(root, "lib/pkg/a.py", "");
        assert_eq!(
            tag(&v, root, "p;f (/lib/pkg/a.py:1)"),
            "p;f (/lib/pkg/a.py:1)"
        );
        write(
            root,
            "lib/pkg-1.0.dist-info/RECORD",
            "pkg/a.py,,\npkg/b.py,,\n",
        );
        write(root, "lib/pkg/b.py", "");
        assert_eq!(
            tag(&v, root, "p;f (/lib/pkg/b.py:1)"),
            "p;f (/lib/pkg/b.py:1 [pkg==1.0])"
        );
    }
}
