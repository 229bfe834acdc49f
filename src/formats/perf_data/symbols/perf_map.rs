//! JIT symbol files, `/tmp/perf-PID.map`, as written by Node.js `--perf-basic-prof`,
//! `jcmd PID Compiler.perfmap` and others:
//!
//! ```text
//! 3ef414c0 398 RegExp:[{(]
//! 0x00007f2d2c01f100 0x0000000000000080 Interpreter
//! ```
//!
//! `START SIZE NAME`, numbers in hex with or without `0x` (perf reads them with
//! `strtoull(…, 16)`); the name is the rest of the line. As in perf
//! (`dso__load_perf_map`), symbols keep their exact sizes (no fix-up) and lines too
//! short to hold a name are skipped. Where entries overlap (code rewritten at the same
//! address), the one written last wins.

use super::table::{Symbol, SymbolTable};

pub fn parse(text: &[u8]) -> SymbolTable {
    let mut syms = Vec::new();
    for line in text.split(|&b| b == b'\n') {
        let Ok(line) = std::str::from_utf8(line) else {
            continue;
        };
        let line = line.strip_suffix('\r').unwrap_or(line);
        let Some((start, rest)) = hex_word(line) else {
            continue;
        };
        let Some((size, name)) = hex_word(rest) else {
            continue;
        };
        if name.is_empty() {
            continue;
        }
        syms.push(Symbol {
            start,
            end: start.saturating_add(size),
            name: name.into(),
        });
    }
    SymbolTable::new(syms)
}

/// A hex number (optional `0x`) followed by one space: the number and what follows.
fn hex_word(s: &str) -> Option<(u64, &str)> {
    let (word, rest) = s.trim_start().split_once(' ')?;
    let digits = word
        .strip_prefix("0x")
        .or_else(|| word.strip_prefix("0X"))
        .unwrap_or(word);
    Some((u64::from_str_radix(digits, 16).ok()?, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_number_styles_and_skips_junk() {
        let t = parse(
            b"3ef414c0 398 LazyCompile:*fib /app/x.js:1\n\
              0x00007f2d2c01f100 0x80 Interpreter\n\
              nonsense\n\
              1000 10 \n\
              2000 zz bad\n\
              5000 10 first\n\
              5000 20 second",
        );
        assert_eq!(t.len(), 4);
        assert_eq!(
            t.find(0x3ef414c0 + 0x397).unwrap().name.as_ref(),
            "LazyCompile:*fib /app/x.js:1"
        );
        assert!(t.find(0x3ef414c0 + 0x398).is_none());
        assert_eq!(t.find(0x7f2d2c01f17f).unwrap().name.as_ref(), "Interpreter");
        assert_eq!(t.find(0x5005).unwrap().name.as_ref(), "second");
        assert_eq!(t.find(0x501f).unwrap().name.as_ref(), "second");
        assert!(t.find(0x1005).is_none());
    }
}
