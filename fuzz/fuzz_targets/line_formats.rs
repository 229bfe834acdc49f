//! The line formats the `file` source, `profpipe` and the runtime sources read:
//! folded, gProfiler's collapsed (with its `# {json}` header), py-spy raw and PyPerf.
//! Any bytes parse without a panic; malformed lines are counted, never fatal.
//!
//! Input: a byte choosing the format and its options, then the text.
#![no_main]

use std::io::Cursor;

use libfuzzer_sys::fuzz_target;
use profpipe::formats::collapsed::{self, CollapsedReader};
use profpipe::formats::folded::{self, FoldedReader};
use profpipe::formats::py_spy_raw::{self, PySpyRawOptions, PySpyRawReader};
use profpipe::formats::pyperf::{self, PyPerfReader};

fuzz_target!(|data: &[u8]| {
    let [choice, text @ ..] = data else {
        return;
    };
    // Short line limits reach the over-long-line paths with small inputs.
    let limit = if choice & 8 != 0 { 16 } else { 1 << 20 };
    match choice % 4 {
        0 => {
            let _ = folded::read(Cursor::new(text));
            let _ = FoldedReader::new()
                .with_max_line_bytes(limit)
                .read_all(Cursor::new(text));
            for line in text.split(|&b| b == b'\n') {
                let _ = folded::parse_line(line);
            }
        }
        1 => {
            if let Ok(file) = collapsed::read(Cursor::new(text)) {
                if let Some(header) = &file.metadata {
                    let _ = collapsed::header_labels(header);
                }
            }
            let mut r = CollapsedReader::new().with_max_line_bytes(limit);
            let _ = r.read_all(Cursor::new(text));
            let _ = r.take_metadata();
        }
        2 => {
            let opts = PySpyRawOptions {
                comm: (choice & 16 != 0).then(|| "python".to_string()),
                annotate: choice & 32 != 0,
            };
            let _ = py_spy_raw::read(Cursor::new(text), opts.clone());
            let _ = PySpyRawReader::with_format(opts)
                .with_max_line_bytes(limit)
                .read_all(Cursor::new(text));
        }
        _ => {
            let _ = pyperf::read(Cursor::new(text));
            let _ = PyPerfReader::new()
                .with_max_line_bytes(limit)
                .read_all(Cursor::new(text));
        }
    }
});
