//! Java and Node.js named by the perf source (issue 17), against a real JVM (JDK 17)
//! and a real Node.js: after one window their hot functions come out of `fold` as
//! `_[j]` frames; a JVM without `-XX:+PreserveFramePointer` and a Node.js process
//! without `--perf-basic-prof` get their label and one INFO line; a JVM with
//! `-XX:+DisableAttachMechanism` is one `attach_refused` and nothing worse; a JVM in
//! its own PID and mount namespace (with a private /tmp) is attached and named.
//! Needs root, perf, java, javac, node and unshare (skipped, with a message,
//! otherwise).

mod common;

use std::io::Write;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use common::collect::Collect;
use common::events::{diagnostics, profiles};
use common::proc::Detached;
use common::run;
use profpipe::event::{Event, Profile};
use profpipe::process::DiscoveryConfig;
use profpipe::sources::perf::PerfSourceConfig;
use profpipe::telemetry::Telemetry;
use profpipe::transforms::classify::ClassifyConfig;
use profpipe::transforms::fold::FoldConfig;
use profpipe::units::{DurationStr, RegexStr};

/// One test at a time: each profiles the whole host.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Log lines of the agent (every test of this file), for the INFO checks.
static LOG: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOG.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn log_lines() -> Vec<String> {
    String::from_utf8_lossy(&LOG.lock().unwrap())
        .lines()
        .map(str::to_string)
        .collect()
}

