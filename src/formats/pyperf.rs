//! PyPerf's collapsed output: one sample per line, the first frame being
//! `comm-PID/TID`, the others already annotated by PyPerf.
//!
//! ```text
//! python3-1234/1240;<module>_[p];main_[p];PyEval_EvalFrame_[pn];do_syscall_64_[k] 1
//! my-app-worker-77/78;[Truncated]_[pe] 1
//! ```
//!
//! The comm may itself contain `-` (`my-app-worker`): the prefix is split on its last
//! `-`, as gProfiler does. Suffixes: `_[p]` Python, `_[pn]` native, `_[pe]` PyPerf
//! error, `_[k]` kernel. The stack becomes `comm;frames...` with the pid set.

use std::io::{self, BufRead};

use super::line::{
    decode, is_blank_or_comment, parse_u64, split_count, trim_start, FormatStats, LineError,
    LineErrorKind,
};
use super::reader::{LineFormat, LineReader};
use crate::event::Stack;

/// The format's name in logs and configs.
pub const NAME: &str = "pyperf";

/// The PyPerf grammar; it has no options or state.
#[derive(Clone, Copy, Debug, Default)]
pub struct PyPerf;

/// A PyPerf line parser that counts what it sees.
pub type PyPerfReader = LineReader<PyPerf>;

/// `b"comm-12/13"` → `(b"comm", 12)`.
fn split_prefix(prefix: &[u8]) -> Option<(&[u8], u32)> {
    let dash = memchr::memrchr(b'-', prefix)?;
    let ids = &prefix[dash + 1..];
    let slash = memchr::memchr(b'/', ids)?;
    let pid = parse_u64(&ids[..slash])?;
    parse_u64(&ids[slash + 1..])?; // the tid must be a number too
    Some((&prefix[..dash], u32::try_from(pid).ok()?))
}

impl LineFormat for PyPerf {
    const NAME: &'static str = NAME;

    /// `comm-PID/TID;frames count` → `comm;frames` with the pid set.
    fn parse(&mut self, line: &[u8], stats: &mut FormatStats) -> Result<Option<Stack>, LineError> {
        if is_blank_or_comment(line) {
            return Ok(None);
        }
        let (stack, count) = split_count(trim_start(line))?;
        let (prefix, frames) = match memchr::memchr(b';', stack) {
            Some(i) => (&stack[..i], Some(&stack[i + 1..])),
            None => (stack, None),
        };
        let (comm, pid) =
            split_prefix(prefix).ok_or_else(|| LineError::new(LineErrorKind::BadPrefix, line))?;
        let mut joined = Vec::with_capacity(stack.len());
        joined.extend_from_slice(comm);
        if let Some(frames) = frames {
            joined.push(b';');
            joined.extend_from_slice(frames);
        }
        let (text, lossy) = decode(&joined);
        if lossy {
            stats.record_non_utf8(NAME);
        }
        let mut out = Stack::new(text, count);
        out.pid = pid;
        Ok(Some(out))
    }
}

/// Reads a whole PyPerf output file.
pub fn read<R: BufRead>(reader: R) -> io::Result<(Vec<Stack>, FormatStats)> {
    let mut parser = PyPerfReader::new();
    let stacks = parser.read_all(reader)?;
    Ok((stacks, parser.into_parts().1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_pid(frames: &str, count: u64, pid: u32) -> Stack {
        let mut s = Stack::new(frames, count);
        s.pid = pid;
        s
    }

    #[test]
    fn golden_lines() {
        let mut r = PyPerfReader::new();
        assert_eq!(
            r.parse_line(b"python3-1234/1240;<module>_[p];main_[p];PyEval_EvalFrame_[pn];do_syscall_64_[k] 1")
                .unwrap(),
            Some(with_pid(
                "python3;<module>_[p];main_[p];PyEval_EvalFrame_[pn];do_syscall_64_[k]",
                1,
                1234
            ))
        );
        assert_eq!(
            r.parse_line(b"my-app-worker-77/78;[Truncated]_[pe] 3")
                .unwrap(),
            Some(with_pid("my-app-worker;[Truncated]_[pe]", 3, 77))
        );
        assert_eq!(
            r.parse_line(b"gunicorn: worker-5/5 2").unwrap(),
            Some(with_pid("gunicorn: worker", 2, 5))
        );
        assert_eq!(
            r.parse_line(b"-9/9;f_[p] 1").unwrap(),
            Some(with_pid(";f_[p]", 1, 9))
        );
    }

    #[test]
    fn bad_prefixes() {
        let mut r = PyPerfReader::new();
        for line in [
            &b"python3;f_[p] 1"[..],
            b"python3-12;f 1",
            b"python3-x/1;f 1",
            b"python3-1/y;f 1",
            b"python3-99999999999/1;f 1",
        ] {
            assert_eq!(
                r.parse_line(line).unwrap_err().kind,
                LineErrorKind::BadPrefix,
                "{}",
                String::from_utf8_lossy(line)
            );
        }
        assert_eq!(r.stats().errors_of(LineErrorKind::BadPrefix), 5);
    }
}
