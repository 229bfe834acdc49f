//! perf.data read in-process against `perf script` (as root, with the real perf):
//! for captures recorded here (the kernel, C, Rust, Python, Ruby, and Node.js JIT
//! code with a perf map), `profpipe fold capture.data` and
//! `perf script -F +pid --no-inline -i capture.data | profpipe fold` give the same
//! total and at least 99% of the samples on identical stacks; both perf.data layouts
//! are read; and a live perf pipeline starts no `perf script`. Skipped (with a
//! message) where perf or root is missing.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::collect::Collect;
use common::events::profiles;
use common::proc::Proc;
use common::run;
use profpipe::sources::perf::{PerfSourceConfig, Reader};
use profpipe::telemetry::Telemetry;
use profpipe::transforms::fold::FoldConfig;
use profpipe::units::{ByteSize, DurationStr};

fn perf_usable() -> bool {
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

fn have(program: &str) -> bool {
    let ok = Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("skipping: {program} is not installed");
    }
    ok
}

/// `perf record -F 999 -g -o OUT [extra] -- cmd...`, file layout.
fn record(out: &Path, extra: &[&str], cmd: &[&str]) {
    let st = Command::new("perf")
        .args(["record", "-q", "-F", "999", "-g", "-o"])
        .arg(out)
        .args(extra)
        .arg("--")
        .args(cmd)
        .stdout(Stdio::null())
        .status()
        .expect("perf record");
    assert!(st.success(), "perf record failed: {st}");
}

/// Folded output as stack -> count.
fn parse(text: &[u8]) -> HashMap<String, u64> {
    let mut m = HashMap::new();
    for line in String::from_utf8_lossy(text).lines() {
        let (stack, n) = line.rsplit_once(' ').expect("`stack count` lines");
        *m.entry(stack.to_string()).or_default() += n.parse::<u64>().expect("a count");
    }
    m
}

fn profpipe_fold(flags: &[&str], input: &Path) -> HashMap<String, u64> {
    let out = Command::new(env!("CARGO_BIN_EXE_profpipe"))
        .arg("fold")
        .args(flags)
        .arg(input)
        .output()
        .expect("profpipe fold");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    parse(&out.stdout)
}

/// `perf script -F +pid --no-inline -i DATA | profpipe fold FLAGS`.
fn script_fold(flags: &[&str], data: &Path) -> HashMap<String, u64> {
    let text = Command::new("perf")
        .args(["script", "-F", "+pid", "--no-inline", "-i"])
        .arg(data)
        .stderr(Stdio::null())
        .output()
        .expect("perf script");
    assert!(text.status.success());
    let txt = data.with_extension("txt");
    std::fs::write(&txt, &text.stdout).unwrap();
    profpipe_fold(flags, &txt)
}

/// The 99% rule: the same total, and at least 99% of it on identical stacks.
/// Returns the in-process stacks.
fn assert_equivalent(data: &Path, flags: &[&str]) -> HashMap<String, u64> {
    let ours = profpipe_fold(flags, data);
    let theirs = script_fold(flags, data);
    let total = |m: &HashMap<String, u64>| m.values().sum::<u64>();
    let same: u64 = ours
        .iter()
        .map(|(k, v)| (*v).min(theirs.get(k).copied().unwrap_or(0)))
        .sum();
    assert!(
        total(&theirs) > 0,
        "perf script found no samples in {}",
        data.display()
    );
    assert_eq!(
        total(&ours),
        total(&theirs),
        "totals differ for {} {flags:?}",
        data.display()
    );
    let share = same as f64 / total(&theirs) as f64;
    if share < 0.99 {
        let mut diff: Vec<_> = ours
            .iter()
            .filter(|(k, v)| theirs.get(*k) != Some(v))
            .take(20)
            .collect();
        diff.sort();
        panic!(
            "{:.2}% identical for {} {flags:?}; stacks of ours that differ: {diff:#?}",
            share * 100.0,
            data.display()
        );
    }
    ours
}

fn any_stack(stacks: &HashMap<String, u64>, needle: &str) -> bool {
    stacks.keys().any(|s| s.contains(needle))
}

#[test]
fn kernel_system_wide_capture_agrees_with_perf_script() {
    if !perf_usable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("kernel.data");
    // A syscall-heavy loop, recorded system-wide.
    record(
        &data,
        &["-a"],
        &[
            "dd",
            "if=/dev/zero",
            "of=/dev/null",
            "bs=1",
            "count=1000000",
        ],
    );
    let ours = assert_equivalent(&data, &["--kernel", "--pid"]);
    assert!(
        ours.keys()
            .any(|s| s.starts_with("dd-") && s.contains("_[k]")),
        "no kernel frame of dd"
    );
    assert_equivalent(&data, &["--all", "--tid", "--addrs"]);
    assert_equivalent(&data, &[]);
}

#[test]
fn c_program_agrees_and_names_its_frames() {
    if !perf_usable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let hot = common::proc::build_hot(dir.path());
    let data = dir.path().join("c.data");
    record(&data, &[], &[hot.to_str().unwrap(), "2"]);
    let ours = assert_equivalent(&data, &["--pid"]);
    assert!(
        any_stack(&ours, "main;profpipe_hot_mid;profpipe_hot_leaf"),
        "{ours:?}"
    );
}

#[test]
fn rust_program_agrees_and_is_demangled() {
    if !perf_usable() || !have("rustc") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("churn");
    let st = Command::new("rustc")
        .args(["-O", "-C", "force-frame-pointers=yes", "-o"])
        .arg(&bin)
        .arg(common::programs().join("churn.rs"))
        .status()
        .unwrap();
    assert!(st.success());
    let data = dir.path().join("rust.data");
    record(&data, &[], &[bin.to_str().unwrap(), "2"]);
    let ours = assert_equivalent(&data, &[]);
    assert!(any_stack(&ours, "churn::profpipe_rs_churn"), "{ours:?}");
}

