//! The one reader of every line-oriented stack format: a [`LineReader`] wraps a
//! [`LineFormat`] (the format's grammar and state) and does what all of them share:
//! the line length limit, the statistics, the [`StackLineParser`] impl and reading a
//! whole input.
//!
//! A format only says how one line becomes a stack:
//!
//! ```text
//! LineReader<Folded>         a;b;c 12                       -> "a;b;c" x 12
//! LineReader<PyPerf>         python3-12/13;main_[p] 1       -> "python3;main_[p]" pid 12
//! LineReader<Collapsed>      # {json} then 0;web;comm;f 3   -> header, then stacks
//! ```

use std::io::{self, BufRead};

use super::line::{read_stacks, FormatStats, LineError, StackLineParser, DEFAULT_MAX_LINE_BYTES};
use crate::event::Stack;

/// The grammar of one line format. Implementations never panic on any input.
pub trait LineFormat {
    /// The format's name in logs and configs.
    const NAME: &'static str;

    /// Longest first line accepted, for formats whose first line may be a header that
    /// is larger than any stack line (gProfiler embeds a flame graph in it). `None`:
    /// the first line is a stack line like the others.
    const MAX_HEADER_BYTES: Option<usize> = None;

    /// Parses a line of at most the reader's limit: `Ok(None)` for a line without a
    /// stack. Lossy decoding and frameless samples are recorded in `stats`; the
    /// outcome itself is recorded by the reader.
    fn parse(&mut self, line: &[u8], stats: &mut FormatStats) -> Result<Option<Stack>, LineError>;

    /// Reads the first line as a header, when it is one: `None` means it is not a
    /// header and is parsed with [`LineFormat::parse`]. Only called for formats with
    /// [`LineFormat::MAX_HEADER_BYTES`].
    fn parse_header(&mut self, _line: &[u8]) -> Option<Result<(), LineError>> {
        None
    }
}

/// A parser of one line format that counts what it sees.
#[derive(Debug)]
pub struct LineReader<F> {
    format: F,
    stats: FormatStats,
    max_line_bytes: usize,
    /// No line has been seen yet: it may be a header.
    first_line: bool,
}

impl<F: LineFormat + Default> Default for LineReader<F> {
    fn default() -> Self {
        Self::new()
    }
}

impl<F: LineFormat + Default> LineReader<F> {
    pub fn new() -> Self {
        Self::with_format(F::default())
    }
}

impl<F: LineFormat> LineReader<F> {
    /// A reader of `format` (its options and state) with the default line limit.
    pub fn with_format(format: F) -> Self {
        LineReader {
            format,
            stats: FormatStats::default(),
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
            first_line: true,
        }
    }

    pub fn with_max_line_bytes(mut self, max_line_bytes: usize) -> Self {
        self.max_line_bytes = max_line_bytes;
        self
    }

    /// The format's state (e.g. what a header said).
    pub fn format(&self) -> &F {
        &self.format
    }

    pub fn format_mut(&mut self) -> &mut F {
        &mut self.format
    }

    pub fn stats(&self) -> &FormatStats {
        &self.stats
    }

    pub fn into_parts(self) -> (F, FormatStats) {
        (self.format, self.stats)
    }

    /// The longest line accepted next: a header may be allowed more.
    pub fn line_limit(&self) -> usize {
        match F::MAX_HEADER_BYTES {
            Some(header) if self.first_line => header.max(self.max_line_bytes),
            _ => self.max_line_bytes,
        }
    }

    /// Parses one line (without its `\n`) and records the outcome in the stats.
    pub fn parse_line(&mut self, line: &[u8]) -> Result<Option<Stack>, LineError> {
        let result = self.parse(line);
        self.stats.record(F::NAME, &result);
        result
    }

    fn parse(&mut self, line: &[u8]) -> Result<Option<Stack>, LineError> {
        let limit = self.line_limit();
        // Only the very first line may be a header, even when it is rejected.
        let first = std::mem::replace(&mut self.first_line, false);
        if line.len() > limit {
            return Err(LineError::oversized(line.len()));
        }
        if first && F::MAX_HEADER_BYTES.is_some() {
            if let Some(header) = self.format.parse_header(line) {
                return header.map(|()| None);
            }
        }
        self.format.parse(line, &mut self.stats)
    }

    /// Reads every line of `reader`, bad lines counted and skipped; only I/O errors
    /// stop it.
    pub fn read_all<R: BufRead>(&mut self, reader: R) -> io::Result<Vec<Stack>> {
        let mut stacks = Vec::new();
        read_stacks(reader, self, |s| stacks.push(s))?;
        Ok(stacks)
    }
}

impl<F: LineFormat> StackLineParser for LineReader<F> {
    fn parse_line(&mut self, line: &[u8]) -> Result<Option<Stack>, LineError> {
        LineReader::parse_line(self, line)
    }
    fn line_limit(&self) -> usize {
        LineReader::line_limit(self)
    }
    fn stats(&self) -> &FormatStats {
        &self.stats
    }
    fn record_oversized(&mut self, len: usize) {
        self.first_line = false;
        self.stats.record(F::NAME, &Err(LineError::oversized(len)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::line::{split_count, LineErrorKind};

    /// `!` on the first line is a header; stacks are `frames count`.
    #[derive(Default)]
    struct Toy {
        headers: u32,
    }

    impl LineFormat for Toy {
        const NAME: &'static str = "toy";
        const MAX_HEADER_BYTES: Option<usize> = Some(20);

        fn parse(&mut self, line: &[u8], _: &mut FormatStats) -> Result<Option<Stack>, LineError> {
            let (frames, count) = split_count(line)?;
            Ok(Some(Stack::new(String::from_utf8_lossy(frames), count)))
        }

        fn parse_header(&mut self, line: &[u8]) -> Option<Result<(), LineError>> {
            line.starts_with(b"!")
                .then(|| {
                    self.headers += 1;
                })
                .map(Ok)
        }
    }

    #[test]
    fn only_the_first_line_is_a_header_and_may_be_longer() {
        let mut r = LineReader::<Toy>::new().with_max_line_bytes(8);
        assert_eq!(r.line_limit(), 20);
        assert_eq!(r.parse_line(b"!a long header").unwrap(), None);
        assert_eq!(r.line_limit(), 8);
        assert_eq!(
            r.parse_line(b"!x 1").unwrap(),
            Some(Stack::new("!x", 1)),
            "a later `!` line is a stack"
        );
        assert_eq!(
            r.parse_line(b"a long line 1").unwrap_err().kind,
            LineErrorKind::Oversized
        );
        assert_eq!(r.format().headers, 1);
        let st = r.stats();
        assert_eq!(
            (st.lines, st.stacks, st.bad_lines, st.oversized_lines),
            (3, 1, 1, 1)
        );
    }

    #[test]
    fn an_oversized_first_line_ends_the_header_chance() {
        let mut r = LineReader::<Toy>::new().with_max_line_bytes(8);
        StackLineParser::record_oversized(&mut r, 100);
        assert_eq!(r.line_limit(), 8);
        assert_eq!(r.parse_line(b"!h 2").unwrap(), Some(Stack::new("!h", 2)));
        let stacks = LineReader::<Toy>::new()
            .read_all(&b"!head\na 1\nbad\nb 2\n"[..])
            .unwrap();
        assert_eq!(stacks, vec![Stack::new("a", 1), Stack::new("b", 2)]);
    }
}
