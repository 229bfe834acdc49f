//! `[agent] memory_limit` holds under input with millions of distinct frames: edges
//! and window stores together never charge more than the limit, window stores never
//! more than half of it, and what does not fit goes to `[overflow]` stacks (or early
//! flushes) so totals stay exact. Also: the default pipeline's bounds fit its
//! default limit, and `profpipe validate` notes a config whose bounds do not.
//!
//! Sizes: the brief's figure is 1.5-2 million distinct stacks against 16 MiB (see
//! `scripts/measure-memory-cap.sh` for that run, in release). In a debug build that
//! takes minutes, so the tests scale both down by the same factor and more: 300 000
//! distinct stacks (~100 bytes of state each, ~30 MB of distinct-stack state) against
//! a 4 MiB limit, i.e. each 100 000-stack window alone is about 3x the 3 MiB the
//! window stores may hold, and the run as a whole about 10x. Every component keeps
//! its default store bound (8 MiB each, together 4x the window share), so only the
//! agent-wide limit can be what keeps window memory down.
//!
//! The runs bound the transform's input edge at 128 KiB and cut source events
//! small (1 000 stacks, 64 KiB of perf text) to keep many events in flight;
//! `buffers_past_their_share_do_not_deadlock` runs the same pipeline with default
//! (8 MiB) buffers, which together pass the buffers' half of the limit: they are
//! scaled down to fit it, so no buffer can take the room another needs (before that
//! rule, this run stalled at `in_use == limit` in most runs).

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::repo;
use common::run::{profpipe, to_end, write_config};
use profpipe::buffer::MemoryBudget;
use profpipe::config::{load_str, Config};
use profpipe::registry::registry;
use profpipe::telemetry::Telemetry;
use profpipe::topology::{self, RunningTopology};

const MIB: u64 = 1 << 20;
/// The limit of the run tests.
const LIMIT: u64 = 4 * MIB;
/// Windows (one input file each) and distinct stacks per window.
const WINDOWS: usize = 3;
const PER_WINDOW: usize = 100_000;

/// Highest values seen while sampling a budget.
#[derive(Debug, Default, Clone, Copy)]
struct Maxima {
    samples: u64,
    in_use: u64,
    window: u64,
    edge: u64,
}

/// Samples `budget` every 200 µs on a thread of its own until told to stop.
struct Sampler {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Maxima>,
}

impl Sampler {
    fn start(budget: MemoryBudget) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut m = Maxima::default();
            while !flag.load(Ordering::Relaxed) {
                // One snapshot: window bytes first, then the total they are part of
                // (a store charges the total before its own counter and gives its
                // counter back first, so edge = total - window never underflows
                // for real).
                let window = budget.window_bytes();
                let in_use = budget.in_use();
                let edge = in_use.saturating_sub(window);
                m.samples += 1;
                m.in_use = m.in_use.max(in_use);
                m.window = m.window.max(window);
                m.edge = m.edge.max(edge);
                std::thread::sleep(Duration::from_micros(200));
            }
            m
        });
        Sampler { stop, thread }
    }

    fn finish(self) -> Maxima {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}

/// Loads `text` (as `name`) with the real registry.
fn load(name: &str, text: &str) -> Config {
    load_str(Path::new(name), text, &registry()).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Runs `config` to its end while sampling its budget; returns what was sampled, the
/// budget (for its peak) and the rendered metrics.
async fn run_sampled(config: &Config) -> (Maxima, MemoryBudget, String) {
    let telemetry = Telemetry::new();
    let built = topology::build(config, &telemetry, "test-host".into()).unwrap();
    let running = RunningTopology::start(built);
    let budget = running.memory_budget().clone();
    assert_eq!(budget.limit(), LIMIT, "memory_limit reaches the budget");
    let sampler = Sampler::start(budget.clone());
    to_end(running).await;
    let maxima = sampler.finish();
    (maxima, budget, telemetry.render())
}

/// Sum of the values of metric `name` whose labels include every `key="value"` of
/// `labels`.
fn metric(text: &str, name: &str, labels: &[&str]) -> u64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .filter(|l| labels.iter().all(|kv| l.contains(kv)))
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
        .map(|v| v as u64)
        .sum()
}

