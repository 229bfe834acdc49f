//! Folder behaviour on edge cases, and properties: random bytes never panic, and
//! neither the feed boundaries nor the thread count and chunk size change results.

use proptest::prelude::*;

use super::*;

/// A small capture with kernel frames, periods, an `[unknown]`, a one-frame event line,
/// a record of another event type and a Java inline line.
const SAMPLE: &str = "\
# ========
# captured on: x
# ========
#
work  8964/8964  [000]   501.663562:    2004008 cpu-clock: 
\t            13d4 sorter+0x24 (/tmp/pp/work)
\t            11cf main+0x12f (/tmp/pp/work)
\t           2724a __libc_start_call_main+0x7a (/usr/lib/x86_64-linux-gnu/libc.so.6)

head  8967/8967  [000]   501.661597:    2004008 cpu-clock: 
\tffffffff81b7b44b chacha_block_generic+0xab ([kernel.kallsyms])
\tffffffff81000130 entry_SYSCALL_64_after_hwframe+0x76 ([kernel.kallsyms])
\t           f82ad read+0xd (/usr/lib/x86_64-linux-gnu/libc.so.6)

gzip  8968/8968  [001]   501.667040:    2004008 cpu-clock: 
\t            4cb6 [unknown] (/usr/bin/gzip)
\tad8e80845fa54644 [unknown] ([unknown])

false 64414 20110.539270:      34467 cpu-clock:u:  ffffffff9aa3c8de [unknown] ([unknown])
other 1/1 [000] 1.0: 5 cycles:
\t1 f (m)

java 12/13 [000] 1.0: 7 cpu-clock:
\t7f722d142778 Lfoo/Bar;::run->Lfoo/Baz;::inner (/tmp/perf-12.map)
\t1 V8 WorkerThread::Run(int) (/usr/bin/node)

work  8964/8964  [000]   501.663562:    2004008 cpu-clock: 
\t            13d4 sorter+0x24 (/tmp/pp/work)
\t            11cf main+0x12f (/tmp/pp/work)
\t           2724a __libc_start_call_main+0x7a (/usr/lib/x86_64-linux-gnu/libc.so.6)
";

fn fold_all(input: &[u8], opts: &FoldOptions) -> (Vec<Folded>, FoldStats) {
    let mut f = PerfFolder::new(opts.clone());
    f.feed(input);
    f.finish();
    (f.drain(), f.stats().clone())
}

/// gProfiler cut offsets with `split("+")[0]`, truncating C++ operators; only a
/// trailing `+0x<hex>` is an offset.
#[test]
fn offsets_are_stripped_without_breaking_cpp_operators() {
    let input = b"app 100/100 [000] 1.000000: 1 cpu-clock:\n\t1000 operator+ (/usr/bin/app)\n\t2000 Vec::operator+=(int)+0x1f (/usr/bin/app)\n\t3000 main+0x10 (/usr/bin/app)\n\n";
    let (folded, stats) = fold_all(input, &FoldOptions::default());
    assert_eq!(stats.problems(), vec![]);
    let stacks: Vec<&str> = folded.iter().map(|f| f.stack.as_str()).collect();
    assert_eq!(stacks, vec!["app;main;Vec::operator+=;operator+"]);
}

fn fold_split(input: &[u8], opts: &FoldOptions, cuts: &[usize]) -> (Vec<Folded>, FoldStats) {
    let mut f = PerfFolder::new(opts.clone());
    let mut cuts: Vec<usize> = cuts.iter().map(|&c| c % (input.len() + 1)).collect();
    cuts.sort_unstable();
    let mut at = 0;
    for c in cuts {
        f.feed(&input[at..c]);
        at = c;
    }
    f.feed(&input[at..]);
    f.finish();
    (f.drain(), f.stats().clone())
}

fn to_writer(input: &[u8], opts: &FoldOptions, threads: usize, chunk: usize) -> String {
    let mut out = Vec::new();
    fold_to_writer_chunked(input, opts, threads, chunk, &mut out).unwrap();
    String::from_utf8(out).unwrap()
}

#[test]
fn folds_sample() {
    let out = to_writer(SAMPLE.as_bytes(), &FoldOptions::default(), 1, 1 << 20);
    assert_eq!(
        out,
        "\
false;[unknown] 34467
gzip;[unknown];[gzip] 2004008
head;read;entry_SYSCALL_64_after_hwframe;chacha_block_generic 2004008
java;V8 WorkerThread::Run;foo/Bar:::run;foo/Baz:::inner_[i] 7
work;__libc_start_call_main;main;sorter 4008016
"
    );
    let opts = FoldOptions {
        include_tid: true,
        annotate_kernel: true,
        annotate_jit: true,
        include_addrs: true,
        ..FoldOptions::default()
    };
    let out = to_writer(SAMPLE.as_bytes(), &opts, 1, 1 << 20);
    assert!(out.contains("gzip-8968/8968;[unknown <ad8e80845fa54644>];[gzip <4cb6>] 2004008\n"));
    assert!(out.contains(";chacha_block_generic_[k] 2004008\n"));
    assert!(
        out.contains("java-12/13;V8 WorkerThread::Run;foo/Bar:::run_[j];foo/Baz:::inner_[i] 7\n")
    );
    assert!(out.contains("false-?/64414;[unknown <ffffffff9aa3c8de>] 34467\n"));
}

