//! The sink driver: what every delivering sink (Kafka, S3, HTTP, ...) sends its
//! requests through, so they all behave alike under failure.
//!
//! A sink reads events, builds a request (its encoding, its batching) and calls
//! [`Driver::submit`] with the request and the events' delivery tokens. The driver:
//!
//! - keeps at most `request.concurrency` requests in flight; `submit` waits for a
//!   free slot, so a slow destination stops the sink reading its input
//!   (backpressure, not an unbounded queue);
//! - bounds each attempt by `request.timeout` (a timeout is retryable, "timeout");
//! - retries [`DeliveryError::Retryable`] failures with jittered exponential
//!   backoff ([`retry`]), honouring the destination's `Retry-After`, until the
//!   request has been tried for `request.retry_max_elapsed`;
//! - resolves each request's tokens exactly once: `Delivered` on success,
//!   `Rejected` on a [`DeliveryError::Permanent`] failure, `Errored` when it gave
//!   up (retries exhausted, or the shutdown deadline passed);
//! - counts all of it in the component's metrics.
//!
//! At shutdown the sink drains its input, then calls [`Driver::flush`] with the
//! agent's `shutdown_timeout`; the [`FlushReport`] says what was still undelivered.
//!
//! Requests complete independently: a fast one submitted after a slow one
//! finishes first.

mod config;
mod log_limit;
pub mod retry;
mod service;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::{Id, JoinError, JoinSet};
use tokio::time::Instant;

pub use config::RequestConfig;
pub use retry::{Backoff, Jitter, RetryPolicy};
pub use service::{healthcheck, DeliveryError, Service};

use crate::event::{EventFinalizers, EventStatus};
use crate::telemetry::{ComponentMetrics, RequestMetrics};
use log_limit::LogLimiter;

/// Drives one sink's requests. Owned by the sink's task; `submit` takes `&mut self`
/// because one reader feeds it.
pub struct Driver<S: Service> {
    shared: Arc<Shared<S>>,
    slots: Arc<Semaphore>,
    concurrency: usize,
    tasks: JoinSet<Finished>,
    /// Events and bytes of each running request, to account for a task that panicked.
    running: HashMap<Id, (u64, u64)>,
    /// Set to `true` when requests must stop retrying (flush deadline, drop).
    stop: watch::Sender<bool>,
    /// Seeds each request's own jitter rng.
    rng: fastrand::Rng,
}

/// What the request tasks share.
struct Shared<S> {
    service: S,
    timeout: Duration,
    policy: RetryPolicy,
    metrics: ComponentMetrics,
    requests: RequestMetrics,
    logs: LogLimiter,
}

/// What the requests still undelivered when [`Driver::flush`]'s deadline passed
/// amounted to. Their tokens were resolved `Errored` (the producer keeps the data)
/// and their events counted in `component_discarded_events_total{reason="shutdown"}`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlushReport {
    pub undelivered_requests: u64,
    pub undelivered_events: u64,
    pub undelivered_bytes: u64,
}

impl FlushReport {
    /// True if everything in flight finished before the deadline.
    pub fn is_clean(&self) -> bool {
        self.undelivered_requests == 0
    }

    /// The sink's one WARN line at shutdown, if anything was left undelivered.
    pub fn warn_if_undelivered(&self, component: &str) {
        if !self.is_clean() {
            tracing::warn!(
                component,
                "{self}; resolved as errored (the producer keeps them)"
            );
        }
    }

    fn add(&mut self, events: u64, bytes: u64) {
        self.undelivered_requests += 1;
        self.undelivered_events += events;
        self.undelivered_bytes += bytes;
    }
}

/// One line for the sink's WARN.
impl fmt::Display for FlushReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} request(s) ({} events, {} bytes) still undelivered at the shutdown deadline",
            self.undelivered_requests, self.undelivered_events, self.undelivered_bytes
        )
    }
}

/// How a request ended.
#[derive(Debug)]
enum Ended {
    Delivered,
    Rejected {
        reason: &'static str,
        message: String,
    },
    Exhausted {
        reason: &'static str,
        message: String,
        retries: u32,
    },
    Shutdown,
}

/// What a request task hands back to the driver.
#[derive(Debug)]
struct Finished {
    shutdown: bool,
    events: u64,
    bytes: u64,
}

