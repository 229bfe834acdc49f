//! The `pyperf` source against a stand-in for PyPerf (`tests/programs/pyperf_standin.py`,
//! same command line, same SIGUSR2 rotation, same output format): stacks arrive per
//! window, rotated files are deleted, a PyPerf that dies on a deleted library is
//! restarted quietly, a hung one is restarted, and the source always finishes.
//!
//! The stand-in's switches are passed as extra arguments rather than environment
//! variables, so tests running in parallel do not see each other's settings.

mod common;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::context::{standalone, test_edge};
use common::{collect, events};
use profpipe::buffer::Output;
use profpipe::component::{SourceConfig, SourceContext};
use profpipe::event::{Diagnostic, Event, Profile, RunEnd, Watermark};
use profpipe::process::Backoff;
use profpipe::sources::pyperf::PyPerfSourceConfig;
use profpipe::telemetry::Telemetry;
use profpipe::units::DurationStr;
use tracing::Level;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::Layer;

fn standin() -> PathBuf {
    common::programs().join("pyperf_standin.py")
}

/// Every log event of the test's thread: level and rendered fields.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<(Level, String)>>>);

impl<S: tracing::Subscriber> Layer<S> for Logs {
    fn on_event(&self, event: &tracing::Event<'_>, _cx: Context<'_, S>) {
        struct Text(String);
        impl tracing::field::Visit for Text {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                self.0.push_str(&format!("{}={:?} ", field.name(), value));
            }
        }
        let mut text = Text(String::new());
        event.record(&mut text);
        self.0
            .lock()
            .unwrap()
            .push((*event.metadata().level(), text.0));
    }
}

impl Logs {
    fn above_info(&self) -> Vec<(Level, String)> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|(l, _)| *l < Level::INFO) // WARN and ERROR are "smaller"
            .cloned()
            .collect()
    }
    fn at(&self, level: Level, needle: &str) -> usize {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|(l, t)| *l == level && t.contains(needle))
            .count()
    }
}

struct Run {
    events: Vec<Event>,
    telemetry: Telemetry,
    scratch: PathBuf,
    _state: tempfile::TempDir,
}

