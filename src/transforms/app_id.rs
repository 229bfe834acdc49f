//! `type = "app_id"`: gProfiler's `appid:` frame, what each process is (`python:
//! x.py (/srv/x.py)`, `gunicorn: app:app (...)`, `java: x.jar`, `nodejs: x.js
//! (...)`; see [`crate::process::app_id`]), put after the process name of its
//! stacks, as gProfiler's `_enrich_and_finalize_stack` does:
//!
//! ```text
//! python3;<module> (/srv/x.py:3)_[p];work (/srv/x.py:9)_[p] 5
//! python3;appid: python: x.py (/srv/x.py);<module> (/srv/x.py:3)_[p];work (/srv/x.py:9)_[p] 5
//! ```
//!
//! ```toml
//! [transforms.appid]
//! type = "app_id"
//! inputs = ["merge"]
//! max_processes = 4096     # app ids cached, by pid and start time
//! ```
//!
//! It is one step after `merge` (or after the sources, in a pipeline without one)
//! because that is the one place every stack passes with its pid, whoever sampled
//! it: perf's (after `fold`), py-spy's, rbspy's and PyPerf's alike, and after
//! merge's own error frame, as in gProfiler. The collapsed, folded and flame graph
//! encodings write the frame; json and pprof turn it into the stack's label `app`.
//!
//! Only profiles of this host (`host` is the agent's) are touched: a push
//! gateway's profiles carry pids of other machines. A process is read from
//! `/proc/PID/cmdline` and `/proc/PID/cwd` once per (pid, start time); one that has
//! exited by the time its window passes gets no frame. Stacks that already have
//! one (re-read gProfiler files) are left alone.

use std::path::Path;
use std::sync::Arc;

use rustc_hash::FxHashMap;
use serde::Deserialize;

use crate::component::{
    at_least_one, BuildError, FieldError, Task, TransformConfig, TransformContext,
};
use crate::event::{DataTypes, Event, Profile, APPID_PREFIX};
use crate::process::app_id::{app_id, read_cmdline, Cmdline};
use crate::process::BoundedMap;

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AppIdConfig {
    /// Most processes whose app id is cached (by pid and start time); past it the
    /// oldest is forgotten (`component_cache_evictions_total{reason="app_ids"}`) and
    /// read again if it shows up.
    pub max_processes: usize,
}

impl Default for AppIdConfig {
    fn default() -> Self {
        AppIdConfig {
            max_processes: 4096,
        }
    }
}

impl TransformConfig for AppIdConfig {
    fn validate(&self) -> Vec<FieldError> {
        at_least_one(&["max_processes"], self.max_processes)
            .into_iter()
            .collect()
    }

    fn inputs(&self) -> DataTypes {
        DataTypes::ALL
    }

    fn build(&self, cx: TransformContext) -> Result<Task, BuildError> {
        let mut ids = AppIds::new(Path::new("/proc"), self.max_processes);
        let (cx, mut input, mut out) = cx.into_parts();
        Ok(Box::pin(async move {
            while let Some(mut ev) = input.recv().await {
                if let Event::Profile(p) = &mut ev {
                    if p.labels.host == cx.host {
                        let before = ids.evictions();
                        ids.add_frames(p);
                        cx.metrics
                            .cache_evictions("app_ids", ids.evictions() - before);
                    }
                }
                if out.send(ev).await.is_err() {
                    break;
                }
            }
            Ok(())
        }))
    }
}

/// App ids by (pid, start time), bounded.
pub struct AppIds {
    proc: std::path::PathBuf,
    cache: BoundedMap<(u32, u64), Option<Arc<str>>>,
}

impl AppIds {
    pub fn new(proc: &Path, max: usize) -> Self {
        AppIds {
            proc: proc.to_path_buf(),
            cache: BoundedMap::new(max),
        }
    }

    pub fn evictions(&self) -> u64 {
        self.cache.evictions()
    }

    /// Puts the `appid:` frame after the comm of every stack of `p` whose process
    /// has one.
    pub fn add_frames(&mut self, p: &mut Profile) {
        let mut frames: FxHashMap<u32, Option<Arc<str>>> = FxHashMap::default();
        for s in p.stacks.iter_mut().filter(|s| s.pid != 0) {
            let frame = frames.entry(s.pid).or_insert_with(|| {
                self.lookup(s.pid)
                    .map(|id| format!("{APPID_PREFIX}{id}").into())
            });
            let Some(frame) = frame else { continue };
            let (comm, rest) = s.frames.split_once(';').unwrap_or((&s.frames, ""));
            if rest.starts_with(APPID_PREFIX) {
                continue;
            }
            let mut f = String::with_capacity(s.frames.len() + frame.len() + 1);
            f.push_str(comm);
            f.push(';');
            f.push_str(frame);
            if !rest.is_empty() {
                f.push(';');
                f.push_str(rest);
            }
            s.frames = f.into_boxed_str();
        }
    }

