//! The perf source against the real `perf` (as root): a C program with known frames
//! is profiled system-wide and its stacks come out of `fold`; perf killed with
//! SIGKILL is reported and restarted; rotated files never pile up; no perf at all is
//! a clean, quiet finish. Skipped (with a message) where perf or root is missing.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use profpipe::buffer::BufferConfig;
use profpipe::component::{BuildError, SinkConfig, SinkContext, Task};
use profpipe::config::{
    AgentConfig, Config, SinkEntry, SourceEntry, TelemetryConfig, TransformEntry,
};
use profpipe::event::{Diagnostic, Event, Profile, RunEnd};
use profpipe::process::Backoff;
use profpipe::sources::perf::PerfSourceConfig;
use profpipe::telemetry::Telemetry;
use profpipe::topology::{self, RunningTopology};
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
fn start_hot(dir: &Path, seconds: u32) -> Child {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/programs/hot.c");
    let bin = dir.join("hot");
    let st = Command::new("cc")
        .args(["-O1", "-fno-omit-frame-pointer", "-o"])
        .arg(&bin)
        .arg(&src)
        .status()
        .expect("cc");
    assert!(st.success(), "cc failed");
    Command::new(&bin).arg(seconds.to_string()).spawn().unwrap()
}

/// What the test sink saw.
#[derive(Default)]
struct Seen {
    profiles: Vec<Profile>,
    diagnostics: Vec<Diagnostic>,
    /// Names in the source's scratch dir each time a profile arrived.
    scratch_listings: Vec<Vec<String>>,
}

#[derive(Debug)]
struct Collect {
    seen: Arc<Mutex<Seen>>,
    scratch: PathBuf,
}

impl std::fmt::Debug for Seen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Seen({} profiles)", self.profiles.len())
    }
}

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

impl SinkConfig for Collect {
    fn inputs(&self) -> profpipe::event::DataTypes {
        profpipe::event::DataTypes::ALL
    }
    fn build(&self, cx: SinkContext) -> Result<Task, BuildError> {
        let seen = self.seen.clone();
        let scratch = self.scratch.clone();
        let SinkContext { mut input, .. } = cx;
        Ok(Box::pin(async move {
            while let Some(ev) = input.recv().await {
                let mut s = seen.lock().unwrap();
                match ev {
                    Event::Profile(p) => {
                        s.scratch_listings.push(listing(&scratch));
                        s.profiles.push(p);
                    }
                    Event::Diagnostic(d) => s.diagnostics.push(d),
                    _ => {}
                }
            }
            Ok(())
        }))
    }
}

struct Harness {
    seen: Arc<Mutex<Seen>>,
    diags: Arc<Mutex<Seen>>,
    telemetry: Telemetry,
    scratch: PathBuf,
    _state: tempfile::TempDir,
}

/// perf → fold → classify → collect, plus a second sink that sees the source's
/// diagnostics before classify consumes them.
fn pipeline(source: PerfSourceConfig) -> (Config, Harness) {
    let state = tempfile::tempdir().unwrap();
    let scratch = state.path().join("cpu");
    let seen = Arc::new(Mutex::new(Seen::default()));
    let diags = Arc::new(Mutex::new(Seen::default()));
    let config = Config {
        agent: AgentConfig {
            state_dir: state.path().to_path_buf(),
            ..Default::default()
        },
        telemetry: TelemetryConfig::default(),
        sources: vec![SourceEntry {
            id: "cpu".into(),
            type_name: "perf",
            labels: Default::default(),
            config: Box::new(source),
        }],
        transforms: vec![
            TransformEntry {
                id: "fold".into(),
                type_name: "fold",
                inputs: vec!["cpu".into()],
                buffer: BufferConfig::default(),
                config: Box::new(FoldConfig::default()),
            },
            TransformEntry {
                id: "classify".into(),
                type_name: "classify",
                inputs: vec!["fold".into()],
                buffer: BufferConfig::default(),
                config: Box::new(ClassifyConfig::default()),
            },
        ],
        sinks: vec![
            SinkEntry {
                id: "collect".into(),
                type_name: "collect",
                inputs: vec!["classify".into()],
                buffer: BufferConfig::default(),
                config: Box::new(Collect {
                    seen: seen.clone(),
                    scratch: scratch.clone(),
                }),
            },
            SinkEntry {
                id: "diagnostics".into(),
                type_name: "collect",
                inputs: vec!["cpu".into()],
                buffer: BufferConfig::default(),
                config: Box::new(Collect {
                    seen: diags.clone(),
                    scratch: scratch.clone(),
                }),
            },
        ],
    };
    let h = Harness {
        seen,
        diags,
        telemetry: Telemetry::new(),
        scratch,
        _state: state,
    };
    (config, h)
}

