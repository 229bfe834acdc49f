//! What a per-process profiler source is made of: the profiler's interface, the
//! driver's settings and their checks, and where the profiler's binary is found.

use std::ffi::OsString;
use std::io::{self, BufRead};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::component::{at_least_one, FieldError};
use crate::event::Stack;
use crate::formats::line::FormatStats;
use crate::process::{DiscoveryConfig, Runtime};
use crate::sources::live::binary::{self, Search};
use crate::sources::runtime_sampler::{FrameStyle, Kind, Options};
use crate::telemetry::ComponentMetrics;

/// Added to a run's duration to get its deadline (gProfiler: duration + 10 s).
pub const EXTRA_DEADLINE: Duration = Duration::from_secs(10);
/// Windows whose runs may be in progress at once.
pub const MAX_WINDOWS_IN_FLIGHT: usize = 2;
/// Where profpipe's helper scripts install profilers, relative to `$HOME`; searched
/// after `PATH`.
pub use crate::sources::live::binary::TOOLS_DIR;

/// What differs between per-process profilers.
pub trait RuntimeProfiler: Send + Sync + 'static {
    /// The `profiler` label and the supervisor's program label: "py-spy", "rbspy".
    fn name(&self) -> &'static str;
    /// Which processes it profiles.
    fn runtime(&self) -> Runtime;
    /// How to install it, for the one log line when it is missing.
    fn install_hint(&self) -> &'static str;
    /// The arguments of one run of `duration_secs` against `pid`, writing `output`.
    fn args(&self, pid: u32, duration_secs: u64, output: &Path) -> Vec<OsString>;
    /// The sampler child that replaces per-window runs (`mode = "attached"`): which
    /// runtime, its options, and how the CLI prints its frames.
    fn sampler(&self) -> (Kind, Options, FrameStyle);
    /// Reads an output file into stacks whose first frame is `comm`.
    fn read_output(
        &self,
        reader: &mut dyn BufRead,
        comm: &str,
    ) -> io::Result<(Vec<Stack>, FormatStats)>;
    /// Rewrites the stacks read from a run against `pid`, on a blocking thread
    /// (py-spy: Python version tags). Nothing by default.
    fn finish(&self, _pid: u32, _stacks: &mut [Stack], _metrics: &ComponentMetrics) {}
}

/// The driver settings every such source has.
#[derive(Clone, Debug)]
pub struct RunSettings {
    pub window: Duration,
    pub max_windows: Option<u64>,
    pub max_concurrent: usize,
    pub discovery: DiscoveryConfig,
    /// A path, or a name looked up with [`resolve_binary`].
    pub binary: String,
    pub mode: Mode,
    /// profpipe's own binary for the sampler child; empty: found by itself.
    pub sampler_binary: String,
    /// Attached mode: skip targets that used no CPU since the previous window.
    pub skip_idle_targets: bool,
}

/// How a runtime source samples.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// One long-lived sampler child (profpipe's own binary, py-spy / rbspy as
    /// libraries) for every target: attached once, streamed to the agent.
    #[default]
    Attached,
    /// One `py-spy` / `rbspy` CLI process per target per window (the `binary`).
    PerWindow,
}

/// Checks every such source makes (no I/O).
pub fn validate(frequency: u32, s: &RunSettings) -> Vec<FieldError> {
    let mut e = Vec::new();
    e.extend(at_least_one(&["frequency"], frequency));
    if s.window < Duration::from_secs(1) {
        e.push(FieldError::new(&["window"], "window must be at least 1s"));
    }
    e.extend(
        s.max_windows
            .and_then(|n| at_least_one(&["max_windows"], n)),
    );
    if s.binary.trim().is_empty() {
        e.push(FieldError::new(&["binary"], "binary must not be empty"));
    }
    e.extend(at_least_one(&["max_concurrent"], s.max_concurrent));
    e.extend(at_least_one(
        &["discovery", "max_processes"],
        s.discovery.max_processes,
    ));
    e
}

/// Finds a profiler binary: a name containing `/` is used as is; a bare name is
/// looked up in `PATH`, then in `$HOME/.cache/profpipe-tools/bin`. `None` when
/// there is no executable file there.
pub fn resolve_binary(name: &str) -> Option<PathBuf> {
    binary::find(name, Search::PathThenTools)
}
