//! Cutting a byte stream into pieces that never split a unit of input.
//!
//! `perf script` output is cut after a blank line (the end of a sample record), so a
//! chunk holds whole records; line formats are cut after a newline. The carry-over
//! (an unfinished record or line) is bounded: a "line" longer than `max_line` bytes is
//! dropped up to its next newline and counted, so one corrupt megabyte cannot make the
//! agent buffer without limit.

use bytes::{Bytes, BytesMut};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// Sample records separated by blank lines (`perf script`).
    Record,
    /// Lines (folded, collapsed, py-spy raw, PyPerf).
    Line,
}

pub struct Chunker {
    unit: Unit,
    buf: BytesMut,
    /// Longest carry-over kept; beyond it input is skipped up to the next newline.
    max_carry: usize,
    /// True while skipping the rest of an oversized line.
    skipping: bool,
    /// How many oversized pieces were skipped.
    pub oversized: u64,
}

impl Chunker {
    pub fn new(unit: Unit, max_carry: usize) -> Self {
        Chunker {
            unit,
            buf: BytesMut::new(),
            max_carry,
            skipping: false,
            oversized: 0,
        }
    }

    /// Bytes held waiting for the end of their record or line.
    pub fn carried(&self) -> usize {
        self.buf.len()
    }

    /// Appends input and returns the longest prefix made of whole units, if any.
    pub fn push(&mut self, mut data: &[u8]) -> Option<Bytes> {
        if self.skipping {
            match memchr::memchr(b'\n', data) {
                Some(i) => {
                    self.skipping = false;
                    data = &data[i + 1..];
                }
                None => return None,
            }
        }
        self.buf.extend_from_slice(data);
        let cut = self.cut_point();
        let out = cut.map(|n| self.buf.split_to(n).freeze());
        if self.buf.len() > self.max_carry {
            self.drop_oversized();
        }
        out
    }

    /// End of input: whatever is left, as a final piece.
    pub fn finish(&mut self) -> Option<Bytes> {
        self.skipping = false;
        if self.buf.is_empty() {
            None
        } else {
            Some(self.buf.split().freeze())
        }
    }

    fn cut_point(&self) -> Option<usize> {
        match self.unit {
            Unit::Line => memchr::memrchr(b'\n', &self.buf).map(|i| i + 1),
            Unit::Record => memchr::memmem::rfind(&self.buf, b"\n\n").map(|i| i + 2),
        }
    }

    /// The carry-over grew past its bound. For records, give up on keeping the record
    /// whole and cut at the last line end (the folder handles records split across
    /// chunks); for lines, or if there is no line end at all, drop the piece.
    fn drop_oversized(&mut self) {
        if self.unit == Unit::Record {
            if let Some(i) = memchr::memrchr(b'\n', &self.buf) {
                // Keep only the unfinished last line; the rest was already handed on.
                let _ = self.buf.split_to(i + 1);
                if self.buf.len() <= self.max_carry {
                    return;
                }
            }
        }
        self.oversized += 1;
        self.buf.clear();
        self.skipping = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_cut_after_blank_lines() {
        let mut c = Chunker::new(Unit::Record, 1 << 20);
        assert_eq!(c.push(b"a 1\n  f1\n"), None);
        assert_eq!(c.push(b"\nb 2\n").as_deref(), Some(&b"a 1\n  f1\n\n"[..]));
        assert_eq!(c.finish().as_deref(), Some(&b"b 2\n"[..]));
    }

    #[test]
    fn oversized_lines_are_skipped_and_counted() {
        let mut c = Chunker::new(Unit::Line, 8);
        assert_eq!(
            c.push(b"ok 1\nthis line is far too long"),
            Some(Bytes::from_static(b"ok 1\n"))
        );
        assert_eq!(c.oversized, 1);
        assert_eq!(c.push(b" still going"), None);
        assert_eq!(c.push(b" end\nnext 2\n").as_deref(), Some(&b"next 2\n"[..]));
        assert_eq!(c.carried(), 0);
    }
}
