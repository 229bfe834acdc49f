//! Size and speed of the shared encodings (`src/sinks/encoding.rs`) for one window.
//!
//! The window is a `perf script` capture folded as the default pipeline folds it
//! (kernel frames marked, samples counted): `pipelines/captures/host-sample.perf.txt`,
//! or the file named by `PROFPIPE_BENCH_CAPTURE` (`scripts/measure-encodings.sh` can
//! record one). Before benchmarking it prints a Markdown table of the bytes of one
//! profile in json / collapsed / pprof / otlp_proto, without and with gzip. The benchmarks
//! (`encode/<encoding>/<compression>`) run `Encoder::parts` as a sink does, with
//! throughput in bytes of folded text (`comm;frames count` lines) encoded;
//! `encode/pprof/protobuf-only` and `encode/pprof/gzip-1` split a pprof encode's
//! time between the message and deflate, and price the fastest gzip level.
//!
//! Run: `cargo bench --bench encode` (add `-- --quick` for a fast look).

use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use profpipe::event::{LabelSet, Stack, Window};
use profpipe::formats::perf_script::{FoldOptions, PerfFolder};
use profpipe::formats::pprof;
use profpipe::sinks::encoding::{gzip, Encoder, Encoding, PartLimits};
use profpipe::sinks::pending::CompleteWindow;

fn window() -> (String, CompleteWindow) {
    let path = std::env::var_os("PROFPIPE_BENCH_CAPTURE")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("pipelines/captures/host-sample.perf.txt")
        });
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut folder = PerfFolder::new(FoldOptions {
        annotate_kernel: true,
        unknown_as_dso: true,
        count_samples: true,
        ..FoldOptions::default()
    });
    for slice in bytes.chunks(64 << 10) {
        folder.feed(slice);
    }
    folder.finish();
    let mut stacks: Vec<Stack> = folder
        .drain()
        .into_iter()
        .map(|f| Stack::new(f.stack, f.count))
        .collect();
    stacks.sort_unstable_by(|a, b| a.frames.cmp(&b.frames));
    let labels = LabelSet::default()
        .with("service", "checkout")
        .and_then(|l| l.with("env", "prod"))
        .expect("valid labels");
    let name = path
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let w = CompleteWindow {
        window: Window::new(1_701_621_000_000, 1_701_621_060_000),
        host: "web-1".into(),
        labels,
        stacks,
        events: 1,
        bytes: 0,
    };
    (name, w)
}

/// Bytes of the window as folded text: the measure of throughput.
fn folded_bytes(w: &CompleteWindow) -> usize {
    w.stacks
        .iter()
        .map(|s| s.frames.len() + 1 + s.count.to_string().len() + 1)
        .sum()
}

const ENCODINGS: [Encoding; 4] = [
    Encoding::Json,
    Encoding::Collapsed,
    Encoding::Pprof,
    Encoding::OtlpProto,
];

fn encoder(encoding: Encoding) -> Encoder {
    Encoder {
        encoding,
        sample_rate_hz: 11,
    }
}

fn one(encoding: Encoding, w: &CompleteWindow, gz: bool) -> usize {
    let parts = encoder(encoding)
        .parts(w, PartLimits::NONE, |b| if gz { gzip(&b) } else { b })
        .expect("no limits");
    parts.iter().map(|p| p.bytes.len()).sum()
}

fn print_sizes(name: &str, w: &CompleteWindow) {
    let samples: u64 = w.stacks.iter().map(|s| s.count).sum();
    let frames: usize = w.stacks.iter().map(|s| s.frames.split(';').count()).sum();
    println!(
        "\nencode: {name}: {} distinct stacks, {samples} samples, {frames} frames, {} bytes folded\n",
        w.stacks.len(),
        folded_bytes(w)
    );
    println!("| encoding | none (bytes) | gzip (bytes) |");
    println!("|---|---:|---:|");
    for encoding in ENCODINGS {
        let (plain, gz) = match encoding {
            // pprof is gzip by definition; "none" is the protobuf inside.
            Encoding::Pprof => {
                let p = pprof::profile(&pprof::PprofInput {
                    window: w.window,
                    stacks: &w.stacks,
                    labels: &w.labels,
                    host: &w.host,
                    sample_rate_hz: 11,
                    part: None,
                });
                let raw = prost::Message::encode_to_vec(&p);
                // What the fastest gzip level would give (pprof uses the default).
                println!(
                    "| pprof, gzip -1 instead of -6 | {} | {} |",
                    raw.len(),
                    gzip_fast(&raw).len()
                );
                (raw.len(), one(Encoding::Pprof, w, false))
            }
            e => (one(e, w, false), one(e, w, true)),
        };
        println!("| {} | {plain} | {gz} |", encoding.name());
    }
    println!();
}

fn bench_encode(c: &mut Criterion) {
    let (name, w) = window();
    print_sizes(&name, &w);
    let mut group = c.benchmark_group("encode");
    group.throughput(Throughput::Bytes(folded_bytes(&w) as u64));
    for encoding in ENCODINGS {
        // pprof is already gzip: gzip on top is not an option sinks offer for it.
        let compressions: &[bool] = if encoding == Encoding::Pprof {
            &[false]
        } else {
            &[false, true]
        };
        for &gz in compressions {
            let id = format!(
                "{}/{}",
                encoding.name(),
                if gz || encoding == Encoding::Pprof {
                    "gzip"
                } else {
                    "none"
                }
            );
            group.bench_function(id, |b| b.iter(|| one(encoding, &w, gz)));
        }
    }
    // Where a pprof encode's time goes: building and serialising the message, and
    // the same with the fastest gzip level.
    let input = pprof::PprofInput {
        window: w.window,
        stacks: &w.stacks,
        labels: &w.labels,
        host: &w.host,
        sample_rate_hz: 11,
        part: None,
    };
    group.bench_function("pprof/protobuf-only", |b| {
        b.iter(|| prost::Message::encode_to_vec(&pprof::profile(&input)).len())
    });
    group.bench_function("pprof/gzip-1", |b| {
        b.iter(|| gzip_fast(&prost::Message::encode_to_vec(&pprof::profile(&input))).len())
    });
    group.finish();
}

fn gzip_fast(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).expect("writing to a Vec cannot fail");
    e.finish().expect("writing to a Vec cannot fail")
}

criterion_group!(benches, bench_encode);
criterion_main!(benches);
