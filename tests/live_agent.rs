//! The agent's main job, end to end through the `profpipe` binary with the real
//! perf, py-spy and rbspy: the embedded default pipeline (with short windows and a
//! scratch state dir) profiles a frame-pointer C program, a Python and a Ruby
//! workload; and 500 short-lived processes leave no log line above INFO, no fd and no
//! child behind. Needs root (perf -a) and the tools `scripts/setup-test-env.sh`
//! installs.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use common::proc::{children_of, zombies_of, Proc};
use common::run::{tools_path, wait_with_timeout};
use common::{repo, wait, walk};

/// The tests of this file run one at a time: each agent profiles the whole host, and
/// one test's workloads would be the other's extra children.
static SERIAL: Mutex<()> = Mutex::new(());

/// The embedded default pipeline, with windows of `window`, at most `max_windows`,
/// discovery of processes older than `min_age`, and state and output under `dir`.
/// Discovery is `discovery` (TOML inline-table fields, e.g. `min_age = "1s"`).
fn default_config(dir: &Path, window: &str, max_windows: u32, discovery: &str) -> PathBuf {
    let text = std::fs::read_to_string(repo().join("pipelines/default.toml")).unwrap();
    let text = text
        .replace(
            "window = \"60s\"",
            &format!("window = \"{window}\"\nmax_windows = {max_windows}"),
        )
        .replace(
            "type = \"py_spy\"",
            &format!("type = \"py_spy\"\ndiscovery = {{ {discovery} }}"),
        )
        .replace(
            "type = \"rbspy\"",
            &format!("type = \"rbspy\"\ndiscovery = {{ {discovery} }}"),
        )
        .replace(
            "state_dir = \"/var/lib/profpipe\"",
            &format!("state_dir = {:?}", dir.join("state")),
        )
        .replace(
            "path = \"profiles\"",
            &format!("path = {:?}", dir.join("profiles")),
        );
    let path = dir.join("agent.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn agent(config: &Path, log: &Path) -> Child {
    common::run::profpipe()
        .args(["--log", "info", "run", "--config"])
        .arg(config)
        .env("PATH", tools_path())
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

/// Lines of the agent's log at WARN or ERROR.
fn loud_lines(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
        .map(str::to_string)
        .collect()
}

/// Starts a `tests/programs` workload and returns once it says its hot functions
/// run (`PROFPIPE_READY_FILE`).
fn start_ready(cmd: &mut Command, ready_dir: &Path, name: &str) -> Proc {
    let ready = ready_dir.join(format!("{name}.ready"));
    let p = Proc::start(cmd.env("PROFPIPE_READY_FILE", &ready));
    common::proc::wait_file(&ready);
    p
}

/// Waits until the file sink has written `n` new windows (`last_profile.col` points
/// at a new file each time), for up to `within`.
fn wait_for_new_profiles(dir: &Path, n: usize, within: Duration) {
    let latest = || std::fs::read_link(dir.join("last_profile.col")).ok();
    let mut last = latest();
    let mut seen = 0;
    wait::until(
        &format!("{n} new profiles in {}", dir.display()),
        within,
        || {
            let now = latest();
            if now.is_some() && now != last {
                seen += 1;
                last = now;
            }
            seen >= n
        },
    );
}

#[test]
fn default_pipeline_profiles_native_python_and_ruby_code() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let hot = common::proc::build_hot(tmp.path());
    let c = Proc::start(Command::new(&hot).arg("40"));
    // A busy program of the given interpreter, 40 s long, ready to be profiled.
    let busy = |interpreter: &str, program: &str, name: &str| {
        let program = repo().join("tests/programs").join(program);
        start_ready(
            Command::new(interpreter).arg(program).arg("40"),
            tmp.path(),
            name,
        )
    };
    let py = busy("python3", "busy.py", "py");
    let rb = busy("ruby", "busy.rb", "rb");
    // Discovery (below) takes processes older than 1 s.
    for w in [&py, &rb] {
        wait::until(
            "the workload is older than min_age",
            Duration::from_secs(10),
            || common::proc::age(w.pid()).is_some_and(|a| a > Duration::from_millis(1200)),
        );
    }

    let config = default_config(tmp.path(), "6s", 1, "min_age = \"1s\"");
    let log = tmp.path().join("agent.log");
    let status = wait_with_timeout(&mut agent(&config, &log), Duration::from_secs(90));
    let log_text = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "agent failed: {status}\n{log_text}");

    let profiles = tmp.path().join("profiles");
    let col = std::fs::read_to_string(profiles.join("last_profile.col")).unwrap();
    let svg = std::fs::read_to_string(profiles.join("last_profile.svg")).unwrap();
    assert!(
        col.contains("profpipe_hot_mid;profpipe_hot_leaf"),
        "native frames missing:\n{}",
        excerpt(&col, "hot")
    );
    let frames_of = |leaf: &str, what: &str| {
        col.lines()
            .find(|l| l.contains(leaf))
            .unwrap_or_else(|| {
                panic!(
                    "{what} frames missing:\n{}\n{log_text}",
                    excerpt(&col, what)
                )
            })
            .to_string()
    };
    let py_line = frames_of("profpipe_py_leaf", "python");
    assert!(py_line.contains("_[p]"), "{py_line}");
    let rb_line = frames_of("profpipe_rb_leaf", "ruby");
    assert!(rb_line.contains("_[rb]"), "{rb_line}");
    // gProfiler's appid frame after the comm (the default pipeline's app_id step),
    // with the script's absolute path, never the arguments after it.
    let busy_py = repo().join("tests/programs/busy.py");
    let appid = format!(";appid: python: {0} ({0});", busy_py.display());
    assert!(py_line.contains(&appid), "{py_line}");
    assert!(rb_line.contains(";appid: ruby: "), "{rb_line}");
    assert!(
        !py_line.contains(" 40)"),
        "an argument after the script: {py_line}"
    );
    for name in ["profpipe_hot_leaf", "profpipe_py_leaf", "profpipe_rb_leaf"] {
        assert!(svg.contains(name), "{name} not in the flame graph");
    }
    // The scratch directory holds nothing once the agent is gone but the lock file
    // of the state directory (a lock file is left in place: removing it would race
    // with the next agent taking it).
    let leftovers: Vec<_> = walk(&tmp.path().join("state"))
        .into_iter()
        .filter(|p| !p.ends_with("agent.lock"))
        .collect();
    assert!(leftovers.is_empty(), "scratch files left: {leftovers:?}");
    drop((c, py, rb));
}