impl<S: Service> Driver<S> {
    /// A driver for `service`, counting into the sink's `metrics`. The config is
    /// assumed validated (a zero concurrency is raised to 1).
    pub fn new(service: S, config: &RequestConfig, metrics: ComponentMetrics) -> Self {
        let concurrency = config.concurrency.max(1);
        let requests = metrics.request_metrics();
        Driver {
            shared: Arc::new(Shared {
                service,
                timeout: config.timeout(),
                policy: config.retry_policy(),
                metrics,
                requests,
                logs: LogLimiter::default(),
            }),
            slots: Arc::new(Semaphore::new(concurrency)),
            concurrency,
            tasks: JoinSet::new(),
            running: HashMap::new(),
            stop: watch::Sender::new(false),
            rng: fastrand::Rng::new(),
        }
    }

    /// Seeds the jitter, for deterministic tests.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.rng = fastrand::Rng::with_seed(seed);
        self
    }

    pub fn service(&self) -> &S {
        &self.shared.service
    }

    pub fn concurrency(&self) -> usize {
        self.concurrency
    }

    /// Requests holding a slot now (attempting or backing off).
    pub fn in_flight(&self) -> usize {
        self.concurrency - self.slots.available_permits()
    }

    /// Hands over one request carrying `events` events of `bytes` bytes, whose
    /// tokens are `finalizers`. Waits for a free slot (this wait is the sink's
    /// backpressure), then delivers in the background; the tokens are resolved when
    /// the request ends.
    ///
    /// Not cancel safe: cancelling the wait drops the request and its tokens
    /// (which then count as `Errored`).
    pub async fn submit(
        &mut self,
        req: S::Request,
        finalizers: EventFinalizers,
        events: u64,
        bytes: u64,
    ) {
        self.reap();
        let permit = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .expect("the driver never closes its semaphore");
        let seed = self.rng.u64(..);
        // Counted from the moment the slot is taken, not when the task first runs.
        let in_flight = InFlight::new(&self.shared.requests);
        let task = run_request(
            self.shared.clone(),
            (permit, in_flight),
            req,
            finalizers,
            (events, bytes),
            self.stop.subscribe(),
            seed,
        );
        let handle = self.tasks.spawn(task);
        self.running.insert(handle.id(), (events, bytes));
    }

    /// Waits up to `deadline` for the requests in flight; then stops retrying,
    /// resolves what remains `Errored` and reports it.
    pub async fn flush(&mut self, deadline: Duration) -> FlushReport {
        let mut tasks = std::mem::take(&mut self.tasks);
        let mut report = FlushReport::default();
        let timer = tokio::time::sleep(deadline);
        tokio::pin!(timer);
        loop {
            tokio::select! {
                next = tasks.join_next_with_id() => match next {
                    Some(r) => self.account(r, &mut report),
                    None => return report,
                },
                _ = &mut timer => break,
            }
        }
        // Past the deadline: every request still running ends at its next await
        // point (attempt or backoff) and resolves its tokens `Errored`.
        self.stop.send_replace(true);
        while let Some(r) = tasks.join_next_with_id().await {
            self.account(r, &mut report);
        }
        report
    }

    /// The service back, once [`flush`](Self::flush) has ended every request
    /// (`None` if one still holds it).
    pub fn into_service(self) -> Option<S> {
        let shared = self.shared.clone();
        drop(self);
        Arc::into_inner(shared).map(|s| s.service)
    }

    /// Collects requests that ended, so the task set does not grow.
    fn reap(&mut self) {
        let mut ignored = FlushReport::default();
        while let Some(r) = self.tasks.try_join_next_with_id() {
            self.account(r, &mut ignored);
        }
    }

    fn account(&mut self, r: Result<(Id, Finished), JoinError>, report: &mut FlushReport) {
        // (A request that ended by itself is not in the report: it was delivered,
        // rejected or gave up, and was counted and logged as such.)
        match r {
            Ok((id, f)) => {
                self.running.remove(&id);
                if f.shutdown {
                    report.add(f.events, f.bytes);
                }
            }
            Err(e) => {
                // A service that panicked: its tokens were dropped (so `Errored`).
                let (events, bytes) = self.running.remove(&e.id()).unwrap_or_default();
                let m = &self.shared.metrics;
                m.discarded_many("panic", events, bytes);
                // Logged here at ERROR, counted as `panic`; not a shutdown leftover.
                tracing::error!(component = m.id(), events, "sink request task failed: {e}");
            }
        }
    }
}

/// A driver dropped without `flush` (its sink's task was aborted): stop retrying
/// and let the requests resolve their tokens themselves instead of aborting them
/// with their tokens unresolved.
impl<S: Service> Drop for Driver<S> {
    fn drop(&mut self) {
        self.stop.send_replace(true);
        self.tasks.detach_all();
    }
}