/// The checks every run shares: the budget's limits held, and were really used.
fn assert_within_limit(m: &Maxima, budget: &MemoryBudget, metrics: &str) {
    eprintln!("sampled {m:?}; peak {}", budget.peak());
    assert!(m.samples > 10, "the sampler ran during the run: {m:?}");
    // Edges and stores together (in_use is their sum) never passed the limit: a
    // store or edge that charged past the semaphore, or a budget built from another
    // limit than the configured one, fails here.
    assert!(
        m.in_use <= LIMIT,
        "edge + window bytes passed the limit: {m:?}"
    );
    assert!(
        budget.peak() <= LIMIT,
        "peak {} passed the limit {LIMIT}",
        budget.peak()
    );
    // Window stores never held more than their half: a store whose growth
    // skipped the share check (e.g. growth measured after an update) fails here.
    assert!(
        m.window <= LIMIT / 2,
        "window stores held {} > half of {LIMIT}",
        m.window
    );
    // ... and the limit was what bounded them: the stores did fill at least half of
    // their share. A store that charged nothing (memory held outside the budget)
    // would pass every check above vacuously and fail here.
    assert!(
        m.window >= LIMIT / 4,
        "window stores never came near their share: {m:?}"
    );
    assert!(m.edge > 0, "edges never charged the budget: {m:?}");
    assert_eq!(budget.in_use(), 0, "every charge was given back at the end");
    // The gauges say the same as the budget (they are what operators see).
    assert_eq!(metric(metrics, "profpipe_memory_limit_bytes", &[]), LIMIT);
    assert_eq!(
        metric(metrics, "profpipe_memory_peak_bytes", &[]),
        budget.peak()
    );
    assert_eq!(
        metric(metrics, "profpipe_memory_used_bytes", &[]),
        0,
        "everything charged was given back at the end"
    );
    // Nothing was thrown away on an edge (all edges block).
    assert_eq!(
        metric(metrics, "profpipe_component_discarded_events_total", &[]),
        0,
        "{metrics}"
    );
}

/// The `profile_*.folded` files under `dir`, each as (frames, count) lines, oldest
/// window first.
fn folded_files(dir: &Path) -> Vec<(PathBuf, Vec<(String, u64)>)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.starts_with("profile_") && name.ends_with(".folded")
        })
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            let lines = text
                .lines()
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(|l| {
                    let (frames, n) = l.rsplit_once(' ').unwrap();
                    (frames.to_string(), n.parse::<u64>().unwrap())
                })
                .collect();
            (p, lines)
        })
        .collect()
}

/// Checks the written windows: one file per input window, each with exactly that
/// window's samples, overflow stacks carrying what did not fit, and every other
/// line a real stack of that window with its count. `index_of` gives the input
/// index `i` a written (non-overflow) stack came from.
fn assert_exact_windows(dir: &Path, index_of: impl Fn(&str) -> Option<usize>) {
    let files = folded_files(dir);
    assert_eq!(
        files.len(),
        WINDOWS,
        "one file per window (a window split or lost shows here): {:?}",
        files.iter().map(|f| &f.0).collect::<Vec<_>>()
    );
    let mut total = 0;
    let mut overflow_total = 0;
    let mut distinct = 0;
    for (k, (path, lines)) in files.iter().enumerate() {
        let sum: u64 = lines.iter().map(|(_, n)| n).sum();
        assert_eq!(
            sum,
            PER_WINDOW as u64,
            "{}: the window's total is exact (counts lost, doubled or moved between windows)",
            path.display()
        );
        total += sum;
        let mut seen = HashMap::new();
        for (frames, n) in lines {
            if frames.contains("[overflow]") {
                overflow_total += n;
                continue;
            }
            distinct += 1;
            let i = index_of(frames)
                .unwrap_or_else(|| panic!("{}: not an input stack: {frames}", path.display()));
            assert!(
                (k * PER_WINDOW..(k + 1) * PER_WINDOW).contains(&i),
                "{}: stack {frames} belongs to window {}",
                path.display(),
                i / PER_WINDOW
            );
            assert_eq!(*n, 1, "{}: {frames} was one sample", path.display());
            assert!(
                seen.insert(frames.clone(), ()).is_none(),
                "{}: {frames} written twice (not merged)",
                path.display()
            );
        }
    }
    assert_eq!(total, (WINDOWS * PER_WINDOW) as u64, "sum of all samples");
    eprintln!("{distinct} distinct stacks written, {overflow_total} samples in overflow stacks");
    assert!(
        overflow_total > 0 && distinct < WINDOWS * PER_WINDOW,
        "what did not fit went to [overflow] stacks (else the limit bounded nothing)"
    );
    assert!(
        distinct > 0,
        "some distinct stacks were kept (not everything overflowed)"
    );
}

/// file source (`source` adds settings) -> `stage` (`transforms`) -> file sink.
fn pipeline(dir: &Path, source: &str, transforms: &str) -> String {
    let state = dir.join("state");
    let input = dir.join("in");
    let out = dir.join("out");
    format!(
        r#"
[agent]
memory_limit = "4MiB"
state_dir = {state:?}

[sources.files]
type = "file"
paths = ["{input}/*"]
{source}

{transforms}

[sinks.local]
type = "file"
inputs = ["stage"]
path = {out:?}
formats = ["folded"]
"#,
        input = input.display(),
    )
}