fn start(config: &Config, h: &Harness) -> RunningTopology {
    let built = topology::build(config, &h.telemetry, "test-host".into()).unwrap();
    RunningTopology::start(built)
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
fn hot_windows(seen: &Seen, pid: u32) -> Vec<u64> {
    let mut v: Vec<u64> = seen
        .profiles
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
    let mut hot = start_hot(tmp.path(), 20);
    let hot_pid = hot.id();

    let t0 = Instant::now();
    let outcome = start(&config, &h)
        .run_until(std::future::pending(), Duration::from_secs(30))
        .await;
    let took = t0.elapsed();
    let _ = hot.kill();
    let _ = hot.wait();
    assert!(outcome.is_clean(), "{outcome:?}");
    eprintln!("two 3s windows with discovery took {took:?}");

    let seen = h.seen.lock().unwrap();
    let windows = hot_windows(&seen, hot_pid);
    assert!(
        !windows.is_empty(),
        "no `{HOT}` stack with pid {hot_pid} in {} profiles; first stacks: {:?}",
        seen.profiles.len(),
        seen.profiles
            .iter()
            .flat_map(|p| p.stacks.iter().take(5))
            .map(|s| (&s.frames, s.pid))
            .collect::<Vec<_>>()
    );
    assert!(seen.profiles.iter().all(|p| &*p.labels.profiler == "perf"));
    // After every window, at most the live file is left.
    for l in &seen.scratch_listings {
        assert!(
            l.iter().all(|n| n == "perf.data"),
            "scratch dir after a window: {l:?}"
        );
    }
    assert!(listing(&h.scratch).is_empty(), "{:?}", listing(&h.scratch));
    assert!(h.diags.lock().unwrap().diagnostics.is_empty());
}

/// perf record processes started by this test process for this scratch dir.
fn perf_records(scratch: &Path) -> Vec<u32> {
    let me = std::process::id();
    let needle = scratch.to_string_lossy().into_owned();
    let mut v = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // pid (comm) state ppid ...
        let Some((comm_part, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let ppid: u32 = rest
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        if ppid != me || !comm_part.ends_with("(perf") {
            continue;
        }
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(" record ") && cmdline.contains(&needle) {
            v.push(pid);
        }
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_perf_record_is_reported_and_restarted() {
    if !perf_usable() {
        return;
    }
    let (config, h) = pipeline(fast_source(2, 5));
    let tmp = tempfile::tempdir().unwrap();
    let mut hot = start_hot(tmp.path(), 20);
    let hot_pid = hot.id();
    let running = start(&config, &h);

    // Wait for perf record, let it record a little, then SIGKILL it.
    let scratch = h.scratch.clone();
    let killed = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(&pid) = perf_records(&scratch).first() {
                std::thread::sleep(Duration::from_millis(700));
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
                return pid;
            }
            assert!(Instant::now() < deadline, "perf record never started");
            std::thread::sleep(Duration::from_millis(50));
        }
    })
    .await
    .unwrap();
    let killed_at = profpipe::window_clock::now_ms();

    // A new perf record appears (after the backoff).
    let scratch = h.scratch.clone();
    let restarted = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(&pid) = perf_records(&scratch).iter().find(|&&p| p != killed) {
                return pid;
            }
            assert!(Instant::now() < deadline, "perf record was not restarted");
            std::thread::sleep(Duration::from_millis(50));
        }
    })
    .await
    .unwrap();
    assert_ne!(restarted, killed);

    let outcome = running
        .run_until(std::future::pending(), Duration::from_secs(30))
        .await;
    let _ = hot.kill();
    let _ = hot.wait();
    assert!(outcome.is_clean(), "{outcome:?}");

    let diags = h.diags.lock().unwrap();
    let d = diags
        .diagnostics
        .iter()
        .find(|d| d.end == RunEnd::Signaled(9))
        .unwrap_or_else(|| panic!("no SIGKILL diagnostic in {:?}", diags.diagnostics));
    assert!(d.stderr.contains("died with SIGKILL"), "{}", d.stderr);
    assert_eq!(&*d.labels.profiler, "perf");
    assert!(h.telemetry.profiler_errors("perf", "profiler_crashed") >= 1);

    let seen = h.seen.lock().unwrap();
    let after: Vec<u64> = hot_windows(&seen, hot_pid)
        .into_iter()
        .filter(|&end| end > killed_at + 1000)
        .collect();
    assert!(
        !after.is_empty(),
        "no hot stacks in windows after the kill (killed at {killed_at}); hot windows: {:?}",
        hot_windows(&seen, hot_pid)
    );
    assert!(listing(&h.scratch).is_empty(), "{:?}", listing(&h.scratch));
}

