//! Our pprof read by a decoder that is not ours: a pipeline over a recorded `perf
//! script` capture (file source → fold → file sink writing collapsed and pprof) runs
//! through the `profpipe` binary, then `scripts/check-pprof.sh` decodes every
//! `.pb.gz` with the npm package pprof-format (installed by
//! `scripts/setup-test-env.sh`; the test fails, not skips, when it is missing) and
//! its stacks and counts are compared with the collapsed files of the same windows
//! and with `profpipe fold` of the same capture.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::repo;
use common::run::profpipe;

const CAPTURE: &str = "tests/data/perf/c-workload-pipelines.txt";

type Stacks = BTreeMap<String, u64>;

/// Runs the pipeline with the fold transform's `count` unit; returns the output dir.
fn run_pipeline(out: &Path, count: &str) -> PathBuf {
    let dir = out.join("profiles");
    let config = format!(
        r#"
[sources.capture]
type = "file"
paths = [{capture:?}]
format = "perf_script"

[transforms.fold]
type = "fold"
inputs = ["capture"]
kernel = true
count = "{count}"

[sinks.local]
type = "file"
inputs = ["fold"]
path = {dir:?}
formats = ["collapsed", "pprof"]
sample_rate = 199
"#,
        capture = repo().join(CAPTURE),
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

/// What check-pprof.sh says of one file.
struct Decoded {
    total: u64,
    samples: u64,
    functions: u64,
    locations: u64,
    period: u64,
    sample_types: Vec<String>,
    stacks: Stacks,
}

/// Decodes `files` with the independent decoder.
fn check_pprof(files: &[PathBuf]) -> Vec<Decoded> {
    let script = repo().join("scripts/check-pprof.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg("--stacks")
        .args(files)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.code() != Some(2),
        "the pprof decoder check needs node and the npm package pprof-format 2.3.2 \
         (install them with `bash scripts/setup-test-env.sh`): {stderr}"
    );
    assert!(out.status.success(), "check-pprof.sh failed: {stderr}");
    let text = String::from_utf8(out.stdout).unwrap();
    let decoded: Vec<Decoded> = text
        .lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let n = |k: &str| v[k].as_u64().unwrap_or_else(|| panic!("{k} in {line}"));
            Decoded {
                total: n("total_samples"),
                samples: n("samples"),
                functions: n("functions"),
                locations: n("locations"),
                period: n("period"),
                sample_types: v["sample_types"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|t| t.as_str().unwrap().to_string())
                    .collect(),
                stacks: v["stacks"]
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, n)| (k.clone(), n.as_u64().unwrap()))
                    .collect(),
            }
        })
        .collect();
    assert_eq!(decoded.len(), files.len(), "{text}");
    decoded
}

/// A collapsed file's stacks by frames (a perf capture has no containers, which
/// the pprof would carry as labels, not frames).
fn collapsed_stacks(path: &Path) -> Stacks {
    let text = std::fs::read(path).unwrap();
    let col = profpipe::formats::collapsed::read(&text[..]).unwrap();
    let mut out = Stacks::new();
    for s in col.stacks {
        assert!(s.container.is_none(), "a perf capture has no containers");
        *out.entry(s.frames.to_string()).or_default() += s.count;
    }
    out
}

/// Distinct frame names of some stacks.
fn frames(stacks: &Stacks) -> usize {
    let mut names: Vec<&str> = stacks.keys().flat_map(|k| k.split(';')).collect();
    names.sort_unstable();
    names.dedup();
    names.len()
}

fn merge(into: &mut Stacks, from: &Stacks) {
    for (k, n) in from {
        *into.entry(k.clone()).or_default() += n;
    }
}

/// `profpipe fold --kernel` of the capture: periods summed, as inferno does.
fn fold_cli() -> Stacks {
    let out = profpipe()
        .args(["fold", "--kernel"])
        .arg(repo().join(CAPTURE))
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let (stack, n) = l.rsplit_once(' ').unwrap();
            (stack.to_string(), n.parse::<u64>().unwrap())
        })
        .collect()
}

/// Runs the pipeline and checks each window's pprof against its collapsed file;
/// returns all windows' stacks merged.
fn pipeline_stacks(count: &str) -> Stacks {
    let tmp = tempfile::tempdir().unwrap();
    let dir = run_pipeline(tmp.path(), count);
    let pprofs = files(&dir, "pb.gz");
    let cols = files(&dir, "col");
    assert!(!pprofs.is_empty(), "no pprof written");
    assert_eq!(pprofs.len(), cols.len());
    let mut all = Stacks::new();
    for (d, col) in check_pprof(&pprofs).iter().zip(&cols) {
        let want = collapsed_stacks(col);
        assert_eq!(d.stacks, want, "{} vs {}", col.display(), count);
        assert_eq!(d.total, want.values().sum::<u64>());
        // One sample per (distinct) stack, one function and location per frame.
        assert_eq!(d.samples as usize, want.len());
        assert_eq!(d.functions as usize, frames(&want));
        assert_eq!(d.locations, d.functions);
        assert_eq!(d.period, 5_025_126, "1e9 / 199 Hz");
        assert_eq!(d.sample_types, ["samples/count"]);
        merge(&mut all, &want);
    }
    all
}

#[test]
fn pprof_decodes_elsewhere_with_the_collapsed_stacks_and_the_cli_totals() {
    let cli = fold_cli();
    assert!(cli.len() > 10, "the capture folds to a handful of stacks");

    // Counting samples (the default): the same stacks as the CLI folds.
    let samples = pipeline_stacks("samples");
    assert_eq!(
        samples.keys().collect::<Vec<_>>(),
        cli.keys().collect::<Vec<_>>()
    );

    // Counting periods, as the CLI does: the same counts, stack by stack.
    let periods = pipeline_stacks("period");
    assert_eq!(periods, cli);
    assert_eq!(
        periods.values().sum::<u64>(),
        cli.values().sum::<u64>(),
        "totals"
    );
}
