//! How a folder names frames and keys samples, and the bounds it keeps to.

/// Lines longer than this (without the newline) are skipped and counted; a partial line
/// is never buffered beyond it.
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// Frames kept per sample. perf itself stops at `kernel.perf_event_max_stack` (127 by
/// default, at most 65535), so only input without record separators gets here: the
/// frames beyond are dropped and the sample is counted in [`FoldStats::oversized_stacks`](super::FoldStats::oversized_stacks).
pub const MAX_STACK_FRAMES: usize = 1 << 17;

/// How frames are named and samples keyed.
#[derive(Clone, Debug, Default)]
pub struct FoldOptions {
    /// `--pid`: the root frame is `comm-PID`.
    pub include_pid: bool,
    /// `--tid`: the root frame is `comm-PID/TID` (implies `include_pid`).
    pub include_tid: bool,
    /// `--kernel` (and `--all`): kernel frames get a `_[k]` suffix.
    pub annotate_kernel: bool,
    /// `--jit` (and `--all`): JIT frames (`/tmp/perf-PID.map`, jitdump) get a `_[j]` suffix.
    pub annotate_jit: bool,
    /// `--addrs`: unknown frames carry their address, `[libfoo.so <7f12ab>]`.
    pub include_addrs: bool,
    /// gProfiler convention: `[unknown]` in a known DSO becomes `(/path/to/dso)` instead of inferno's style.
    pub unknown_as_dso: bool,
    /// Aggregate separately per pid (pipeline use); the CLI leaves this false.
    pub key_by_pid: bool,
    /// Count samples instead of summing their periods (gProfiler's counts, and what
    /// runtime profilers report, are sample counts).
    pub count_samples: bool,
}