fn usable() -> bool {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("profpipe=info")
        .with_ansi(false)
        .with_writer(|| LogWriter)
        .try_init();
    let root = unsafe { libc::geteuid() } == 0;
    let runs = |p: &str, a: &str| {
        Command::new(p)
            .arg(a)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let tools = runs("perf", "version")
        && runs("java", "-version")
        && runs("javac", "-version")
        && runs("node", "--version");
    if !(root && tools) {
        eprintln!("skipping: needs root, perf, java, javac and node (root: {root})");
    }
    root && tools
}

/// tests/programs/JitBusy.java compiled into a directory outside /tmp (the
/// container test hides /tmp).
fn classes() -> PathBuf {
    static ONCE: Mutex<Option<PathBuf>> = Mutex::new(None);
    let mut done = ONCE.lock().unwrap();
    if let Some(dir) = done.as_ref() {
        return dir.clone();
    }
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("jit-classes");
    std::fs::create_dir_all(&dir).unwrap();
    let status = Command::new("javac")
        .arg("-d")
        .arg(&dir)
        .arg(common::programs().join("JitBusy.java"))
        .status()
        .unwrap();
    assert!(status.success(), "javac failed");
    *done = Some(dir.clone());
    dir
}

/// `java [flags] JitBusy 300 <marker>`, detached, hot when returned.
fn jvm(flags: &[&str], marker: &str) -> Detached {
    let cp = classes();
    let mut args: Vec<&str> = flags.to_vec();
    let cp = cp.to_str().unwrap();
    args.extend(["-cp", cp, "JitBusy", "300", marker]);
    Detached::start_ready("java", &args)
}

/// `node [flags] busy.js 300 <marker>`, detached, hot when returned; run in the
/// target's tmp dir, where `--perf-basic-prof` makes V8 write an `isolate-*.log`.
fn node(flags: &[&str], marker: &str) -> Detached {
    let script = common::programs().join("busy.js");
    let mut args: Vec<&str> = vec!["-C", env!("CARGO_TARGET_TMPDIR"), "node"];
    args.extend_from_slice(flags);
    args.extend([script.to_str().unwrap(), "300", marker]);
    Detached::start_ready("env", &args)
}

/// Removes the perf maps of these host processes (killed after the test, their maps
/// would stay in /tmp).
struct RemoveMaps(Vec<u32>);

impl Drop for RemoveMaps {
    fn drop(&mut self) {
        for pid in &self.0 {
            let _ = std::fs::remove_file(format!("/tmp/perf-{pid}.map"));
        }
    }
}

struct Run {
    events: Vec<Event>,
    telemetry: Telemetry,
}

impl Run {
    fn profiles_of(&self, pid: u32) -> Vec<&Profile> {
        profiles(&self.events)
            .into_iter()
            .filter(|p| p.stacks.iter().any(|s| s.pid == pid))
            .collect()
    }

    /// (frames, count) of every stack of `pid`.
    fn stacks_of(&self, pid: u32) -> Vec<(String, u64)> {
        profiles(&self.events)
            .iter()
            .flat_map(|p| p.stacks.iter())
            .filter(|s| s.pid == pid)
            .map(|s| (s.frames.to_string(), s.count))
            .collect()
    }

    /// The `name` label of `pid`'s profiles (they all agree).
    fn label_of(&self, pid: u32, name: &str) -> Option<String> {
        let values: Vec<Option<String>> = self
            .profiles_of(pid)
            .iter()
            .map(|p| p.labels.extra.get(name).map(str::to_string))
            .collect();
        assert!(!values.is_empty(), "no profile of pid {pid}");
        assert!(values.windows(2).all(|w| w[0] == w[1]), "{values:?}");
        values[0].clone()
    }
}

/// perf (two windows of `window_s`: the first is cut short by perf's start-up;
/// discovery of the processes whose command line
/// holds `marker`) → fold (kernel, jit, unknown_as_dso: the default pipeline's) →
/// classify → collect; plus the source's own events (its diagnostics).
async fn profile(marker: &str, window_s: u64) -> Run {
    let state = tempfile::tempdir().unwrap();
    let source = PerfSourceConfig {
        frequency: 99,
        window: DurationStr::from_secs(window_s),
        max_windows: Some(2),
        events: Some(vec!["cpu-clock".into()]),
        // perf script symbolizes every busy binary of the host: slow on a loaded
        // test machine.
        script_timeout: DurationStr::from_secs(240),
        discovery: DiscoveryConfig {
            min_age: DurationStr(Duration::ZERO),
            allow_cmdline: vec![RegexStr(regex::Regex::new(marker).unwrap())],
            ..DiscoveryConfig::default()
        },
        ..Default::default()
    };
    let fold = FoldConfig {
        kernel: true,
        jit: true,
        unknown_as_dso: true,
        ..FoldConfig::default()
    };
    let sink = Collect::new();
    let raw = Collect::new();
    let config = run::config(
        run::agent_with_state(state.path()),
        vec![run::source("cpu", "perf", source)],
        vec![
            run::transform("fold", "fold", &["cpu"], fold),
            run::transform("classify", "classify", &["fold"], ClassifyConfig::default()),
        ],
        vec![
            run::sink("collect", "collect", &["classify"], sink.clone()),
            run::sink("raw", "collect", &["cpu"], raw.clone()),
        ],
    );
    let telemetry = Telemetry::new();
    let outcome = tokio::time::timeout(
        Duration::from_secs(300),
        run::start(&config, &telemetry).run_until(std::future::pending(), Duration::from_secs(30)),
    )
    .await
    .expect("two windows end");
    assert!(outcome.is_clean(), "{outcome:?}");
    let mut events = sink.take();
    // The source's diagnostics, before classify counted and consumed them.
    events.extend(
        raw.take()
            .into_iter()
            .filter(|e| matches!(e, Event::Diagnostic(_))),
    );
    Run { events, telemetry }
}

/// Samples of `pid` with a frame naming `function` as a JIT frame, and all its
/// samples with any unresolved JIT frame `(/tmp/perf-N.map)`.
fn named_and_unresolved(run: &Run, pid: u32, function: &str) -> (u64, u64, u64) {
    let stacks = run.stacks_of(pid);
    let total: u64 = stacks.iter().map(|(_, c)| c).sum();
    let named: u64 = stacks
        .iter()
        .filter(|(f, _)| {
            f.split(';')
                .any(|fr| fr.contains(function) && fr.ends_with("_[j]"))
        })
        .map(|(_, c)| c)
        .sum();
    let unresolved: u64 = stacks
        .iter()
        .filter(|(f, _)| f.contains("(/tmp/perf-"))
        .map(|(_, c)| c)
        .sum();
    (named, unresolved, total)
}

fn info_lines_of(pid: u32, what: &str) -> Vec<String> {
    log_lines()
        .into_iter()
        .filter(|l| l.contains(&format!("pid={pid} ")) && l.contains(what))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn java_and_node_are_named_labelled_and_refusals_are_quiet() {
    if !usable() {
        return;
    }
    let _serial = SERIAL.lock().await;
    let marker = "profpipe-jit-host";
    let fp = jvm(&["-XX:+PreserveFramePointer"], marker);
    let no_fp = jvm(&[], marker);
    let refusing = jvm(&["-XX:+DisableAttachMechanism"], marker);
    // The same flag where the command line does not show it: SIGQUIT, no socket.
    let refusing_env = {
        let cp = classes();
        Detached::start_ready(
            "env",
            &[
                "JAVA_TOOL_OPTIONS=-XX:+DisableAttachMechanism",
                "java",
                "-cp",
                cp.to_str().unwrap(),
                "JitBusy",
                "300",
                marker,
            ],
        )
    };
    let node_map = node(&["--perf-basic-prof"], marker);
    let node_plain = node(&[], marker);
    let _maps = RemoveMaps(
        [
            &fp,
            &no_fp,
            &refusing,
            &refusing_env,
            &node_map,
            &node_plain,
        ]
        .iter()
        .map(|p| p.pid)
        .collect(),
    );

    let run = profile(marker, 8).await;

    // A JVM with frame pointers: named whole stacks, few unresolved JIT frames.
    let (named, unresolved, total) = named_and_unresolved(&run, fp.pid, "JitBusy.profpipeJava");
    eprintln!("JVM with frame pointers: {named} named, {unresolved} unresolved of {total}");
    assert!(total >= 20, "too few samples of the JVM: {total}");
    assert!(
        named * 2 > total,
        "{named} of {total}: {:?}",
        run.stacks_of(fp.pid)
    );
    assert!(
        unresolved * 20 <= total,
        "{unresolved} of {total} samples with unresolved JIT frames: {:?}",
        run.stacks_of(fp.pid)
    );
    assert!(
        run.stacks_of(fp.pid)
            .iter()
            .any(|(f, _)| f.contains("JavaMain;")
                && f.contains("JavaCalls::call_helper;")
                && f.contains("JitBusy.profpipeJava")),
        "no stack from JavaMain through the VM into JitBusy: {:?}",
        run.stacks_of(fp.pid)
    );
    assert_eq!(run.label_of(fp.pid, "java_frame_pointers"), None);
    assert!(info_lines_of(fp.pid, "PreserveFramePointer").is_empty());

    // Without frame pointers: named leaves (perf cannot walk past them), the label,
    // one INFO line.
    let (named, _, total) = named_and_unresolved(&run, no_fp.pid, "JitBusy.profpipeJava");
    assert!(
        named * 2 > total,
        "{named} of {total}: {:?}",
        run.stacks_of(no_fp.pid)
    );
    assert!(
        run.stacks_of(no_fp.pid)
            .iter()
            .any(|(f, _)| f.starts_with("java;long JitBusy.profpipeJava")),
        "{:?}",
        run.stacks_of(no_fp.pid)
    );
    assert_eq!(
        run.label_of(no_fp.pid, "java_frame_pointers").as_deref(),
        Some("false")
    );
    let lines = info_lines_of(no_fp.pid, "-XX:+PreserveFramePointer");
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("INFO"), "{lines:?}");

    // DisableAttachMechanism: one attach_refused each, counted, INFO; the JVMs run on.
    for (jvm, how) in [
        (&refusing, "DisableAttachMechanism"),
        (&refusing_env, "no attach socket appeared after SIGQUIT"),
    ] {
        let refused: Vec<_> = diagnostics(&run.events)
            .into_iter()
            .filter(|d| d.stderr.contains(&format!("pid {})", jvm.pid)))
            .collect();
        assert_eq!(refused.len(), 1, "{refused:?}");
        assert_eq!(&*refused[0].labels.profiler, "jvm_attach");
        assert!(refused[0].stderr.contains("attach refused"), "{refused:?}");
        assert!(refused[0].stderr.contains(how), "{refused:?}");
        assert!(common::proc::stat(jvm.pid).is_some_and(|(s, _, _)| s != 'Z'));
        assert!(!run.stacks_of(jvm.pid).is_empty());
    }
    assert_eq!(
        run.telemetry
            .profiler_errors("jvm_attach", "attach_refused"),
        2
    );
    let refused_lines: Vec<String> = log_lines()
        .into_iter()
        .filter(|l| l.contains("reason=\"attach_refused\"") || l.contains("reason=attach_refused"))
        .collect();
    assert!(
        !refused_lines.is_empty() && refused_lines.iter().all(|l| l.contains("INFO")),
        "{refused_lines:?}"
    );

    // Node.js with its perf map: named `_[j]` JavaScript frames.
    let (named, _, total) = named_and_unresolved(&run, node_map.pid, "profpipeNode");
    assert!(
        named * 2 > total,
        "{named} of {total}: {:?}",
        run.stacks_of(node_map.pid)
    );
    assert_eq!(run.label_of(node_map.pid, "node_perf_map"), None);
    // Without: the label and one INFO line naming the flag.
    assert_eq!(
        run.label_of(node_plain.pid, "node_perf_map").as_deref(),
        Some("false")
    );
    let lines = info_lines_of(node_plain.pid, "--perf-basic-prof");
    assert_eq!(lines.len(), 1, "{lines:?}");

    // Nothing above INFO about any of them (perf script itself may be slow on a
    // loaded test machine: that is not theirs).
    let loud: Vec<String> = log_lines()
        .into_iter()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .filter(|l| l.contains("jvm_attach") || l.contains("perf::jit") || l.contains("attach"))
        .collect();
    assert!(loud.is_empty(), "{loud:?}");
}

/// A JVM as PID 1 of its own PID and mount namespace, with its own tmpfs on /tmp.
struct ContainerJvm {
    pid: u32,
    _dir: tempfile::TempDir,
}

impl ContainerJvm {
    fn start(marker: &str) -> ContainerJvm {
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let ready = dir.path().join("ready");
        let inner = format!(
            "mount -t tmpfs tmpfs /tmp && exec java -XX:+PreserveFramePointer -cp {} JitBusy 300 {marker}",
            classes().display()
        );
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "unshare --pid --fork --mount --mount-proc sh -c '{inner}' >/dev/null 2>&1 </dev/null & echo $!"
            ))
            .env("PROFPIPE_READY_FILE", &ready)
            .output()
            .unwrap();
        let unshare: u32 = String::from_utf8(out.stdout)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        common::proc::wait_file(&ready);
        let pid = common::proc::children_of(unshare)
            .into_iter()
            .next()
            .expect("the JVM under unshare");
        ContainerJvm { pid, _dir: dir }
    }

    fn ns_pid(&self) -> u32 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("NSpid:"))
            .and_then(|f| f.split_whitespace().last())
            .unwrap()
            .parse()
            .unwrap()
    }

    fn root(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root", self.pid))
    }
}

