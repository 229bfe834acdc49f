//! The `py_spy` and `rbspy` sources against real profilers and real Python and Ruby
//! processes (`tests/programs/busy.{py,rb}`), in both modes: the default long-lived
//! sampler child (py-spy and rbspy as libraries) and one CLI run per process per
//! window (`mode = "per_window"`, for the tests about CLI runs).
//!
//! Workloads are started detached (re-parented to init), as on a real host: the
//! agent never profiles its own descendants. Every test gives its workload a marker
//! argument and lets discovery select only that command line, so tests running in
//! parallel (and whatever else runs on the machine) do not see each other.

mod common;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::collect::Collect;
use common::context::standalone;
use common::proc::{Detached, PidFd};
use common::{events, programs, run, walk};
use profpipe::event::{Event, Profile, RunEnd, Watermark, Window};
use profpipe::process::DiscoveryConfig;
use profpipe::sources::py_spy::{PySpy, PySpyConfig};
use profpipe::sources::rbspy::{RbSpy, RbSpyConfig};
use profpipe::sources::runtime_runs::{resolve_binary, Mode, Runner, RuntimeProfiler, Target};
use profpipe::telemetry::Telemetry;
use profpipe::transforms::app_id::AppIdConfig;
use profpipe::transforms::classify::{classify, ClassifyConfig, Level, Reason};
use profpipe::units::{DurationStr, RegexStr};

/// The real Python interpreter (not a pyenv shim script).
fn python() -> String {
    common::proc::python().0.to_string_lossy().into_owned()
}

/// py-spy next to that interpreter (pip's), else whatever `PATH` finds.
fn py_spy() -> String {
    let py = python();
    let next_to = Path::new(&py).with_file_name("py-spy");
    if next_to.exists() {
        next_to.to_string_lossy().into_owned()
    } else {
        "py-spy".into()
    }
}

/// A workload of tests/programs, detached, running its hot functions.
struct Workload(Detached);

impl Workload {
    fn start(program: &str, args: &[&str]) -> Workload {
        Workload(Detached::start_ready(program, args))
    }
}

/// `tests/programs/busy.py`, running for a minute, with `marker` on its command line.
fn busy_py(marker: &str) -> Workload {
    Workload::start(
        &python(),
        &[programs().join("busy.py").to_str().unwrap(), "60", marker],
    )
}

impl std::ops::Deref for Workload {
    type Target = Detached;
    fn deref(&self) -> &Detached {
        &self.0
    }
}

/// Discovery that selects only the process whose command line holds `marker`.
fn discovery(marker: &str) -> DiscoveryConfig {
    DiscoveryConfig {
        min_age: DurationStr(Duration::ZERO),
        allow_cmdline: vec![RegexStr(regex::Regex::new(&regex::escape(marker)).unwrap())],
        ..DiscoveryConfig::default()
    }
}

struct Run {
    events: Vec<Event>,
    telemetry: Telemetry,
    state_dir: tempfile::TempDir,
}

impl Run {
    fn profiles(&self) -> Vec<&Profile> {
        events::profiles(&self.events)
    }

    fn watermarks(&self) -> Vec<u64> {
        events::watermarks(&self.events)
    }

    /// Every stack line, `frames count`, with its pid.
    fn stacks(&self) -> Vec<(u32, String)> {
        events::stacks(&self.events)
    }
}

/// Runs `source` → classify → collect until the source finishes (or `stop` does).
async fn run_pipeline(
    type_name: &'static str,
    source: Box<dyn profpipe::component::SourceConfig>,
    stop: impl Future<Output = ()>,
) -> Run {
    run_pipeline_with(type_name, source, stop, false).await
}