#[test]
fn python_agrees() {
    if !perf_usable() || !have("python3") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("py.data");
    let busy = common::programs().join("busy.py");
    record(&data, &[], &["python3", busy.to_str().unwrap(), "2"]);
    let ours = assert_equivalent(&data, &["--kernel"]);
    assert!(ours.keys().any(|s| s.starts_with("python3")), "{ours:?}");
}

#[test]
fn ruby_agrees() {
    if !perf_usable() || !have("ruby") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("rb.data");
    let busy = common::programs().join("busy.rb");
    record(&data, &[], &["ruby", busy.to_str().unwrap(), "2"]);
    let ours = assert_equivalent(&data, &[]);
    assert!(any_stack(&ours, "vm_exec"), "{ours:?}");
}

#[test]
fn node_jit_frames_from_the_perf_map_agree() {
    if !perf_usable() || !have("node") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("js.data");
    let js = common::programs().join("jit.js");
    record(
        &data,
        &[],
        &["node", "--perf-basic-prof", js.to_str().unwrap(), "2"],
    );
    let ours = assert_equivalent(&data, &["--jit"]);
    assert!(
        ours.keys()
            .any(|s| s.contains("profpipeJsFib") && s.contains("_[j]")),
        "no JIT frame named from the perf map: {:?}",
        ours.keys().take(10).collect::<Vec<_>>()
    );
}

#[test]
fn pipe_layout_is_read_from_a_file_and_from_stdin() {
    if !perf_usable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let hot = common::proc::build_hot(dir.path());
    let data = dir.path().join("pipe.data");
    let out = std::fs::File::create(&data).unwrap();
    let st = Command::new("perf")
        .args(["record", "-q", "-F", "999", "-g", "-o", "-", "--"])
        .arg(&hot)
        .arg("1")
        .stdout(out)
        .status()
        .unwrap();
    assert!(st.success());
    assert_eq!(&std::fs::read(&data).unwrap()[..8], b"PERFILE2");
    let ours = assert_equivalent(&data, &[]);
    assert!(any_stack(&ours, "profpipe_hot_mid;profpipe_hot_leaf"));
    let piped = Command::new(env!("CARGO_BIN_EXE_profpipe"))
        .arg("fold")
        .stdin(std::fs::File::open(&data).unwrap())
        .output()
        .unwrap();
    assert!(piped.status.success());
    assert_eq!(parse(&piped.stdout), ours);
}

#[test]
fn damaged_perf_data_is_a_clear_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.data");
    let mut bytes = b"PERFILE2".to_vec();
    bytes.extend_from_slice(&104u64.to_le_bytes());
    bytes.extend_from_slice(&[0xab; 200]);
    std::fs::write(&bad, bytes).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_profpipe"))
        .args(["fold"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("perf.data"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

/// `process_children_started_total{program="perf"}` in the rendered metrics.
fn perf_children_started(t: &Telemetry) -> u64 {
    t.render()
        .lines()
        .filter(|l| {
            l.starts_with("profpipe_process_children_started_total")
                && l.contains("program=\"perf\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_perf_pipeline_starts_no_perf_script() {
    if !perf_usable() {
        return;
    }
    let state = tempfile::tempdir().unwrap();
    let seen = Collect::new();
    let source = PerfSourceConfig {
        frequency: 99,
        window: DurationStr::from_secs(2),
        max_windows: Some(3),
        events: Some(vec!["cpu-clock".into()]),
        symbol_cache: ByteSize::mib(64),
        reader: Reader::InProcess,
        ..Default::default()
    };
    let config = run::config(
        run::agent_with_state(state.path()),
        vec![run::source("cpu", "perf", source)],
        vec![run::transform(
            "fold",
            "fold",
            &["cpu"],
            FoldConfig::default(),
        )],
        vec![run::sink("collect", "collect", &["fold"], seen.clone())],
    );
    let tmp = tempfile::tempdir().unwrap();
    let hot = Proc(
        Command::new(common::proc::build_hot(tmp.path()))
            .arg("20")
            .spawn()
            .unwrap(),
    );
    let hot_pid = hot.pid();
    let telemetry = Telemetry::new();
    let outcome = run::start(&config, &telemetry)
        .run_until(std::future::pending(), Duration::from_secs(30))
        .await;
    drop(hot);
    assert!(outcome.is_clean(), "{outcome:?}");
    let stacks: Vec<(u32, String)> = seen.with(|e| {
        profiles(e)
            .into_iter()
            .flat_map(|p| p.stacks.iter().map(|s| (s.pid, s.frames.to_string())))
            .collect()
    });
    assert!(
        stacks
            .iter()
            .any(|(pid, f)| *pid == hot_pid && f.contains("profpipe_hot_mid;profpipe_hot_leaf")),
        "the hot program's stacks did not come out of fold"
    );
    // Three windows, one perf record and nothing else: a `perf script` per window
    // would make it four.
    assert_eq!(
        perf_children_started(&telemetry),
        1,
        "{}",
        telemetry.render()
    );
    let rendered = telemetry.render();
    let cache_line = rendered
        .lines()
        .find(|l| {
            l.starts_with("profpipe_symbol_cache_bytes{") && l.contains("component_id=\"cpu\"")
        })
        .unwrap_or_else(|| panic!("no symbol cache gauge: {rendered}"));
    let bytes: u64 = cache_line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(bytes > 0 && bytes <= 64 << 20, "{cache_line}");
}
