//! `type = "py_spy"`: profiles every Python process on the host with py-spy, one
//! run per process per window.
//!
//! ```toml
//! [sources.python]
//! type = "py_spy"
//! frequency = 11            # Hz per process; py-spy is capped at 50
//! window = "60s"
//! binary = "py-spy"         # a path, or a name looked up in PATH then ~/.cache/profpipe-tools/bin
//! max_concurrent = 16       # py-spy children at once (the supervisor's cap also applies)
//! gil = false               # --gil: only threads holding the GIL
//! idle = false              # --idle: include idle threads
//! full_filenames = false    # --full-filenames
//! annotate = true           # append gProfiler's `_[p]` to every frame
//! python_versions = true    # gProfiler's `[pkg==ver]` / `[standard-library==3.x.y]` tags
//! discovery = { min_age = "10s", max_processes = 50 }
//! mode = "attached"         # or "per_window": one py-spy CLI run per process per window
//! skip_idle_targets = false # attached: skip processes that used no CPU last window
//! sampler_binary = ""       # attached: profpipe's binary for the sampler child (found by itself)
//! ```
//!
//! By default (`mode = "attached"`) one long-lived sampler child samples every
//! selected process through py-spy's library (see [`super::runtime_sampler`]);
//! `binary` and `max_concurrent` then do not apply. With `mode = "per_window"`
//! each run is `py-spy record --format raw --nonblocking --duration D --rate R
//! --pid P --output F [--gil] [--full-filenames] [--idle]`; its lines
//! (`main (app.py:8);work (app.py:3) 41`) become `comm;main (app.py:8)_[p];work
//! (app.py:3)_[p]`. Processes that merely embed Python (Envoy, Bazel tools) are
//! skipped by discovery (`discovery.skip_embedded_python`, on by default): py-spy
//! fails on them with "Failed to find python version". See [`super::runtime_runs`]
//! for windows, concurrency, failures and shutdown.
//!
//! With `python_versions` (on by default, as gProfiler's `--python-versions`) py-spy
//! runs with `--full-filenames` (as gProfiler always runs it: a version needs the
//! file's path) and each frame's file gets its distribution's version or the
//! standard library's: `main (/srv/x.py:8 [attrs==24.2.0])_[p]`; see
//! [`crate::process::python_versions`].

use std::ffi::OsString;
use std::io::{self, BufRead};
use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;

use super::runtime_config::RuntimeSourceConfig;
use super::runtime_runs::{Mode, RunSettings, RuntimeProfiler};
use super::runtime_sampler::{FrameStyle, Kind, Options};
use crate::event::Stack;
use crate::formats::line::{self, FormatStats};
use crate::formats::py_spy_raw::{PySpyRawOptions, PySpyRawReader};
use crate::process::python_versions::{Limits, PythonVersions};
use crate::process::{DiscoveryConfig, Runtime};
use crate::telemetry::ComponentMetrics;
use crate::units::DurationStr;

/// Highest sampling rate passed to py-spy (gProfiler's cap).
pub const MAX_RATE: u32 = 50;

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PySpyConfig {
    /// Samples per second per process. Values above 50 are lowered to 50
    /// (gProfiler's cap), so one fleet-wide frequency can be used for every source.
    pub frequency: u32,
    /// Length of a window; every process is profiled once per window, for the
    /// whole window. Windows line up with those of every other live source.
    pub window: DurationStr,
    /// Stop after this many windows (default: run until shutdown).
    pub max_windows: Option<u64>,
    /// The py-spy program: a path, or a name looked up in `PATH` and then in
    /// `~/.cache/profpipe-tools/bin`. When it is not found the source logs one INFO
    /// line (`pip install py-spy`) and finishes without profiling.
    pub binary: String,
    /// Most py-spy children running at once for this source. Processes that wait
    /// for a slot are profiled for what is left of the window, and skipped when
    /// less than half a second is left: keep it near `discovery.max_processes` to
    /// cover every selected process.
    pub max_concurrent: usize,
    /// Which processes are profiled (`min_age`, `max_processes`, allow/deny lists,
    /// `skip_embedded_python`, ...).
    pub discovery: DiscoveryConfig,
    /// Pass `--gil`: sample only the thread holding the GIL.
    pub gil: bool,
    /// Pass `--full-filenames`: full paths instead of file names in frames (always
    /// passed while `python_versions` is on: a version tag needs the path).
    pub full_filenames: bool,
    /// Pass `--idle`: include samples of idle threads.
    pub idle: bool,
    /// Append `_[p]` to every frame, as gProfiler marks Python frames.
    pub annotate: bool,
    /// Tag each frame with the version of the distribution that owns its file
    /// (`[attrs==24.2.0]`) or of the standard library (`[standard-library==3.11.7]`),
    /// as gProfiler does. Implies `--full-filenames`.
    pub python_versions: bool,
    /// `attached` (one long-lived sampler child for every process) or `per_window`
    /// (one py-spy CLI run per process per window).
    pub mode: Mode,
    /// Attached mode: do not sample processes that used no CPU since the previous
    /// window (their perf stacks stay native).
    pub skip_idle_targets: bool,
    /// Attached mode: profpipe's binary to run as the sampler child; empty finds
    /// the running one.
    pub sampler_binary: String,
}

