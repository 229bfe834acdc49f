//! Unit tests of the `pyperf` source: output files, command line, configuration,
//! and how its trouble is logged.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::output::{outputs, read_outputs};
use super::run::Trouble;
use super::*;
use crate::component::SourceConfig;
use crate::formats::pyperf::PyPerfReader;
use crate::telemetry::RateLimited;
use crate::units::DurationStr;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/pyperf")
        .join(name)
}

#[test]
fn reads_folds_and_deletes_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("pyperf.col.2024010100000000");
    let b = dir.path().join("pyperf.col");
    std::fs::copy(fixture("mixed.col"), &a).unwrap();
    std::fs::write(
        &b,
        "python3-1234/1240;<module>_[p];main_[p];compute_[p];_PyObject_Call_[pn] 1\nbad line\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("other"), "x").unwrap();
    assert_eq!(outputs(dir.path(), false).unwrap(), vec![a.clone()]);
    let files = outputs(dir.path(), true).unwrap();
    assert_eq!(files, vec![a.clone(), b.clone()]);
    let (stacks, reader) = read_outputs(&files, PyPerfReader::new());
    assert!(!a.exists() && !b.exists());
    assert!(dir.path().join("other").exists());
    assert_eq!(reader.stats().bad_lines, 1);
    let got: Vec<(u32, &str, u64)> = stacks
        .iter()
        .map(|s| (s.pid, &*s.frames, s.count))
        .collect();
    assert_eq!(
        got,
        vec![
            (5, "gunicorn: worker;<module>_[p];[Error (errnos) 14]_[pe]", 1),
            (5, "gunicorn: worker;[Sample Error ERROR_THREAD_STATE_NULL]_[pe]", 1),
            (77, "my-app-worker;[Lost Symbol]_[pe]", 1),
            (77, "my-app-worker;run_[p];(missing)_[pe]", 1),
            (1234, "python3;<module>_[p];main_[p];compute_[p];_PyObject_Call_[pn]", 2),
            (
                1234,
                "python3;<module>_[p];main_[p];handle_[p];PyEval_EvalFrameDefault_[pn];do_syscall_64_[k];__x64_sys_read_[k]",
                2
            ),
            (1234, "python3;<module>_[p];worker_[p];[Truncated]_[pe]", 1),
        ]
    );
}

#[test]
fn command_line_follows_gprofiler() {
    let c = PyPerfSourceConfig {
        frequency: 5000,
        extra_args: vec!["--fs-offset".into(), "24".into()],
        ..Default::default()
    };
    let spec = c.spec(Path::new("/opt/PyPerf"), Path::new("/s/pyperf.col"));
    assert_eq!(spec.get_label(), "pyperf");
    let args: Vec<String> = spec
        .args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        args,
        [
            "--output",
            "/s/pyperf.col",
            "-F",
            "1000",
            "--events-buffer-pages",
            "256",
            "--symbols-map-size",
            "131072",
            "--fs-offset",
            "24"
        ]
    );
}

#[test]
fn recognises_deleted_library_errors() {
    assert!(is_deleted_library_error(
        "x\nFailed to iterate over ELF symbols: /tmp/libfoo.so (deleted)\n"
    ));
    assert!(!is_deleted_library_error(
        "Failed to iterate over ELF symbols: /usr/lib/libfoo.so"
    ));
    assert!(!is_deleted_library_error("Setup new python failed"));
}

#[test]
fn validation_and_defaults() {
    let c: PyPerfSourceConfig = toml::from_str("binary = \"/x/PyPerf\"").unwrap();
    assert_eq!(c.frequency, 11);
    assert_eq!(c.rotate_timeout.get(), Duration::from_secs(5));
    assert!(c.validate().is_empty());
    assert!(toml::from_str::<PyPerfSourceConfig>("binry = \"x\"").is_err());
    let bad = PyPerfSourceConfig {
        frequency: 0,
        window: DurationStr(Duration::from_millis(10)),
        rotate_timeout: DurationStr(Duration::ZERO),
        ..Default::default()
    };
    let fields: Vec<String> = bad
        .validate()
        .into_iter()
        .map(|e| e.path[0].clone())
        .collect();
    assert_eq!(fields, ["frequency", "window", "rotate_timeout"]);
}

#[test]
fn throttle_allows_one_line_per_interval_per_kind() {
    let mut t = RateLimited::new(LOG_INTERVAL);
    assert_eq!(t.allow(Trouble::DeletedLibrary), Some(0));
    assert_eq!(t.allow(Trouble::DeletedLibrary), None);
    assert_eq!(t.allow(Trouble::Exited), Some(0));
    assert_eq!(t.allow(Trouble::DeletedLibrary), None);
}
