//! The `merge` transform in a real topology: a window is held until the watermarks
//! of both its sources (perf and a runtime profiler) have passed, then merged the
//! gProfiler way; and its memory bound merges the oldest window early.

mod common;

use std::time::Duration;

use common::collect::{self, Collect};
use common::context::{standalone, test_edge};
use common::run;
use common::wait::settle;
use profpipe::buffer::Output;
use profpipe::component::{
    BuildError, SourceConfig, SourceContext, Task, TransformConfig, TransformContext,
};
use profpipe::event::{Event, Labels, Profile, Stack, Watermark, Window};
use profpipe::telemetry::Telemetry;
use profpipe::transforms::merge::MergeConfig;
use tokio::sync::watch;

const W: Window = Window {
    start_ms: 1_700_000_000_000,
    end_ms: 1_700_000_060_000,
};

/// Sends its events once its gate is open (or at once without a gate), then ends.
#[derive(Debug)]
struct Scripted {
    events: Vec<Event>,
    gate: Option<watch::Receiver<bool>>,
}

impl SourceConfig for Scripted {
    fn outputs(&self) -> profpipe::event::DataTypes {
        profpipe::event::DataTypes::PROFILE
    }
    fn is_finite(&self) -> bool {
        true
    }
    fn build(&self, cx: SourceContext) -> Result<Task, BuildError> {
        let events = self.events.clone();
        let gate = self.gate.clone();
        let mut out = cx.out;
        Ok(Box::pin(async move {
            if let Some(mut g) = gate {
                let _ = g.wait_for(|open| *open).await;
            }
            for ev in events {
                let _ = out.send(ev).await;
            }
            Ok(())
        }))
    }
}

fn stack(pid: u32, frames: &str, count: u64) -> Stack {
    Stack {
        pid,

        ..Stack::new(frames, count)
    }
}

fn profile(source: &str, profiler: &str, window: Window, stacks: Vec<Stack>) -> Event {
    Event::Profile(Profile {
        finalizers: Default::default(),
        window,
        labels: Labels {
            extra: Default::default(),
            host: "h".into(),
            source: source.into(),
            profiler: profiler.into(),
        },
        stacks: stacks.into(),
    })
}

fn watermark(source: &str, until: u64) -> Event {
    Event::Watermark(Watermark {
        source: source.into(),
        complete_until_ms: until,
    })
}

/// A source's profile of window `W`, then its watermark past `W`.
fn complete_window(source: &str, profiler: &str, stacks: Vec<Stack>) -> Vec<Event> {
    vec![
        profile(source, profiler, W, stacks),
        watermark(source, W.end_ms),
    ]
}

fn profiles(events: &[Event]) -> Vec<Profile> {
    common::events::profiles(events)
        .into_iter()
        .cloned()
        .collect()
}