impl Default for PySpyConfig {
    fn default() -> Self {
        PySpyConfig {
            frequency: 11,
            window: DurationStr::from_secs(60),
            max_windows: None,
            binary: "py-spy".into(),
            max_concurrent: 16,
            discovery: DiscoveryConfig::default(),
            gil: false,
            full_filenames: false,
            idle: false,
            annotate: true,
            python_versions: true,
            mode: Mode::default(),
            skip_idle_targets: false,
            sampler_binary: String::new(),
        }
    }
}

impl PySpyConfig {
    /// The rate passed to py-spy.
    pub fn rate(&self) -> u32 {
        self.frequency.clamp(1, MAX_RATE)
    }
}

impl RuntimeSourceConfig for PySpyConfig {
    fn frequency(&self) -> u32 {
        self.frequency
    }

    fn settings(&self) -> RunSettings {
        RunSettings {
            window: self.window.get(),
            max_windows: self.max_windows,
            max_concurrent: self.max_concurrent,
            discovery: self.discovery.clone(),
            binary: self.binary.clone(),
            mode: self.mode,
            sampler_binary: self.sampler_binary.clone(),
            skip_idle_targets: self.skip_idle_targets,
        }
    }

    fn window_fields(&mut self) -> (&mut DurationStr, &mut Option<u64>) {
        (&mut self.window, &mut self.max_windows)
    }

    fn profiler(&self) -> Arc<dyn RuntimeProfiler> {
        Arc::new(PySpy::from_config(self))
    }
}

/// py-spy as a [`RuntimeProfiler`].
#[derive(Clone, Debug)]
pub struct PySpy {
    pub rate: u32,
    pub gil: bool,
    pub full_filenames: bool,
    pub idle: bool,
    pub annotate: bool,
    /// The version tagger, when `python_versions` is on (its caches live as long
    /// as the source).
    pub versions: Option<PythonVersions>,
}

impl PySpy {
    pub fn from_config(c: &PySpyConfig) -> PySpy {
        PySpy {
            rate: c.rate(),
            gil: c.gil,
            full_filenames: c.full_filenames || c.python_versions,
            idle: c.idle,
            annotate: c.annotate,
            versions: c
                .python_versions
                .then(|| PythonVersions::new(Limits::default())),
        }
    }
}