impl Drop for ContainerJvm {
    fn drop(&mut self) {
        // PID 1 of its namespace: its end ends the namespace.
        unsafe { libc::kill(self.pid as libc::pid_t, libc::SIGKILL) };
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jvm_in_its_own_pid_and_mount_namespace_is_attached_and_named() {
    if !usable() {
        return;
    }
    if !Command::new("unshare")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        eprintln!("skipping: needs unshare");
        return;
    }
    let _serial = SERIAL.lock().await;
    let marker = "profpipe-jit-container";
    let jvm = ContainerJvm::start(marker);
    let ns_pid = jvm.ns_pid();
    assert_ne!(ns_pid, jvm.pid, "not in a PID namespace of its own");
    let map_inside = jvm.root().join(format!("tmp/perf-{ns_pid}.map"));
    assert!(!map_inside.exists());

    let run = profile(marker, 8).await;

    // The map was written inside the container, not in the host's /tmp.
    assert!(map_inside.exists(), "{} missing", map_inside.display());
    let (named, unresolved, total) = named_and_unresolved(&run, jvm.pid, "JitBusy.profpipeJava");
    eprintln!("JVM in a container: {named} named, {unresolved} unresolved of {total}");
    assert!(total >= 20, "too few samples: {total}");
    assert!(
        named * 2 > total,
        "{named} of {total}: {:?}",
        run.stacks_of(jvm.pid)
    );
    assert!(unresolved * 20 <= total, "{:?}", run.stacks_of(jvm.pid));
    assert!(
        diagnostics(&run.events).is_empty(),
        "{:?}",
        diagnostics(&run.events)
    );
}