/// [`run_pipeline`], with the `app_id` transform after classify when `app_id`.
async fn run_pipeline_with(
    type_name: &'static str,
    source: Box<dyn profpipe::component::SourceConfig>,
    stop: impl Future<Output = ()>,
    app_id: bool,
) -> Run {
    let state_dir = tempfile::tempdir().unwrap();
    let sink = Collect::new();
    let mut transforms = vec![run::transform(
        "classify",
        "classify",
        &["runtime"],
        ClassifyConfig::default(),
    )];
    if app_id {
        transforms.push(run::transform(
            "appid",
            "app_id",
            &["classify"],
            AppIdConfig::default(),
        ));
    }
    let last = if app_id { "appid" } else { "classify" };
    let config = run::config(
        run::agent_with_state(state_dir.path()),
        vec![run::boxed_source("runtime", type_name, source)],
        transforms,
        vec![run::sink("collect", "collect", &[last], sink.clone())],
    );
    let telemetry = Telemetry::new();
    let running = run::start(&config, &telemetry);
    let supervisor = running.supervisor().clone();
    let outcome = tokio::time::timeout(
        Duration::from_secs(40),
        running.run_until(stop, Duration::from_secs(10)),
    )
    .await
    .expect("pipeline finished");
    assert!(outcome.is_clean(), "{outcome:?}");
    assert_eq!(supervisor.alive(), 0, "a profiler child outlived the run");
    let events = sink.take();
    // Every output file was deleted.
    let scratch = state_dir.path().join("runtime");
    let left: Vec<_> = std::fs::read_dir(&scratch)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "output files left behind: {left:?}");
    Run {
        events,
        telemetry,
        state_dir,
    }
}

fn py_spy_source(marker: &str, max_windows: u64) -> PySpyConfig {
    PySpyConfig {
        frequency: 50,
        window: DurationStr(Duration::from_secs(3)),
        max_windows: Some(max_windows),
        binary: py_spy(),
        discovery: discovery(marker),
        ..PySpyConfig::default()
    }
}

/// [`py_spy_source`] (one window) with windows of `secs` seconds.
fn py_spy_windows_of(marker: &str, secs: u64) -> PySpyConfig {
    PySpyConfig {
        window: DurationStr(Duration::from_secs(secs)),
        ..py_spy_source(marker, 1)
    }
}

/// `source` with one py-spy CLI run per process per window: for the tests about
/// those runs (finding, crashing or missing the `py-spy` child).
fn per_window(source: PySpyConfig) -> PySpyConfig {
    PySpyConfig {
        mode: Mode::PerWindow,
        ..source
    }
}

