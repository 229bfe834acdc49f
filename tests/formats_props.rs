//! Property tests of the stack formats: no input makes a parser panic, counters add
//! up, and what the writers write, the readers read back.

use std::sync::Arc;

use proptest::prelude::*;

use profpipe::buffer::MemoryBudget;
use profpipe::event::{Profile, Stack, Window};
use profpipe::formats::collapsed::{self, CollapsedReader, HeaderInfo, Layout};
use profpipe::formats::flamegraph::{self, FlameGraphOptions};
use profpipe::formats::folded::{self, FoldedReader};
use profpipe::formats::line::{BoundedLines, FormatStats, Line};
use profpipe::formats::py_spy_raw::{PySpyRawOptions, PySpyRawReader};
use profpipe::formats::pyperf::PyPerfReader;
use profpipe::window::{Scope, StackCounts, StoreLimits, WindowStore, OVERFLOW_FRAME};

/// Bytes biased towards the characters the parsers split on (mapping random bytes
/// is much cheaper than choosing each byte with `prop_oneof!`).
fn line_bytes() -> impl Strategy<Value = Vec<u8>> {
    const SPECIAL: &[u8] = b";; ;  0123456789#{}-/\t\r\n\"[]_:";
    prop::collection::vec(any::<u8>(), 0..300).prop_map(|v| {
        v.into_iter()
            .map(|b| match b {
                0..=127 => SPECIAL[b as usize % SPECIAL.len()],
                _ if b % 4 == 0 => b & 0x7f,
                _ => b,
            })
            .collect()
    })
}

fn check_stats(stats: &FormatStats, calls: u64, some: u64) {
    assert_eq!(stats.lines, calls);
    assert_eq!(stats.stacks, some);
    assert!(stats.stacks + stats.bad_lines <= stats.lines);
    assert!(stats.oversized_lines <= stats.bad_lines);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn line_parsers_never_panic(lines in prop::collection::vec(line_bytes(), 1..8)) {
        let mut folded_r = FoldedReader::new().with_max_line_bytes(200);
        let mut col_auto = CollapsedReader::new();
        let mut col_v2 = CollapsedReader::with_layout(Layout::V2);
        let mut pyspy = PySpyRawReader::with_format(PySpyRawOptions { comm: Some("py".into()), annotate: true });
        let mut pyperf = PyPerfReader::new();
        let mut some = [0u64; 5];
        for line in &lines {
            let _ = folded::parse_line(line);
            some[0] += folded_r.parse_line(line).ok().flatten().is_some() as u64;
            some[1] += col_auto.parse_line(line).ok().flatten().is_some() as u64;
            some[2] += col_v2.parse_line(line).ok().flatten().is_some() as u64;
            some[3] += pyspy.parse_line(line).ok().flatten().is_some() as u64;
            if let Ok(Some(s)) = pyperf.parse_line(line) {
                some[4] += 1;
                prop_assert!(s.frames.len() <= line.len() * 3);
            }
        }
        let n = lines.len() as u64;
        check_stats(folded_r.stats(), n, some[0]);
        check_stats(col_auto.stats(), n, some[1]);
        check_stats(col_v2.stats(), n, some[2]);
        check_stats(pyspy.stats(), n, some[3]);
        check_stats(pyperf.stats(), n, some[4]);
    }

    #[test]
    fn bounded_lines_account_for_every_byte(
        input in prop::collection::vec(any::<u8>(), 0..2000)
            .prop_map(|v| v.into_iter().map(|b| if b < 24 { b'\n' } else { b }).collect::<Vec<u8>>()),
        max in 0usize..64,
        cap in 1usize..32,
    ) {
        let reader = std::io::BufReader::with_capacity(cap, &input[..]);
        let mut lines = BoundedLines::new(reader, max);
        let mut bytes = 0usize;
        let mut count = 0usize;
        while let Some(line) = lines.next_line().unwrap() {
            count += 1;
            match line {
                Line::Text(t) => {
                    prop_assert!(t.len() <= max);
                    prop_assert!(!t.contains(&b'\n'));
                    bytes += t.len();
                }
                Line::Oversized(n) => {
                    prop_assert!(n > max);
                    bytes += n;
                }
            }
        }
        let newlines = input.iter().filter(|&&b| b == b'\n').count();
        prop_assert_eq!(bytes + newlines, input.len());
        let want = newlines + usize::from(!input.is_empty() && input.last() != Some(&b'\n'));
        prop_assert_eq!(count, want);
    }
}

