//! The `py_spy` and `rbspy` sources against real profilers and real Python and Ruby
//! processes (`tests/programs/busy.{py,rb}`).
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
use profpipe::sources::runtime_runs::{resolve_binary, Runner, Target};
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
    let source = py_spy_windows_of(marker, 6);
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
    let run = run_pipeline("py_spy", Box::new(py_spy_source(marker, 2)), never()).await;
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
    let source = PySpyConfig {
        max_windows: None,
        ..py_spy_windows_of(marker, 60)
    };
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
    let source = PySpyConfig {
        binary: "/nonexistent/bin/py-spy".into(),
        ..py_spy_source("profpipe-test-none", 1)
    };
    let started = std::time::Instant::now();
    let run = run_pipeline("py_spy", Box::new(source), never()).await;
    assert_eq!(run.watermarks(), vec![Watermark::FINISHED]);
    assert!(run.profiles().is_empty());
    assert!(started.elapsed() < Duration::from_secs(2));
}
