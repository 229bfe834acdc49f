//! Folding `perf script` output into folded stacks (`frame;frame;frame COUNT`).
//!
//! This behaves as inferno's collapse-perf does (and so as FlameGraph's
//! `stackcollapse-perf.pl`): same frame names, annotations, event filtering, period
//! weighting and output order. It is the agent's hottest path, so it is a small state
//! machine over bytes:
//!
//! ```text
//! perf 1234/1234 [001] 501.661597:    2004008 cpu-clock:    <- event line: comm, pid/tid, period, event
//!     ffffffff81b7b44b chacha_block+0xab ([kernel.kallsyms])   <- stack lines, leaf first
//!                f82ad read+0xd (/usr/lib/x86_64-linux-gnu/libc.so.6)
//!                                                           <- empty line: the record ends
//! ```
//!
//! folds to `perf;read;chacha_block 2004008`.
//!
//! How it stays fast: lines are borrowed slices of the input (no per-line `String`);
//! each distinct stack line is named once and cached as frame ids; a sample is counted
//! by its sequence of frame ids, and strings are only built when results are taken.
//! [`fold_to_writer`] also splits the input on record boundaries across threads.
//!
//! Bad input never panics: malformed lines, invalid UTF-8, over-long lines and
//! truncated input are counted in [`FoldStats`] and skipped.

mod folder;
mod frame;
mod lines;
mod parallel;
#[cfg(test)]
mod tests;

pub use folder::{PerfFolder, LINE_CACHE_LIMIT_BYTES};
pub use parallel::{fold_to_writer, fold_to_writer_chunked, DEFAULT_CHUNK_BYTES};

/// Lines longer than this (without the newline) are skipped and counted; a partial line
/// is never buffered beyond it.
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// Frames kept per sample. perf itself stops at `kernel.perf_event_max_stack` (127 by
/// default, at most 65535), so only input without record separators gets here: the
/// frames beyond are dropped and the sample is counted in [`FoldStats::oversized_stacks`].
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

/// One folded stack and its weight (sum of sample periods, or sample count when the
/// input carries no periods).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Folded {
    /// The process id when [`FoldOptions::key_by_pid`] is set and the input carries it; else 0.
    pub pid: u32,
    /// `comm;root;...;leaf`.
    pub stack: String,
    pub count: u64,
}

/// What a folder saw, with malformed input counted by kind.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FoldStats {
    /// Input bytes fed.
    pub bytes: u64,
    /// Samples counted (stacks with at least one frame).
    pub samples: u64,
    /// Samples skipped because their event differs from the first event seen (as the
    /// reference tools do; mixing e.g. cycles and instructions would mislead).
    pub other_event_samples: u64,
    /// Event (header) lines that could not be parsed.
    pub bad_header_lines: u64,
    /// Stack (frame) lines that could not be parsed.
    pub bad_frame_lines: u64,
    /// Lines with invalid UTF-8 (converted lossily, then parsed).
    pub non_utf8_lines: u64,
    /// Lines over [`MAX_LINE_BYTES`] (skipped).
    pub oversized_lines: u64,
    /// Samples with more than [`MAX_STACK_FRAMES`] frames (the rest were dropped).
    pub oversized_stacks: u64,
    /// A last line without its newline: the input was probably cut off (parsed anyway).
    pub truncated_lines: u64,
}

impl FoldStats {
    /// Every kind of malformed input seen, with its count (only kinds with count > 0),
    /// for "one warning per kind". Kinds are stable identifiers, usable as metric labels;
    /// [`FoldStats::describe`] turns one into a sentence.
    pub fn problems(&self) -> Vec<(&'static str, u64)> {
        [
            ("bad_header_lines", self.bad_header_lines),
            ("bad_frame_lines", self.bad_frame_lines),
            ("non_utf8_lines", self.non_utf8_lines),
            ("oversized_lines", self.oversized_lines),
            ("oversized_stacks", self.oversized_stacks),
            ("truncated_lines", self.truncated_lines),
        ]
        .into_iter()
        .filter(|&(_, n)| n > 0)
        .collect()
    }

    /// A human sentence for one `(kind, count)` from [`FoldStats::problems`], e.g.
    /// `skipped 3 malformed frame lines`.
    pub fn describe(kind: &str, count: u64) -> String {
        match kind {
            "bad_header_lines" => format!("skipped {count} malformed event header lines"),
            "bad_frame_lines" => format!("skipped {count} malformed frame lines"),
            "non_utf8_lines" => format!("converted {count} lines with invalid UTF-8 lossily"),
            "oversized_lines" => {
                format!("skipped {count} lines longer than {} bytes", MAX_LINE_BYTES)
            }
            "oversized_stacks" => format!(
                "cut {count} stacks deeper than {MAX_STACK_FRAMES} frames (missing empty lines between samples?)"
            ),
            "truncated_lines" => {
                format!("input ended in the middle of a line ({count} unterminated line)")
            }
            other => format!("{count} {other}"),
        }
    }

    /// Adds `other`'s counts to these.
    pub fn merge(&mut self, other: &FoldStats) {
        let FoldStats {
            bytes,
            samples,
            other_event_samples,
            bad_header_lines,
            bad_frame_lines,
            non_utf8_lines,
            oversized_lines,
            oversized_stacks,
            truncated_lines,
        } = other;
        self.bytes += bytes;
        self.samples += samples;
        self.other_event_samples += other_event_samples;
        self.bad_header_lines += bad_header_lines;
        self.bad_frame_lines += bad_frame_lines;
        self.non_utf8_lines += non_utf8_lines;
        self.oversized_lines += oversized_lines;
        self.oversized_stacks += oversized_stacks;
        self.truncated_lines += truncated_lines;
    }
}