#[test]
fn stats_count_problems() {
    let input = b"comm 1/1 [000] 1.0: 3 cpu-clock:\n\tWEIRD\n\t1 f\xff (m)\n\nnot an event line\n";
    let (folded, stats) = fold_all(input, &FoldOptions::default());
    assert_eq!(folded.len(), 1);
    assert_eq!(folded[0].stack, "comm;f\u{fffd}");
    assert_eq!(stats.bad_frame_lines, 1);
    assert_eq!(stats.bad_header_lines, 1);
    assert_eq!(stats.non_utf8_lines, 1);
    assert_eq!(stats.samples, 1);
    assert_eq!(stats.bytes, input.len() as u64);
    assert_eq!(
        stats.problems(),
        [
            ("bad_header_lines", 1),
            ("bad_frame_lines", 1),
            ("non_utf8_lines", 1)
        ]
    );
    assert_eq!(
        FoldStats::describe("bad_frame_lines", 3),
        "skipped 3 malformed frame lines"
    );
    let mut total = stats.clone();
    total.merge(&stats);
    assert_eq!(total.bad_frame_lines, 2);
}

#[test]
fn other_events_are_skipped() {
    let input = b"a 1 1.0: 2 cycles:\n\t1 f (m)\n\nb 1 1.0: 3 instructions:\n\t1 g (m)\n\n";
    let (folded, stats) = fold_all(input, &FoldOptions::default());
    assert_eq!(folded.len(), 1);
    assert_eq!(stats.other_event_samples, 1);
}

#[test]
fn oversized_lines_are_skipped_with_bounded_carry() {
    let mut input = b"a 1 1.0: 2 cpu-clock:\n\t1 f (m)\n\t1 ".to_vec();
    input.extend(std::iter::repeat_n(b'x', MAX_LINE_BYTES + 10));
    input.extend_from_slice(b" (m)\n\t1 g (m)\n\n");
    let (whole, stats) = fold_all(&input, &FoldOptions::default());
    assert_eq!(stats.oversized_lines, 1);
    assert_eq!(whole[0].stack, "a;g;f");

    let mut f = PerfFolder::new(FoldOptions::default());
    for piece in input.chunks(4096) {
        f.feed(piece);
        assert!(f.carry.len() <= MAX_LINE_BYTES);
    }
    f.finish();
    assert_eq!(f.drain(), whole);
    assert_eq!(f.stats().oversized_lines, 1);
}

#[test]
fn stacks_are_capped() {
    let mut input = b"a 1 1.0: 2 cpu-clock:\n".to_vec();
    for _ in 0..MAX_STACK_FRAMES + 5 {
        input.extend_from_slice(b"\t1 f (m)\n");
    }
    input.extend_from_slice(b"\na 1 1.0: 2 cpu-clock:\n\t1 g (m)\n");
    let (folded, stats) = fold_all(&input, &FoldOptions::default());
    assert_eq!(stats.oversized_stacks, 1);
    assert_eq!(stats.samples, 2);
    assert_eq!(
        folded[0].stack.len(),
        "a".len() + MAX_STACK_FRAMES * ";f".len()
    );
    assert_eq!(folded[1].stack, "a;g");
}

#[test]
fn truncated_input() {
    let input = b"a 1 1.0: 2 cpu-clock:\n\t1 f (m)\n\t1 g (";
    let (folded, stats) = fold_all(input, &FoldOptions::default());
    assert_eq!(folded[0].stack, "a;f");
    assert_eq!(stats.truncated_lines, 1);
    assert_eq!(stats.bad_frame_lines, 1);
}

#[test]
fn key_by_pid_and_drain() {
    let input = b"a 5/6 1.0: 2 cpu-clock:\n\t1 f (m)\n\na 7/7 1.0: 2 cpu-clock:\n\t1 f (m)\n\n";
    let opts = FoldOptions {
        key_by_pid: true,
        ..FoldOptions::default()
    };
    let mut f = PerfFolder::new(opts);
    f.feed(input);
    assert!(f.memory_bytes() > 0);
    let got = f.drain();
    let pids: Vec<u32> = got.iter().map(|x| x.pid).collect();
    assert_eq!(pids, [5, 7]);
    assert!(f.is_empty());
    assert!(f.clear_interning());
    f.feed(input);
    assert_eq!(f.drain(), got);
    // Not keyed: one stack, pid 0.
    let (got, _) = fold_all(input, &FoldOptions::default());
    assert_eq!(
        got,
        [Folded {
            pid: 0,
            stack: "a;f".into(),
            count: 4
        }]
    );
}

