//! The `perf` source's settings: its TOML table, its defaults, and the parts of
//! `perf record`'s command line they decide. Their checks are with the component,
//! in `mod.rs`.

use serde::Deserialize;

use crate::process::{Backoff, DiscoveryConfig};
use crate::units::{ByteSize, DurationStr};

/// Largest DWARF stack dump perf accepts (`u16::MAX` rounded down to 8 bytes).
pub const MAX_DWARF_STACK_SIZE: u32 = 65528;
/// Highest sampling frequency accepted with DWARF call graphs: every sample copies
/// `dwarf_stack_size` bytes of stack (gProfiler caps it the same way).
pub const MAX_DWARF_FREQUENCY: u32 = 100;

/// How perf walks call stacks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum CallGraph {
    /// Frame pointers (`-g`): cheap; binaries built without frame pointers show
    /// short stacks.
    #[default]
    Fp,
    /// DWARF unwinding (`--call-graph dwarf,N`): copies `dwarf_stack_size` bytes of
    /// stack per sample; much larger data files and slower `perf script`.
    Dwarf,
}

/// Who turns a window's perf.data into `perf script` text.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Reader {
    /// `perf script -F +pid --no-inline` under `script_timeout`.
    #[default]
    PerfScript,
    /// profpipe's own reader (`formats::perf_data`), symbol caches kept across
    /// windows; not yet the default: its live tests still have to pass on a quiet
    /// machine.
    InProcess,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PerfSourceConfig {
    /// Sampling frequency in Hz (`perf record -F`), per CPU.
    pub frequency: u32,
    /// Length of a window: one rotation of perf's data file, one profile.
    pub window: DurationStr,
    /// Stop after this many windows (the CLI's `--once` sets 1). Unset: run until the
    /// agent shuts down.
    pub max_windows: Option<u64>,
    /// How perf walks stacks: "fp" or "dwarf".
    pub call_graph: CallGraph,
    /// With `call_graph = "dwarf"`: bytes of stack copied per sample (multiple of 8,
    /// at most 65528).
    pub dwarf_stack_size: u32,
    /// perf events to sample (`-e`, one per entry). Unset: discovered at start-up
    /// (the default event, then `cpu-clock`, then `task-clock`).
    pub events: Option<Vec<String>>,
    /// perf's ring-buffer size in pages (`-m`). Default: 129 with fp, 257 with dwarf
    /// (pinned so perf does not take all of `perf_event_mlock_kb`; perf rounds it up
    /// to a power of two).
    pub mmap_pages: Option<u32>,
    /// Restart perf when its resident memory passes this.
    pub restart_rss: ByteSize,
    /// Restart perf when it has been running this long.
    pub restart_after: DurationStr,
    /// Restart perf when its current data file passes this size (a window that
    /// records more than this is cut into several files; all are delivered).
    pub max_data_bytes: ByteSize,
    /// Longest one `perf script` run may take; it is killed past it.
    pub script_timeout: DurationStr,
    /// How a window's perf.data becomes stacks: "perf_script" (run `perf script`) or
    /// "in_process" (read and symbolize it in the agent; frame pointers only, DWARF
    /// stacks always go through `perf script`).
    pub reader: Reader,
    /// Most bytes of symbol tables (ELF files, JIT perf maps) kept between windows
    /// by the in-process reader; past it the least recently used are dropped.
    pub symbol_cache: ByteSize,
    /// The perf program: a name looked up in `PATH`, or a path.
    pub binary: String,
    /// More arguments for `perf record`, added after the source's own (not `-o` or
    /// `--switch-output`, which the source owns).
    pub extra_args: Vec<String>,
    /// Delays between restarts of a `perf record` that died.
    pub backoff: Backoff,
    /// Naming the JIT frames of JVMs and Node.js processes (see `jit.rs`).
    pub jit: JitConfig,
    /// Which JVMs and Node.js processes `jit` looks at (`min_age`, allow/deny
    /// lists, `max_processes` per runtime).
    pub discovery: DiscoveryConfig,
}

/// `jit = { ... }` of the perf source.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JitConfig {
    /// Before each window is symbolized, ask every discovered JVM to write its perf
    /// map (HotSpot's attach protocol, `Compiler.perfmap`).
    pub java: bool,
    /// Check that every discovered Node.js process writes a perf map; label and
    /// report (once) those that do not.
    pub node: bool,
    /// Longest one attach may take, every step included (trigger, SIGQUIT, socket,
    /// command, answer).
    pub attach_timeout: DurationStr,
    /// Longest the attaches of a window may hold its `perf script`; attaches still
    /// running then finish in the background and are not started again meanwhile.
    pub window_budget: DurationStr,
    /// Attaches running at once.
    pub max_concurrent: usize,
}

impl Default for JitConfig {
    fn default() -> Self {
        JitConfig {
            java: true,
            node: true,
            attach_timeout: DurationStr::from_secs(3),
            window_budget: DurationStr::from_secs(5),
            max_concurrent: 4,
        }
    }
}

/// Most attaches at once (`jit.max_concurrent`).
pub const MAX_CONCURRENT_ATTACHES: usize = 64;

impl Default for PerfSourceConfig {
    fn default() -> Self {
        PerfSourceConfig {
            frequency: 11,
            window: DurationStr::from_secs(60),
            max_windows: None,
            call_graph: CallGraph::Fp,
            dwarf_stack_size: 8192,
            events: None,
            mmap_pages: None,
            restart_rss: ByteSize::mib(200),
            restart_after: DurationStr::from_secs(600),
            max_data_bytes: ByteSize::mib(512),
            script_timeout: DurationStr::from_secs(60),
            reader: Reader::PerfScript,
            symbol_cache: ByteSize::mib(128),
            binary: "perf".into(),
            extra_args: Vec::new(),
            backoff: Backoff::default(),
            jit: JitConfig::default(),
            discovery: DiscoveryConfig::default(),
        }
    }
}

/// Arguments of `perf record` the source relies on; `extra_args` may not set them.
pub(super) const OWNED_ARGS: &[&str] = &["-o", "--output", "--switch-output", "--switch-max-files"];

impl PerfSourceConfig {
    /// `-m`: the configured value or the default for the call graph mode.
    pub fn mmap_pages(&self) -> u32 {
        self.mmap_pages.unwrap_or(match self.call_graph {
            CallGraph::Fp => 129,
            CallGraph::Dwarf => 257,
        })
    }

    /// The call-graph arguments of `perf record`.
    pub(super) fn call_graph_args(&self) -> Vec<String> {
        match self.call_graph {
            CallGraph::Fp => vec!["-g".into()],
            CallGraph::Dwarf => vec![
                "--call-graph".into(),
                format!("dwarf,{}", self.dwarf_stack_size),
            ],
        }
    }
}
