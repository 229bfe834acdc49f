//! Splitting single `perf script` lines into their fields, without allocating.
//!
//! `perf script` prints one record per sample: an event (header) line, then one stack
//! line per frame, leaf first, then an empty line:
//!
//! ```text
//! work  8964/8964  [000]   501.663562:    2004008 cpu-clock:
//!                 13d4 sorter+0x24 (/tmp/pp/work)
//!                 11cf main+0x12f (/tmp/pp/work)
//!                2724a __libc_start_call_main+0x7a (/usr/lib/x86_64-linux-gnu/libc.so.6)
//!
//! ```

/// The fields of an event line.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct EventLine<'a> {
    /// Process (thread) name, trimmed; may contain spaces (`V8 WorkerThread`).
    pub comm: &'a str,
    /// The PID, or `?` when the line carries only a TID.
    pub pid: &'a str,
    pub tid: &'a str,
    /// The event name (`cycles`, `cpu-clock`), when the line has one.
    pub event: Option<&'a str>,
    /// Whether the line had the `...: [PERIOD] EVENT:` field at all (the period is
    /// only updated when it does).
    pub has_event_field: bool,
    pub period: Option<u64>,
    /// A single stack frame printed on the event line itself, for one-frame stacks.
    pub inline_frame: Option<&'a str>,
}

/// Splits an event line (already trimmed at the end). Accepted shapes:
///
/// ```text
/// java 25607 4794564.109216: cycles:
/// java 12688 [002] 6544038.708352: cpu-clock:
/// V8 WorkerThread 25607 4794564.109216: cycles:
/// java 24636/25607 [000] 4794564.109216: cycles:
/// java 12688/12764 6544038.708352: cpu-clock:
/// vote   913    72.176760:     257597 cycles:uppp:
/// false 64414 20110.539270:      34467 cycles:u:  ffffffff9aa3c8de [unknown] ([unknown])
/// ```
///
/// The comm is everything before the first word (not the first) made only of digits,
/// optionally `PID/TID`, and followed by a space. Returns `None` when there is no such
/// word.
pub(super) fn split_event_line(line: &str) -> Option<EventLine<'_>> {
    let bytes = line.as_bytes();
    let mut word_start = 0;
    let mut all_digits = false;
    let mut last_was_space = false;
    let mut slash = None;
    let mut found = None;
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b' ' => {
                if all_digits && !last_was_space {
                    found = Some(i);
                    break;
                }
                word_start = i + 1;
                all_digits = true;
            }
            b'/' => {
                if all_digits {
                    slash = Some(i);
                }
            }
            b'0'..=b'9' => {}
            _ => {
                all_digits = false;
                slash = None;
            }
        }
        last_was_space = b == b' ';
    }
    let word_end = found?;
    let (pid, tid) = match slash {
        Some(s) => (&line[word_start..s], &line[s + 1..word_end]),
        None => ("?", &line[word_start..word_end]),
    };
    let comm = line[..word_start - 1].trim();
    let rest = &line[word_end + 1..];

    // After the pid/tid: `[CPU] TIME: [PERIOD] EVENT:[MODIFIERS:] [FRAME]`. The text
    // between the first and second colon holds the period and event name.
    let mut ev = Event::default();
    if let Some(c1) = memchr::memchr(b':', rest.as_bytes()) {
        let after = &rest[c1 + 1..];
        let (field, tail) = match memchr::memchr(b':', after.as_bytes()) {
            Some(c2) => (&after[..c2], Some(&after[c2 + 1..])),
            None => (after, None),
        };
        ev.has_field = true;
        let mut words = field.rsplit(' ');
        ev.event = words.next();
        ev.period = words.next().and_then(|p| p.parse::<u64>().ok());
        ev.inline_frame = tail.and_then(inline_frame);
    }
    Some(EventLine {
        comm,
        pid,
        tid,
        event: ev.event,
        has_event_field: ev.has_field,
        period: ev.period,
        inline_frame: ev.inline_frame,
    })
}

#[derive(Default)]
struct Event<'a> {
    has_field: bool,
    event: Option<&'a str>,
    period: Option<u64>,
    inline_frame: Option<&'a str>,
}

/// The text after the event name's colon: event modifiers (`uppp:`), then possibly a
/// frame. Skips up to and including the first `:` or space, then trims.
///
/// ```text
/// "uppp:"                                        -> None
/// "u:  ffffffff9aa3c8de [unknown] ([unknown])"   -> Some("ffffffff9aa3c8de [unknown] ([unknown])")
/// "  ffffffff9aa3c8de [unknown] ([unknown])"     -> Some("ffffffff9aa3c8de [unknown] ([unknown])")
/// ```
fn inline_frame(tail: &str) -> Option<&str> {
    let start = tail.find([':', ' ']).map_or(0, |i| i + 1);
    let frame = tail[start..].trim();
    (!frame.is_empty()).then_some(frame)
}

/// The fields of a stack line.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct StackLine<'a> {
    pub pc: &'a str,
    /// The symbol with any `+0x…` offset removed; a single space when perf printed none.
    pub symbol: &'a str,
    /// The module, without its parentheses.
    pub module: &'a str,
}

