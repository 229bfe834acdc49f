//! `type = "rbspy"`: profiles every Ruby process on the host with rbspy, one run
//! per process per window.
//!
//! ```toml
//! [sources.ruby]
//! type = "rbspy"
//! frequency = 11            # Hz per process; rbspy is capped at 100
//! window = "60s"
//! binary = "rbspy"          # a path, or a name looked up in PATH then ~/.cache/profpipe-tools/bin
//! max_concurrent = 16
//! on_cpu = false            # --on-cpu: only samples while the process is on CPU
//! annotate = true           # append gProfiler's `_[rb]` to every frame
//! discovery = { min_age = "10s" }
//! mode = "attached"         # or "per_window": one rbspy CLI run per process per window
//! skip_idle_targets = false # attached: skip processes that used no CPU last window
//! sampler_binary = ""       # attached: profpipe's binary for the sampler child (found by itself)
//! ```
//!
//! By default (`mode = "attached"`) one long-lived sampler child samples every
//! selected process through rbspy's library (see [`super::runtime_sampler`]);
//! `binary` and `max_concurrent` then do not apply. With `mode = "per_window"`
//! each run is `rbspy record --pid P --duration D --rate R --format collapsed
//! --file F --raw-file /dev/null --silent --nonblocking [--on-cpu]`. Without
//! `--raw-file`, rbspy keeps a gzipped copy of every recording in
//! `~/.cache/rbspy/`, a disk leak on a host profiled every minute; `/dev/null`
//! discards it. Its lines (`work - /app/x.rb:3;leaf - /app/x.rb:9 41`) become
//! `comm;work - /app/x.rb:3_[rb];leaf - /app/x.rb:9_[rb]`. See
//! [`super::runtime_runs`] for windows, concurrency, failures and shutdown.

use std::ffi::OsString;
use std::io::{self, BufRead};
use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;

use super::runtime_config::RuntimeSourceConfig;
use super::runtime_runs::{decorate_frames, Mode, RunSettings, RuntimeProfiler};
use super::runtime_sampler::{FrameStyle, Kind, Options};
use crate::event::Stack;
use crate::formats::folded::FoldedReader;
use crate::formats::line::{self, FormatStats};
use crate::process::{DiscoveryConfig, Runtime};
use crate::units::DurationStr;

/// Highest sampling rate passed to rbspy (gProfiler's cap).
pub const MAX_RATE: u32 = 100;

/// gProfiler's suffix for Ruby frames.
pub const RUBY_SUFFIX: &str = "_[rb]";

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RbSpyConfig {
    /// Samples per second per process. Values above 100 are lowered to 100
    /// (gProfiler's cap), so one fleet-wide frequency can be used for every source.
    pub frequency: u32,
    /// Length of a window; every process is profiled once per window, for the
    /// whole window. Windows line up with those of every other live source.
    pub window: DurationStr,
    /// Stop after this many windows (default: run until shutdown).
    pub max_windows: Option<u64>,
    /// The rbspy program: a path, or a name looked up in `PATH` and then in
    /// `~/.cache/profpipe-tools/bin`. When it is not found the source logs one INFO
    /// line (`cargo install rbspy`) and finishes without profiling.
    pub binary: String,
    /// Most rbspy children running at once for this source. Processes that wait
    /// for a slot are profiled for what is left of the window, and skipped when
    /// less than half a second is left.
    pub max_concurrent: usize,
    /// Which processes are profiled (`min_age`, `max_processes`, allow/deny lists).
    pub discovery: DiscoveryConfig,
    /// Pass `--on-cpu`: sample only while the process is running on a CPU.
    pub on_cpu: bool,
    /// Append `_[rb]` to every frame, as gProfiler marks Ruby frames.
    pub annotate: bool,
    /// `attached` (one long-lived sampler child for every process) or `per_window`
    /// (one rbspy CLI run per process per window).
    pub mode: Mode,
    /// Attached mode: do not sample processes that used no CPU since the previous
    /// window (their perf stacks stay native).
    pub skip_idle_targets: bool,
    /// Attached mode: profpipe's binary to run as the sampler child; empty finds
    /// the running one.
    pub sampler_binary: String,
}

