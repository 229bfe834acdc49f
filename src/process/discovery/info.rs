//! What discovery knows of one process, and the runtimes it tells apart.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

use super::kubernetes::PodInfo;

/// A language runtime a profiler can attach to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Runtime {
    Python,
    Ruby,
    /// A HotSpot JVM (maps `libjvm.so`, not OpenJ9's `libj9vm`).
    Java,
    /// Node.js (its executable is `node` or `nodejs`, or it maps `libnode.so`).
    Node,
}

impl Runtime {
    pub fn as_str(&self) -> &'static str {
        match self {
            Runtime::Python => "python",
            Runtime::Ruby => "ruby",
            Runtime::Java => "java",
            Runtime::Node => "node",
        }
    }
}

impl fmt::Display for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One process, as seen by one scan.
#[derive(Clone, Debug, PartialEq)]
pub struct ProcessInfo {
    pub pid: u32,
    pub ppid: u32,
    /// The kernel's 15-character command name.
    pub comm: String,
    /// Arguments joined by spaces (at most [`CMDLINE_MAX_BYTES`]).
    pub cmdline: String,
    /// Target of `/proc/PID/exe`, ending in ` (deleted)` if the file was replaced;
    /// `None` when unreadable.
    pub exe: Option<String>,
    pub age: Duration,
    /// Start time in clock ticks since boot: with the PID, identifies the process.
    pub start_ticks: u64,
    /// User + system CPU time so far, in clock ticks.
    pub cpu_ticks: u64,
    /// CPU ticks since the previous scan (since start for a process new to it).
    pub cpu_ticks_delta: u64,
    /// Container id (64 hex digits) or `None` on the host.
    pub container: Option<String>,
    /// The Kubernetes pod it runs in, when the host is a node: uid from the cgroup
    /// path, name and namespace best effort.
    pub pod: Option<PodInfo>,
    pub runtime: Option<Runtime>,
    /// Python is mapped but the process is not a Python interpreter.
    pub embedded_python: bool,
}

impl ProcessInfo {
    /// The labels discovery knows for this process, as `(name, value)`: `container`
    /// (id), `pod_uid`, `pod` (name) and `namespace`, each only when known.
    pub fn label_pairs(&self) -> Vec<(&'static str, &str)> {
        let mut out = Vec::new();
        if let Some(c) = &self.container {
            out.push(("container", c.as_str()));
        }
        if let Some(pod) = &self.pod {
            out.push(("pod_uid", pod.uid.as_str()));
            if let Some(name) = &pod.name {
                out.push(("pod", name.as_str()));
            }
            if let Some(ns) = &pod.namespace {
                out.push(("namespace", ns.as_str()));
            }
        }
        out
    }
}