    /// The app id of the process now running as `pid`.
    pub fn lookup(&mut self, pid: u32) -> Option<Arc<str>> {
        let start = start_ticks(&self.proc, pid)?;
        if let Some(id) = self.cache.get(&(pid, start)) {
            return id.clone();
        }
        let id = read_cmdline(&self.proc, pid).and_then(|(args, cwd)| {
            let root = self.proc.join(format!("{pid}/root"));
            let read = |path: &str| {
                let f = std::fs::File::open(root.join(path.trim_start_matches('/'))).ok()?;
                let mut text = String::new();
                std::io::Read::read_to_string(&mut std::io::Read::take(f, 64 << 10), &mut text)
                    .ok()?;
                Some(text)
            };
            app_id(
                &Cmdline {
                    args: &args,
                    cwd: cwd.as_deref(),
                },
                &read,
            )
            .map(Arc::from)
        });
        self.cache.insert((pid, start), id.clone());
        id
    }
}

/// Field 22 of `/proc/PID/stat`: when the process started, in clock ticks.
fn start_ticks(proc: &Path, pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(proc.join(format!("{pid}/stat"))).ok()?;
    let (_, rest) = stat.rsplit_once(") ")?;
    rest.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Labels, Stack, Window};

    #[test]
    fn the_frame_goes_after_the_comm_once() {
        // This test binary is not an application gProfiler knows; a python child is.
        let Ok(mut child) = std::process::Command::new("python3")
            .args(["-c", "import time; time.sleep(30)"])
            .spawn()
        else {
            return;
        };
        let mut ids = AppIds::new(Path::new("/proc"), 8);
        let me = std::process::id();
        let mut p = Profile::new(
            Window::new(0, 1),
            Labels::default(),
            vec![
                Stack {
                    pid: me,
                    ..Stack::new("t;main;work", 2)
                },
                Stack {
                    pid: 0,
                    ..Stack::new("t;x", 1)
                },
            ],
        );
        ids.add_frames(&mut p);
        assert_eq!(&*p.stacks[0].frames, "t;main;work", "no app id, no frame");
        assert_eq!(ids.cache.len(), 1);
        // `python3 -c`: no script, no app id either.
        assert_eq!(ids.lookup(child.id()), None);
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(
            ids.lookup(child.id()),
            None,
            "a process that is gone has none"
        );
    }

    #[test]
    fn inserts_and_skips_existing_frames() {
        let dir = tempfile::tempdir().unwrap();
        let proc = dir.path();
        let pd = proc.join("77");
        std::fs::create_dir_all(&pd).unwrap();
        std::fs::write(
            pd.join("cmdline"),
            b"python3\0-u\0serve.py\0--token\0secret\0",
        )
        .unwrap();
        std::fs::write(
            pd.join("stat"),
            "77 (python3) S 1 77 77 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 12345 0 0",
        )
        .unwrap();
        std::os::unix::fs::symlink("/srv/app", pd.join("cwd")).unwrap();
        let mut ids = AppIds::new(proc, 1);
        let mut p = Profile::new(
            Window::new(0, 1),
            Labels::default(),
            vec![
                Stack {
                    pid: 77,
                    ..Stack::new("python3;main (/srv/app/serve.py:3)_[p]", 2)
                },
                Stack {
                    pid: 77,
                    ..Stack::new("python3", 1)
                },
                Stack {
                    pid: 77,
                    ..Stack::new("python3;appid: python: old.py (/old.py);f", 1)
                },
            ],
        );
        ids.add_frames(&mut p);
        let frames: Vec<&str> = p.stacks.iter().map(|s| &*s.frames).collect();
        assert_eq!(
            frames,
            [
                "python3;appid: python: serve.py (/srv/app/serve.py);main (/srv/app/serve.py:3)_[p]",
                "python3;appid: python: serve.py (/srv/app/serve.py)",
                "python3;appid: python: old.py (/old.py);f",
            ]
        );
        assert!(!frames.iter().any(|f| f.contains("secret")));
        // Another process at the bound of one entry evicts the first.
        assert!(ids.lookup(78).is_none());
        assert_eq!(
            ids.evictions(),
            0,
            "a pid with no /proc entry is not cached"
        );
    }
}