/// Frames as profilers print them: no `;`, no newline, no edge whitespace.
fn frame() -> impl Strategy<Value = String> {
    "[a-zA-Z_<>.\\[\\]][a-zA-Z0-9_ ():./<>\\[\\]-]{0,12}[a-zA-Z0-9_)\\]]|[a-z]"
}

fn stack() -> impl Strategy<Value = Stack> {
    (
        prop::collection::vec(frame(), 1..6),
        prop::option::of("[a-z][a-z0-9-]{0,8}"),
        0u64..1_000_000,
    )
        .prop_map(|(frames, container, count)| {
            let mut s = Stack::new(frames.join(";"), count);
            s.container = container.map(Arc::from);
            s
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn folded_round_trip(stacks in prop::collection::vec(stack(), 0..20)) {
        let mut out = Vec::new();
        folded::write(&mut out, &stacks).unwrap();
        let (back, stats) = folded::read(&out[..]).unwrap();
        prop_assert_eq!(stats.bad_lines, 0);
        let want: Vec<(String, u64)> = stacks.iter().map(|s| (s.frames.to_string(), s.count)).collect();
        let got: Vec<(String, u64)> = back.iter().map(|s| (s.frames.to_string(), s.count)).collect();
        prop_assert_eq!(got, want);
    }

    #[test]
    fn collapsed_round_trip(stacks in prop::collection::vec(stack(), 0..20)) {
        let info = HeaderInfo { hostname: "h", window: Window::new(0, 60_000) };
        let mut out = Vec::new();
        collapsed::write(&mut out, &info, &Default::default(), &stacks).unwrap();
        let back = collapsed::read(&out[..]).unwrap();
        prop_assert_eq!(back.layout, Layout::V2);
        prop_assert_eq!(back.stats.bad_lines, 0);
        prop_assert_eq!(back.stacks, stacks);
    }

    #[test]
    fn window_stores_keep_totals_under_any_limit(
        profiles in prop::collection::vec((0u64..4, prop::collection::vec(stack(), 0..10)), 0..10),
        max_unique in 0usize..8,
        max_bytes in 0u64..2000,
        budget_bytes in 1u64..4000,
    ) {
        let budget = MemoryBudget::new(budget_bytes);
        let limits = StoreLimits { max_bytes, max_windows: 8 };
        let mut store = WindowStore::new(Scope::AllSources, limits, vec![], budget.window_charge());
        let mut want = [0u64; 4];
        for (w, stacks) in profiles {
            want[w as usize] += stacks.iter().map(|s| s.count).sum::<u64>();
            let window = Window::new(w * 10, w * 10 + 10);
            let labels = Profile::default().labels;
            store.update(window, &"a".into(), Default::default(), 0,
                || StackCounts::new(false, max_unique),
                |s, room| s.add_all(&labels, stacks.into(), room));
            prop_assert!(store.states().all(|s| s.len() <= max_unique));
            prop_assert!(store.bytes() <= max_bytes);
            prop_assert!(budget.in_use() <= budget.window_limit());
        }
        for done in store.drain() {
            let w = (done.window.end_ms / 10 - 1) as usize;
            let stacks = done.state.into_stacks(OVERFLOW_FRAME);
            prop_assert_eq!(stacks.iter().map(|s| s.count).sum::<u64>(), want[w]);
            want[w] = 0;
        }
        prop_assert_eq!(want, [0; 4]);
        prop_assert_eq!(budget.in_use(), 0);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn flamegraph_renders_any_stacks(stacks in prop::collection::vec(stack(), 0..12)) {
        let mut out = Vec::new();
        flamegraph::write_svg(&mut out, &stacks, &FlameGraphOptions::default()).unwrap();
        let svg = String::from_utf8(out).unwrap();
        prop_assert!(svg.starts_with("<?xml"));
        prop_assert!(svg.contains("<svg"));
    }
}
