//! What every line-oriented stack format shares: the error type of one bad line, the
//! per-reader statistics, a bounded line splitter and the `... <count>` tail parser.
//!
//! Every reader in this module tree follows the same contract:
//! - it parses one line (`&[u8]`, without its `\n`) at a time and never panics;
//! - `Ok(None)` is a line that carries no stack (blank, comment, header);
//! - `Err(LineError)` is a line it rejected, with a [`LineErrorKind`] that callers
//!   count as `component_errors_total{reason = kind.as_str()}`;
//! - invalid UTF-8 is decoded lossily (U+FFFD) and counted, not rejected;
//! - the first error of each kind is logged once with `tracing::warn!`, the rest are
//!   only counted, so a corrupt input cannot flood the logs.

use std::borrow::Cow;
use std::fmt;
use std::io::{self, BufRead};

use crate::event::Stack;
use crate::telemetry::ComponentMetrics;

/// Longest stack line accepted by default (deep Java stacks reach a few hundred KiB).
pub const DEFAULT_MAX_LINE_BYTES: usize = 4 << 20;

/// How many bytes of a rejected line are kept in its error, for the log.
const EXCERPT_BYTES: usize = 80;

/// Why a line was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LineErrorKind {
    /// No space-separated count at the end: `a;b;c`.
    MissingCount,
    /// The last token is not a non-negative integer that fits in a u64: `a;b x`.
    BadCount,
    /// A count but no frames: ` 12`.
    EmptyStack,
    /// A format-specific prefix is malformed (gProfiler's `idx;container;`,
    /// PyPerf's `comm-PID/TID`).
    BadPrefix,
    /// A `# {json}` header line that is not valid JSON.
    BadHeader,
    /// Longer than the reader's line limit; skipped without being buffered.
    Oversized,
}

impl LineErrorKind {
    pub const ALL: [LineErrorKind; 6] = [
        LineErrorKind::MissingCount,
        LineErrorKind::BadCount,
        LineErrorKind::EmptyStack,
        LineErrorKind::BadPrefix,
        LineErrorKind::BadHeader,
        LineErrorKind::Oversized,
    ];

    /// The `reason` label under which this kind is counted.
    pub fn as_str(self) -> &'static str {
        match self {
            LineErrorKind::MissingCount => "missing_count",
            LineErrorKind::BadCount => "bad_count",
            LineErrorKind::EmptyStack => "empty_stack",
            LineErrorKind::BadPrefix => "bad_prefix",
            LineErrorKind::BadHeader => "bad_header",
            LineErrorKind::Oversized => "oversized_line",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for LineErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LineErrorKind::MissingCount => "line has no sample count",
            LineErrorKind::BadCount => "sample count is not a non-negative integer",
            LineErrorKind::EmptyStack => "line has a count but no frames",
            LineErrorKind::BadPrefix => "malformed line prefix",
            LineErrorKind::BadHeader => "malformed `# {json}` header",
            LineErrorKind::Oversized => "line exceeds the length limit",
        })
    }
}

/// One rejected line: its kind and the start of the line, for the log.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{kind}: {excerpt:?}")]
pub struct LineError {
    pub kind: LineErrorKind,
    /// The first bytes of the line, lossily decoded (empty for oversized lines).
    pub excerpt: String,
}

impl LineError {
    pub fn new(kind: LineErrorKind, line: &[u8]) -> Self {
        let end = line.len().min(EXCERPT_BYTES);
        LineError {
            kind,
            excerpt: String::from_utf8_lossy(&line[..end]).into_owned(),
        }
    }

    /// A line of `len` bytes that was longer than the limit.
    pub fn oversized(len: usize) -> Self {
        LineError {
            kind: LineErrorKind::Oversized,
            excerpt: format!("<{len} bytes>"),
        }
    }
}

/// What a reader has seen so far. Counters only grow.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FormatStats {
    /// Lines offered to the parser (including blank, comment and header lines).
    pub lines: u64,
    /// Lines that produced a stack.
    pub stacks: u64,
    /// Sum of the counts of those stacks (saturating).
    pub samples: u64,
    /// Lines rejected, of any kind (oversized ones included).
    pub bad_lines: u64,
    /// Lines that were not valid UTF-8 and were decoded lossily (still parsed).
    pub non_utf8_lines: u64,
    /// Lines rejected for being longer than the limit (also in `bad_lines`).
    pub oversized_lines: u64,
    /// Samples of lines that carried a count but no frame to put it on (py-spy's
    /// ` 1` without a process name): skipped, not errors.
    pub frameless_samples: u64,
    by_kind: [u64; LineErrorKind::ALL.len()],
    /// Set after the first lossy line was logged.
    warned_non_utf8: bool,
}

