//! The running source: the accept loop, one task per connection, and the emitter
//! that owns the source's [`Output`].
//!
//! The emitter sends each request's events, then a watermark at the largest window
//! end seen so far, so the sinks close that window at once (the request is waiting
//! for their outcome). Every [`WATERMARK_TICK`] it also advances the watermark to
//! the wall clock, so components fed by this source and others are not held back
//! while nobody pushes. A push whose window ends before the watermark is therefore
//! "late" downstream: the sink writes it on its own at once (counted in
//! `component_late_events_total`), which is what a gateway wants.
//!
//! Shutdown: the listener is closed at once (new connections are refused), idle
//! connections are closed, requests in flight may finish within
//! `[agent] shutdown_timeout`; then the emitter sends what it holds and the
//! FINISHED watermark.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;

use crate::buffer::{Output, OutputClosed};
use crate::component::{ComponentError, SourceContext, Task};
use crate::event::{ComponentId, Event, EventStatus, Watermark};
use crate::shutdown::ShutdownSignal;

use super::auth::Token;
use super::config::HttpServerConfig;
use super::gprofiler::Gpids;
use super::handler::{self, Job, Shared};

/// How often the watermark follows the wall clock while nobody pushes.
pub const WATERMARK_TICK: Duration = Duration::from_secs(1);

/// Most open connections (idle keep-alive ones included); past it new connections
/// are closed at once and counted as `connection_limit`.
pub const MAX_CONNECTIONS: usize = 1024;

/// Parsed requests queued for the emitter. Small: the emitter sends one at a time,
/// and a request that gave up waiting (503) leaves its data queued, so this bounds
/// what such requests hold.
pub const JOB_QUEUE: usize = 4;

pub fn run(
    config: HttpServerConfig,
    token: Option<Token>,
    listener: std::net::TcpListener,
    cx: SourceContext,
) -> Task {
    let SourceContext { cx, out } = cx;
    let (jobs_tx, jobs_rx) = mpsc::channel(JOB_QUEUE);
    let shared = Arc::new(Shared {
        id: cx.id.clone(),
        requests: Arc::new(Semaphore::new(config.max_concurrent_requests)),
        jobs: jobs_tx,
        metrics: cx.metrics.clone(),
        gpids: Arc::new(Gpids::default()),
        token,
        config,
    });
    let shutdown = cx.shutdown.clone();
    let grace = cx.shutdown_timeout;
    let id = cx.id.clone();
    Box::pin(async move {
        let listener = TcpListener::from_std(listener)?;
        tracing::info!(component = %id, address = %listener.local_addr()?, "accepting pushes");
        let emitter = tokio::spawn(emit(out, jobs_rx, id.clone()));
        accept(listener, shared, shutdown, grace).await;
        // Every sender of jobs is gone now: the emitter drains and finishes.
        match emitter.await {
            Ok(Ok(())) | Ok(Err(OutputClosed)) => Ok(()),
            Err(e) => Err(ComponentError::Other(format!("the emitter failed: {e}"))),
        }
    })
}

/// Accepts connections until shutdown, then gives those open `grace` to finish.
async fn accept(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut shutdown: ShutdownSignal,
    grace: Duration,
) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            _ = shutdown.recv() => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            r = listener.accept() => match r {
                Ok((stream, peer)) => {
                    if conns.len() >= MAX_CONNECTIONS {
                        shared.metrics.errors("connection_limit", 1);
                        drop(stream);
                        continue;
                    }
                    conns.spawn(connection(stream, peer, shared.clone(), shutdown.clone()));
                }
                Err(e) => {
                    // Out of descriptors and the like: pause rather than spin.
                    shared.metrics.errors("accept_failed", 1);
                    tracing::debug!(component = %shared.id, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
    drop(listener);
    drop(shared);
    let drained =
        tokio::time::timeout(grace, async { while conns.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::info!(
            connections = conns.len(),
            "shutdown timeout: closing connections still open"
        );
        conns.abort_all();
        while conns.join_next().await.is_some() {}
    }
}

async fn connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    mut shutdown: ShutdownSignal,
) {
    let read_timeout = shared.config.read_timeout.get();
    let svc = service_fn(move |req| handler::handle(shared.clone(), peer, req));
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(read_timeout)
        .serve_connection(TokioIo::new(stream), svc);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = shutdown.recv() => {
            // Finishes the request in progress, closes the connection after it.
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// Sends every job's events and the watermarks, until every job sender is gone.
async fn emit(
    mut out: Output,
    mut jobs: mpsc::Receiver<Job>,
    id: ComponentId,
) -> Result<(), OutputClosed> {
    let mut sent_until = 0u64;
    let mut tick = tokio::time::interval(WATERMARK_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mark = |until: u64| {
        Event::Watermark(Watermark {
            source: id.clone(),
            complete_until_ms: until,
        })
    };
    loop {
        let until = tokio::select! {
            job = jobs.recv() => match job {
                Some(job) => {
                    let end = job.end_ms;
                    if let Err(closed) = send_all(&mut out, job).await {
                        fail_pending(&mut jobs).await;
                        return Err(closed);
                    }
                    end
                }
                None => break,
            },
            _ = tick.tick() => crate::window_clock::now_ms(),
        };
        if until > sent_until {
            sent_until = until;
            if let Err(closed) = out.send(mark(until)).await {
                fail_pending(&mut jobs).await;
                return Err(closed);
            }
        }
    }
    out.send(mark(Watermark::FINISHED)).await
}

async fn send_all(out: &mut Output, job: Job) -> Result<(), OutputClosed> {
    let mut profiles = job.profiles.into_iter();
    while let Some(p) = profiles.next() {
        if let Err(closed) = out.send(Event::Profile(p)).await {
            for mut rest in profiles {
                rest.finalizers.take().resolve(EventStatus::Errored);
            }
            return Err(closed);
        }
    }
    Ok(())
}

/// Nothing downstream runs any more: every request still waiting hears `Errored`.
async fn fail_pending(jobs: &mut mpsc::Receiver<Job>) {
    jobs.close();
    while let Some(job) = jobs.recv().await {
        for mut p in job.profiles {
            p.finalizers.take().resolve(EventStatus::Errored);
        }
    }
}