impl Run {
    fn profiles(&self) -> Vec<&Profile> {
        events::profiles(&self.events)
    }
    fn diagnostics(&self) -> Vec<&Diagnostic> {
        events::diagnostics(&self.events)
    }
    fn watermarks(&self) -> Vec<u64> {
        events::watermarks(&self.events)
    }
    fn restarts(&self) -> u64 {
        let text = self.telemetry.render();
        text.lines()
            .find(|l| {
                l.starts_with("profpipe_process_children_restarted_total{program=\"pyperf\"}")
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }
    /// PyPerf outputs left in the source's scratch directory.
    fn leftovers(&self) -> Vec<String> {
        match std::fs::read_dir(&self.scratch) {
            Ok(rd) => rd
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .filter(|n| n.starts_with("pyperf.col"))
                .collect(),
            Err(_) => Vec::new(),
        }
    }
}

/// Runs the source to its end and returns everything it sent.
async fn run(config: PyPerfSourceConfig) -> Run {
    assert!(config.validate().is_empty(), "{:?}", config.validate());
    let state = tempfile::tempdir().unwrap();
    let telemetry = Telemetry::new();
    let metrics = telemetry.component("python", "source", "pyperf");
    let (tx, mut input) = test_edge(&telemetry, "sink");
    let cx = standalone(
        "python",
        "source",
        "pyperf",
        &telemetry,
        Some(state.path()),
        &[],
    );
    let scratch = state.path().join("python");
    let task = config
        .build(SourceContext {
            cx,
            out: Output::new(vec![tx], metrics),
        })
        .unwrap();
    let handle = tokio::spawn(task);
    let events = collect::all(&mut input, Duration::from_secs(60)).await;
    handle.await.unwrap().unwrap();
    Run {
        events,
        telemetry,
        scratch,
        _state: state,
    }
}

fn fast_backoff() -> Backoff {
    Backoff {
        initial: DurationStr(Duration::from_millis(100)),
        jitter: 0.0,
        ..Backoff::default()
    }
}

fn with_logs() -> (Logs, tracing::subscriber::DefaultGuard) {
    let logs = Logs::default();
    let subscriber = tracing_subscriber::registry().with(logs.clone());
    (logs.clone(), tracing::subscriber::set_default(subscriber))
}

#[tokio::test]
async fn stacks_arrive_per_window_and_rotated_files_are_deleted() {
    let (logs, _guard) = with_logs();
    let tmp = tempfile::tempdir().unwrap();
    let pidfile = tmp.path().join("standin.pid");
    let r = run(PyPerfSourceConfig {
        binary: Some(standin()),
        window: DurationStr(Duration::from_secs(2)),
        max_windows: Some(2),
        extra_args: vec!["--standin-pidfile".into(), pidfile.to_str().unwrap().into()],
        backoff: fast_backoff(),
        ..Default::default()
    })
    .await;

    let text = std::fs::read_to_string(&pidfile).expect("the stand-in never ran");
    let (pid, comm) = text.trim().split_once('\t').unwrap();
    let pid: u32 = pid.parse().unwrap();

    // Two windows closed, then the end.
    let wm = r.watermarks();
    assert_eq!(wm.len(), 3, "{wm:?}");
    assert_eq!(wm[2], Watermark::FINISHED);
    assert_eq!(wm[1] - wm[0], 2000);

    let profiles = r.profiles();
    assert!(!profiles.is_empty(), "no stacks at all");
    let expected = format!("{comm};<module>_[p];standin_main_[p];PyEval_EvalFrameDefault_[pn]");
    for p in &profiles {
        assert_eq!(&*p.labels.profiler, "pyperf");
        assert_eq!(&*p.labels.source, "python");
        assert!(wm[..2].contains(&p.window.end_ms), "{:?}", p.window);
        for s in &p.stacks {
            assert_eq!(s.pid, pid);
            assert_eq!(&*s.frames, expected);
        }
    }
    // The second window is a whole one, with the stand-in long started: ~40 samples.
    let second: u64 = profiles
        .iter()
        .filter(|p| p.window.end_ms == wm[1])
        .map(|p| p.total_count())
        .sum();
    assert!(second >= 10, "second window holds {second} samples");
    // Each profile comes before its window's watermark.
    for (i, e) in r.events.iter().enumerate() {
        if let Event::Profile(p) = e {
            let closing = r.events.iter().position(
                |w| matches!(w, Event::Watermark(w) if w.complete_until_ms >= p.window.end_ms),
            );
            assert!(closing.unwrap() > i);
        }
    }
    assert!(r.diagnostics().is_empty(), "{:?}", r.diagnostics());
    assert_eq!(r.restarts(), 0);
    assert!(r.leftovers().is_empty(), "{:?}", r.leftovers());
    assert!(logs.above_info().is_empty(), "{:?}", logs.above_info());
}

#[tokio::test]
async fn deleted_elf_restarts_pyperf_quietly() {
    let (logs, _guard) = with_logs();
    let r = run(PyPerfSourceConfig {
        binary: Some(standin()),
        window: DurationStr(Duration::from_secs(1)),
        max_windows: Some(3),
        extra_args: vec!["--standin-deleted-elf".into()],
        backoff: fast_backoff(),
        ..Default::default()
    })
    .await;

    assert!(r.restarts() >= 1, "PyPerf was not restarted");
    let diags = r.diagnostics();
    assert!(!diags.is_empty());
    for d in &diags {
        assert_eq!(d.end, RunEnd::Exited(1));
        assert!(d.stderr.contains("(deleted)"), "{:?}", d.stderr);
        assert_eq!(&*d.labels.profiler, "pyperf");
        assert_eq!(d.pid, 0);
    }
    assert_eq!(r.watermarks().last(), Some(&Watermark::FINISHED));
    assert_eq!(r.watermarks().len(), 4);
    assert!(r.leftovers().is_empty(), "{:?}", r.leftovers());
    assert!(logs.above_info().is_empty(), "{:?}", logs.above_info());
    assert_eq!(logs.at(Level::INFO, "deleted libraries"), 1);
}

#[tokio::test]
async fn a_hung_rotation_restarts_pyperf_and_still_closes_the_window() {
    let r = run(PyPerfSourceConfig {
        binary: Some(standin()),
        window: DurationStr(Duration::from_secs(1)),
        max_windows: Some(3),
        rotate_timeout: DurationStr(Duration::from_millis(300)),
        extra_args: vec!["--standin-no-rotate".into()],
        backoff: fast_backoff(),
        ..Default::default()
    })
    .await;
    let diags = r.diagnostics();
    assert!(diags.iter().any(|d| d.end == RunEnd::TimedOut), "{diags:?}");
    assert_eq!(r.watermarks().len(), 4, "{:?}", r.watermarks());
    assert_eq!(r.watermarks().last(), Some(&Watermark::FINISHED));
    assert!(r.leftovers().is_empty(), "{:?}", r.leftovers());
}

#[tokio::test]
async fn without_binary_the_source_finishes_at_once() {
    let (logs, _guard) = with_logs();
    for binary in [None, Some(PathBuf::from("/nonexistent/PyPerf"))] {
        let r = run(PyPerfSourceConfig {
            binary,
            ..Default::default()
        })
        .await;
        assert_eq!(r.events.len(), 1);
        assert_eq!(r.watermarks(), vec![Watermark::FINISHED]);
    }
    assert_eq!(logs.at(Level::INFO, "pyperf source disabled"), 2);
    assert!(logs.above_info().is_empty());
}