fn rbspy_source(marker: &str) -> RbSpyConfig {
    RbSpyConfig {
        frequency: 100,
        window: DurationStr(Duration::from_secs(3)),
        max_windows: Some(1),
        discovery: discovery(marker),
        ..RbSpyConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn py_spy_profiles_a_python_process() {
    let marker = "profpipe-test-py-ok";
    let w = busy_py(marker);
    let comm = w.comm();
    let run = run_pipeline("py_spy", Box::new(py_spy_source(marker, 1)), never()).await;
    let stacks = run.stacks();
    assert!(!stacks.is_empty(), "no stacks: {:?}", run.events);
    assert!(stacks.iter().all(|(pid, _)| *pid == w.pid));
    assert!(
        stacks
            .iter()
            .all(|(_, s)| s.starts_with(&format!("{comm};"))),
        "{stacks:?}"
    );
    // py-spy prints `name (/path/file.py:line)` (full file names: the version tags
    // need them); every frame carries `_[p]`.
    assert!(
        stacks.iter().any(|(_, s)| frames_re(
            r"profpipe_py_mid \(/\S*/busy\.py:\d+\)_\[p\];profpipe_py_leaf \(/\S*/busy\.py:\d+\)_\[p\]"
        )
        .is_match(s)),
        "{stacks:?}"
    );
    assert!(stacks.iter().all(|(_, s)| s
        .rsplit_once(' ')
        .unwrap()
        .0
        .split(';')
        .skip(1)
        .all(|f| f.ends_with("_[p]"))));
    let profiles = run.profiles();
    assert!(profiles.iter().all(|p| &*p.labels.profiler == "py-spy"));
    let window = profiles[0].window;
    assert_eq!(window.end_ms - window.start_ms, 3000);
    assert_eq!(run.watermarks(), vec![window.end_ms, Watermark::FINISHED]);
    assert!(
        !stacks.iter().any(|(_, s)| s.contains("[Profiling error")),
        "a healthy run was reported as an error: {stacks:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rbspy_profiles_a_ruby_process_and_leaves_no_raw_files() {
    let marker = "profpipe-test-rb-ok";
    let rbspy_cache = std::env::var_os("HOME")
        .map(|h| PathBuf::from(h).join(".cache/rbspy"))
        .unwrap();
    let count_raw = || {
        walk(&rbspy_cache)
            .iter()
            .filter(|p| p.to_string_lossy().ends_with(".raw.gz"))
            .count()
    };
    let raw_before = count_raw();
    let w = Workload::start(
        "ruby",
        &[programs().join("busy.rb").to_str().unwrap(), "60", marker],
    );
    let comm = w.comm();
    if resolve_binary("rbspy").is_none() {
        eprintln!("rbspy is not installed; skipping");
        return;
    }
    let run = run_pipeline("rbspy", Box::new(rbspy_source(marker)), never()).await;
    let stacks = run.stacks();
    assert!(!stacks.is_empty(), "no stacks: {:?}", run.events);
    assert!(stacks.iter().all(|(pid, _)| *pid == w.pid));
    assert!(stacks
        .iter()
        .all(|(_, s)| s.starts_with(&format!("{comm};"))));
    // rbspy prints `name - file.rb:line`.
    assert!(
        stacks.iter().any(|(_, s)| frames_re(
            r"profpipe_rb_mid - \S*busy\.rb:\d+_\[rb\];profpipe_rb_leaf - \S*busy\.rb:\d+_\[rb\]"
        )
        .is_match(s)),
        "{stacks:?}"
    );
    assert!(run
        .profiles()
        .iter()
        .all(|p| &*p.labels.profiler == "rbspy"));
    assert_eq!(run.watermarks().last(), Some(&Watermark::FINISHED));
    assert_eq!(count_raw(), raw_before, "rbspy left a raw recording behind");
}

/// gProfiler's version tags and appid frame from a real py-spy run: a process
/// running code of attrs (installed at a pinned version by the setup script, found
/// through PYTHONPATH and its dist-info there) and of the standard library.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn py_spy_frames_carry_package_versions_and_the_appid() {
    let tools = std::env::var_os("PROFPIPE_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache/profpipe-tools")
        });
    let packages = tools.join("python-packages");
    let Some(attrs_version) = std::fs::read_dir(&packages).ok().and_then(|d| {
        d.flatten().find_map(|e| {
            let name = e.file_name().into_string().ok()?;
            Some(
                name.strip_prefix("attrs-")?
                    .strip_suffix(".dist-info")?
                    .to_string(),
            )
        })
    }) else {
        panic!(
            "attrs is not installed in {}: run scripts/setup-test-env.sh",
            packages.display()
        );
    };
    let version = std::process::Command::new(python())
        .args(["-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"])
        .output()
        .unwrap();
    let python_version = String::from_utf8(version.stdout)
        .unwrap()
        .trim()
        .to_string();
    let marker = "profpipe-test-py-versions";
    let script = programs().join("versions.py");
    let script = script.to_str().unwrap();
    let w = Workload::start(
        &format!("env PYTHONPATH={} {}", packages.display(), python()),
        &[script, "60", marker],
    );
    let comm = w.comm();
    let run = run_pipeline_with("py_spy", Box::new(py_spy_source(marker, 1)), never(), true).await;
    let stacks = run.stacks();
    assert!(!stacks.is_empty(), "no stacks: {:?}", run.events);
    // (A count-only sample is the stack `comm;appid: ...` alone.)
    let appid = format!("{comm};appid: python: {script} ({script})");
    assert!(
        stacks.iter().all(|(_, s)| s.starts_with(&appid)),
        "every stack starts with {appid}: {stacks:?}"
    );
    assert!(
        !stacks.iter().any(|(_, s)| s.contains(marker)),
        "an argument after the script leaked"
    );
    let package = frames_re(&format!(
        r"\(/\S+/attr/\S+\.py:\d+ \[attrs=={}\]\)_\[p\]",
        regex::escape(&attrs_version)
    ));
    assert!(
        stacks.iter().any(|(_, s)| package.is_match(s)),
        "no attrs frame tagged: {stacks:?}"
    );
    let stdlib = frames_re(&format!(
        r"\(/\S+/python3\.\d+/json/\S+\.py:\d+ \[standard-library=={}\]\)_\[p\]",
        regex::escape(&python_version)
    ));
    assert!(
        stacks.iter().any(|(_, s)| stdlib.is_match(s)),
        "no json frame tagged: {stacks:?}"
    );
    // The script itself belongs to no distribution.
    assert!(
        stacks
            .iter()
            .any(|(_, s)| s.contains(&format!("({script}:"))),
        "{stacks:?}"
    );
}