impl Default for RbSpyConfig {
    fn default() -> Self {
        RbSpyConfig {
            frequency: 11,
            window: DurationStr::from_secs(60),
            max_windows: None,
            binary: "rbspy".into(),
            max_concurrent: 16,
            discovery: DiscoveryConfig::default(),
            on_cpu: false,
            annotate: true,
            mode: Mode::default(),
            skip_idle_targets: false,
            sampler_binary: String::new(),
        }
    }
}

impl RbSpyConfig {
    /// The rate passed to rbspy.
    pub fn rate(&self) -> u32 {
        self.frequency.clamp(1, MAX_RATE)
    }
}

impl RuntimeSourceConfig for RbSpyConfig {
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
        Arc::new(RbSpy::from_config(self))
    }
}

/// rbspy as a [`RuntimeProfiler`].
#[derive(Clone, Debug)]
pub struct RbSpy {
    pub rate: u32,
    pub on_cpu: bool,
    pub annotate: bool,
}

impl RbSpy {
    pub fn from_config(c: &RbSpyConfig) -> RbSpy {
        RbSpy {
            rate: c.rate(),
            on_cpu: c.on_cpu,
            annotate: c.annotate,
        }
    }
}

impl RuntimeProfiler for RbSpy {
    fn name(&self) -> &'static str {
        "rbspy"
    }

    fn runtime(&self) -> Runtime {
        Runtime::Ruby
    }

    fn install_hint(&self) -> &'static str {
        "cargo install rbspy"
    }

    fn args(&self, pid: u32, duration_secs: u64, output: &Path) -> Vec<OsString> {
        let mut a: Vec<OsString> = [
            "record",
            "--pid",
            &pid.to_string(),
            "--duration",
            &duration_secs.to_string(),
            "--rate",
            &self.rate.to_string(),
            "--format",
            "collapsed",
            "--file",
        ]
        .iter()
        .map(OsString::from)
        .collect();
        a.push(output.as_os_str().to_owned());
        for s in ["--raw-file", "/dev/null", "--silent", "--nonblocking"] {
            a.push(s.into());
        }
        if self.on_cpu {
            a.push("--on-cpu".into());
        }
        a
    }

    fn sampler(&self) -> (Kind, Options, FrameStyle) {
        let options = Options {
            rate: self.rate,
            on_cpu: self.on_cpu,
            ..Options::default()
        };
        (Kind::Ruby, options, FrameStyle::RbSpy)
    }

    fn read_output(
        &self,
        reader: &mut dyn BufRead,
        comm: &str,
    ) -> io::Result<(Vec<Stack>, FormatStats)> {
        let mut parser = FoldedReader::new();
        let suffix = self.annotate.then_some(RUBY_SUFFIX);
        let mut stacks = Vec::new();
        line::read_stacks(reader, &mut parser, |mut s| {
            s.frames = decorate_frames(comm, &s.frames, suffix).into();
            stacks.push(s);
        })?;
        Ok((stacks, parser.stats().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::component::{parse_table, FieldError, SourceConfig};

    fn parse(text: &str) -> Result<RbSpyConfig, Vec<FieldError>> {
        parse_table(toml::Value::Table(toml::from_str(text).unwrap()))
    }

    #[test]
    fn command_line_and_rate_cap() {
        let c = parse("frequency = 499\non_cpu = true").unwrap();
        let args: Vec<String> = RbSpy::from_config(&c)
            .args(7, 3, Path::new("/s/o"))
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect();
        assert_eq!(
            args.join(" "),
            "record --pid 7 --duration 3 --rate 100 --format collapsed --file /s/o \
             --raw-file /dev/null --silent --nonblocking --on-cpu"
        );
        let c = parse("").unwrap();
        assert_eq!((c.rate(), c.binary.as_str()), (11, "rbspy"));
        assert!(c.validate().is_empty());
        assert!(parse("oncpu = true").is_err());
    }

    #[test]
    fn output_lines_get_comm_and_suffix() {
        let p = RbSpy::from_config(&RbSpyConfig::default());
        let text = b"<main> - /a.rb:16;fib - /a.rb:1 94\n";
        let (stacks, _) = p.read_output(&mut &text[..], "ruby").unwrap();
        assert_eq!(
            &*stacks[0].frames,
            "ruby;<main> - /a.rb:16_[rb];fib - /a.rb:1_[rb]"
        );
        assert_eq!(stacks[0].count, 94);
    }
}
