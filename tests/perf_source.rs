//! The perf source against the real `perf` (as root): a C program with known frames
//! is profiled system-wide and its stacks come out of `fold`; perf killed with
//! SIGKILL is reported and restarted; rotated files never pile up; no perf at all is
//! a clean, quiet finish. Skipped (with a message) where perf or root is missing.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::collect::Collect;
use common::events::{diagnostics, profiles};
use common::proc::Proc;
use common::run;
use profpipe::config::Config;
use profpipe::event::{Diagnostic, Event, Profile, RunEnd};
use profpipe::process::Backoff;
use profpipe::sources::perf::{CallGraph, PerfSourceConfig};
use profpipe::telemetry::Telemetry;
use profpipe::topology::RunningTopology;
use profpipe::transforms::classify::ClassifyConfig;
use profpipe::transforms::fold::FoldConfig;
use profpipe::units::DurationStr;

const HOT: &str = "profpipe_hot_mid;profpipe_hot_leaf";

fn perf_usable() -> bool {
    // `RUST_LOG=profpipe=debug cargo test --test perf_source -- --nocapture` shows
    // the source's timings.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let root = unsafe { libc::geteuid() } == 0;
    let perf = Command::new("perf")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !(root && perf) {
        eprintln!("skipping: needs root and perf (root: {root}, perf: {perf})");
    }
    root && perf
}

/// Compiles tests/programs/hot.c into `dir` and starts it for `seconds`.
fn start_hot(dir: &Path, seconds: u32) -> Proc {
    let bin = common::proc::build_hot(dir);
    Proc(Command::new(&bin).arg(seconds.to_string()).spawn().unwrap())
}

/// Names in `dir`, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

struct Harness {
    /// What classify delivers.
    seen: Collect,
    /// What the source itself sends (its diagnostics, before classify consumes them).
    raw: Collect,
    /// Names in the source's scratch dir each time a profile arrived.
    scratch_listings: Arc<Mutex<Vec<Vec<String>>>>,
    telemetry: Telemetry,
    scratch: PathBuf,
    _state: tempfile::TempDir,
}

impl Harness {
    fn profiles(&self) -> Vec<Profile> {
        self.seen
            .with(|e| profiles(e).into_iter().cloned().collect())
    }
    fn diagnostics(&self) -> Vec<Diagnostic> {
        self.raw
            .with(|e| diagnostics(e).into_iter().cloned().collect())
    }
}

/// perf → fold → classify → collect, plus a second sink that sees the source's
/// diagnostics before classify consumes them.
fn pipeline(source: PerfSourceConfig) -> (Config, Harness) {
    let state = tempfile::tempdir().unwrap();
    let scratch = state.path().join("cpu");
    let scratch_listings = Arc::new(Mutex::new(Vec::new()));
    let seen = {
        let (scratch, listings) = (scratch.clone(), scratch_listings.clone());
        Collect::new().on_event(move |ev| {
            if let Event::Profile(_) = ev {
                listings.lock().unwrap().push(listing(&scratch));
            }
        })
    };
    let raw = Collect::new();
    let config = run::config(
        run::agent_with_state(state.path()),
        vec![run::source("cpu", "perf", source)],
        vec![
            run::transform("fold", "fold", &["cpu"], FoldConfig::default()),
            run::transform("classify", "classify", &["fold"], ClassifyConfig::default()),
        ],
        vec![
            run::sink("collect", "collect", &["classify"], seen.clone()),
            run::sink("diagnostics", "collect", &["cpu"], raw.clone()),
        ],
    );
    let h = Harness {
        seen,
        raw,
        scratch_listings,
        telemetry: Telemetry::new(),
        scratch,
        _state: state,
    };
    (config, h)
}

fn start(config: &Config, h: &Harness) -> RunningTopology {
    run::start(config, &h.telemetry)
}

fn fast_source(window_s: u64, max_windows: u64) -> PerfSourceConfig {
    PerfSourceConfig {
        frequency: 99,
        window: DurationStr::from_secs(window_s),
        max_windows: Some(max_windows),
        // Discovery is tested by the first test; the others go straight to work.
        events: Some(vec!["cpu-clock".into()]),
        backoff: Backoff {
            initial: DurationStr(Duration::from_millis(200)),
            ..Backoff::default()
        },
        ..Default::default()
    }
}

