//! What folding yields: the folded stacks, and what the folder saw on the way.

use super::options::{MAX_LINE_BYTES, MAX_STACK_FRAMES};

/// One folded stack and its weight (sum of sample periods, or sample count when the
/// input carries no periods).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Folded {
    /// The process id when [`FoldOptions::key_by_pid`](super::FoldOptions::key_by_pid) is set and the input carries it; else 0.
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
