//! Every example under `pipelines/` runs for real through the `profpipe` binary:
//! outputs are redirected to a scratch directory, inputs stay the bundled ones.

mod common;

use std::path::{Path, PathBuf};

use common::repo;
use common::run::profpipe;

/// Runs a pipeline file from the repository root with its sink paths pointed at
/// `out`. Returns stdout.
fn run_example(name: &str, out: &Path) -> String {
    let text = std::fs::read_to_string(repo().join("pipelines").join(name)).unwrap();
    run_config_text(name, &text, out)
}

/// Runs config `text` (written under `out`) from the repository root, with sink paths
/// `"profiles"` pointed at `out/profiles`. Returns stdout.
fn run_config_text(name: &str, text: &str, out: &Path) -> String {
    let text = text.replace(
        "path = \"profiles\"",
        &format!("path = {:?}", out.join("profiles")),
    );
    // Each run its own state directory: one agent per state directory, and tests
    // run side by side.
    let state = format!("state_dir = {:?}", out.join("state"));
    let text = match text
        .lines()
        .find(|l| l.trim_start().starts_with("state_dir"))
    {
        Some(line) => text.replace(line, &state),
        None if text.contains("[agent]") => {
            text.replacen("[agent]", &format!("[agent]\n{state}"), 1)
        }
        None => format!("[agent]\n{state}\n{text}"),
    };
    let config = out.join(name);
    std::fs::write(&config, text).unwrap();
    let result = profpipe()
        .current_dir(repo())
        .args(["--log", "warn", "run", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        result.status.success(),
        "{name} failed: {}\n{}",
        result.status,
        String::from_utf8_lossy(&result.stderr)
    );
    String::from_utf8(result.stdout).unwrap()
}

/// Sum of the counts of folded or collapsed lines.
fn total(text: &str) -> u64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, n)| n.parse::<u64>().ok()))
        .sum()
}

#[test]
fn every_example_validates() {
    let mut examples: Vec<PathBuf> = std::fs::read_dir(repo().join("pipelines"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    examples.sort();
    assert!(!examples.is_empty());
    let out = profpipe().arg("validate").args(&examples).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn fold_capture_writes_folded_collapsed_and_flamegraph() {
    let tmp = tempfile::tempdir().unwrap();
    run_example("fold-capture.toml", tmp.path());
    let dir = tmp.path().join("profiles");
    let folded = std::fs::read_to_string(dir.join("last_profile.folded")).unwrap();
    let svg = std::fs::read_to_string(dir.join("last_profile.svg")).unwrap();
    let col = std::fs::read_to_string(dir.join("last_profile.col")).unwrap();
    // The bundled capture holds a frame-pointer C workload and a Python interpreter.
    assert!(folded.contains("workload;"), "no workload stacks");
    assert!(
        folded.contains("main;alt_path;leaf_hash"),
        "workload frames missing"
    );
    assert!(folded.contains("_[k]"), "kernel frames not annotated");
    assert!(
        !folded.contains("__pfx_"),
        "symbol_filter did not drop padding symbols"
    );
    assert!(svg.contains("<svg") && svg.contains("leaf_hash"));
    assert!(
        col.starts_with("# {"),
        "collapsed file lacks the gProfiler header"
    );
    // The same samples, whatever the format.
    assert_eq!(total(&folded), total(&col));
    // Pipelines count samples (gProfiler's unit): about one per record with a stack
    // (inferno's rules skip a few records, e.g. of a second event type).
    let capture =
        std::fs::read_to_string(repo().join("pipelines/captures/host-sample.perf.txt")).unwrap();
    let records = capture
        .split("\n\n")
        .filter(|r| r.lines().filter(|l| !l.trim().is_empty()).count() >= 2)
        .count() as u64;
    let samples = total(&folded);
    assert!(
        samples <= records && samples * 100 >= records * 99,
        "{samples} of {records}"
    );
}

/// With `count = "period"` a pipeline's totals are exactly `profpipe fold`'s.
#[test]
fn fold_capture_period_counts_match_the_cli() {
    let tmp = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(repo().join("pipelines/fold-capture.toml")).unwrap();
    let text = text.replace("kernel = true", "kernel = true\ncount = \"period\"");
    run_config_text("period.toml", &text, tmp.path());
    let folded = std::fs::read_to_string(tmp.path().join("profiles/last_profile.folded")).unwrap();
    let direct = profpipe()
        .args(["fold", "--kernel"])
        .arg(repo().join("pipelines/captures/host-sample.perf.txt"))
        .output()
        .unwrap();
    assert!(direct.status.success());
    assert_eq!(
        total(&folded),
        total(&String::from_utf8_lossy(&direct.stdout))
    );
}

#[test]
fn collapsed_dedup_console_prints_merged_stacks() {
    let tmp = tempfile::tempdir().unwrap();
    let stdout = run_example("collapsed-dedup.toml", tmp.path());
    let lines: Vec<&str> = stdout.lines().collect();
    // The bundled gProfiler-style file repeats stacks; dedup merges them.
    assert!(
        lines.contains(&"python3;<module> (app.py:10)_[p];work (app.py:4)_[p] 7"),
        "{stdout}"
    );
    assert!(
        lines.iter().all(|l| !l.starts_with("0;")),
        "gProfiler prefixes leaked: {stdout}"
    );
}

/// A wiring that cannot work is refused before anything runs, at the input that
/// names the producer, with the fix; the sink behind a transform that already
/// refused its input is not blamed twice.
#[test]
fn validate_names_a_miswired_edge_its_line_and_the_fix() {
    let result = profpipe()
        .current_dir(repo())
        .args(["validate", "tests/data/miswired.toml"])
        .output()
        .unwrap();
    assert_eq!(result.status.code(), Some(2));
    let stderr = String::from_utf8(result.stderr).unwrap();
    let want = "\
tests/data/miswired.toml:8:11: transform `quiet` takes profiles and diagnostics; source `cpu` produces perf_script text: put a `fold` between them
tests/data/miswired.toml:17:11: sink `out` takes profiles and diagnostics; source `cpu` produces perf_script text: put a `fold` between them
tests/data/miswired.toml: 2 error(s)
";
    assert_eq!(stderr, want);
}
