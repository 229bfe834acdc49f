//! The `pyperf` source's settings: its TOML table, its defaults, and PyPerf's
//! command line (the checks are with the component, in `source.rs`).

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::constants::{MAX_FREQUENCY, PROFILER};
use crate::process::{Backoff, Spec};
use crate::units::DurationStr;

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PyPerfSourceConfig {
    /// Path to the PyPerf executable (a bare name is looked up in `PATH`). Required:
    /// when unset or missing the source logs one INFO line and finishes.
    pub binary: Option<PathBuf>,
    /// Sampling frequency in Hz (`-F`); values above 1000 are capped at 1000.
    pub frequency: u32,
    /// Length of a window; windows line up with every other live source's.
    pub window: DurationStr,
    /// Stop after this many windows (the first one may be partial). Unset: run until
    /// shutdown.
    pub max_windows: Option<u64>,
    /// Extra arguments appended to PyPerf's command line, e.g.
    /// `["--fs-offset", "24", "--stack-offset", "32", "--insert-dso-name"]`.
    pub extra_args: Vec<String>,
    /// `--events-buffer-pages`: perf ring-buffer pages per CPU.
    pub events_buffer_pages: u32,
    /// `--symbols-map-size`: entries of PyPerf's BPF symbols map.
    pub symbols_map_size: u32,
    /// How long to wait for PyPerf to rename its output after SIGUSR2 before it is
    /// considered hung and restarted.
    pub rotate_timeout: DurationStr,
    /// Delays between restarts of PyPerf after it exits or hangs.
    pub backoff: Backoff,
    /// Tag frames that name a file (`name (/path/x.py:N)`) with its distribution's
    /// version or the standard library's, as the `py_spy` source does.
    pub python_versions: bool,
}

impl Default for PyPerfSourceConfig {
    fn default() -> Self {
        PyPerfSourceConfig {
            binary: None,
            frequency: 11,
            window: DurationStr::from_secs(60),
            max_windows: None,
            extra_args: Vec::new(),
            events_buffer_pages: 256,
            symbols_map_size: 131_072,
            rotate_timeout: DurationStr::from_secs(5),
            backoff: Backoff::default(),
            python_versions: true,
        }
    }
}

impl PyPerfSourceConfig {
    /// PyPerf's command line for output file `output`.
    pub fn spec(&self, binary: &Path, output: &Path) -> Spec {
        Spec::new(binary)
            .label(PROFILER)
            .arg("--output")
            .arg(output)
            .arg("-F")
            .arg(self.frequency.min(MAX_FREQUENCY).to_string())
            .arg("--events-buffer-pages")
            .arg(self.events_buffer_pages.to_string())
            .arg("--symbols-map-size")
            .arg(self.symbols_map_size.to_string())
            .args(&self.extra_args)
    }
}
