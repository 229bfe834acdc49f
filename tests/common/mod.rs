//! Helpers shared by the integration tests. Each test file says `mod common;` and
//! uses what it needs (hence `dead_code` is allowed: no binary uses all of it).
//!
//! - [`collect`]: the one test sink, and the only code here that reads a component
//!   `Input` (`recv`). When the engine's Input API changes, this is the one place to
//!   update.
//! - [`events`]: picking profiles, watermarks and diagnostics out of collected events.
//! - [`context`]: component contexts and edges for driving one component by hand.
//! - [`run`]: building, starting and running topologies.
//! - [`receiver`]: a strict HTTP receiver answering as Pyroscope and Performance
//!   Studio do, for the `http` sink.
//! - [`otlp`]: decoding OTLP profiles with an independent decoder
//!   (`scripts/check-otlp.py`, OpenTelemetry's generated Python classes).
//! - [`proc`]: processes of the host: /proc reading, kill-on-drop children, waiting
//!   for a process to exec or die, counting descriptors and zombies.
//! - [`s3`]: a real S3 server (s3s-fs) on a free port, stoppable and restartable,
//!   and reading a bucket back.
//! - [`tansu`]: a real Kafka-protocol broker on a free port, and a consumer that
//!   reads a topic back.
//! - [`wait`]: polling a condition with a deadline, for the cases where a real
//!   external process is involved and no signal exists.

#![allow(dead_code)]

pub mod collect;
pub mod context;
pub mod events;
pub mod otlp;
pub mod proc;
pub mod receiver;
pub mod run;
pub mod s3;
pub mod tansu;
pub mod wait;

use std::path::PathBuf;

/// The bundled perf capture cut on record boundaries into `n` files
/// `part-NN.perf` in `dir`: `n` windows for a `file` source.
pub fn split_capture(dir: &std::path::Path, n: usize) -> Vec<PathBuf> {
    let text =
        std::fs::read_to_string(repo().join("pipelines/captures/host-sample.perf.txt")).unwrap();
    let records: Vec<&str> = text
        .split("\n\n")
        .filter(|r| !r.trim().is_empty())
        .collect();
    let per = records.len().div_ceil(n);
    records
        .chunks(per)
        .enumerate()
        .map(|(i, chunk)| {
            let path = dir.join(format!("part-{i:02}.perf"));
            std::fs::write(&path, chunk.join("\n\n") + "\n\n").unwrap();
            path
        })
        .collect()
}

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `tests/programs`: the workloads the live tests profile.
pub fn programs() -> PathBuf {
    repo().join("tests/programs")
}

/// Every file below `dir` (none if it does not exist).
pub fn walk(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
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
