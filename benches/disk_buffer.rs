//! Write and replay throughput of the disk buffer (`src/buffer/disk`), through its
//! two ends as a pipeline uses them: events encoded, framed, written (and synced
//! with `sync = "always"`), then read back, decoded, handed out and acknowledged.
//!
//! Each event is one profile of 100 stacks of 12 frames (about 27 KB encoded, a
//! pushed window or a chunk of one). `disk_buffer/write/<sync>` times writing
//! `N` events into a fresh buffer; `disk_buffer/replay` times opening a buffer
//! that holds `N` events, reading them all and acknowledging them `Delivered`
//! (segments deleted as they empty). Throughput is in events; bytes per event
//! are printed first, so MB/s = events/s × that.
//!
//! Run: `cargo bench --bench disk_buffer` (add `-- --quick` for a fast look). The
//! buffer goes in `$PROFPIPE_BENCH_DIR` (default: the system temp dir), so the
//! figure is that disk's.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use profpipe::buffer::{disk, BufferConfig, BufferKind, MemoryBudget, SyncPolicy, WhenFull};
use profpipe::event::{Event, EventStatus, Labels, Profile, Stack, Window};
use profpipe::telemetry::Telemetry;
use profpipe::units::ByteSize;

fn event(i: u64) -> Event {
    let stacks = (0..100)
        .map(|s| {
            let frames: Vec<String> = (0..12)
                .map(|f| format!("module::function_{s}_{f}"))
                .collect();
            Stack::new(frames.join(";"), i + s)
        })
        .collect();
    Event::Profile(Profile::new(
        Window::new(i * 10_000, i * 10_000 + 10_000),
        Labels::default(),
        stacks,
    ))
}

fn config(sync: SyncPolicy) -> BufferConfig {
    BufferConfig {
        kind: BufferKind::Disk,
        max_bytes: ByteSize::mib(4096),
        when_full: WhenFull::Block,
        sync,
        ..Default::default()
    }
}

fn base_dir() -> PathBuf {
    std::env::var_os("PROFPIPE_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
}

async fn write(dir: &Path, sync: SyncPolicy, n: u64) -> Duration {
    let m = Telemetry::new().component("bench", "sink", "bench");
    let (tx, _rx) = disk::open(dir, config(sync), &MemoryBudget::new(1 << 26), m).unwrap();
    let events: Vec<Event> = (0..n).map(event).collect();
    let started = Instant::now();
    for e in events {
        tx.send(e).await.unwrap();
    }
    started.elapsed()
}

async fn replay(dir: &Path) -> Duration {
    let started = Instant::now();
    let m = Telemetry::new().component("bench", "sink", "bench");
    let (tx, mut rx) = disk::open(
        dir,
        config(SyncPolicy::Interval),
        &MemoryBudget::new(1 << 26),
        m,
    )
    .unwrap();
    drop(tx);
    while let Some(mut e) = rx.recv().await {
        e.take_finalizers().resolve(EventStatus::Delivered);
    }
    started.elapsed()
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut sample = Vec::new();
    disk::codec::encode(&event(1), &mut sample);
    println!(
        "one event: {} bytes encoded, {} bytes on disk",
        sample.len(),
        sample.len() + 28
    );

    let mut g = c.benchmark_group("disk_buffer");
    g.sample_size(10);
    for (sync, name, n) in [
        (SyncPolicy::Interval, "interval", 2_000u64),
        (SyncPolicy::Always, "always", 200),
    ] {
        g.throughput(Throughput::Elements(n));
        g.bench_with_input(BenchmarkId::new("write", name), &n, |b, &n| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let dir = tempfile::tempdir_in(base_dir()).unwrap();
                    total += rt.block_on(write(&dir.path().join("b"), sync, n));
                }
                total
            })
        });
    }
    let n = 2_000u64;
    g.throughput(Throughput::Elements(n));
    g.bench_function("replay", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let dir = tempfile::tempdir_in(base_dir()).unwrap();
                let path = dir.path().join("b");
                rt.block_on(write(&path, SyncPolicy::Interval, n));
                total += rt.block_on(replay(&path));
            }
            total
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