impl RuntimeProfiler for PySpy {
    fn name(&self) -> &'static str {
        "py-spy"
    }

    fn runtime(&self) -> Runtime {
        Runtime::Python
    }

    fn install_hint(&self) -> &'static str {
        "pip install py-spy"
    }

    fn args(&self, pid: u32, duration_secs: u64, output: &Path) -> Vec<OsString> {
        let mut a: Vec<OsString> = [
            "record",
            "--format",
            "raw",
            "--nonblocking",
            "--duration",
            &duration_secs.to_string(),
            "--rate",
            &self.rate.to_string(),
            "--pid",
            &pid.to_string(),
            "--output",
        ]
        .iter()
        .map(OsString::from)
        .collect();
        a.push(output.as_os_str().to_owned());
        for (on, flag) in [
            (self.gil, "--gil"),
            (self.full_filenames, "--full-filenames"),
            (self.idle, "--idle"),
        ] {
            if on {
                a.push(flag.into());
            }
        }
        a
    }

    fn sampler(&self) -> (Kind, Options, FrameStyle) {
        let options = Options {
            rate: self.rate,
            idle: self.idle,
            gil: self.gil,
            full_filenames: self.full_filenames,
            ..Options::default()
        };
        (Kind::Python, options, FrameStyle::PySpy)
    }

    fn read_output(
        &self,
        reader: &mut dyn BufRead,
        comm: &str,
    ) -> io::Result<(Vec<Stack>, FormatStats)> {
        let mut parser = PySpyRawReader::with_format(PySpyRawOptions {
            comm: Some(comm.to_string()),
            annotate: self.annotate,
        });
        let mut stacks = Vec::new();
        line::read_stacks(reader, &mut parser, |s| stacks.push(s))?;
        Ok((stacks, parser.stats().clone()))
    }

    fn finish(&self, pid: u32, stacks: &mut [Stack], metrics: &ComponentMetrics) {
        if let Some(v) = &self.versions {
            v.tag_stacks(pid, stacks);
            metrics.cache_evictions("python_versions", v.new_evictions());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::component::{parse_table, FieldError, SourceConfig};
    use std::time::Duration;

    fn parse(text: &str) -> Result<PySpyConfig, Vec<FieldError>> {
        parse_table(toml::Value::Table(toml::from_str(text).unwrap()))
    }

    fn args(p: &PySpy) -> Vec<String> {
        p.args(42, 7, Path::new("/s/out"))
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect()
    }

    #[test]
    fn command_line_and_rate_cap() {
        let c: PySpyConfig = parse("frequency = 99\npython_versions = false").unwrap();
        assert_eq!(c.rate(), 50);
        let p = PySpy::from_config(&c);
        assert_eq!(
            args(&p).join(" "),
            "record --format raw --nonblocking --duration 7 --rate 50 --pid 42 --output /s/out"
        );
        // Version tags need the files' paths.
        let c: PySpyConfig = parse("").unwrap();
        assert!(args(&PySpy::from_config(&c))
            .join(" ")
            .ends_with("--output /s/out --full-filenames"));
        let c: PySpyConfig = parse("gil = true\nfull_filenames = true\nidle = true").unwrap();
        assert!(args(&PySpy::from_config(&c))
            .join(" ")
            .ends_with("--rate 11 --pid 42 --output /s/out --gil --full-filenames --idle"));
    }

    #[test]
    fn config_defaults_and_errors() {
        let c: PySpyConfig = parse("").unwrap();
        assert_eq!(c.window.get(), Duration::from_secs(60));
        assert_eq!(c.max_concurrent, 16);
        assert_eq!(c.discovery.min_age.get(), Duration::from_secs(10));
        assert!(c.discovery.skip_embedded_python);
        assert!(c.annotate && c.python_versions && !c.is_finite());
        assert!(c.validate().is_empty());
        let errs = parse("nonsense = 1").unwrap_err();
        assert_eq!(errs[0].path, ["nonsense"]);
        let errs = parse("discovery = { min_duration = \"1s\" }").unwrap_err();
        assert_eq!(errs[0].path, ["discovery", "min_duration"]);
        let c =
            parse("frequency = 0\nwindow = \"0s\"\nmax_windows = 0\nmax_concurrent = 0").unwrap();
        assert_eq!(c.validate().len(), 4);
    }

    #[test]
    fn output_lines_get_comm_and_suffix() {
        let p = PySpy::from_config(&PySpyConfig::default());
        let text = b"<module> (busy.py:27);main (busy.py:23) 21\n";
        let (stacks, stats) = p.read_output(&mut &text[..], "python3").unwrap();
        assert_eq!(
            &*stacks[0].frames,
            "python3;<module> (busy.py:27)_[p];main (busy.py:23)_[p]"
        );
        assert_eq!((stacks[0].count, stats.bad_lines), (21, 0));
    }
}