const DEDUP_STAGE: &str = r#"
[transforms.stage]
type = "dedup"
inputs = ["files"]
max_unique_stacks = 1000000
buffer.max_bytes = "128KiB"
"#;

/// Writes the collapsed input: lines `proc;f<i>;g<i> 1`, one file per window.
fn write_collapsed(input: &Path) {
    std::fs::create_dir(input).unwrap();
    for k in 0..WINDOWS {
        let mut text = String::with_capacity(PER_WINDOW * 24);
        for i in k * PER_WINDOW..(k + 1) * PER_WINDOW {
            text.push_str(&format!("proc;f{i};g{i} 1\n"));
        }
        std::fs::write(input.join(format!("{k}.col")), text).unwrap();
    }
}

/// Collapsed lines `proc;f<i>;g<i> 1`: every stack distinct, with two distinct
/// frames of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dedup_and_file_sink_hold_distinct_stacks_within_the_memory_limit() {
    let tmp = tempfile::tempdir().unwrap();
    write_collapsed(&tmp.path().join("in"));
    let config = load(
        "memory-cap-dedup.toml",
        &pipeline(
            tmp.path(),
            "format = \"collapsed\"\nbatch_stacks = 1000",
            DEDUP_STAGE,
        ),
    );
    let (maxima, budget, metrics) = run_sampled(&config).await;
    assert_within_limit(&maxima, &budget, &metrics);
    let overflowed = metric(
        &metrics,
        "profpipe_component_dropped_stacks_total",
        &["reason=\"overflow\""],
    );
    assert!(
        overflowed > 0,
        "overflow was counted in dropped_stacks{{reason=\"overflow\"}}"
    );
    assert_exact_windows(&tmp.path().join("out"), |frames| {
        let rest = frames.strip_prefix("proc;f")?;
        let (a, b) = rest.split_once(";g")?;
        (a == b).then(|| a.parse().ok()).flatten()
    });
}

/// `perf script` records of one process, each in a function of its own
/// (`work;main;f<i>`), after the layout of `tests/data/perf/c-workload-pipelines.txt`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fold_and_file_sink_hold_distinct_stacks_within_the_memory_limit() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in");
    std::fs::create_dir(&input).unwrap();
    for k in 0..WINDOWS {
        let mut text = String::with_capacity(PER_WINDOW * 150);
        for i in k * PER_WINDOW..(k + 1) * PER_WINDOW {
            text.push_str(&format!(
                "work 4242/4242 [000]  1240.{i:06}:    2004008 cpu-clock: \n\
                 \t            15dc f{i}+0x1c (/tmp/work)\n\
                 \t            122c main+0x15c (/tmp/work)\n\n"
            ));
        }
        std::fs::write(input.join(format!("{k}.txt")), text).unwrap();
    }
    let config = load(
        "memory-cap-fold.toml",
        &pipeline(
            tmp.path(),
            "format = \"perf_script\"\nread_size = \"64KiB\"",
            r#"
[transforms.stage]
type = "fold"
inputs = ["files"]
buffer.max_bytes = "128KiB"
"#,
        ),
    );
    let (maxima, budget, metrics) = run_sampled(&config).await;
    assert_within_limit(&maxima, &budget, &metrics);
    // fold emits its folders early at the bound (partial windows the sink merges);
    // the sink overflows.
    let early = metric(
        &metrics,
        "profpipe_component_errors_total",
        &["component_id=\"stage\"", "reason=\"early_flush\""],
    );
    assert!(early > 0, "fold flushed early at the limit\n{metrics}");
    let overflowed = metric(
        &metrics,
        "profpipe_component_dropped_stacks_total",
        &["component_id=\"local\"", "reason=\"overflow\""],
    );
    assert!(overflowed > 0, "the sink counted its overflow\n{metrics}");
    assert_exact_windows(&tmp.path().join("out"), |frames| {
        frames.strip_prefix("work;main;f")?.parse().ok()
    });
}

/// The same dedup run with the default 8 MiB buffer on dedup's input (and
/// 10 000-stack source events): buffers bounded past their half of the limit. It
/// used to stall with every byte of the limit taken (2 of 3 runs); buffers are now
/// scaled to fit, so it must finish.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buffers_past_their_share_do_not_deadlock() {
    let tmp = tempfile::tempdir().unwrap();
    write_collapsed(&tmp.path().join("in"));
    let text = pipeline(
        tmp.path(),
        "format = \"collapsed\"",
        &DEDUP_STAGE.replace("buffer.max_bytes = \"128KiB\"\n", ""),
    );
    let config = load("memory-cap-deadlock.toml", &text);
    let telemetry = Telemetry::new();
    let built = topology::build(&config, &telemetry, "test-host".into()).unwrap();
    let running = RunningTopology::start(built);
    let budget = running.memory_budget().clone();
    // What was in use when the run was given up on (before the abort frees it).
    let stalled_at = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let stop = {
        let stalled_at = stalled_at.clone();
        async move {
            tokio::time::sleep(Duration::from_secs(30)).await;
            stalled_at.store(budget.in_use(), Ordering::Relaxed);
        }
    };
    let outcome = running.run_until(stop, Duration::from_secs(1)).await;
    assert!(
        outcome.is_clean(),
        "stalled with {} of {LIMIT} bytes in use: {outcome:?}",
        stalled_at.load(Ordering::Relaxed)
    );
}

