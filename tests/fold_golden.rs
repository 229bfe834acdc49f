//! Golden-file tests for folding `perf script` output.
//!
//! Each capture `tests/data/perf/NAME.txt` has, per flag set, an expected output
//! `tests/data/perf/results/NAME-collapsed-FLAGS.txt` produced by
//! `inferno-collapse-perf -n 1 [--FLAG] NAME.txt` (0.12.8). Every case is folded with
//! 1 thread, with several threads and tiny chunks (to cut the input at many record
//! boundaries), and through the `profpipe fold` binary; each must match line for line.
//!
//! `PROFPIPE_BLESS=1 cargo test --test fold_golden` rewrites the expected files that
//! exist from profpipe's own output (review the diff!). It never creates a missing
//! one: make new expected files with inferno-collapse-perf.
//!
//! The captures are real: `perf record -e cpu-clock -F 499 -a -g -- sleep 2` on a
//! 2-CPU machine while a C program (frame pointers) and shell pipelines, or Python
//! and shell pipelines, ran; then `perf script -F +pid --no-inline`, thinned to a few
//! hundred KB. `edge-cases.txt` is hand-written: malformed lines, invalid UTF-8,
//! one-frame event lines, another event type, Java/JIT/Rust/C++/Go symbols, a
//! truncated last line.

use std::path::{Path, PathBuf};
use std::process::Command;

use profpipe::formats::perf_script::{fold_to_writer, fold_to_writer_chunked, FoldOptions};

const CAPTURES: &[&str] = &[
    "c-workload-pipelines",
    "python-shell-pipelines",
    "edge-cases",
];
const FLAG_SETS: &[&str] = &["default", "pid", "tid", "kernel", "jit", "all", "addrs"];

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/perf")
}

fn options(flags: &str) -> FoldOptions {
    let mut o = FoldOptions::default();
    match flags {
        "default" => {}
        "pid" => o.include_pid = true,
        "tid" => o.include_tid = true,
        "kernel" => o.annotate_kernel = true,
        "jit" => o.annotate_jit = true,
        "all" => {
            o.annotate_kernel = true;
            o.annotate_jit = true;
        }
        "addrs" => o.include_addrs = true,
        other => panic!("unknown flag set {other}"),
    }
    o
}

/// Checks a command's standard output against the golden file at `expected_path`.
fn assert_output(expected_path: &Path, stdout: Vec<u8>, what: &str) {
    let expected = std::fs::read_to_string(expected_path).unwrap();
    let actual = String::from_utf8(stdout).unwrap();
    let problems = diff_lines(expected_path, &expected, &actual, what);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Compares line by line; describes every differing line as `file:line`.
fn diff_lines(expected_path: &Path, expected: &str, actual: &str, what: &str) -> Vec<String> {
    let exp: Vec<&str> = expected.lines().collect();
    let act: Vec<&str> = actual.lines().collect();
    let mut problems = Vec::new();
    for i in 0..exp.len().max(act.len()) {
        let (e, a) = (exp.get(i), act.get(i));
        if e != a {
            problems.push(format!(
                "{}:{}: {what}\n    expected: {}\n    actual:   {}",
                expected_path.display(),
                i + 1,
                e.map_or("<end of file>".to_string(), |s| format!("{s:?}")),
                a.map_or("<end of output>".to_string(), |s| format!("{s:?}")),
            ));
            if problems.len() >= 5 {
                problems.push(format!("... ({what}: further differences not shown)"));
                break;
            }
        }
    }
    problems
}

fn fold(input: &[u8], opts: &FoldOptions, threads: usize, chunk: Option<usize>) -> String {
    let mut out = Vec::new();
    match chunk {
        Some(chunk) => fold_to_writer_chunked(input, opts, threads, chunk, &mut out),
        None => fold_to_writer(input, opts, threads, &mut out),
    }
    .expect("folding from memory cannot fail");
    String::from_utf8(out).expect("folded output is UTF-8")
}

fn run_case(name: &str, flags: &str, bless: bool) -> Vec<String> {
    let dir = data_dir();
    let input_path = dir.join(format!("{name}.txt"));
    let expected_path = dir.join(format!("results/{name}-collapsed-{flags}.txt"));
    let input =
        std::fs::read(&input_path).unwrap_or_else(|e| panic!("{}: {e}", input_path.display()));
    let Ok(expected) = std::fs::read_to_string(&expected_path) else {
        return vec![format!(
            "{}: missing expected file (bless never creates one; make it with \
             `inferno-collapse-perf -n 1 {} {}`)",
            expected_path.display(),
            if flags == "default" {
                String::new()
            } else {
                format!("--{flags}")
            },
            input_path.display()
        )];
    };
    let opts = options(flags);

    let single = fold(&input, &opts, 1, None);
    if bless {
        if single != expected {
            std::fs::write(&expected_path, &single)
                .unwrap_or_else(|e| panic!("{}: {e}", expected_path.display()));
            eprintln!("blessed {}", expected_path.display());
        }
        return Vec::new();
    }
    let mut problems = diff_lines(&expected_path, &expected, &single, "1 thread");
    for (threads, chunk) in [(4, Some(2048)), (3, Some(97)), (2, None)] {
        let multi = fold(&input, &opts, threads, chunk);
        let what = format!("{threads} threads, chunk {chunk:?}");
        problems.extend(diff_lines(&expected_path, &expected, &multi, &what));
    }
    problems
}

#[test]
fn golden_captures() {
    let bless = std::env::var_os("PROFPIPE_BLESS").is_some_and(|v| v == "1");
    let mut problems = Vec::new();
    let mut cases = 0;
    for name in CAPTURES {
        for flags in FLAG_SETS {
            cases += 1;
            problems.extend(run_case(name, flags, bless));
        }
    }
    assert!(
        problems.is_empty(),
        "{} problems in {cases} cases:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// The binary: flags, file argument and stdin, output, one warning per problem kind.
#[test]
fn cli_matches_golden_and_warns() {
    let dir = data_dir();
    let bin = env!("CARGO_BIN_EXE_profpipe");
    let input = dir.join("edge-cases.txt");
    let expected_path = dir.join("results/edge-cases-collapsed-all.txt");

    let out = Command::new(bin)
        .args(["fold", "--all", "-n", "2"])
        .arg(&input)
        .output()
        .unwrap();
    assert!(out.status.success(), "exit status {:?}", out.status);
    assert_output(&expected_path, out.stdout, "profpipe fold --all FILE");
    let stderr = String::from_utf8(out.stderr).unwrap();
    let warnings: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        warnings,
        [
            "profpipe fold: warning: skipped 1 malformed event header lines",
            "profpipe fold: warning: skipped 2 malformed frame lines",
            "profpipe fold: warning: converted 1 lines with invalid UTF-8 lossily",
            "profpipe fold: warning: input ended in the middle of a line (1 unterminated line)",
        ]
    );

    // Standard input, via `-`.
    let expected_path = dir.join("results/c-workload-pipelines-collapsed-pid.txt");
    let out = Command::new(bin)
        .args(["fold", "--pid", "-"])
        .stdin(std::fs::File::open(dir.join("c-workload-pipelines.txt")).unwrap())
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_output(&expected_path, out.stdout, "profpipe fold --pid - (stdin)");
    assert!(out.stderr.is_empty());
}
