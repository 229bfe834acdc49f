//! Decoding the line formats into stacks, counting what is malformed.

use std::collections::BTreeMap;

use crate::event::Stack;
use crate::formats::collapsed::CollapsedReader;
use crate::formats::line::{FormatStats, StackLineParser};
use crate::formats::py_spy_raw::{PySpyRawOptions, PySpyRawReader};
use crate::formats::pyperf::PyPerfReader;

use super::InputFormat;

/// Longest unfinished line the file source carries between reads: collapsed files may
/// start with a gProfiler header that embeds a whole HTML flame graph.
pub fn max_carry(format: InputFormat) -> usize {
    match format {
        InputFormat::Collapsed => 16 << 20,
        _ => 4 << 20,
    }
}

pub struct LineDecoder {
    format: InputFormat,
    py_spy: PySpyRawOptions,
    parser: Box<dyn StackLineParser + Send>,
    /// Problems of parsers already replaced (one per collapsed file).
    earlier: BTreeMap<&'static str, u64>,
}

impl LineDecoder {
    pub fn new(format: InputFormat, comm: Option<String>, annotate: bool) -> Self {
        let py_spy = PySpyRawOptions { comm, annotate };
        LineDecoder {
            parser: make(format, &py_spy),
            format,
            py_spy,
            earlier: BTreeMap::new(),
        }
    }

    /// A new file starts: collapsed files carry their own header, so their parser is
    /// renewed; the other formats keep one parser (and one warning per kind).
    pub fn start_file(&mut self) {
        if self.format == InputFormat::Collapsed && self.parser.stats().lines > 0 {
            for (kind, n) in problems_of(self.parser.stats()) {
                *self.earlier.entry(kind).or_default() += n;
            }
            self.parser = make(self.format, &self.py_spy);
        }
    }

    pub fn decode(&mut self, line: &[u8]) -> Option<Stack> {
        self.parser.parse_line(line).ok().flatten()
    }

    /// Malformed input so far, by kind.
    pub fn problems(&self) -> Vec<(&'static str, u64)> {
        let mut all = self.earlier.clone();
        for (kind, n) in problems_of(self.parser.stats()) {
            *all.entry(kind).or_default() += n;
        }
        all.into_iter().filter(|(_, n)| *n > 0).collect()
    }
}

fn problems_of(stats: &FormatStats) -> Vec<(&'static str, u64)> {
    stats.errors_since(&FormatStats::default())
}

fn make(format: InputFormat, py_spy: &PySpyRawOptions) -> Box<dyn StackLineParser + Send> {
    match format {
        // perf text is folded downstream; this parser is never used for it.
        InputFormat::PerfScript | InputFormat::PerfData | InputFormat::Collapsed => {
            Box::new(CollapsedReader::new())
        }
        InputFormat::PySpyRaw => Box::new(PySpyRawReader::with_format(py_spy.clone())),
        InputFormat::Pyperf => Box::new(PyPerfReader::new()),
    }
}
