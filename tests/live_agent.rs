//! The agent's main job, end to end through the `profpipe` binary with the real
//! perf, py-spy and rbspy: the embedded default pipeline (with short windows and a
//! scratch state dir) profiles a frame-pointer C program, a Python and a Ruby
//! workload; and 500 short-lived processes leave no log line above INFO, no fd and no
//! child behind. Needs root (perf -a) and the tools `scripts/setup-test-env.sh`
//! installs.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The tests of this file run one at a time: each agent profiles the whole host, and
/// one test's workloads would be the other's extra children.
static SERIAL: Mutex<()> = Mutex::new(());

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The embedded default pipeline, with windows of `window`, at most `max_windows`,
/// discovery of processes older than `min_age`, and state and output under `dir`.
fn default_config(dir: &Path, window: &str, max_windows: u32, min_age: &str) -> PathBuf {
    let text = std::fs::read_to_string(repo().join("pipelines/default.toml")).unwrap();
    let text = text
        .replace(
            "window = \"60s\"",
            &format!("window = \"{window}\"\nmax_windows = {max_windows}"),
        )
        .replace(
            "type = \"py_spy\"",
            &format!("type = \"py_spy\"\ndiscovery = {{ min_age = \"{min_age}\" }}"),
        )
        .replace(
            "type = \"rbspy\"",
            &format!("type = \"rbspy\"\ndiscovery = {{ min_age = \"{min_age}\" }}"),
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

fn tools_path() -> String {
    let home = std::env::var("HOME").unwrap_or_default();
    format!(
        "{home}/.cache/profpipe-tools/bin:{}",
        std::env::var("PATH").unwrap_or_default()
    )
}

fn agent(config: &Path, log: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_profpipe"))
        .args(["--log", "info", "run", "--config"])
        .arg(config)
        .env("PATH", tools_path())
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

fn wait_with_timeout(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("agent did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
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

struct Workload(Child);

impl Drop for Workload {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(cmd: &mut Command) -> Workload {
    Workload(
        cmd.stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

#[test]
fn default_pipeline_profiles_native_python_and_ruby_code() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let hot = tmp.path().join("hot");
    let cc = Command::new("cc")
        .args(["-O1", "-fno-omit-frame-pointer", "-o"])
        .arg(&hot)
        .arg(repo().join("tests/programs/hot.c"))
        .status()
        .unwrap();
    assert!(cc.success());
    let c = start(Command::new(&hot).arg("40"));
    let py = start(
        Command::new("python3")
            .arg(repo().join("tests/programs/busy.py"))
            .arg("40"),
    );
    let rb = start(
        Command::new("ruby")
            .arg(repo().join("tests/programs/busy.rb"))
            .arg("40"),
    );
    std::thread::sleep(Duration::from_secs(2));

    let config = default_config(tmp.path(), "6s", 1, "1s");
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
    let py_line = col
        .lines()
        .find(|l| l.contains("profpipe_py_leaf"))
        .unwrap_or_else(|| {
            panic!(
                "python frames missing:\n{}\n{log_text}",
                excerpt(&col, "python")
            )
        });
    assert!(py_line.contains("_[p]"), "{py_line}");
    let rb_line = col
        .lines()
        .find(|l| l.contains("profpipe_rb_leaf"))
        .unwrap_or_else(|| {
            panic!(
                "ruby frames missing:\n{}\n{log_text}",
                excerpt(&col, "ruby")
            )
        });
    assert!(rb_line.contains("_[rb]"), "{rb_line}");
    for name in ["profpipe_hot_leaf", "profpipe_py_leaf", "profpipe_rb_leaf"] {
        assert!(svg.contains(name), "{name} not in the flame graph");
    }
    // The scratch directory holds nothing once the agent is gone.
    let leftovers: Vec<_> = walk(&tmp.path().join("state"));
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
    let config = default_config(tmp.path(), "2s", 100_000, "0s");
    let log = tmp.path().join("agent.log");
    let mut agent = agent(&config, &log);
    let pid = agent.id();
    std::thread::sleep(Duration::from_secs(3));
    let before = quiet_counts(pid);

    // 500 Python processes that live 100 ms each, 10 at a time.
    for _ in 0..50 {
        let batch: Vec<Child> = (0..10)
            .map(|_| {
                Command::new("python3")
                    .args(["-c", "import time; time.sleep(0.1)"])
                    .spawn()
                    .unwrap()
            })
            .collect();
        for mut c in batch {
            c.wait().unwrap();
        }
    }
    // Let the windows that saw them end.
    std::thread::sleep(Duration::from_secs(5));
    let after = quiet_counts(pid);
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
    assert_eq!(
        before, after,
        "(open fds, children) before and after the burst"
    );
    let loud = loud_lines(&log);
    assert!(
        loud.is_empty(),
        "log lines above INFO:\n{}",
        loud.join("\n")
    );
}

/// (open fds, child processes) of `pid`, the smallest seen over two seconds of
/// sampling: short-lived helpers (perf script at a window's end) come and go, what
/// leaks stays.
fn quiet_counts(pid: u32) -> (usize, usize) {
    let mut best = (usize::MAX, usize::MAX);
    for _ in 0..20 {
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .count();
        best.0 = best.0.min(fds);
        best.1 = best.1.min(children(pid));
        std::thread::sleep(Duration::from_millis(100));
    }
    best
}

fn children(pid: u32) -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter(|stat| {
            // ppid is the 2nd field after the parenthesised comm.
            stat.rsplit_once(") ")
                .and_then(|(_, rest)| rest.split_whitespace().nth(1).map(|p| p == pid.to_string()))
                .unwrap_or(false)
        })
        .count()
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
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
    let mut agent = Command::new(env!("CARGO_BIN_EXE_profpipe"))
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