/// Windows (by end) whose profiles hold the hot stack of `pid`.
fn hot_windows(h: &Harness, pid: u32) -> Vec<u64> {
    let mut v: Vec<u64> = h
        .profiles()
        .iter()
        .filter(|p| {
            p.stacks
                .iter()
                .any(|s| s.pid == pid && s.frames.contains(HOT))
        })
        .map(|p| p.window.end_ms)
        .collect();
    v.dedup();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_program_stacks_come_out_of_fold_with_its_pid() {
    if !perf_usable() {
        return;
    }
    let (config, h) = pipeline(PerfSourceConfig {
        events: None, // exercise discovery
        ..fast_source(3, 2)
    });
    // Stale files of an earlier run, which the source must remove at start.
    std::fs::create_dir_all(&h.scratch).unwrap();
    for stale in ["perf.data", "perf.data.2020010100000000", "perf.data.old"] {
        std::fs::write(h.scratch.join(stale), b"stale").unwrap();
    }
    let tmp = tempfile::tempdir().unwrap();
    let hot = start_hot(tmp.path(), 20);
    let hot_pid = hot.pid();

    let t0 = Instant::now();
    let outcome = start(&config, &h)
        .run_until(std::future::pending(), Duration::from_secs(30))
        .await;
    let took = t0.elapsed();
    drop(hot);
    assert!(outcome.is_clean(), "{outcome:?}");
    eprintln!("two 3s windows with discovery took {took:?}");

    let profiles = h.profiles();
    let windows = hot_windows(&h, hot_pid);
    assert!(
        !windows.is_empty(),
        "no `{HOT}` stack with pid {hot_pid} in {} profiles; first stacks: {:?}",
        profiles.len(),
        profiles
            .iter()
            .flat_map(|p| p.stacks.iter().take(5))
            .map(|s| (&s.frames, s.pid))
            .collect::<Vec<_>>()
    );
    assert!(profiles.iter().all(|p| &*p.labels.profiler == "perf"));
    // After every window, at most the live file is left.
    for l in h.scratch_listings.lock().unwrap().iter() {
        assert!(
            l.iter().all(|n| n == "perf.data"),
            "scratch dir after a window: {l:?}"
        );
    }
    assert!(listing(&h.scratch).is_empty(), "{:?}", listing(&h.scratch));
    assert!(h.diagnostics().is_empty());
}

/// perf record processes started by this test process for this scratch dir.
fn perf_records(scratch: &Path) -> Vec<u32> {
    let needle = scratch.to_string_lossy().into_owned();
    common::proc::children_named(std::process::id(), "perf")
        .into_iter()
        .filter(|&pid| {
            let cmdline = common::proc::cmdline(pid).replace('\0', " ");
            cmdline.contains(" record ") && cmdline.contains(&needle)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_perf_record_is_reported_and_restarted() {
    if !perf_usable() {
        return;
    }
    let (config, h) = pipeline(fast_source(2, 5));
    let tmp = tempfile::tempdir().unwrap();
    let hot = start_hot(tmp.path(), 20);
    let hot_pid = hot.pid();
    let running = start(&config, &h);

    // Wait for perf record to be recording (its data file has grown past the
    // header), then SIGKILL it. Polled: perf tells the test nothing.
    let scratch = h.scratch.clone();
    let killed = tokio::task::spawn_blocking(move || {
        let pid = common::wait::until_some("perf record started", Duration::from_secs(10), || {
            perf_records(&scratch).first().copied()
        });
        let data = scratch.join("perf.data");
        let header = std::fs::metadata(&data).map_or(0, |m| m.len());
        common::wait::until("perf record wrote samples", Duration::from_secs(10), || {
            std::fs::metadata(&data).is_ok_and(|m| m.len() > header.max(4096))
        });
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        pid
    })
    .await
    .unwrap();
    let killed_at = profpipe::window_clock::now_ms();

    // A new perf record appears (after the backoff).
    let scratch = h.scratch.clone();
    let restarted = tokio::task::spawn_blocking(move || {
        common::wait::until_some("perf record was restarted", Duration::from_secs(10), || {
            perf_records(&scratch).into_iter().find(|&p| p != killed)
        })
    })
    .await
    .unwrap();
    assert_ne!(restarted, killed);

    let outcome = running
        .run_until(std::future::pending(), Duration::from_secs(30))
        .await;
    drop(hot);
    assert!(outcome.is_clean(), "{outcome:?}");

    let diags = h.diagnostics();
    let d = diags
        .iter()
        .find(|d| d.end == RunEnd::Signaled(9))
        .unwrap_or_else(|| panic!("no SIGKILL diagnostic in {diags:?}"));
    assert!(d.stderr.contains("died with SIGKILL"), "{}", d.stderr);
    assert_eq!(&*d.labels.profiler, "perf");
    assert!(h.telemetry.profiler_errors("perf", "profiler_crashed") >= 1);

    let after: Vec<u64> = hot_windows(&h, hot_pid)
        .into_iter()
        .filter(|&end| end > killed_at + 1000)
        .collect();
    assert!(
        !after.is_empty(),
        "no hot stacks in windows after the kill (killed at {killed_at}); hot windows: {:?}",
        hot_windows(&h, hot_pid)
    );
    assert!(listing(&h.scratch).is_empty(), "{:?}", listing(&h.scratch));
}

#[test]
fn missing_perf_binary_finishes_cleanly_with_one_info_line() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        r#"
[agent]
state_dir = {state:?}

[sources.cpu]
type = "perf"
binary = "/nonexistent/perf"

[transforms.fold]
type = "fold"
inputs = ["cpu"]

[sinks.out]
type = "console"
inputs = ["fold"]
"#,
        state = dir.path().join("state")
    );
    let config = run::write_config(dir.path(), "perf.toml", &text);
    let t0 = Instant::now();
    let out = run::profpipe()
        .args(["--log", "info", "run", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let logs = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{}\n{logs}", out.status);
    assert!(t0.elapsed() < Duration::from_secs(10));
    assert_eq!(
        logs.matches("apt-get install linux-perf").count(),
        1,
        "{logs}"
    );
    let line = logs
        .lines()
        .find(|l| l.contains("apt-get install linux-perf"))
        .unwrap();
    assert!(line.contains("INFO"), "{line}");
    assert!(!logs.contains("ERROR") && !logs.contains("WARN"), "{logs}");
}

/// A `perf` wrapper whose `perf script` prints its output, then dies of SIGSEGV, as
/// perf does on some GPU hosts.
fn segfaulting_perf(dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("perf");
    std::fs::write(
        &path,
        "#!/bin/sh\nif [ \"$1\" = script ]; then perf \"$@\"; kill -SEGV $$; fi\nexec perf \"$@\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segfaulting_perf_script_keeps_its_samples_and_the_agent_goes_on() {
    if !perf_usable() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (config, h) = pipeline(PerfSourceConfig {
        binary: segfaulting_perf(tmp.path()).to_string_lossy().into_owned(),
        // Frame-pointer data is read in-process: only DWARF mode runs perf script.
        call_graph: CallGraph::Dwarf,
        ..fast_source(2, 2)
    });
    let hot = start_hot(tmp.path(), 20);
    let hot_pid = hot.pid();
    let outcome = start(&config, &h)
        .run_until(std::future::pending(), Duration::from_secs(30))
        .await;
    drop(hot);
    assert!(outcome.is_clean(), "{outcome:?}");

    let diags = h.diagnostics();
    let segv: Vec<_> = diags
        .iter()
        .filter(|d| d.end == RunEnd::Signaled(11))
        .collect();
    assert!(!segv.is_empty(), "{diags:?}");
    assert!(segv[0].stderr.ends_with("perf script died with SIGSEGV"));
    assert!(h.telemetry.profiler_errors("perf", "profiler_crashed") >= 1);
    // Every window's perf script crashed, yet what it printed was folded.
    assert!(!hot_windows(&h, hot_pid).is_empty());
    assert!(listing(&h.scratch).is_empty(), "{:?}", listing(&h.scratch));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn perf_is_restarted_when_older_than_restart_after() {
    if !perf_usable() {
        return;
    }
    let (config, h) = pipeline(PerfSourceConfig {
        restart_after: DurationStr(Duration::from_millis(1500)),
        ..fast_source(2, 3)
    });
    let tmp = tempfile::tempdir().unwrap();
    let hot = start_hot(tmp.path(), 20);
    let hot_pid = hot.pid();
    let running = start(&config, &h);
    // Every perf record of the run, sampled until the run is over (each lives at
    // least `restart_after`, far longer than the sampling interval).
    let scratch = h.scratch.clone();
    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut pids = std::collections::BTreeSet::new();
            while !done.load(Ordering::SeqCst) {
                pids.extend(perf_records(&scratch));
                std::thread::sleep(Duration::from_millis(50));
            }
            pids
        })
    };
    let outcome = running
        .run_until(std::future::pending(), Duration::from_secs(30))
        .await;
    done.store(true, Ordering::SeqCst);
    let pids = watcher.join().unwrap();
    drop(hot);
    assert!(outcome.is_clean(), "{outcome:?}");
    assert!(pids.len() >= 2, "perf record pids seen: {pids:?}");
    let metrics = h.telemetry.render();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("profpipe_process_children_restarted_total{program=\"perf\"}")),
        "{metrics}"
    );
    // A planned restart is not a failure.
    assert!(h.diagnostics().is_empty());
    assert!(!hot_windows(&h, hot_pid).is_empty());
    assert!(listing(&h.scratch).is_empty(), "{:?}", listing(&h.scratch));
}