/// Splits a stack line (already trimmed at the end):
///
/// ```text
///     ffffffff81aebbfe start_kernel+0x1e ([kernel.kallsyms].init.text)
///     7f53389994d0 [unknown] ([unknown])
///     7f1e2215d058  (/lib/x86_64-linux-gnu/libc-2.15.so)      (no symbol: symbol is " ")
/// ```
///
/// The address is the first word; the module is the last word and must be wrapped in
/// parentheses; the symbol is what lies between, trimmed. Returns `None` otherwise.
pub(super) fn split_stack_line(line: &str) -> Option<StackLine<'_>> {
    let line = trim_start(line);
    let sp = memchr::memchr(b' ', line.as_bytes())?;
    let pc = line[..sp].trim_end();
    let rest = &line[sp + 1..];
    let last_sp = memchr::memrchr(b' ', rest.as_bytes())?;
    let module = &rest[last_sp + 1..];
    let module = module.strip_prefix('(')?.strip_suffix(')')?;
    let symbol = match rest[..last_sp].trim() {
        "" => " ",
        s => strip_offset(s),
    };
    Some(StackLine { pc, symbol, module })
}

/// Removes a trailing `+0x…` symbol offset: `main+0x1f` -> `main`. Like the reference
/// tools, an offset is the last `+0x` followed only by hex digits (possibly none).
fn strip_offset(symbol: &str) -> &str {
    let b = symbol.as_bytes();
    let mut end = b.len();
    while end > 0 && b[end - 1].is_ascii_hexdigit() {
        end -= 1;
    }
    if end >= 3 && &b[end - 3..end] == b"+0x" {
        &symbol[..end - 3]
    } else {
        symbol
    }
}

/// `str::trim_start` with a fast path for the ASCII tabs and spaces perf indents with.
#[inline]
fn trim_start(s: &str) -> &str {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() && matches!(b[i], b' ' | b'\t') {
        i += 1;
    }
    let s = &s[i..];
    match s.as_bytes().first() {
        Some(&c) if c.is_ascii_whitespace() || c >= 0x80 => s.trim_start(),
        _ => s,
    }
}

/// `str::trim_end` with a fast path for lines ending in ASCII.
#[inline]
pub(super) fn trim_end(s: &str) -> &str {
    let b = s.as_bytes();
    let mut end = b.len();
    while end > 0 && matches!(b[end - 1], b' ' | b'\t' | b'\r' | b'\n' | b'\x0b' | b'\x0c') {
        end -= 1;
    }
    let s = &s[..end];
    match s.as_bytes().last() {
        Some(&c) if c >= 0x80 => s.trim_end(),
        _ => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_lines() {
        let e = split_event_line("java 12688 [002] 6544038.708352: cpu-clock:").unwrap();
        assert_eq!((e.comm, e.pid, e.tid), ("java", "?", "12688"));
        assert_eq!(
            (e.event, e.period, e.inline_frame),
            (Some("cpu-clock"), None, None)
        );

        let e =
            split_event_line("V8 WorkerThread 24636/25607 [000] 94564.109216: cycles:").unwrap();
        assert_eq!(
            (e.comm, e.pid, e.tid),
            ("V8 WorkerThread", "24636", "25607")
        );

        let e = split_event_line("vote   913    72.176760:     257597 cycles:uppp:").unwrap();
        assert_eq!((e.comm, e.tid), ("vote", "913"));
        assert_eq!(
            (e.event, e.period, e.inline_frame),
            (Some("cycles"), Some(257597), None)
        );

        let e = split_event_line(
            "false 64414 20110.539270:      34467 cycles:u:  ffffffff9aa3c8de [unknown] ([unknown])",
        )
        .unwrap();
        assert_eq!(
            e.inline_frame,
            Some("ffffffff9aa3c8de [unknown] ([unknown])")
        );

        // Modern perf ends event lines with a space after the last colon.
        let e = split_event_line("head  8967/8967  [000]   501.661597:    2004008 cpu-clock: ")
            .unwrap();
        assert_eq!(
            (e.event, e.period, e.inline_frame),
            (Some("cpu-clock"), Some(2004008), None)
        );

        assert!(split_event_line("THIS_IS_A_WEIRD_LINE").is_none());
        assert!(split_event_line("123 abc").is_none());
        assert!(split_event_line("comm 123").is_none());
        let e = split_event_line("comm 123 ").unwrap();
        assert_eq!((e.event, e.has_event_field), (None, false));
    }

    #[test]
    fn stack_lines() {
        let s = split_stack_line(
            "\t    7f533952bc77 _dl_check_map_versions+0x597 (/usr/lib/ld-2.28.so)",
        )
        .unwrap();
        assert_eq!(
            (s.pc, s.symbol, s.module),
            (
                "7f533952bc77",
                "_dl_check_map_versions",
                "/usr/lib/ld-2.28.so"
            )
        );
        let s = split_stack_line("7f1e2215d058  (/lib/libc-2.15.so)").unwrap();
        assert_eq!(s.symbol, " ");
        assert!(split_stack_line("7f1e2215d058 (/lib/libc-2.15.so)").is_none());
        assert!(split_stack_line("THIS_IS_A_WEIRD_LINE").is_none());
        assert!(split_stack_line("1 f (").is_none());
        let s = split_stack_line("1 f+0x1g (m)").unwrap();
        assert_eq!(s.symbol, "f+0x1g");
        let s = split_stack_line("1 a+0xab+0x (m)").unwrap();
        assert_eq!(s.symbol, "a+0xab");
        let s = split_stack_line("1 Foo::bar(int) const (m)").unwrap();
        assert_eq!(s.symbol, "Foo::bar(int) const");
    }

    #[test]
    fn trims() {
        assert_eq!(trim_end("abc \t\r"), "abc");
        assert_eq!(trim_end("abc\u{a0}"), "abc");
        assert_eq!(trim_end("é"), "é");
        assert_eq!(trim_start("\u{2003}x"), "x");
    }
}
