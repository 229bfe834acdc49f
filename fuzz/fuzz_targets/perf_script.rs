//! `perf script` text, as `profpipe fold`, the `fold` transform and the `file` source
//! read it: any bytes fold without a panic, and the result does not depend on how
//! the stream was cut into reads (nor, for the CLI's parallel path, into chunks).
//!
//! Input: a byte of fold options, a byte saying where to cut the stream, the text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use profpipe::formats::perf_script::{fold_to_writer_chunked, FoldOptions, PerfFolder};

fn fold(
    opts: &FoldOptions,
    pieces: &[&[u8]],
) -> (
    Vec<profpipe::formats::perf_script::Folded>,
    profpipe::formats::perf_script::FoldStats,
) {
    let mut f = PerfFolder::new(opts.clone());
    for p in pieces {
        f.feed(p);
    }
    f.finish();
    (f.drain(), f.stats().clone())
}

fuzz_target!(|data: &[u8]| {
    let [flags, cut, text @ ..] = data else {
        return;
    };
    let opts = FoldOptions {
        include_pid: flags & 1 != 0,
        include_tid: flags & 2 != 0,
        annotate_kernel: flags & 4 != 0,
        annotate_jit: flags & 8 != 0,
        include_addrs: flags & 16 != 0,
        unknown_as_dso: flags & 32 != 0,
        key_by_pid: flags & 64 != 0,
        count_samples: flags & 128 != 0,
    };
    let whole = fold(&opts, &[text]);
    let at = text.len() * usize::from(*cut) / 255;
    let split = fold(&opts, &[&text[..at], &text[at..]]);
    assert_eq!(
        whole, split,
        "the fold depends on where the input was cut ({at})"
    );

    // The CLI's path: chunks on record boundaries, folded by two threads.
    if cut % 8 == 0 {
        let mut one = Vec::new();
        let mut two = Vec::new();
        let s1 = fold_to_writer_chunked(text, &opts, 1, 64, &mut one).unwrap();
        let s2 = fold_to_writer_chunked(text, &opts, 2, 64, &mut two).unwrap();
        assert_eq!(one, two, "the fold depends on the threads");
        assert_eq!(s1.samples, s2.samples);
    }
});
