//! py-spy's `record --format raw` output: folded Python stacks without a process
//! name, root first.
//!
//! ```text
//! <module> (/app/x.py:12);main (/app/x.py:8);work (/app/x.py:3) 41
//! <module> (/app/x.py:12)_[p];main (/app/x.py:8)_[p] 2        (Granulate's fork)
//! ```
//!
//! gProfiler prepends the process name as the first frame and marks Python frames
//! with `_[p]`; [`PySpyRawOptions`] does both so the stacks look like the rest.
//!
//! py-spy 0.4.3 also writes lines that hold only a count (` 1`): a sample of a
//! thread with no Python frame on its stack (the interpreter starting or exiting,
//! a thread in native code). Such a sample is a real sample of the process, so it
//! counts toward it: with a `comm` it becomes the stack `comm` alone (so `merge`
//! scales the Python stacks to the right share of perf's samples); without one there
//! is no frame to put it on, and it is counted in
//! [`FormatStats::frameless_samples`] and skipped. It is never an error and never
//! logged.

use std::io::{self, BufRead};

use super::line::{
    self, decode, is_blank_or_comment, split_count, trim_start, FormatStats, LineError,
};
use super::reader::{LineFormat, LineReader};
use crate::event::Stack;

/// The format's name in logs and configs.
pub const NAME: &str = "py_spy_raw";

/// gProfiler's suffix for Python frames.
pub const PYTHON_SUFFIX: &str = "_[p]";

/// How py-spy raw lines are read; the options are the format's only state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PySpyRawOptions {
    /// Process name to prepend as the first frame (`comm;...`).
    pub comm: Option<String>,
    /// Append `_[p]` to every frame that does not already end in it.
    pub annotate: bool,
}

/// A parser of py-spy raw lines that counts what it sees.
pub type PySpyRawReader = LineReader<PySpyRawOptions>;

impl LineFormat for PySpyRawOptions {
    const NAME: &'static str = NAME;

    fn parse(&mut self, line: &[u8], stats: &mut FormatStats) -> Result<Option<Stack>, LineError> {
        if is_blank_or_comment(line) {
            return Ok(None);
        }
        let line = trim_start(line);
        if let Some(count) = frameless_count(line) {
            return Ok(match &self.comm {
                Some(comm) => Some(Stack::new(comm.as_str(), count)),
                None => {
                    stats.record_frameless(count);
                    None
                }
            });
        }
        let (frames, count) = split_count(line)?;
        let (frames, lossy) = decode(frames);
        if lossy {
            stats.record_non_utf8(NAME);
        }
        let out = build_frames(self, &frames);
        Ok(Some(Stack::new(out, count)))
    }
}

/// The count of a line that holds nothing but a count (` 1` after trimming: `1`).
fn frameless_count(line: &[u8]) -> Option<u64> {
    line::parse_u64(line::trim_end(line))
}

/// `comm;` + frames, each annotated when asked.
fn build_frames(opts: &PySpyRawOptions, frames: &str) -> String {
    let comm = opts.comm.as_deref();
    if !opts.annotate {
        return match comm {
            Some(c) => format!("{c};{frames}"),
            None => frames.to_string(),
        };
    }
    let extra = frames.len() / 8 + PYTHON_SUFFIX.len() * 4;
    let mut out = String::with_capacity(comm.map_or(0, |c| c.len() + 1) + frames.len() + extra);
    if let Some(c) = comm {
        out.push_str(c);
        out.push(';');
    }
    for (i, frame) in frames.split(';').enumerate() {
        if i > 0 {
            out.push(';');
        }
        out.push_str(frame);
        if !frame.ends_with(PYTHON_SUFFIX) {
            out.push_str(PYTHON_SUFFIX);
        }
    }
    out
}

/// Reads a whole py-spy raw file.
pub fn read<R: BufRead>(reader: R, opts: PySpyRawOptions) -> io::Result<(Vec<Stack>, FormatStats)> {
    let mut parser = PySpyRawReader::with_format(opts);
    let stacks = parser.read_all(reader)?;
    Ok((stacks, parser.into_parts().1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::line::LineErrorKind;

    fn parse(opts: PySpyRawOptions, line: &[u8]) -> Stack {
        PySpyRawReader::with_format(opts)
            .parse_line(line)
            .unwrap()
            .unwrap()
    }

    #[test]
    fn golden_lines() {
        let line = b"<module> (/app/x.py:12);main (/app/x.py:8) 41";
        assert_eq!(
            parse(PySpyRawOptions::default(), line),
            Stack::new("<module> (/app/x.py:12);main (/app/x.py:8)", 41)
        );
        let opts = PySpyRawOptions {
            comm: Some("python3".into()),
            annotate: true,
        };
        assert_eq!(
            parse(opts.clone(), line),
            Stack::new(
                "python3;<module> (/app/x.py:12)_[p];main (/app/x.py:8)_[p]",
                41
            )
        );
        // Frames the fork already annotated are not annotated twice.
        assert_eq!(
            parse(opts.clone(), b"<module> (x.py:1)_[p];f (x.py:2) 2"),
            Stack::new("python3;<module> (x.py:1)_[p];f (x.py:2)_[p]", 2)
        );
        let comm_only = PySpyRawOptions {
            comm: Some("uwsgi".into()),
            annotate: false,
        };
        assert_eq!(
            parse(comm_only, b"f (x.py:2) 7"),
            Stack::new("uwsgi;f (x.py:2)", 7)
        );
    }

    #[test]
    fn bad_lines() {
        let mut r = PySpyRawReader::with_format(PySpyRawOptions::default());
        assert_eq!(
            r.parse_line(b"f (x.py:2)").unwrap_err().kind,
            LineErrorKind::BadCount
        );
        assert_eq!(r.parse_line(b"").unwrap(), None);
        assert_eq!(r.stats().bad_lines, 1);
    }

    #[test]
    fn frameless_samples_count_toward_the_process() {
        let opts = PySpyRawOptions {
            comm: Some("python3".into()),
            annotate: true,
        };
        assert_eq!(parse(opts, b" 1"), Stack::new("python3", 1));
        let mut r = PySpyRawReader::with_format(PySpyRawOptions::default());
        assert_eq!(r.parse_line(b" 3\r").unwrap(), None);
        assert_eq!(r.parse_line(b"12").unwrap(), None);
        assert_eq!(r.stats().frameless_samples, 15);
        assert_eq!(r.stats().bad_lines, 0);
    }

    /// Real output of py-spy 0.4.3 (`py-spy record --format raw -- python3 -c ...`,
    /// a process that starts, works and exits): its first line is ` 3`.
    #[test]
    fn real_py_spy_0_4_3_output_has_no_bad_lines() {
        let text = include_bytes!("../../tests/data/py-spy/short-lived-0.4.3.raw");
        let opts = PySpyRawOptions {
            comm: Some("python3".into()),
            annotate: true,
        };
        let (stacks, stats) = read(&text[..], opts).unwrap();
        assert_eq!(stats.bad_lines, 0);
        assert_eq!(stacks[0], Stack::new("python3", 3));
        let total: u64 = stacks.iter().map(|s| s.count).sum();
        assert_eq!(total, 129, "py-spy reported 129 samples");
        assert!(stacks
            .iter()
            .any(|s| s.frames.ends_with(";profpipe_short_lived (<string>:4)_[p]")));
    }
}