/// On a paused clock: "held" means held once every task has run as far as it can.
#[tokio::test(start_paused = true)]
async fn a_window_is_held_until_both_sources_watermarks_pass() {
    let state = tempfile::tempdir().unwrap();
    let (open, gate) = watch::channel(false);
    let seen = Collect::new();
    let perf_events = complete_window(
        "cpu",
        "perf",
        vec![
            stack(10, "python;PyEval_EvalFrame", 60),
            stack(10, "python;[unknown]", 40),
            stack(20, "nginx;ngx_worker", 5),
        ],
    );
    let py_events = complete_window(
        "py",
        "py-spy",
        vec![
            stack(10, "python;main_[p];a_[p]", 2),
            stack(10, "python;main_[p];b_[p]", 1),
            stack(10, "python;main_[p];c_[p]", 1),
        ],
    );
    let config = run::config(
        run::agent_with_state(state.path()),
        vec![
            run::source(
                "cpu",
                "scripted",
                Scripted {
                    events: perf_events,
                    gate: None,
                },
            ),
            run::source(
                "py",
                "scripted",
                Scripted {
                    events: py_events,
                    gate: Some(gate),
                },
            ),
        ],
        vec![run::transform(
            "merged",
            "merge",
            &["cpu", "py"],
            MergeConfig::default(),
        )],
        vec![run::sink("out", "collect", &["merged"], seen.clone())],
    );
    let telemetry = Telemetry::new();
    let running = run::start(&config, &telemetry);
    let run = tokio::spawn(running.run_until(std::future::pending(), Duration::from_secs(30)));

    // perf has spoken (its watermark even reaches the sink), py-spy has not: the
    // window is held.
    seen.wait_until(
        "perf's watermark came through",
        Duration::from_secs(10),
        |evs| {
            evs.iter()
                .any(|e| matches!(e, Event::Watermark(w) if &*w.source == "cpu"))
        },
    )
    .await;
    settle().await;
    assert!(
        profiles(&seen.events()).is_empty(),
        "the window left before py-spy's watermark"
    );

    open.send(true).unwrap();
    let outcome = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .unwrap()
        .unwrap();
    assert!(outcome.is_clean(), "{outcome:?}");

    let events = seen.events();
    let merged = profiles(&events);
    let perf: Vec<&Profile> = merged
        .iter()
        .filter(|p| &*p.labels.profiler == "perf")
        .collect();
    let py: Vec<&Profile> = merged
        .iter()
        .filter(|p| &*p.labels.profiler == "py-spy")
        .collect();
    assert_eq!(perf.len(), 1);
    assert_eq!(perf[0].stacks, vec![stack(20, "nginx;ngx_worker", 5)]);
    assert_eq!(py.len(), 1);
    // py-spy's 4 samples stand for perf's 100: factor 25, exact here.
    let got: Vec<(&str, u64)> = py[0].stacks.iter().map(|s| (&*s.frames, s.count)).collect();
    assert_eq!(
        got,
        vec![
            ("python;main_[p];a_[p]", 50),
            ("python;main_[p];b_[p]", 25),
            ("python;main_[p];c_[p]", 25)
        ]
    );
    // The merged window leaves before py-spy's watermark is forwarded.
    let py_wm = events
        .iter()
        .position(|e| matches!(e, Event::Watermark(w) if &*w.source == "py"))
        .unwrap();
    let last_profile = events
        .iter()
        .rposition(|e| matches!(e, Event::Profile(_)))
        .unwrap();
    assert!(last_profile < py_wm);
}

#[tokio::test]
async fn past_its_bounds_the_oldest_window_is_merged_early() {
    let telemetry = Telemetry::new();
    let metrics = telemetry.component("merged", "transform", "merge");
    let (tx, input) = test_edge(&telemetry, "merged");
    let (out_tx, mut out_rx) = test_edge(&telemetry, "out");
    let config = MergeConfig {
        max_pending_windows: 2,
        max_pending_stacks: 1_000,
        ..Default::default()
    };
    let cx = TransformContext {
        cx: standalone(
            "merged",
            "transform",
            "merge",
            &telemetry,
            None,
            &["cpu", "py"],
        ),
        input,
        out: Output::new(vec![out_tx], metrics.clone()),
    };
    let task = tokio::spawn(config.build(cx).unwrap());
    let window = |k: u64| Window::new(k * 1000, (k + 1) * 1000);
    for k in 0..3 {
        tx.send(profile("cpu", "perf", window(k), vec![stack(1, "a;b", 4)]))
            .await
            .unwrap();
        tx.send(profile(
            "py",
            "py-spy",
            window(k),
            vec![stack(1, "a;b_[p]", 1)],
        ))
        .await
        .unwrap();
    }
    // Three windows pending with a bound of two: the oldest was merged early.
    let first = collect::next(&mut out_rx, Duration::from_secs(5))
        .await
        .unwrap();
    let Event::Profile(p) = first else {
        panic!("{first:?}")
    };
    assert_eq!(p.window, window(0));
    assert_eq!(&*p.labels.profiler, "py-spy");
    assert_eq!(p.stacks, vec![stack(1, "a;b_[p]", 4)]);
    assert_eq!(metrics.error_count("merge_early"), 1);

    // The input ends: the rest is merged too.
    drop(tx);
    task.await.unwrap().unwrap();
    let rest = collect::all(&mut out_rx, Duration::from_secs(5)).await;
    let windows: Vec<Window> = profiles(&rest).iter().map(|p| p.window).collect();
    assert_eq!(windows, vec![window(1), window(2)]);
}
