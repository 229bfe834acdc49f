//! OTLP profiles read by a decoder that is not ours: `scripts/check-otlp.py`, on
//! OpenTelemetry's generated Python classes (PyPI `opentelemetry-proto`, installed
//! by `scripts/setup-test-env.sh`). A missing decoder fails the test, with how to
//! install it.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use super::repo;

/// What check-otlp.py says of each file (see the script for the fields), in order.
pub fn check_all(files: &[PathBuf]) -> Vec<Value> {
    let out = Command::new("python3")
        .arg(repo().join("scripts/check-otlp.py"))
        .arg("--json")
        .args(files)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.code() != Some(2),
        "the OTLP decoder check needs the PyPI package opentelemetry-proto 1.45.2 \
         (install it with `bash scripts/setup-test-env.sh`): {stderr}"
    );
    assert!(out.status.success(), "check-otlp.py failed: {stderr}");
    let text = String::from_utf8(out.stdout).unwrap();
    let decoded: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(decoded.len(), files.len(), "{text}");
    decoded
}

/// What check-otlp.py says of one file.
pub fn check(file: &Path) -> Value {
    check_all(&[file.to_path_buf()]).remove(0)
}