#[test]
fn unknown_as_dso() {
    let opts = FoldOptions {
        unknown_as_dso: true,
        annotate_kernel: true,
        ..FoldOptions::default()
    };
    let input =
        b"a 1 1.0: 2 cpu-clock:\n\t1 [unknown] (/usr/lib/libc.so.6)\n\t2 [unknown] ([unknown])\n\n";
    let (got, _) = fold_all(input, &opts);
    assert_eq!(got[0].stack, "a;[unknown];(/usr/lib/libc.so.6)");
}

#[test]
fn semicolon_in_comm_merges_equal_stacks() {
    let input =
        b"a;f 1 1.0: 2 cpu-clock:\n\t1 g (m)\n\na 1 1.0: 3 cpu-clock:\n\t1 g (m)\n\t1 f (m)\n\n";
    let (got, _) = fold_all(input, &FoldOptions::default());
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].count, 5);
    assert_eq!(to_writer(input, &FoldOptions::default(), 2, 8), "a;f;g 5\n");
}

/// Valid records built from a small alphabet, so that stacks repeat.
fn record() -> impl Strategy<Value = String> {
    let comm = prop::sample::select(vec!["work", "java", "V8 Worker", "sh"]);
    let event = prop::sample::select(vec!["cpu-clock", "cpu-clock", "cpu-clock", "cycles"]);
    let frame = prop::sample::select(vec![
        "\t13d4 sorter+0x24 (/tmp/pp/work)",
        "\tffffffff81b7b44b chacha_block+0xab ([kernel.kallsyms])",
        "\t4cb6 [unknown] (/usr/bin/gzip)",
        "\t0 [unknown] ([unknown])",
        "\t7f72 Lfoo/Bar;::run->Lfoo/Baz;::inner (/tmp/perf-12.map)",
        "\t11cf std::vector<int>::push(int const&) (/usr/lib/libstdc++.so.6)",
        "\t1 _$LT$a..B$GT$::f::h0123456789abcdef (/bin/rs)",
        "\tWEIRD",
        "# comment",
    ]);
    (
        comm,
        1u32..4,
        prop::option::of(1u64..1000),
        event,
        prop::collection::vec(frame, 0..6),
    )
        .prop_map(|(comm, pid, period, event, frames)| {
            let period = period.map(|p| format!("{p} ")).unwrap_or_default();
            let mut s = format!("{comm} {pid}/{pid} [000] 1.0: {period}{event}:\n");
            for f in frames {
                s.push_str(f);
                s.push('\n');
            }
            s.push('\n');
            s
        })
}

fn capture() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::collection::vec(record(), 0..30),
        prop::option::of(prop::collection::vec(any::<u8>(), 0..40)),
    )
        .prop_map(|(records, junk)| {
            let mut bytes = records.concat().into_bytes();
            if let Some(junk) = junk {
                bytes.extend(junk);
            }
            bytes
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2000)) {
        let opts = FoldOptions { include_addrs: true, annotate_kernel: true, annotate_jit: true, include_tid: true, ..FoldOptions::default() };
        let (_, stats) = fold_all(&bytes, &opts);
        prop_assert_eq!(stats.bytes, bytes.len() as u64);
        to_writer(&bytes, &opts, 3, 7);
    }

    #[test]
    fn random_text_lines_never_panic(lines in prop::collection::vec("[ -~\t()\\[\\]:;/+0-9x]{0,60}", 0..40)) {
        let input = lines.join("\n");
        let opts = FoldOptions { include_addrs: true, annotate_kernel: true, annotate_jit: true, include_pid: true, ..FoldOptions::default() };
        fold_all(input.as_bytes(), &opts);
        to_writer(input.as_bytes(), &opts, 2, 5);
    }

    #[test]
    fn feed_boundaries_do_not_matter(input in capture(), cuts in prop::collection::vec(any::<usize>(), 0..12)) {
        let opts = FoldOptions::default();
        prop_assert_eq!(fold_split(&input, &opts, &cuts), fold_all(&input, &opts));
    }

    #[test]
    fn threads_and_chunks_do_not_matter(input in capture(), threads in 2usize..5, chunk in 1usize..300) {
        let opts = FoldOptions { annotate_kernel: true, include_pid: true, ..FoldOptions::default() };
        let one = to_writer(&input, &opts, 1, 1 << 20);
        prop_assert_eq!(to_writer(&input, &opts, threads, chunk), one.clone());
        prop_assert_eq!(to_writer(&input, &opts, 1, chunk), one);
    }
}
