//! What gProfiler's Python version tags cost (`src/process/python_versions`), per
//! process, against a real Python process that has imported attrs (from
//! `$PROFPIPE_TOOLS/python-packages`, installed by `scripts/setup-test-env.sh`) and
//! a few dozen standard library modules.
//!
//! The stacks are one per module the process loaded (`f (/path/mod.py:1)_[p]`,
//! eight frames each), so every distinct file is resolved once:
//! - `python_versions/new_process`: a fresh tagger each time, what the first window
//!   of a new Python process costs when nothing is cached (every file stat'ed, each
//!   directory's distributions read, the interpreter's version read from its ELF);
//! - `python_versions/known_process`: the caches warm, what every later window of
//!   that process (or a new process of the same installation) costs.
//!
//! - `app_id/new_process`: the `app_id` step's first look at a process (its
//!   `/proc/PID/stat`, `cmdline` and `cwd`, the identifiers), with an empty cache.
//!
//! Before benchmarking it prints the caches' entries and approximate bytes.
//!
//! Run: `cargo bench --bench python_versions` (add `-- --quick` for a fast look).

use std::path::PathBuf;
use std::process::{Command, Stdio};

use criterion::{criterion_group, criterion_main, Criterion};
use profpipe::event::Stack;
use profpipe::process::python_versions::{Limits, PythonVersions};
use profpipe::transforms::app_id::AppIds;

const PROGRAM: &str = "import sys, json, re, csv, email.parser, http.client, logging, argparse, \
    decimal, fractions, pathlib, xml.dom.minidom, urllib.request, sqlite3, asyncio, attr\n\
    for m in list(sys.modules.values()):\n\
    \x20   f = getattr(m, '__file__', None)\n\
    \x20   if f and f.endswith('.py'): print(f)\n\
    sys.stdout.flush(); import os; os.close(1)\n\
    import time; time.sleep(3600)\n";

fn bench(c: &mut Criterion) {
    let tools = std::env::var_os("PROFPIPE_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache/profpipe-tools")
        });
    let mut child = Command::new("python3")
        .args(["-c", PROGRAM])
        .env("PYTHONPATH", tools.join("python-packages"))
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let mut files = Vec::new();
    {
        use std::io::BufRead;
        let out = std::io::BufReader::new(child.stdout.take().unwrap());
        for line in out.lines() {
            files.push(line.unwrap());
        }
    }
    let pid = child.id();
    let stacks: Vec<Stack> = files
        .chunks(8)
        .map(|c| {
            let frames: Vec<String> = c.iter().map(|f| format!("f ({f}:1)_[p]")).collect();
            Stack::new(format!("python3;{}", frames.join(";")), 1)
        })
        .collect();
    let rss_before = rss_kb();
    let v = PythonVersions::new(Limits::default());
    let mut s = stacks.clone();
    let tagged = v.tag_stacks(pid, &mut s);
    let st = v.stats();
    println!(
        "{} files in {} stacks: {tagged} frames tagged; cache: {} files, {} dirs, {} interpreters, ~{} bytes; \
         RSS {} kB -> {} kB",
        files.len(),
        stacks.len(),
        st.files,
        st.dirs,
        st.interpreters,
        st.bytes,
        rss_before,
        rss_kb()
    );
    let mut g = c.benchmark_group("python_versions");
    g.bench_function("new_process", |b| {
        b.iter(|| {
            let v = PythonVersions::new(Limits::default());
            let mut s = stacks.clone();
            v.tag_stacks(pid, &mut s)
        })
    });
    g.bench_function("known_process", |b| {
        b.iter(|| {
            let mut s = stacks.clone();
            v.tag_stacks(pid, &mut s)
        })
    });
    g.finish();
    c.bench_function("app_id/new_process", |b| {
        b.iter(|| AppIds::new(std::path::Path::new("/proc"), 16).lookup(pid))
    });
    let _ = child.kill();
    let _ = child.wait();
}

/// This process's resident set, from `/proc/self/status`.
fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

criterion_group!(benches, bench);
criterion_main!(benches);