#[test]
fn missing_perf_binary_finishes_cleanly_with_one_info_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("perf.toml");
    std::fs::write(
        &config,
        format!(
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
        ),
    )
    .unwrap();
    let t0 = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_profpipe"))
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
        ..fast_source(2, 2)
    });
    let mut hot = start_hot(tmp.path(), 20);
    let hot_pid = hot.id();
    let outcome = start(&config, &h)
        .run_until(std::future::pending(), Duration::from_secs(30))
        .await;
    let _ = hot.kill();
    let _ = hot.wait();
    assert!(outcome.is_clean(), "{outcome:?}");

    let diags = h.diags.lock().unwrap();
    let segv: Vec<_> = diags
        .diagnostics
        .iter()
        .filter(|d| d.end == RunEnd::Signaled(11))
        .collect();
    assert!(!segv.is_empty(), "{:?}", diags.diagnostics);
    assert!(segv[0].stderr.ends_with("perf script died with SIGSEGV"));
    assert!(h.telemetry.profiler_errors("perf", "profiler_crashed") >= 1);
    // Every window's perf script crashed, yet what it printed was folded.
    let seen = h.seen.lock().unwrap();
    assert!(!hot_windows(&seen, hot_pid).is_empty());
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
    let mut hot = start_hot(tmp.path(), 20);
    let hot_pid = hot.id();
    let running = start(&config, &h);
    let scratch = h.scratch.clone();
    let watcher = std::thread::spawn(move || {
        let mut pids = std::collections::BTreeSet::new();
        let until = Instant::now() + Duration::from_secs(5);
        while Instant::now() < until {
            pids.extend(perf_records(&scratch));
            std::thread::sleep(Duration::from_millis(50));
        }
        pids
    });
    let outcome = running
        .run_until(std::future::pending(), Duration::from_secs(30))
        .await;
    let pids = watcher.join().unwrap();
    let _ = hot.kill();
    let _ = hot.wait();
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
    assert!(h.diags.lock().unwrap().diagnostics.is_empty());
    let seen = h.seen.lock().unwrap();
    assert!(!hot_windows(&seen, hot_pid).is_empty());
    assert!(listing(&h.scratch).is_empty(), "{:?}", listing(&h.scratch));
}
