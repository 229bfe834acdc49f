//! Plain folded stacks, the format of `inferno-collapse-perf` and FlameGraph's
//! `stackcollapse-*.pl`: one stack per line, frames root first joined by `;`, then a
//! space and the sample count.
//!
//! ```text
//! # comment lines and blank lines are skipped
//! bash;main;execute_command;__libc_fork 12
//! gunicorn: worker;run (app.py:10);handle (app.py:42) 3
//! ```
//!
//! The count is the last space-separated token, so frames may contain spaces.

use std::io::{self, BufRead, Write};

use super::line::{self, decode, is_blank_or_comment, split_count, FormatStats, LineError};
use super::reader::{LineFormat, LineReader};
use crate::event::Stack;

/// The format's name in logs and configs.
pub const NAME: &str = "folded";

/// The folded grammar; it has no options or state.
#[derive(Clone, Copy, Debug, Default)]
pub struct Folded;

/// A folded-line parser that counts what it sees.
pub type FoldedReader = LineReader<Folded>;

/// Parses one folded line. `Ok(None)` for blank and comment lines. Invalid UTF-8 is
/// decoded lossily; use [`FoldedReader`] to have that (and errors) counted.
pub fn parse_line(line: &[u8]) -> Result<Option<Stack>, LineError> {
    parse(line).map(|o| o.map(|(stack, _lossy)| stack))
}

/// The stack and whether its bytes had to be decoded lossily.
fn parse(line: &[u8]) -> Result<Option<(Stack, bool)>, LineError> {
    if is_blank_or_comment(line) {
        return Ok(None);
    }
    let (frames, count) = split_count(line::trim_start(line))?;
    let (frames, lossy) = decode(frames);
    Ok(Some((Stack::new(frames, count), lossy)))
}

impl LineFormat for Folded {
    const NAME: &'static str = NAME;

    fn parse(&mut self, line: &[u8], stats: &mut FormatStats) -> Result<Option<Stack>, LineError> {
        Ok(parse(line)?.map(|(stack, lossy)| {
            if lossy {
                stats.record_non_utf8(NAME);
            }
            stack
        }))
    }
}

/// Reads a whole folded file. Bad lines are counted in the returned stats and skipped.
pub fn read<R: BufRead>(reader: R) -> io::Result<(Vec<Stack>, FormatStats)> {
    let mut parser = FoldedReader::new();
    let stacks = parser.read_all(reader)?;
    Ok((stacks, parser.into_parts().1))
}

/// Writes one stack as `frames count\n`.
pub fn write_stack<W: Write + ?Sized>(w: &mut W, stack: &Stack) -> io::Result<()> {
    line::write_frames(w, &stack.frames)?;
    writeln!(w, " {}", stack.count)
}

/// Writes stacks in the order given, one per line.
pub fn write<'a, W: Write + ?Sized>(
    w: &mut W,
    stacks: impl IntoIterator<Item = &'a Stack>,
) -> io::Result<()> {
    for stack in stacks {
        write_stack(w, stack)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::line::LineErrorKind;

    #[test]
    fn parses_golden_lines() {
        type Case<'a> = (&'a [u8], Option<(&'a str, u64)>);
        let cases: &[Case] = &[
            (b"a;b;c 123", Some(("a;b;c", 123))),
            (
                b"gunicorn: worker;run (app.py:10) 3\r",
                Some(("gunicorn: worker;run (app.py:10)", 3)),
            ),
            (b"  bash;main 1  ", Some(("bash;main", 1))),
            (b"#worker;f 2", Some(("#worker;f", 2))),
            (b"single 0", Some(("single", 0))),
            (b"", None),
            (b"   \t", None),
            (b"# a comment", None),
            (b"#", None),
        ];
        for (line, want) in cases {
            let got = parse_line(line).unwrap();
            let got = got.as_ref().map(|s| (&*s.frames, s.count));
            assert_eq!(got, *want, "{:?}", String::from_utf8_lossy(line));
        }
    }

    #[test]
    fn rejects_bad_lines_by_kind() {
        for (line, kind) in [
            (&b"a;b"[..], LineErrorKind::MissingCount),
            (b"a;b many", LineErrorKind::BadCount),
        ] {
            assert_eq!(parse_line(line).unwrap_err().kind, kind);
        }
    }

    #[test]
    fn reader_counts_lossy_and_oversized_lines() {
        let mut r = FoldedReader::new().with_max_line_bytes(16);
        let s = r.parse_line(b"caf\xe9;main 2").unwrap().unwrap();
        assert_eq!(&*s.frames, "caf\u{fffd};main");
        assert!(r.parse_line(&[b'x'; 17]).is_err());
        assert!(r.parse_line(b"oops").is_err());
        let st = r.stats();
        assert_eq!((st.lines, st.stacks, st.bad_lines), (3, 1, 2));
        assert_eq!((st.non_utf8_lines, st.oversized_lines), (1, 1));
    }

    #[test]
    fn read_and_write_round_trip() {
        let input = "# header\na;b 1\n\nc;d e 22\nbroken\n";
        let (stacks, stats) = read(input.as_bytes()).unwrap();
        assert_eq!(stacks, vec![Stack::new("a;b", 1), Stack::new("c;d e", 22)]);
        assert_eq!(stats.bad_lines, 1);
        let mut out = Vec::new();
        write(&mut out, &stacks).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "a;b 1\nc;d e 22\n");
    }

    #[test]
    fn writer_keeps_one_stack_per_line() {
        let mut out = Vec::new();
        write_stack(&mut out, &Stack::new("a\nb;c\r", 4)).unwrap();
        assert_eq!(out, b"a b;c  4\n");
    }
}