/// Counts a request in `component_requests_in_flight` for as long as it lives,
/// panics included.
struct InFlight(RequestMetrics);

impl InFlight {
    fn new(m: &RequestMetrics) -> Self {
        m.start();
        InFlight(m.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.finish();
    }
}

/// One request, from its first attempt to its tokens' resolution. The slot
/// (`_slot`) is given back only after the tokens are resolved.
async fn run_request<S: Service>(
    shared: Arc<Shared<S>>,
    _slot: (OwnedSemaphorePermit, InFlight),
    req: S::Request,
    finalizers: EventFinalizers,
    (events, bytes): (u64, u64),
    mut stop: watch::Receiver<bool>,
    seed: u64,
) -> Finished {
    let s = &*shared;
    let ended = attempts(s, &req, &mut stop, seed).await;
    let m = &s.metrics;
    let shutdown = matches!(ended, Ended::Shutdown);
    match ended {
        Ended::Delivered => {
            finalizers.resolve(EventStatus::Delivered);
            m.sent_many(events, bytes);
        }
        Ended::Rejected { reason, message } => {
            finalizers.resolve(EventStatus::Rejected);
            m.rejected(reason, events);
            s.warn("rejected", reason, events, || {
                format!("destination refused a request for good, its events are dropped: {message}")
            });
        }
        Ended::Exhausted {
            reason,
            message,
            retries,
        } => {
            m.note_delivery_error(&message);
            finalizers.resolve(EventStatus::Errored);
            m.discarded_many("retries_exhausted", events, bytes);
            s.warn("retries_exhausted", reason, events, || {
                format!(
                    "request given up after {retries} retries within {}: {message}",
                    humantime::format_duration(s.policy.max_elapsed)
                )
            });
        }
        Ended::Shutdown => {
            // Counted and reported by `flush`, which the sink logs once.
            finalizers.resolve(EventStatus::Errored);
            m.discarded_many("shutdown", events, bytes);
        }
    }
    Finished {
        shutdown,
        events,
        bytes,
    }
}

/// The attempt loop.
async fn attempts<S: Service>(
    s: &Shared<S>,
    req: &S::Request,
    stop: &mut watch::Receiver<bool>,
    seed: u64,
) -> Ended {
    let mut backoff = Backoff::new(s.policy, fastrand::Rng::with_seed(seed));
    loop {
        let started = Instant::now();
        let attempt = tokio::time::timeout(s.timeout, s.service.call(req));
        let result = tokio::select! {
            biased;
            _ = stopped(stop) => return Ended::Shutdown,
            r = attempt => r,
        };
        s.requests.observe_attempt(started.elapsed());
        let error = match result {
            Ok(Ok(())) => return Ended::Delivered,
            Ok(Err(e)) => e,
            Err(_) => DeliveryError::Retryable {
                reason: "timeout",
                message: format!("no answer within {}", humantime::format_duration(s.timeout)),
                retry_after: None,
            },
        };
        let (reason, message, retry_after) = match error {
            DeliveryError::Permanent { reason, message } => {
                return Ended::Rejected { reason, message }
            }
            DeliveryError::Retryable {
                reason,
                message,
                retry_after,
            } => (reason, message, retry_after),
        };
        let Some(delay) = backoff.next_delay(retry_after) else {
            return Ended::Exhausted {
                reason,
                message,
                retries: backoff.retries(),
            };
        };
        tracing::debug!(
            component = s.metrics.id(),
            reason,
            ?delay,
            "retrying a request: {message}"
        );
        tokio::select! {
            biased;
            _ = stopped(stop) => return Ended::Shutdown,
            _ = tokio::time::sleep(delay) => {}
        }
        s.metrics.retried(reason);
    }
}

/// Resolves once requests must stop (or the driver is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

impl<S> Shared<S> {
    /// WARN, at most once per (kind, reason) per interval; DEBUG otherwise.
    fn warn(
        &self,
        kind: &'static str,
        reason: &'static str,
        events: u64,
        what: impl FnOnce() -> String,
    ) {
        let id = self.metrics.id();
        match self.logs.check(kind, reason) {
            Some(0) => tracing::warn!(component = id, reason, events, "{}", what()),
            Some(suppressed) => tracing::warn!(
                component = id,
                reason,
                events,
                "{} ({suppressed} more like this since the last warning)",
                what()
            ),
            None => tracing::debug!(component = id, reason, events, "{}", what()),
        }
    }
}
