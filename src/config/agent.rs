//! The `[agent]` and `[telemetry]` tables.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use crate::event::LabelSet;
use crate::process::SupervisorConfig;
use crate::units::{ByteSize, DurationStr};

/// `[agent]`: settings of the whole process.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default)]
pub struct AgentConfig {
    /// Most bytes of events buffered on all edges together.
    pub memory_limit: ByteSize,
    /// How long shutdown waits for in-flight events to drain into the sinks before
    /// components are stopped.
    pub shutdown_timeout: DurationStr,
    /// Host name used in labels; defaults to the machine's host name.
    pub hostname: Option<String>,
    /// Directory for the agent's scratch files (rotated perf data, profiler outputs).
    /// Created with mode 0700: only the agent can write there.
    pub state_dir: PathBuf,
    /// `[agent.supervisor]`: limits of the child processes (profilers) the agent runs.
    pub supervisor: SupervisorConfig,
    /// Static labels put on every profile, e.g. `{ service = "checkout", env =
    /// "prod" }`. A source's own `labels` win over these. Default: none (no
    /// `service`).
    pub labels: LabelSet,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            memory_limit: ByteSize::mib(64),
            shutdown_timeout: DurationStr::from_secs(30),
            hostname: None,
            state_dir: PathBuf::from("/var/lib/profpipe"),
            supervisor: SupervisorConfig::default(),
            labels: LabelSet::default(),
        }
    }
}

/// `[telemetry]`: the Prometheus endpoint.
#[derive(Clone, Debug, PartialEq, Default, Deserialize)]
#[serde(default)]
pub struct TelemetryConfig {
    /// Address to serve `/metrics` on, e.g. "127.0.0.1:9102". Unset: no endpoint.
    pub listen: Option<SocketAddr>,
}