/// Bounds of a config: every consumer's edge (`buffer.max_bytes`) and every window
/// store (`memory_bound`).
fn bounds(c: &Config) -> (u64, u64) {
    let edges = c
        .transforms
        .iter()
        .map(|t| t.buffer.max_bytes.get())
        .chain(c.sinks.iter().map(|s| s.buffer.max_bytes.get()))
        .sum();
    let stores = c
        .transforms
        .iter()
        .map(|t| t.config.memory_bound())
        .chain(c.sinks.iter().map(|s| s.config.memory_bound()))
        .sum();
    (edges, stores)
}

#[test]
fn default_pipeline_bounds_fit_the_default_memory_limit() {
    let text = std::fs::read_to_string(repo().join("pipelines/default.toml")).unwrap();
    let c = load("pipelines/default.toml", &text);
    let store_of = |id: &str| {
        c.transforms
            .iter()
            .find(|t| &*t.id == id)
            .map(|t| t.config.memory_bound())
            .or_else(|| {
                c.sinks
                    .iter()
                    .find(|s| &*s.id == id)
                    .map(|s| s.config.memory_bound())
            })
            .unwrap_or_else(|| panic!("no component {id}"))
    };
    // The hook reports each store's real bound (a store whose bound reads 0 would
    // make the sum below pass vacuously).
    let d = profpipe::window::DEFAULT_STORE_BYTES;
    assert_eq!(
        (store_of("fold"), store_of("merge"), store_of("local")),
        (profpipe::window::DEFAULT_FOLD_BYTES, d, d)
    );
    assert_eq!(store_of("classify"), 0, "classify holds no windows");
    let (edges, stores) = bounds(&c);
    let limit = c.agent.memory_limit.get();
    eprintln!(
        "default pipeline: edges {} MiB + stores {} MiB of {} MiB",
        edges / MIB,
        stores / MIB,
        limit / MIB
    );
    // Every edge has the default 8 MiB but the app_id step's and the sink's, which
    // share one default's 8 MiB (2 + 6).
    assert_eq!(
        edges,
        (c.transforms.len() + c.sinks.len() - 1) as u64 * 8 * MIB,
        "the default pipeline's edges: 8 MiB each, app_id and the sink sharing 8"
    );
    assert!(
        edges <= limit / 2,
        "edges {edges} exceed their half of {limit}: each would be scaled down at start"
    );
    assert!(
        edges + stores <= limit,
        "edges {edges} + window stores {stores} > memory_limit {limit}: the default \
         pipeline would hit its limit before its own bounds"
    );
    assert!(
        stores <= limit / 2,
        "window stores {stores} may hold more than their half of {limit}"
    );
}

#[test]
fn validate_notes_bounds_past_the_memory_limit() {
    let tmp = tempfile::tempdir().unwrap();
    // dedup + file sink with default bounds: 2 edges and 2 stores of 8 MiB = 32 MiB.
    let text = format!(
        r#"
[agent]
memory_limit = "16MiB"

[sources.files]
type = "file"
paths = ["in/*.col"]
format = "collapsed"

[transforms.stage]
type = "dedup"
inputs = ["files"]

[sinks.local]
type = "file"
inputs = ["stage"]
path = {:?}
"#,
        tmp.path().join("out")
    );
    let over = write_config(tmp.path(), "over.toml", &text);
    let fits = std::fs::read_to_string(&over)
        .unwrap()
        .replace("\"16MiB\"", "\"32MiB\"");
    let fits_path = write_config(tmp.path(), "fits.toml", &fits);
    let out = profpipe()
        .arg("validate")
        .arg(&over)
        .arg(&fits_path)
        .arg(repo().join("pipelines/default.toml"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "a note is not an error: {stdout}");
    let notes: Vec<&str> = stdout.lines().filter(|l| l.contains("NOTE")).collect();
    assert_eq!(notes.len(), 1, "only over.toml is past its limit: {stdout}");
    assert!(
        notes[0].contains("over.toml")
            && notes[0].contains("memory_limit (16.0 MiB)")
            && notes[0].contains("32.0 MiB together"),
        "{}",
        notes[0]
    );
}
