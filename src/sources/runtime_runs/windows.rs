//! The per-window loop: each window of the clock, discover the targets, run them
//! (bounded, in a task of the window's own), and send results and watermarks in
//! window order.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinSet;

use crate::component::{ComponentError, SourceContext};
use crate::event::{Watermark, Window};
use crate::process::{Discovery, Runtime};
use crate::sources::live::binary;
use crate::sources::live::emitter::Emitter;
use crate::window_clock::{now_ms, Tick, WindowClock};

use super::profiler::{
    resolve_binary, RunSettings, RuntimeProfiler, MAX_WINDOWS_IN_FLIGHT, TOOLS_DIR,
};
use super::runner::{RunResult, Runner};
use super::target::Target;

/// Runs shorter than this are not started (the profilers take whole seconds).
const MIN_RUN_MS: u64 = 500;

/// How long before the window's end a run is made to end.
const RUN_END_MARGIN_MS: u64 = 2_000;

/// What window tasks tell the driver.
enum Msg {
    Run(Box<RunResult>),
    WindowDone(u64),
}

struct Shared {
    runner: Runner,
    runtime: Runtime,
    discovery: Mutex<Discovery>,
    permits: Semaphore,
}

struct InFlight {
    seq: u64,
    window: Window,
    done: bool,
}

/// Runs a per-process profiler source until its windows are done or shutdown.
pub async fn drive(
    profiler: Arc<dyn RuntimeProfiler>,
    settings: RunSettings,
    cx: SourceContext,
) -> Result<(), ComponentError> {
    let SourceContext { cx, out } = cx;
    let mut out = Emitter::new(out, &cx, profiler.name());
    let Some(binary) = resolve_binary(&settings.binary) else {
        binary::log_missing(
            &cx.id,
            &settings.binary,
            format_args!(
                "{} is not installed (not on PATH nor in ~/{TOOLS_DIR}); this source does nothing. \
                 Install it with `{}`",
                profiler.name(),
                profiler.install_hint()
            ),
        );
        let _ = out.watermark(Watermark::FINISHED).await;
        return Ok(());
    };
    let runtime = profiler.runtime();
    let runner = Runner::new(profiler, binary, &cx)?;
    runner.clear_scratch();
    let shared = Arc::new(Shared {
        runner,
        runtime,
        discovery: Mutex::new(Discovery::new(settings.discovery.clone())),
        permits: Semaphore::new(settings.max_concurrent.max(1)),
    });
    let mut clock = WindowClock::new(cx.origin_ms, settings.window, settings.max_windows);
    let mut shutdown = cx.shutdown.clone();
    let (tx, mut rx) = mpsc::channel::<Msg>(64);
    let (cancel_tx, cancel_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let mut in_flight: VecDeque<InFlight> = VecDeque::new();
    let mut pending = clock.current();
    let mut clock_done = pending.is_none();
    let mut next_seq = 0u64;
    let mut downstream_closed = false;

    loop {
        if let Some(window) = pending {
            if in_flight.len() < MAX_WINDOWS_IN_FLIGHT && !*cancel_tx.borrow() {
                pending = None;
                let seq = next_seq;
                next_seq += 1;
                in_flight.push_back(InFlight {
                    seq,
                    window,
                    done: false,
                });
                tasks.spawn(run_window(
                    shared.clone(),
                    seq,
                    window,
                    tx.clone(),
                    cancel_rx.clone(),
                ));
            }
        }
        if clock_done && pending.is_none() && in_flight.is_empty() {
            break;
        }
        tokio::select! {
            Some(msg) = rx.recv() => match msg {
                Msg::Run(result) => {
                    if downstream_closed {
                        continue;
                    }
                    for ev in result.into_events() {
                        if out.send(ev).await.is_err() {
                            downstream_closed = true;
                            break;
                        }
                    }
                }
                Msg::WindowDone(seq) => {
                    if let Some(w) = in_flight.iter_mut().find(|w| w.seq == seq) {
                        w.done = true;
                    }
                    while in_flight.front().is_some_and(|w| w.done) {
                        let w = in_flight.pop_front().expect("front exists");
                        if !downstream_closed
                            && out.watermark(w.window.end_ms).await.is_err()
                        {
                            downstream_closed = true;
                        }
                    }
                }
            },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            tick = clock.tick(&mut shutdown), if !clock_done => match tick {
                Some(Tick::Ended(_)) => {
                    if let Some(skipped) = pending.take() {
                        tracing::debug!(
                            source = %cx.id,
                            window_start_ms = skipped.start_ms,
                            "skipping a window: earlier windows' runs are still ending"
                        );
                    }
                    pending = clock.current();
                    clock_done = pending.is_none();
                }
                Some(Tick::Shutdown(_)) | None => {
                    clock_done = true;
                    pending = None;
                    let _ = cancel_tx.send(true);
                }
            },
        }
        if downstream_closed && !*cancel_tx.borrow() {
            tracing::debug!(source = %cx.id, "downstream closed; stopping runs");
            clock_done = true;
            pending = None;
            let _ = cancel_tx.send(true);
        }
    }
    if !downstream_closed {
        let _ = out.watermark(Watermark::FINISHED).await;
    }
    Ok(())
}

/// Resolves once `cancel` is set (or its sender is gone).
async fn cancelled(mut cancel: watch::Receiver<bool>) {
    let _ = cancel.wait_for(|c| *c).await;
}

/// One window: discover, run every selected process (bounded), report each run,
/// then say the window is done.
async fn run_window(
    shared: Arc<Shared>,
    seq: u64,
    window: Window,
    tx: mpsc::Sender<Msg>,
    cancel: watch::Receiver<bool>,
) {
    let scan_shared = shared.clone();
    let targets = tokio::task::spawn_blocking(move || {
        let mut d = scan_shared
            .discovery
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let procs = d.scan();
        d.select(&procs, scan_shared.runtime)
    })
    .await
    .unwrap_or_default();
    tracing::debug!(
        profiler = shared.runner.profiler_name(),
        window_start_ms = window.start_ms,
        targets = targets.len(),
        "profiling window"
    );
    let mut runs = JoinSet::new();
    for p in &targets {
        let target = Target::from(p);
        let (shared, tx, cancel) = (shared.clone(), tx.clone(), cancel.clone());
        runs.spawn(async move {
            let permit = tokio::select! {
                p = shared.permits.acquire() => match p {
                    Ok(p) => p,
                    Err(_) => return,
                },
                _ = cancelled(cancel.clone()) => return,
            };
            let left_ms = window.end_ms.saturating_sub(now_ms());
            if left_ms < MIN_RUN_MS {
                tracing::debug!(
                    pid = target.pid,
                    "no time left in the window for this process"
                );
                return;
            }
            // Whole seconds, ending two seconds before the window does: the
            // profiler's start-up and exit then fall inside the window, so its runs do
            // not overlap the next window's (which would double the children and fds
            // at every boundary) and its results are in before the watermark is due.
            let secs = (left_ms.saturating_sub(RUN_END_MARGIN_MS) / 1000).max(1);
            let result = shared
                .runner
                .run(
                    &target,
                    window,
                    Duration::from_secs(secs),
                    cancelled(cancel),
                )
                .await;
            drop(permit);
            let _ = tx.send(Msg::Run(Box::new(result))).await;
        });
    }
    while runs.join_next().await.is_some() {}
    let _ = tx.send(Msg::WindowDone(seq)).await;
}