impl FormatStats {
    /// Rejected lines of one kind.
    pub fn errors_of(&self, kind: LineErrorKind) -> u64 {
        self.by_kind[kind.index()]
    }

    /// Records the outcome of one parsed line and logs the first error of each kind.
    /// `what` names the format in the log ("folded", "collapsed", ...).
    pub fn record(&mut self, what: &str, result: &Result<Option<Stack>, LineError>) {
        self.lines += 1;
        match result {
            Ok(Some(stack)) => {
                self.stacks += 1;
                self.samples = self.samples.saturating_add(stack.count);
            }
            Ok(None) => {}
            Err(e) => self.record_error(what, e),
        }
    }

    /// Records one rejected line (already counted in `lines` by the caller or not:
    /// this only touches the error counters).
    pub fn record_error(&mut self, what: &str, e: &LineError) {
        self.bad_lines += 1;
        if e.kind == LineErrorKind::Oversized {
            self.oversized_lines += 1;
        }
        let n = &mut self.by_kind[e.kind.index()];
        *n += 1;
        if *n == 1 {
            tracing::warn!(
                format = what,
                reason = e.kind.as_str(),
                "skipping malformed {what} line ({e}); further lines of this kind are only counted"
            );
        }
    }

    /// Records a sample that had no frame to be counted under.
    pub fn record_frameless(&mut self, count: u64) {
        self.frameless_samples = self.frameless_samples.saturating_add(count);
    }

    /// Records a line that was decoded lossily.
    pub fn record_non_utf8(&mut self, what: &str) {
        self.non_utf8_lines += 1;
        if !self.warned_non_utf8 {
            self.warned_non_utf8 = true;
            tracing::warn!(
                format = what,
                reason = "non_utf8",
                "{what} input is not valid UTF-8; invalid bytes are replaced by U+FFFD \
                 (further lines are only counted)"
            );
        }
    }

    /// Error counters that grew since `earlier`, as `(reason, n)` pairs with `n > 0`:
    /// one per [`LineErrorKind`] plus `"non_utf8"` for lossily decoded lines.
    pub fn errors_since(&self, earlier: &FormatStats) -> Vec<(&'static str, u64)> {
        let mut out = Vec::new();
        for kind in LineErrorKind::ALL {
            let n = self.errors_of(kind).saturating_sub(earlier.errors_of(kind));
            if n > 0 {
                out.push((kind.as_str(), n));
            }
        }
        let n = self.non_utf8_lines.saturating_sub(earlier.non_utf8_lines);
        if n > 0 {
            out.push(("non_utf8", n));
        }
        out
    }

    /// Adds the error counters that grew since `earlier` to a component's metrics.
    pub fn report_since(&self, earlier: &FormatStats, metrics: &ComponentMetrics) {
        for (reason, n) in self.errors_since(earlier) {
            metrics.errors(reason, n);
        }
    }
}

/// The parts of a line that end in a sample count: `b"a;b;c 12"` → `(b"a;b;c", 12)`.
///
/// Trailing whitespace (`\r`, spaces, tabs) is ignored, and so is whitespace between
/// the stack and the count. The stack may itself contain spaces
/// (`gunicorn: worker;...`): only the last token is the count.
pub fn split_count(line: &[u8]) -> Result<(&[u8], u64), LineError> {
    let trimmed = trim_end(line);
    let Some(space) = memchr::memrchr2(b' ', b'\t', trimmed) else {
        return Err(LineError::new(LineErrorKind::MissingCount, line));
    };
    let digits = &trimmed[space + 1..];
    let count = parse_u64(digits).ok_or_else(|| LineError::new(LineErrorKind::BadCount, line))?;
    let stack = trim_end(&trimmed[..space]);
    if stack.is_empty() {
        return Err(LineError::new(LineErrorKind::EmptyStack, line));
    }
    Ok((stack, count))
}

