//! Our OTLP profiles read by a decoder that is not ours: pipelines run through the
//! `profpipe` binary with a `file` sink writing each window as `folded` and
//! `otlp`, then `scripts/check-otlp.py` decodes every `.otlp.pb` with
//! OpenTelemetry's generated Python classes (PyPI `opentelemetry-proto`, installed
//! by `scripts/setup-test-env.sh`; the test fails, not skips, when it is missing)
//! and its stacks, totals, resources and frame types are compared with the
//! folded file of the same window.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::repo;
use common::run::profpipe;
use serde_json::Value;

const CAPTURE: &str = "tests/data/perf/c-workload-pipelines.txt";

type Stacks = BTreeMap<String, u64>;

/// Runs a pipeline of `source` (a `[sources.in]` table's body) into a file sink
/// writing folded and otlp; returns the output dir.
fn run_pipeline(out: &Path, source: &str, fold: bool) -> PathBuf {
    let dir = out.join("profiles");
    let (transform, input) = if fold {
        (
            "[transforms.fold]\ntype = \"fold\"\ninputs = [\"in\"]\nkernel = true\n",
            "fold",
        )
    } else {
        ("", "in")
    };
    let config = format!(
        r#"
[agent]
hostname = "otlp-host"
state_dir = {state:?}
labels = {{ service = "shop", env = "prod", pod = "shop-7d9" }}

[sources.in]
{source}

{transform}

[sinks.local]
type = "file"
inputs = ["{input}"]
path = {dir:?}
formats = ["folded", "otlp"]
sample_rate = 199
"#,
        state = out.join("state"),
    );
    let path = out.join("pipeline.toml");
    std::fs::write(&path, config).unwrap();
    let result = profpipe()
        .args(["--log", "warn", "run", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        result.status.success(),
        "pipeline failed: {}\n{}",
        result.status,
        String::from_utf8_lossy(&result.stderr)
    );
    dir
}

/// `profile_*` files of `dir` ending in `.ext`, sorted (= by window).
fn files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_str().unwrap();
            name.starts_with("profile_") && name.ends_with(&format!(".{ext}"))
        })
        .collect();
    v.sort();
    v
}

fn folded_stacks(path: &Path) -> Stacks {
    let mut out = Stacks::new();
    for line in std::fs::read_to_string(path).unwrap().lines() {
        let (stack, n) = line.rsplit_once(' ').unwrap();
        *out.entry(stack.to_string()).or_default() += n.parse::<u64>().unwrap();
    }
    out
}

fn stacks_of(v: &Value) -> Stacks {
    v["stacks"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, n)| (k.clone(), n.as_u64().unwrap()))
        .collect()
}

/// Checks every window's otlp against its folded file; returns the decoded
/// windows.
fn windows(dir: &Path) -> Vec<Value> {
    let otlp = files(dir, "otlp.pb");
    let folded = files(dir, "folded");
    assert!(!otlp.is_empty(), "no otlp written");
    assert_eq!(otlp.len(), folded.len());
    let decoded = common::otlp::check_all(&otlp);
    for (d, f) in decoded.iter().zip(&folded) {
        let want = folded_stacks(f);
        assert_eq!(stacks_of(d), want, "{}", f.display());
        assert_eq!(d["total"].as_u64().unwrap(), want.values().sum::<u64>());
        assert_eq!(d["sample_type"], "samples/count");
        assert_eq!(d["period_type"], "cpu/nanoseconds");
        assert_eq!(d["period"], 5_025_126, "1e9 / 199 Hz");
        assert!(d["duration_nano"].as_u64().unwrap() > 0);
        // The resource attributes every resource of the window carries.
        for r in d["resources"].as_array().unwrap() {
            assert_eq!(r["host.name"], "otlp-host", "{r}");
            assert_eq!(r["service.name"], "shop", "{r}");
            assert_eq!(r["env"], "prod", "{r}");
            assert_eq!(r["k8s.pod.name"], "shop-7d9", "{r}");
        }
    }
    decoded
}

#[test]
fn a_perf_capture_decodes_elsewhere_with_the_folded_stacks_and_kernel_frames() {
    let tmp = tempfile::tempdir().unwrap();
    let source = format!(
        "type = \"file\"\npaths = [{:?}]\nformat = \"perf_script\"\n",
        repo().join(CAPTURE)
    );
    let dir = run_pipeline(tmp.path(), &source, true);
    let decoded = windows(&dir);
    let mut kernel = 0;
    for d in &decoded {
        for (frame, kind) in d["frame_types"].as_object().unwrap() {
            let want = if frame.ends_with("_[k]") {
                kernel += 1;
                "kernel"
            } else {
                "native"
            };
            assert_eq!(kind, want, "{frame}");
        }
        // thread.name: the comm each stack starts with.
        for (stack, name) in d["thread_names"].as_object().unwrap() {
            assert_eq!(stack.split(';').next().unwrap(), name.as_str().unwrap());
        }
        assert_eq!(
            d["thread_names"].as_object().unwrap().len(),
            d["stacks"].as_object().unwrap().len()
        );
    }
    assert!(kernel > 0, "the capture has kernel frames");
}

#[test]
fn runtimes_and_containers_decode_elsewhere_as_frame_types_and_resources() {
    let tmp = tempfile::tempdir().unwrap();
    // gProfiler's collapsed lines, `<app metadata index>;<container>;<frames> <count>`,
    // after the header that announces that layout.
    let input = tmp.path().join("window.col");
    std::fs::write(
        &input,
        "\
# {\"application_metadata_enabled\": true}
0;;bash;main;read_[k] 3
0;web;python3;<module> (/app/x.py:1)_[p];run (/app/x.py:9)_[p];do_syscall_64_[k] 5
0;web;python3;<module> (/app/x.py:1)_[p] 2
0;jobs;ruby;fib - /tmp/app.rb:1_[rb] 7
0;;java;java/lang/Thread::run_[j];java/util/HashMap::get_[i] 4
0;;node;JS:*fib /tmp/app.js:1:13_[j] 6
",
    )
    .unwrap();
    let source = format!(
        "type = \"file\"\npaths = [{:?}]\nformat = \"collapsed\"\n",
        input
    );
    let dir = run_pipeline(tmp.path(), &source, false);
    let decoded = windows(&dir);
    assert_eq!(decoded.len(), 1);
    let d = &decoded[0];
    assert_eq!(d["total"], 27);

    let types = d["frame_types"].as_object().unwrap();
    for (frame, want) in [
        ("bash", "native"),
        ("read_[k]", "kernel"),
        ("do_syscall_64_[k]", "kernel"),
        ("run (/app/x.py:9)_[p]", "cpython"),
        ("fib - /tmp/app.rb:1_[rb]", "ruby"),
        ("java/lang/Thread::run_[j]", "jvm"),
        ("java/util/HashMap::get_[i]", "jvm"),
        ("JS:*fib /tmp/app.js:1:13_[j]", "v8js"),
    ] {
        assert_eq!(types[frame], want, "{frame}");
    }

    // One resource per container, and the window's own.
    let mut containers: Vec<String> = d["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["container.id"].as_str().unwrap_or("").to_string())
        .collect();
    containers.sort();
    assert_eq!(containers, ["", "jobs", "web"]);
}