#[test]
fn short_lived_processes_leave_no_trace() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    // min_age 0: py-spy is pointed at every short-lived Python process, so runs that
    // lose their target are exercised, not just skipped. The agent runs until told to
    // stop.
    // Only this test's processes: the host is shared, and another test's Python
    // workload being profiled would be an extra child here.
    let marker = format!("profpipe-live-burst-{}", std::process::id());
    let config = default_config(
        tmp.path(),
        "2s",
        100_000,
        &format!("min_age = \"0s\", allow_cmdline = [\"{marker}\"]"),
    );
    let log = tmp.path().join("agent.log");
    let mut agent = agent(&config, &log);
    let pid = agent.id();
    let profiles = tmp.path().join("profiles");
    // Steady state: the first window is written.
    wait_for_new_profiles(&profiles, 1, Duration::from_secs(30));
    let before = persistent(pid, &profiles);

    // 500 Python processes that live 100 ms each, 10 at a time.
    for _ in 0..50 {
        let batch: Vec<Child> = (0..10)
            .map(|_| {
                Command::new("python3")
                    .args(["-c", &format!("import time; time.sleep(0.1)  # {marker}")])
                    .spawn()
                    .unwrap()
            })
            .collect();
        for mut c in batch {
            c.wait().unwrap();
        }
    }
    // The windows that saw them end while `persistent` waits out three more.
    let after = persistent(pid, &profiles);
    let int = Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .unwrap();
    assert!(int.success());
    let status = wait_with_timeout(&mut agent, Duration::from_secs(60));
    assert!(
        status.success(),
        "{}",
        std::fs::read_to_string(&log).unwrap()
    );
    let counts = |(fds, kids): &(Vec<String>, Vec<u32>)| (fds.len(), kids.len());
    assert_eq!(
        counts(&before),
        counts(&after),
        "(open fds, children) before and after the burst: {before:?} / {after:?}"
    );
    let loud = loud_lines(&log);
    assert!(
        loud.is_empty(),
        "log lines above INFO:\n{}",
        loud.join("\n")
    );
}

/// The descriptors (`fd -> target`) and children (zombies included) of `pid` that
/// were there both before and after three windows were written: what stays, not
/// the helpers each window starts and ends (perf script, its pipes), whose pids and
/// pipe inodes are new every window however long they take on a loaded host.
fn persistent(pid: u32, profiles: &Path) -> (Vec<String>, Vec<u32>) {
    let snapshot = || {
        let fds: std::collections::BTreeSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .flatten()
            .filter_map(|e| {
                let target = std::fs::read_link(e.path()).ok()?;
                Some(format!(
                    "{} -> {}",
                    e.file_name().to_string_lossy(),
                    target.display()
                ))
            })
            .collect();
        let kids: std::collections::BTreeSet<u32> = children_of(pid)
            .into_iter()
            .chain(zombies_of(pid))
            .collect();
        (fds, kids)
    };
    let (fds_a, kids_a) = snapshot();
    wait_for_new_profiles(profiles, 3, Duration::from_secs(60));
    let (fds_b, kids_b) = snapshot();
    (
        fds_a.intersection(&fds_b).cloned().collect(),
        kids_a.intersection(&kids_b).copied().collect(),
    )
}

fn excerpt(text: &str, what: &str) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| l.contains(what)).take(5).collect();
    format!(
        "{} lines, e.g.:\n{}",
        text.lines().count(),
        lines.join("\n")
    )
}

/// The README's main command: no config (the embedded default), one short window.
#[test]
fn run_without_config_profiles_one_window_and_exits() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("agent.log");
    let mut agent = common::run::profpipe()
        .args(["--log", "info", "run", "--duration", "3s", "--once"])
        .current_dir(tmp.path())
        .env("PATH", tools_path())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let status = wait_with_timeout(&mut agent, Duration::from_secs(60));
    let log_text = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "{log_text}");
    let col = std::fs::read_to_string(tmp.path().join("profiles/last_profile.col")).unwrap();
    assert!(col.starts_with("# {"), "{col}");
    assert!(
        col.lines().count() > 1,
        "no stacks in one window of the whole host"
    );
    assert!(tmp.path().join("profiles/last_profile.svg").exists());
    let loud = loud_lines(&log);
    assert!(
        loud.is_empty(),
        "log lines above INFO:\n{}",
        loud.join("\n")
    );
}