fn frames_re(re: &str) -> regex::Regex {
    regex::Regex::new(re).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_exiting_mid_window_is_classified_and_keeps_its_stacks() {
    let marker = "profpipe-test-py-exits";
    let w = busy_py(marker);
    // The target ends a second after py-spy has started on it: mid-run (a 6 s window
    // gives runs of 3 s), with samples taken, however long the pipeline took to get
    // there.
    let source = per_window(py_spy_windows_of(marker, 6));
    let target = w.pid;
    let ender = async {
        find_py_spy_child(target).await;
        w.end_soon();
    };
    let (run, ()) = tokio::join!(run_pipeline("py_spy", Box::new(source), never()), ender);
    assert_eq!(
        run.telemetry.profiler_errors("py-spy", "process_exited"),
        1,
        "{:?}",
        run.events
    );
    let stacks = run.stacks();
    // The samples taken before the exit are kept, and classify adds its error frame.
    assert!(stacks.iter().any(|(_, s)| s.contains("profpipe_py_leaf")));
    assert!(stacks
        .iter()
        .any(|(pid, s)| *pid == w.pid && s.contains("[Profiling error: process_exited] 1")));
    assert_eq!(run.watermarks().last(), Some(&Watermark::FINISHED));
}

/// A standalone runner, as the driver uses it for each selected process.
fn runner(
    profiler: Arc<dyn profpipe::sources::runtime_runs::RuntimeProfiler>,
    binary: &str,
) -> (Runner, tempfile::TempDir) {
    let telemetry = Telemetry::new();
    let dir = tempfile::tempdir().unwrap();
    let cx = standalone(
        "runtime",
        "source",
        "py_spy",
        &telemetry,
        Some(dir.path()),
        &[],
    );
    let binary = resolve_binary(binary).expect("profiler installed");
    (Runner::new(profiler, binary, &cx).unwrap(), dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pid_that_never_existed_is_classified() {
    let ghost = 999_999;
    assert!(!Path::new(&format!("/proc/{ghost}")).exists());
    let window = Window::new(0, 1000);
    let py = PySpy::from_config(&PySpyConfig::default());
    let rb = RbSpy::from_config(&RbSpyConfig::default());
    let mut cases = vec![(runner(Arc::new(py), &py_spy()), "py-spy")];
    if resolve_binary("rbspy").is_some() {
        cases.push((runner(Arc::new(rb), "rbspy"), "rbspy"));
    }
    for ((runner, _dir), name) in cases {
        let result = runner
            .run(
                &Target::new(ghost, "ghost"),
                window,
                Duration::from_secs(1),
                std::future::pending(),
            )
            .await;
        assert!(result.profile.is_none(), "{name}");
        let d = result
            .diagnostic
            .unwrap_or_else(|| panic!("{name}: no diagnostic"));
        assert_eq!(d.end, RunEnd::Exited(1), "{name}: {d:?}");
        assert_eq!(d.target_alive, Some(false));
        assert_eq!((d.pid, &*d.labels.profiler), (ghost, name));
        assert!(
            d.stderr.contains("Failed to get process executable name"),
            "{name}: {}",
            d.stderr
        );
        // gProfiler's rule: that message with the process gone is "exited before
        // the profiler started", an INFO-level class. rbspy also prints "no profile
        // samples were collected", which classify's first-match rules see first.
        let reason = classify(&d);
        match name {
            "py-spy" => assert_eq!(reason, Reason::ProcessExited),
            _ => assert!(
                matches!(reason, Reason::ProcessExited | Reason::NoSamples),
                "{name}: {reason:?}"
            ),
        }
        assert_eq!(reason.level(), Level::Info, "{name}");
        assert_eq!(
            std::fs::read_dir(runner.scratch_dir()).unwrap().count(),
            0,
            "{name}: output file left"
        );
    }
}

/// The pid of this test process's `py-spy` child profiling `target`, once it runs
/// (polled: the supervisor inside the pipeline says nothing to the test).
async fn find_py_spy_child(target: u32) -> u32 {
    let want = format!("--pid\0{target}\0");
    common::wait::until_some_async(
        &format!("a py-spy child for {target}"),
        Duration::from_secs(10),
        || {
            common::proc::children_named(std::process::id(), "py-spy")
                .into_iter()
                .find(|&pid| common::proc::cmdline(pid).contains(&want))
        },
    )
    .await
}

/// A stop signal that never comes: the pipeline ends by itself.
async fn never() {
    std::future::pending().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_py_spy_is_classified_and_the_next_window_is_profiled() {
    let marker = "profpipe-test-py-crash";
    let w = busy_py(marker);
    let target = w.pid;
    let killer = tokio::spawn(async move {
        let child = find_py_spy_child(target).await;
        let handle = PidFd::open(child).unwrap();
        // Rust's runtime catches the first SIGSEGV (its stack-overflow handler),
        // restores the default action and returns; another one kills. Signal until
        // the kernel reports the exit.
        tokio::task::spawn_blocking(move || {
            for _ in 0..20 {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(child as i32),
                    nix::sys::signal::Signal::SIGSEGV,
                );
                if handle.wait_exit(Duration::from_millis(500)) {
                    return;
                }
            }
            panic!("py-spy {child} survived SIGSEGV");
        })
        .await
        .unwrap();
    });
    let run = run_pipeline(
        "py_spy",
        Box::new(per_window(py_spy_source(marker, 2))),
        never(),
    )
    .await;
    killer.await.unwrap();
    assert_eq!(
        run.telemetry.profiler_errors("py-spy", "profiler_crashed"),
        1,
        "{:?}",
        run.events
    );
    let marks = run.watermarks();
    assert_eq!(marks.len(), 3, "{marks:?}");
    assert_eq!(marks[1] - marks[0], 3000);
    // The second window has real stacks of the target.
    let second: Vec<_> = run
        .profiles()
        .into_iter()
        .filter(|p| p.window.end_ms == marks[1])
        .flat_map(|p| p.stacks.iter())
        .filter(|s| s.pid == target && s.frames.contains("profpipe_py_leaf"))
        .collect();
    assert!(!second.is_empty(), "{:?}", run.events);
    let first_errors = run
        .stacks()
        .iter()
        .filter(|(_, s)| s.contains("[Profiling error: profiler_crashed]"))
        .count();
    assert_eq!(first_errors, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_stops_running_profilers_and_finishes() {
    let marker = "profpipe-test-py-shutdown";
    let w = busy_py(marker);
    let source = per_window(PySpyConfig {
        max_windows: None,
        ..py_spy_windows_of(marker, 60)
    });
    let started = std::time::Instant::now();
    // Stop while a profiler runs.
    let target = w.pid;
    let run = run_pipeline("py_spy", Box::new(source), async move {
        find_py_spy_child(target).await;
    })
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    // The cut-short window is complete once its cancelled runs are reaped.
    let marks = run.watermarks();
    assert_eq!(marks.last(), Some(&Watermark::FINISHED), "{marks:?}");
    assert!(marks.len() <= 2, "{marks:?}");
    // Cancelling is not a profiler failure.
    assert!(!run
        .stacks()
        .iter()
        .any(|(_, s)| s.contains("[Profiling error")));
    drop(run.state_dir);
}

#[tokio::test]
async fn a_missing_profiler_finishes_cleanly() {
    let source = per_window(PySpyConfig {
        binary: "/nonexistent/bin/py-spy".into(),
        ..py_spy_source("profpipe-test-none", 1)
    });
    let started = std::time::Instant::now();
    let run = run_pipeline("py_spy", Box::new(source), never()).await;
    assert_eq!(run.watermarks(), vec![Watermark::FINISHED]);
    assert!(run.profiles().is_empty());
    assert!(started.elapsed() < Duration::from_secs(2));
}

// ---- The long-lived sampler child (the default `mode = "attached"`) ----

/// This test process's sampler children sampling at `rate` (each test uses a rate of
/// its own: the tests of this file run in parallel in one process, and all their
/// children are children of it).
fn sampler_children(rate: u32) -> Vec<u32> {
    let want = format!("\0sampler\0python\0--rate\0{rate}\0");
    common::proc::children_named(std::process::id(), "profpipe")
        .into_iter()
        .filter(|&pid| common::proc::cmdline(pid).contains(&want))
        .collect()
}

/// Returns once the sampler child `pid` has its targets and samples them. Nothing
/// outside the child shows that it attached (py-spy does not stop the target): it
/// has used half a second of CPU (attaching and sampling), or run 5 s on a machine
/// too busy for that.
async fn at_work(pid: u32) {
    let started = std::time::Instant::now();
    common::wait::until_async("the sampler child at work", Duration::from_secs(10), || {
        cpu_ticks(pid) >= 50 || started.elapsed() > Duration::from_secs(5)
    })
    .await;
}

/// User + system CPU time of `pid` in clock ticks (0 once it is gone).
fn cpu_ticks(pid: u32) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = text.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let num = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // After the comm: state is field 0, utime 11, stime 12.
    num(11) + num(12)
}

/// The frames of `stacks` lines (`comm;f1;f2 count`), comm and count removed, with
/// each stack's share of the samples.
fn shares(stacks: &[(u32, String)]) -> std::collections::HashMap<String, f64> {
    let mut counts = std::collections::HashMap::<String, u64>::new();
    for (_, line) in stacks {
        let (frames, count) = line.rsplit_once(' ').unwrap();
        let frames = frames.split_once(';').map_or("", |(_, f)| f).to_string();
        *counts.entry(frames).or_default() += count.parse::<u64>().unwrap();
    }
    let total: u64 = counts.values().sum();
    counts
        .into_iter()
        .map(|(k, v)| (k, v as f64 / total.max(1) as f64))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_library_sampler_and_the_py_spy_cli_give_the_same_frames() {
    let marker = "profpipe-test-py-same-frames";
    let w = busy_py(marker);
    let comm = w.comm();
    // The CLI, as the per-window mode runs it, on the same process at the same time.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("cli.raw");
    let cli = {
        let (out, pid) = (out.clone(), w.pid);
        tokio::task::spawn_blocking(move || {
            let args = PySpy::from_config(&PySpyConfig {
                frequency: 50,
                ..PySpyConfig::default()
            })
            .args(pid, 3, &out);
            std::process::Command::new(py_spy())
                .args(args)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .unwrap()
        })
    };
    // Two windows: the first may be short of samples while the child attaches.
    let run = run_pipeline(
        "py_spy",
        Box::new(PySpyConfig {
            frequency: 46,
            ..py_spy_source(marker, 2)
        }),
        never(),
    )
    .await;
    assert!(cli.await.unwrap().success());
    let text = std::fs::read(&out).unwrap();
    let (cli_stacks, stats) = PySpy::from_config(&PySpyConfig::default())
        .read_output(&mut &text[..], &comm)
        .unwrap();
    assert_eq!(stats.bad_lines, 0);
    let cli_lines: Vec<(u32, String)> = cli_stacks
        .iter()
        .map(|s| (w.pid, format!("{} {}", s.frames, s.count)))
        .collect();
    let lib_lines = run.stacks();
    assert!(!lib_lines.is_empty(), "{:?}", run.events);
    assert!(lib_lines
        .iter()
        .all(|(pid, s)| *pid == w.pid && s.starts_with(&format!("{comm};"))));
    // Every stack that holds a quarter of one side's samples is on the other side,
    // frame for frame (names, files, line numbers, `_[p]`).
    let (cli, lib) = (shares(&cli_lines), shares(&lib_lines));
    for (a, b, what) in [(&cli, &lib, "CLI"), (&lib, &cli, "library")] {
        let heavy: Vec<&String> = a
            .iter()
            .filter(|(_, s)| **s >= 0.25)
            .map(|(k, _)| k)
            .collect();
        assert!(!heavy.is_empty(), "{what}: {a:?}");
        for stack in heavy {
            assert!(
                b.contains_key(stack),
                "the {what}'s stack {stack:?} is missing on the other side:\nCLI {cli:?}\nlibrary {lib:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_sampler_child_for_every_target_and_window() {
    let marker = "profpipe-test-py-one-child";
    let targets: Vec<Workload> = (0..3).map(|_| busy_py(marker)).collect();
    let rate = 47;
    let source = PySpyConfig {
        frequency: rate,
        ..py_spy_source(marker, 3)
    };
    // Every process this test's pipeline starts, seen every 50 ms while it runs.
    let seen = Arc::new(std::sync::Mutex::new(std::collections::BTreeSet::new()));
    let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
    let watcher = {
        let seen = seen.clone();
        let pids: Vec<u32> = targets.iter().map(|t| t.pid).collect();
        tokio::spawn(async move {
            loop {
                for pid in sampler_children(rate) {
                    seen.lock().unwrap().insert(format!("sampler {pid}"));
                }
                for pid in common::proc::children_named(std::process::id(), "py-spy") {
                    let cmd = common::proc::cmdline(pid);
                    if pids.iter().any(|t| cmd.contains(&format!("--pid\0{t}\0"))) {
                        seen.lock().unwrap().insert(format!("py-spy {pid}"));
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                    _ = &mut stop_rx => return,
                }
            }
        })
    };
    let run = run_pipeline("py_spy", Box::new(source), never()).await;
    let _ = stop_tx.send(());
    watcher.await.unwrap();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "3 targets x 4 windows started: {seen:?}");
    assert!(seen.iter().all(|s| s.starts_with("sampler ")), "{seen:?}");
    let marks = run.watermarks();
    assert_eq!(marks.last(), Some(&Watermark::FINISHED), "{marks:?}");
    assert!(marks.len() >= 3, "{marks:?}");
    // Every target, in the windows after the first.
    for t in &targets {
        for end in &marks[1..marks.len() - 1] {
            assert!(
                run.profiles().iter().any(|p| p.window.end_ms == *end
                    && p.stacks
                        .iter()
                        .any(|s| s.pid == t.pid && s.frames.contains("profpipe_py_leaf"))),
                "no stacks of {} in the window ending at {end}: {:?}",
                t.pid,
                run.events
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_sampler_child_is_restarted_and_its_targets_stay_profiled() {
    let marker = "profpipe-test-py-kill-sampler";
    let w = busy_py(marker);
    let rate = 45;
    let source = PySpyConfig {
        frequency: rate,
        window: DurationStr(Duration::from_secs(3)),
        ..py_spy_source(marker, 4)
    };
    let killer = tokio::spawn(async move {
        let child =
            common::wait::until_some_async("the sampler child", Duration::from_secs(10), || {
                sampler_children(rate).first().copied()
            })
            .await;
        at_work(child).await;
        let killed_at = profpipe::window_clock::now_ms();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        // Another one takes its place.
        let next =
            common::wait::until_some_async("a new sampler child", Duration::from_secs(10), || {
                sampler_children(rate).into_iter().find(|&p| p != child)
            })
            .await;
        (child, next, killed_at)
    });
    let run = run_pipeline("py_spy", Box::new(source), never()).await;
    let (killed, next, killed_at) = killer.await.unwrap();
    assert_ne!(killed, next);
    // Windows that started after the kill have the target's stacks.
    let after: Vec<_> = run
        .profiles()
        .into_iter()
        .filter(|p| p.window.start_ms > killed_at)
        .flat_map(|p| p.stacks.iter())
        .filter(|s| s.pid == w.pid && s.frames.contains("profpipe_py_leaf"))
        .collect();
    assert!(!after.is_empty(), "{:?}", run.events);
    // The loss is a diagnostic of the window it hit, counted by classify (SIGKILL
    // with nothing on stderr: `unknown`).
    assert!(
        run.telemetry.profiler_errors("py-spy", "unknown") >= 1,
        "{:?}",
        run.events
    );
    assert_eq!(run.watermarks().last(), Some(&Watermark::FINISHED));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attached_a_target_exiting_mid_window_is_classified_and_keeps_its_stacks() {
    let marker = "profpipe-test-py-attached-exits";
    let w = busy_py(marker);
    let rate = 44;
    let source = PySpyConfig {
        frequency: rate,
        max_windows: Some(2),
        ..py_spy_windows_of(marker, 6)
    };
    let ender = async {
        let child =
            common::wait::until_some_async("the sampler child", Duration::from_secs(10), || {
                sampler_children(rate).first().copied()
            })
            .await;
        at_work(child).await;
        w.end_soon();
    };
    let (run, ()) = tokio::join!(run_pipeline("py_spy", Box::new(source), never()), ender);
    assert_eq!(
        run.telemetry.profiler_errors("py-spy", "process_exited"),
        1,
        "{:?}",
        run.events
    );
    let stacks = run.stacks();
    assert!(stacks.iter().any(|(_, s)| s.contains("profpipe_py_leaf")));
    assert_eq!(run.watermarks().last(), Some(&Watermark::FINISHED));
}

/// `kill -9` of the agent: its sampler child dies with it (`PR_SET_PDEATHSIG`).
#[test]
fn a_killed_agent_leaves_no_sampler_child() {
    let marker = "profpipe-test-py-agent-killed";
    let w = busy_py(marker);
    let dir = tempfile::tempdir().unwrap();
    let config = common::run::write_config(
        dir.path(),
        "agent.toml",
        &format!(
            "[agent]\nstate_dir = {:?}\n\
             [sources.python]\ntype = \"py_spy\"\nwindow = \"2s\"\n\
             discovery = {{ min_age = \"0s\", allow_cmdline = [\"{marker}\"] }}\n\
             [sinks.out]\ntype = \"file\"\ninputs = [\"python\"]\npath = {:?}\n",
            dir.path().join("state"),
            dir.path().join("profiles"),
        ),
    );
    let mut agent = common::run::profpipe()
        .args(["run", "--config"])
        .arg(&config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let sampler =
        common::wait::until_some("the agent's sampler child", Duration::from_secs(20), || {
            common::proc::children_named(agent.id(), "profpipe")
                .into_iter()
                .find(|&p| common::proc::cmdline(p).contains("\0sampler\0python\0"))
        });
    let handle = PidFd::open(sampler).unwrap();
    agent.kill().unwrap();
    agent.wait().unwrap();
    assert!(
        handle.wait_exit(Duration::from_secs(10)),
        "the sampler child {sampler} outlived its agent"
    );
    drop(w);
}