/// Parses ASCII digits into a u64; `None` when empty, non-digit or overflowing.
pub fn parse_u64(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    let mut n: u64 = 0;
    for &b in digits {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(n)
}

/// `line` without trailing ASCII whitespace.
pub fn trim_end(line: &[u8]) -> &[u8] {
    let end = line
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(0, |i| i + 1);
    &line[..end]
}

/// `line` without leading ASCII whitespace.
pub fn trim_start(line: &[u8]) -> &[u8] {
    let start = line
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(line.len());
    &line[start..]
}

/// True for lines that carry no stack in any folded format: blank lines and comments
/// (`#` alone or followed by a space, as `# {json}` headers are). A frame that merely
/// starts with `#` (`#worker;f 1`) is not a comment.
pub fn is_blank_or_comment(line: &[u8]) -> bool {
    let line = trim_end(trim_start(line));
    line.is_empty() || line == b"#" || line.starts_with(b"# ")
}

/// Decodes bytes as UTF-8, lossily. The flag is true when bytes were replaced.
pub fn decode(bytes: &[u8]) -> (Cow<'_, str>, bool) {
    match std::str::from_utf8(bytes) {
        Ok(s) => (Cow::Borrowed(s), false),
        Err(_) => (String::from_utf8_lossy(bytes), true),
    }
}

/// One line handed out by [`BoundedLines`].
#[derive(Debug, PartialEq, Eq)]
pub enum Line<'a> {
    /// A line without its `\n`.
    Text(&'a [u8]),
    /// A line of this many bytes that was longer than the limit; its bytes were
    /// skipped without being buffered.
    Oversized(usize),
}

/// Splits a reader into `\n`-terminated lines, buffering at most `max_line_bytes`
/// of one line: longer lines are skipped and reported as [`Line::Oversized`].
pub struct BoundedLines<R> {
    reader: R,
    buf: Vec<u8>,
    max_line_bytes: usize,
}

impl<R: BufRead> BoundedLines<R> {
    pub fn new(reader: R, max_line_bytes: usize) -> Self {
        BoundedLines {
            reader,
            buf: Vec::new(),
            max_line_bytes,
        }
    }

    /// Changes the limit for the lines read from now on (e.g. a large header line
    /// first, then stack lines).
    pub fn set_max_line_bytes(&mut self, max_line_bytes: usize) {
        self.max_line_bytes = max_line_bytes;
    }

    /// The next line, or `None` at the end of the input. A final line without `\n`
    /// is still a line.
    pub fn next_line(&mut self) -> io::Result<Option<Line<'_>>> {
        self.buf.clear();
        let mut len = 0usize;
        let mut any = false;
        loop {
            let chunk = match self.reader.fill_buf() {
                Ok(c) => c,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if chunk.is_empty() {
                break;
            }
            any = true;
            let (part, found) = match memchr::memchr(b'\n', chunk) {
                Some(i) => (&chunk[..i], Some(i + 1)),
                None => (chunk, None),
            };
            len = len.saturating_add(part.len());
            if len <= self.max_line_bytes {
                self.buf.extend_from_slice(part);
            } else if !self.buf.is_empty() {
                // Over the limit: stop buffering and give the memory back.
                self.buf = Vec::new();
            }
            let used = found.unwrap_or(chunk.len());
            self.reader.consume(used);
            if found.is_some() {
                break;
            }
        }
        if !any {
            return Ok(None);
        }
        if len > self.max_line_bytes {
            Ok(Some(Line::Oversized(len)))
        } else {
            Ok(Some(Line::Text(&self.buf)))
        }
    }
}

/// A reader of one line-oriented stack format.
pub trait StackLineParser {
    /// Parses one line (without its `\n`) and records the outcome in its stats.
    fn parse_line(&mut self, line: &[u8]) -> Result<Option<Stack>, LineError>;

    /// The longest line this parser accepts next (a header line may be allowed more).
    fn line_limit(&self) -> usize;

    /// What the parser has seen so far.
    fn stats(&self) -> &FormatStats;

    /// Records a line that the line splitter skipped for being over `line_limit`.
    fn record_oversized(&mut self, len: usize);
}

/// Reads every line of `reader` with `parser`, handing each stack to `on_stack`.
/// Bad lines are counted in the parser's stats and skipped; only I/O errors stop it.
pub fn read_stacks<R: BufRead, P: StackLineParser + ?Sized>(
    reader: R,
    parser: &mut P,
    mut on_stack: impl FnMut(Stack),
) -> io::Result<()> {
    let mut lines = BoundedLines::new(reader, parser.line_limit());
    loop {
        lines.set_max_line_bytes(parser.line_limit());
        match lines.next_line()? {
            None => return Ok(()),
            Some(Line::Oversized(len)) => parser.record_oversized(len),
            Some(Line::Text(line)) => {
                if let Ok(Some(stack)) = parser.parse_line(line) {
                    on_stack(stack);
                }
            }
        }
    }
}

/// Writes `frames` with any `\n` or `\r` replaced by a space, so that a frame name
/// can never break the one-stack-per-line layout.
pub fn write_frames<W: io::Write + ?Sized>(w: &mut W, frames: &str) -> io::Result<()> {
    if memchr::memchr2(b'\n', b'\r', frames.as_bytes()).is_none() {
        return w.write_all(frames.as_bytes());
    }
    for part in frames.split(['\n', '\r']).enumerate() {
        if part.0 > 0 {
            w.write_all(b" ")?;
        }
        w.write_all(part.1.as_bytes())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_count_takes_the_last_token() {
        assert_eq!(split_count(b"a;b;c 12").unwrap(), (&b"a;b;c"[..], 12));
        assert_eq!(
            split_count(b"gunicorn: worke;f 3\r\n").unwrap(),
            (&b"gunicorn: worke;f"[..], 3)
        );
        assert_eq!(split_count(b"a  7  ").unwrap(), (&b"a"[..], 7));
        assert_eq!(split_count(b"a\t7").unwrap(), (&b"a"[..], 7));
        let rejected: [(&[u8], LineErrorKind); 6] = [
            (b"a;b", LineErrorKind::MissingCount),
            (b"a;b x", LineErrorKind::BadCount),
            (b"a -1", LineErrorKind::BadCount),
            (b"a 1.5", LineErrorKind::BadCount),
            (b"a 99999999999999999999999", LineErrorKind::BadCount),
            (b" 12", LineErrorKind::EmptyStack),
        ];
        for (line, kind) in rejected {
            assert_eq!(split_count(line).unwrap_err().kind, kind, "{line:?}");
        }
        assert_eq!(
            split_count(b"a;b 18446744073709551615").unwrap().1,
            u64::MAX
        );
    }

    #[test]
    fn bounded_lines_skips_long_lines_without_buffering_them() {
        let input = format!("short\n{}\nlast", "x".repeat(100));
        let mut lines = BoundedLines::new(io::BufReader::with_capacity(7, input.as_bytes()), 10);
        assert_eq!(lines.next_line().unwrap(), Some(Line::Text(b"short")));
        assert_eq!(lines.next_line().unwrap(), Some(Line::Oversized(100)));
        assert!(lines.buf.capacity() < 100);
        assert_eq!(lines.next_line().unwrap(), Some(Line::Text(b"last")));
        assert_eq!(lines.next_line().unwrap(), None);
    }

    #[test]
    fn bounded_lines_handles_empty_lines_and_input() {
        let mut lines = BoundedLines::new(&b""[..], 10);
        assert_eq!(lines.next_line().unwrap(), None);
        let mut lines = BoundedLines::new(&b"\n\nx\n"[..], 10);
        assert_eq!(lines.next_line().unwrap(), Some(Line::Text(b"")));
        assert_eq!(lines.next_line().unwrap(), Some(Line::Text(b"")));
        assert_eq!(lines.next_line().unwrap(), Some(Line::Text(b"x")));
        assert_eq!(lines.next_line().unwrap(), None);
    }

    #[test]
    fn stats_count_by_kind() {
        let mut s = FormatStats::default();
        s.record("t", &Ok(Some(Stack::new("a", 3))));
        s.record("t", &Ok(None));
        s.record("t", &Err(LineError::new(LineErrorKind::BadCount, b"a x")));
        s.record("t", &Err(LineError::new(LineErrorKind::BadCount, b"b x")));
        s.record("t", &Err(LineError::oversized(10)));
        s.record_non_utf8("t");
        assert_eq!(s.lines, 5);
        assert_eq!(s.stacks, 1);
        assert_eq!(s.samples, 3);
        assert_eq!(s.bad_lines, 3);
        assert_eq!(s.oversized_lines, 1);
        assert_eq!(s.errors_of(LineErrorKind::BadCount), 2);
        assert_eq!(
            s.errors_since(&FormatStats::default()),
            vec![("bad_count", 2), ("oversized_line", 1), ("non_utf8", 1)]
        );
    }
}
