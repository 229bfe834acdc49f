//! One source fanned out to three sinks: the cost of `Output::send` handing one
//! profile to three downstream edges, as a source (or transform) whose output
//! three sinks read does for every event.
//!
//! The profile is a real window: `pipelines/captures/host-sample.perf.txt` folded
//! as the default pipeline folds it (or the capture named by
//! `PROFPIPE_BENCH_CAPTURE`). Each edge's writer takes the event and drops it, so
//! the figure is what the fan-out itself costs per event: the copies made for all
//! edges but the last (a deep copy of every stack before profiles shared their
//! stacks; a reference count after), and freeing them. Throughput is in stacks.
//!
//! Run: `cargo bench --bench fanout` (add `-- --quick` for a fast look).

use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use profpipe::buffer::{BoxFuture, BufferWriter, Closed, EdgeSender, Output};
use profpipe::event::{Event, Labels, Profile, Stack, Window};
use profpipe::formats::perf_script::{FoldOptions, PerfFolder};
use profpipe::telemetry::Telemetry;

fn stacks() -> Vec<Stack> {
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
    folder
        .drain()
        .into_iter()
        .map(|f| Stack::new(f.stack, f.count))
        .collect()
}

/// A sink's input that takes each event and lets it go.
struct Takes;

impl BufferWriter for Takes {
    fn send(&self, event: Event) -> BoxFuture<'_, Result<(), Closed>> {
        drop(event);
        Box::pin(std::future::ready(Ok(())))
    }
}

fn fanout(c: &mut Criterion) {
    let stacks = stacks();
    let frame_bytes: usize = stacks.iter().map(|s| s.frames.len()).sum();
    println!(
        "fanout: one profile of {} stacks ({} bytes of frames) to 3 edges",
        stacks.len(),
        frame_bytes
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    let telemetry = Telemetry::new();
    let mut group = c.benchmark_group("fanout");
    group.throughput(Throughput::Elements(stacks.len() as u64));
    for edges in [1usize, 3] {
        let senders = (0..edges).map(|_| EdgeSender::new(Takes)).collect();
        let mut out = Output::new(senders, telemetry.component("src", "source", "bench"));
        group.bench_function(format!("send_to_{edges}"), |b| {
            b.iter_batched(
                || {
                    Event::Profile(Profile::new(
                        Window::new(0, 60_000),
                        Labels::default(),
                        stacks.clone(),
                    ))
                },
                |event| rt.block_on(out.send(event)).expect("edges open"),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, fanout);
criterion_main!(benches);
