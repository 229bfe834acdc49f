//! The `[control]` table: where the control server is and how to talk to it.
//!
//! ```toml
//! [control]
//! server = "https://studio.example.com"   # Performance Studio's base URL
//! token = { file = "/etc/profpipe/token" } # or "${PROFPIPE_TOKEN}", or { env = "PROFPIPE_TOKEN" }
//! service = "checkout"
//! interval = "30s"
//! tls = { ca_file = "/etc/profpipe/ca.pem", cert_file = "...", key_file = "..." }
//! [control.sources.py_spy]                 # settings of the sources commands build
//! binary = "/opt/py-spy/bin/py-spy"
//! ```

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::secret::Secret;

use crate::units::{ByteSize, DurationStr};

/// `[control]`: the heartbeat client's settings. Unknown fields are refused.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlConfig {
    /// Base URL of the control server (http or https), e.g.
    /// `https://studio.example.com`; `/api/metrics/heartbeat` is added.
    pub server: String,
    /// The bearer token, a [`Secret`] (`"${NAME}"`, `{ env = "NAME" }` or
    /// `{ file = "/path" }`). Read at start and at each reload, never logged; it is
    /// also the API key of the profile uploads to the server.
    pub token: Secret,
    /// The service name sent with every heartbeat (`service_name`), and the
    /// Performance Studio service profiles are uploaded to.
    pub service: String,
    /// Time between heartbeats (gProfiler: 30 s).
    #[serde(default = "default_interval")]
    pub interval: DurationStr,
    /// Longest a heartbeat or completion request may take, reply body included: a
    /// reply that never ends is cut off here.
    #[serde(default = "default_timeout")]
    pub timeout: DurationStr,
    /// Largest reply body read; a longer one is cut off and counted `too_large`.
    #[serde(default = "default_max_response")]
    pub max_response_bytes: ByteSize,
    /// TLS to the server, besides the system's roots.
    #[serde(default)]
    pub tls: Option<ControlTls>,
    /// Per source type (`perf`, `py_spy`, `rbspy`), settings merged into the
    /// sources a command builds (e.g. `binary`, `discovery`); what the command
    /// sets (frequency, window, events, max_processes) wins.
    #[serde(default)]
    pub sources: toml::Table,
}

/// `[control] tls`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlTls {
    /// PEM bundle of CAs trusted besides the system's roots.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate chain, for servers that ask for one (with `key_file`).
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file`.
    pub key_file: Option<PathBuf>,
}

fn default_interval() -> DurationStr {
    DurationStr::from_secs(30)
}

fn default_timeout() -> DurationStr {
    DurationStr::from_secs(30)
}

fn default_max_response() -> ByteSize {
    ByteSize(1 << 20)
}

/// The source types a `[control.sources.X]` table may name.
pub const SOURCE_TYPES: &[&str] = &["perf", "py_spy", "rbspy"];

impl ControlConfig {
    /// Checks without I/O: every problem, worded for the operator.
    pub fn check(&self) -> Vec<String> {
        let mut problems = Vec::new();
        match reqwest::Url::parse(&self.server) {
            Ok(url) if !matches!(url.scheme(), "http" | "https") => problems.push(format!(
                "[control] server: `{}` is not http or https",
                url.scheme()
            )),
            Ok(url) if !url.username().is_empty() || url.password().is_some() => problems
                .push("[control] server: credentials in the URL are refused (use `token`)".into()),
            Ok(_) => {}
            Err(e) => problems.push(format!("[control] server: not a URL: {e}")),
        }
        if let Err(e) = self.token.check() {
            problems.push(format!("[control] token: {e}"));
        }
        if self.service.trim().is_empty() {
            problems.push("[control] service: must not be empty".into());
        }
        let interval = self.interval.get();
        // Below 100ms only for tests and measurements (thousands of commands).
        if interval < Duration::from_millis(10) || interval > Duration::from_secs(3600) {
            problems.push("[control] interval: must be between 10ms and 1h".into());
        }
        if self.timeout.get() < Duration::from_millis(100) {
            problems.push("[control] timeout: must be at least 100ms".into());
        }
        if self.max_response_bytes.get() < 1024 || self.max_response_bytes.get() > 64 << 20 {
            problems.push("[control] max_response_bytes: must be between 1KiB and 64MiB".into());
        }
        if let Some(tls) = &self.tls {
            if tls.cert_file.is_some() != tls.key_file.is_some() {
                problems.push("[control] tls: `cert_file` and `key_file` go together".into());
            }
        }
        for (name, value) in &self.sources {
            if !SOURCE_TYPES.contains(&name.as_str()) {
                problems.push(format!(
                    "[control.sources] `{name}`: expected one of {}",
                    SOURCE_TYPES.join(", ")
                ));
            } else if !value.is_table() {
                problems.push(format!("[control.sources] `{name}`: must be a table"));
            } else if value.get("type").is_some() {
                problems.push(format!(
                    "[control.sources.{name}] `type` is set by the agent"
                ));
            }
        }
        problems
    }
}
