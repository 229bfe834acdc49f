//! Folding throughput (bytes/s) of `perf script` text held in memory.
//!
//! The input is `tests/data/perf/c-workload-pipelines.txt` (a real capture), or the
//! file named by `PROFPIPE_BENCH_CAPTURE` (e.g. the 100+ MB capture that
//! `scripts/bench-fold.sh` records). Benchmarks:
//! - `fold_to_writer/1` and `fold_to_writer/N`: the CLI path (sorted output to a sink)
//!   with 1 thread and with all CPUs;
//! - `stream_feed`: the pipeline path, `PerfFolder::feed` in 64 KiB slices, then `drain`.
//!
//! Run: `cargo bench --bench fold` (add `-- --quick` for a fast look).

use std::hint::black_box;
use std::io;
use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use profpipe::formats::perf_script::{
    fold_to_writer_chunked, FoldOptions, PerfFolder, DEFAULT_CHUNK_BYTES,
};

fn capture() -> (String, Vec<u8>) {
    let path = std::env::var_os("PROFPIPE_BENCH_CAPTURE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("tests/data/perf/c-workload-pipelines.txt")
        });
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let name = path
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    (name, bytes)
}

fn bench_fold(c: &mut Criterion) {
    let (name, input) = capture();
    let opts = FoldOptions::default();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());

    let mut group = c.benchmark_group(format!("fold/{name}"));
    group.throughput(Throughput::Bytes(input.len() as u64));
    if input.len() > 16 << 20 {
        group.sample_size(10);
    }
    for threads in [1, cpus] {
        // Small inputs still get split among the threads.
        let chunk = (input.len() / (4 * threads)).clamp(16 << 10, DEFAULT_CHUNK_BYTES);
        group.bench_with_input(
            BenchmarkId::new("fold_to_writer", threads),
            &threads,
            |b, &threads| {
                b.iter(|| {
                    fold_to_writer_chunked(&input[..], &opts, threads, chunk, io::sink())
                        .expect("in-memory folding cannot fail")
                })
            },
        );
        if cpus == 1 {
            break;
        }
    }
    group.bench_function("stream_feed", |b| {
        b.iter(|| {
            let mut folder = PerfFolder::new(opts.clone());
            for slice in input.chunks(64 << 10) {
                folder.feed(slice);
            }
            folder.finish();
            black_box(folder.drain())
        })
    });
    group.finish();
}

criterion_group!(benches, bench_fold);
criterion_main!(benches);
