//! Driver tests against a scripted service, all under tokio's paused clock: time
//! advances only when every task waits, so delays, timeouts and backoffs are exact
//! and the runs deterministic (seeded rngs everywhere).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use super::*;
use crate::buffer::BoxFuture;
use crate::event::{Batch, BatchReceiver};
use crate::telemetry::Telemetry;
use crate::units::DurationStr;

/// What one attempt of a scripted request does.
#[derive(Clone, Debug)]
enum Step {
    /// Delivers after this long.
    Ok(Duration),
    /// Fails retryably ("http_503") after this long, asking for `retry_after`.
    Fail(Duration, Option<Duration>),
    /// Refuses for good ("http_400") after this long.
    Reject(Duration),
    /// Never answers (the driver's timeout ends it).
    Hang,
    /// A bug in the service.
    Panic,
}

/// A service whose requests are ids with a script of attempts each (no script, or
/// a used-up one: deliver at once). Measures its own concurrency.
#[derive(Default)]
struct Scripted {
    scripts: Mutex<HashMap<u64, VecDeque<Step>>>,
    active: AtomicUsize,
    peak: AtomicUsize,
    /// (id, start) of every attempt, in order.
    calls: Mutex<Vec<(u64, Instant)>>,
    /// Ids in the order they were delivered.
    delivered: Mutex<Vec<u64>>,
    healthcheck_hangs: bool,
}

impl Scripted {
    fn script(&self, id: u64, steps: impl IntoIterator<Item = Step>) {
        self.scripts
            .lock()
            .unwrap()
            .insert(id, steps.into_iter().collect());
    }

    fn calls_of(&self, id: u64) -> Vec<Instant> {
        let calls = self.calls.lock().unwrap();
        calls.iter().filter(|c| c.0 == id).map(|c| c.1).collect()
    }
}

/// Counts an attempt as active until it ends or is cancelled.
struct Active<'a>(&'a Scripted);

impl<'a> Active<'a> {
    fn enter(s: &'a Scripted) -> Self {
        let now = s.active.fetch_add(1, Ordering::SeqCst) + 1;
        s.peak.fetch_max(now, Ordering::SeqCst);
        Active(s)
    }
}

impl Drop for Active<'_> {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Service for Scripted {
    type Request = u64;

    fn call<'a>(&'a self, id: &'a u64) -> BoxFuture<'a, Result<(), DeliveryError>> {
        Box::pin(async move {
            let _active = Active::enter(self);
            self.calls.lock().unwrap().push((*id, Instant::now()));
            let step = self
                .scripts
                .lock()
                .unwrap()
                .get_mut(id)
                .and_then(VecDeque::pop_front)
                .unwrap_or(Step::Ok(Duration::ZERO));
            match step {
                Step::Ok(d) => {
                    tokio::time::sleep(d).await;
                    self.delivered.lock().unwrap().push(*id);
                    Ok(())
                }
                Step::Fail(d, retry_after) => {
                    tokio::time::sleep(d).await;
                    Err(DeliveryError::Retryable {
                        reason: "http_503",
                        message: "service unavailable".into(),
                        retry_after,
                    })
                }
                Step::Reject(d) => {
                    tokio::time::sleep(d).await;
                    Err(DeliveryError::permanent("http_400", "bad request"))
                }
                Step::Hang => std::future::pending().await,
                Step::Panic => panic!("scripted service bug"),
            }
        })
    }

    fn healthcheck(&self) -> BoxFuture<'_, Result<(), DeliveryError>> {
        let hangs = self.healthcheck_hangs;
        Box::pin(async move {
            if hangs {
                std::future::pending::<()>().await;
            }
            Ok(())
        })
    }
}

fn config(concurrency: usize) -> RequestConfig {
    RequestConfig {
        concurrency,
        timeout: DurationStr::from_secs(10),
        retry_initial_backoff: DurationStr::from_secs(1),
        retry_max_backoff: DurationStr::from_secs(8),
        retry_max_elapsed: DurationStr::from_secs(120),
        retry_after_max: DurationStr::from_secs(300),
        retry_jitter: Jitter::Full,
    }
}

fn metrics() -> ComponentMetrics {
    Telemetry::new().component("out", "sink", "test")
}

fn events_of(id: u64) -> u64 {
    1 + id % 5
}

/// Submits requests `ids`, each with a batch of its own and `events_of(id)` events
/// of 100 bytes; returns the receivers by id.
async fn submit_all(
    driver: &mut Driver<Scripted>,
    ids: impl IntoIterator<Item = u64>,
) -> Vec<(u64, BatchReceiver)> {
    let mut out = Vec::new();
    for id in ids {
        let (batch, rx) = Batch::new();
        let events = events_of(id);
        driver
            .submit(id, batch.finalizers(), events, events * 100)
            .await;
        assert!(driver.in_flight() <= driver.concurrency());
        out.push((id, rx));
    }
    out
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Plan {
    /// Delivered at the first attempt.
    Ok,
    /// Fails retryably this many times, then delivered.
    Flaky(u32),
    Reject,
    /// Times out once, then delivered.
    TimesOut,
    /// Fails retryably until `retry_max_elapsed`.
    Down,
}

#[tokio::test(start_paused = true)]
async fn every_request_resolves_once_with_its_outcome_and_metrics_add_up() {
    const N: u64 = 100;
    let mut rng = fastrand::Rng::with_seed(42);
    let service = Scripted::default();
    let mut plans = HashMap::new();
    for id in 0..N {
        let ms = |rng: &mut fastrand::Rng| Duration::from_millis(rng.u64(0..3000));
        let plan = match rng.u32(0..100) {
            0..50 => Plan::Ok,
            50..70 => Plan::Flaky(rng.u32(1..=3)),
            70..82 => Plan::Reject,
            82..92 => Plan::TimesOut,
            _ => Plan::Down,
        };
        let steps: Vec<Step> = match plan {
            Plan::Ok => vec![Step::Ok(ms(&mut rng))],
            Plan::Flaky(k) => {
                let mut steps: Vec<Step> = (0..k).map(|_| Step::Fail(ms(&mut rng), None)).collect();
                steps.push(Step::Ok(ms(&mut rng)));
                steps
            }
            Plan::Reject => vec![Step::Reject(ms(&mut rng))],
            Plan::TimesOut => vec![Step::Hang, Step::Ok(ms(&mut rng))],
            Plan::Down => vec![Step::Fail(Duration::from_secs(1), None); 1000],
        };
        service.script(id, steps);
        plans.insert(id, plan);
    }
    let telemetry = Telemetry::new();
    let m = telemetry.component("out", "sink", "test");
    let mut driver = Driver::new(service, &config(4), m.clone()).with_seed(7);
    let receivers = submit_all(&mut driver, 0..N).await;
    let peak = driver.service().peak.load(Ordering::SeqCst);
    assert!(peak <= 4, "{peak} attempts at once with concurrency 4");
    assert_eq!(peak, 4, "the limit was reached (the test saturates it)");

    let shared = driver.shared.clone();
    let report = driver.flush(Duration::from_secs(3600)).await;
    assert_eq!(
        report,
        FlushReport::default(),
        "all ended before the deadline"
    );
    assert!(report.is_clean());

    let (mut delivered, mut rejected, mut exhausted) = (0, 0, 0);
    let (mut flaky_retries, mut down_retries, mut timeouts) = (0, 0, 0);
    for (id, mut rx) in receivers {
        let events = events_of(id);
        let plan = plans[&id];
        let expected = match plan {
            Plan::Ok | Plan::Flaky(_) | Plan::TimesOut => EventStatus::Delivered,
            Plan::Reject => EventStatus::Rejected,
            Plan::Down => EventStatus::Errored,
        };
        assert_eq!(rx.try_status(), Some(expected), "request {id} ({plan:?})");
        let calls = shared.service.calls_of(id);
        match plan {
            Plan::Ok | Plan::Reject => assert_eq!(calls.len(), 1, "{id}: never retried"),
            Plan::Flaky(k) => {
                assert_eq!(calls.len() as u32, k + 1, "{id}");
                flaky_retries += k as u64;
            }
            Plan::TimesOut => {
                assert_eq!(calls.len(), 2, "{id}");
                assert!(
                    calls[1] - calls[0] >= Duration::from_secs(10),
                    "timeout first"
                );
                timeouts += 1;
            }
            Plan::Down => {
                assert!(calls.len() > 3, "{id}: retried before giving up");
                assert!(*calls.last().unwrap() - calls[0] <= Duration::from_secs(120));
                down_retries += calls.len() as u64 - 1;
            }
        }
        match expected {
            EventStatus::Delivered => delivered += events,
            EventStatus::Rejected => rejected += events,
            EventStatus::Errored => exhausted += events,
        }
    }
    let total: u64 = (0..N).map(events_of).sum();
    assert!(
        delivered > 0 && rejected > 0 && exhausted > 0,
        "every outcome occurs"
    );
    assert_eq!(m.sent_events(), delivered);
    assert_eq!(m.sent_bytes(), delivered * 100);
    assert_eq!(m.rejected_count("http_400"), rejected);
    assert_eq!(m.discarded_count("retries_exhausted"), exhausted);
    assert_eq!(m.discarded_count("shutdown"), 0);
    assert_eq!(
        m.sent_events() + m.rejected_count("http_400") + m.discarded_count("retries_exhausted"),
        total,
        "received = delivered + rejected + dropped"
    );
    assert_eq!(m.retried_count("http_503"), flaky_retries + down_retries);
    assert_eq!(m.retried_count("timeout"), timeouts);
    let requests = m.request_metrics();
    assert_eq!(requests.in_flight(), 0);
    let attempts = shared.service.calls.lock().unwrap().len();
    let text = telemetry.render();
    let line = text
        .lines()
        .find(|l| l.starts_with("profpipe_component_request_duration_seconds_count{"))
        .expect("the attempt histogram is exported");
    assert!(
        line.ends_with(&format!(" {attempts}")),
        "{line}: {attempts} attempts"
    );
    assert!(
        text.contains("profpipe_component_requests_in_flight{"),
        "{text}"
    );
    assert!(
        text.contains("profpipe_component_retried_requests_total{"),
        "{text}"
    );
    assert!(
        text.contains("profpipe_component_rejected_events_total{"),
        "{text}"
    );

    let order = shared.service.delivered.lock().unwrap().clone();
    let mut sorted = order.clone();
    sorted.sort_unstable();
    assert_ne!(order, sorted, "completions came back out of order");
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_honoured_and_capped() {
    let service = Scripted::default();
    let day = Duration::from_secs(86_400);
    service.script(
        0,
        [Step::Fail(Duration::ZERO, Some(Duration::from_secs(7)))],
    );
    service.script(1, [Step::Fail(Duration::ZERO, Some(day))]);
    let m = metrics();
    let mut cfg = config(2);
    cfg.retry_max_elapsed = DurationStr(day * 2);
    let mut driver = Driver::new(service, &cfg, m.clone()).with_seed(1);
    let receivers = submit_all(&mut driver, 0..2).await;
    let shared = driver.shared.clone();
    assert!(driver.flush(day).await.is_clean());
    for (_, rx) in receivers {
        assert_eq!(rx.wait().await, EventStatus::Delivered);
    }
    let calls = shared.service.calls_of(0);
    assert_eq!(
        calls[1] - calls[0],
        Duration::from_secs(7),
        "not before Retry-After (and the <= 1s backoff does not add to it)"
    );
    let calls = shared.service.calls_of(1);
    assert_eq!(
        calls[1] - calls[0],
        Duration::from_secs(300),
        "a day is cut to 5m"
    );
    assert_eq!(m.retried_count("http_503"), 2);
}

#[tokio::test(start_paused = true)]
async fn flush_with_a_short_deadline_resolves_the_stuck_ones_errored() {
    let service = Scripted::default();
    for id in [0, 1] {
        service.script(id, vec![Step::Hang; 100]);
    }
    for id in 2..6 {
        service.script(id, [Step::Ok(Duration::from_millis(100 * id))]);
    }
    let m = metrics();
    let mut driver = Driver::new(service, &config(4), m.clone()).with_seed(3);
    let receivers = submit_all(&mut driver, 0..6).await;
    let service_of_flush = driver.shared.clone();
    let t0 = Instant::now();
    let report = driver.flush(Duration::from_secs(45)).await;
    assert_eq!(
        Instant::now() - t0,
        Duration::from_secs(45),
        "waited the deadline, no more"
    );
    let stuck = events_of(0) + events_of(1);
    assert_eq!(
        report,
        FlushReport {
            undelivered_requests: 2,
            undelivered_events: stuck,
            undelivered_bytes: stuck * 100,
        }
    );
    assert!(!report.is_clean());
    assert_eq!(
        report.to_string(),
        format!(
            "2 request(s) ({stuck} events, {} bytes) still undelivered at the shutdown deadline",
            stuck * 100
        )
    );
    for (id, mut rx) in receivers {
        let expected = if id < 2 {
            EventStatus::Errored
        } else {
            EventStatus::Delivered
        };
        assert_eq!(rx.try_status(), Some(expected), "request {id}");
    }
    assert_eq!(m.discarded_count("shutdown"), stuck);
    let calls = driver_calls(&service_of_flush, [0, 1]);
    assert!(
        calls >= 6,
        "timed out and retried every ~10s: {calls} attempts"
    );
    assert_eq!(
        m.retried_count("timeout"),
        calls - 2,
        "each attempt but the first is a retry"
    );
    assert_eq!(m.request_metrics().in_flight(), 0);
}

/// Attempts made for `ids`.
fn driver_calls(shared: &Shared<Scripted>, ids: impl IntoIterator<Item = u64>) -> u64 {
    ids.into_iter()
        .map(|id| shared.service.calls_of(id).len() as u64)
        .sum()
}

#[tokio::test(start_paused = true)]
async fn a_full_driver_holds_submit_back() {
    let service = Scripted::default();
    for id in 0..3 {
        service.script(id, vec![Step::Hang; 100]);
    }
    let m = metrics();
    let mut driver = Driver::new(service, &config(2), m.clone()).with_seed(5);
    let mut receivers = submit_all(&mut driver, 0..2).await;
    assert_eq!(driver.in_flight(), 2);
    assert_eq!(m.request_metrics().in_flight(), 2);

    let (batch, rx) = Batch::new();
    let third = driver.submit(2, batch.finalizers(), 1, 100);
    drop(batch);
    // (Less than retry_max_elapsed, after which the two would give up.)
    let waited = tokio::time::timeout(Duration::from_secs(60), third).await;
    assert!(waited.is_err(), "submit waits while both slots are taken");
    assert_eq!(
        rx.wait().await,
        EventStatus::Errored,
        "the cancelled submit dropped its tokens"
    );
    assert!(driver.service().peak.load(Ordering::SeqCst) <= 2);
    assert!(driver.service().calls_of(2).is_empty(), "never attempted");

    let report = driver.flush(Duration::ZERO).await;
    assert_eq!(report.undelivered_requests, 2);
    for (_, rx) in receivers.drain(..) {
        assert_eq!(rx.wait().await, EventStatus::Errored);
    }
}

#[tokio::test(start_paused = true)]
async fn a_dropped_driver_still_resolves_its_tokens() {
    let service = Scripted::default();
    service.script(0, vec![Step::Hang; 100]);
    let m = metrics();
    let mut driver = Driver::new(service, &config(2), m.clone()).with_seed(5);
    let receivers = submit_all(&mut driver, 0..1).await;
    drop(driver);
    for (_, rx) in receivers {
        assert_eq!(rx.wait().await, EventStatus::Errored);
    }
    assert_eq!(m.discarded_count("shutdown"), events_of(0));
}

#[tokio::test(start_paused = true)]
async fn healthcheck_is_bounded_by_its_timeout() {
    let ok = Scripted::default();
    assert_eq!(healthcheck(&ok, Duration::from_secs(5)).await, Ok(()));
    let hangs = Scripted {
        healthcheck_hangs: true,
        ..Scripted::default()
    };
    let t0 = Instant::now();
    let err = healthcheck(&hangs, Duration::from_secs(5))
        .await
        .unwrap_err();
    assert_eq!(Instant::now() - t0, Duration::from_secs(5));
    assert_eq!(err.reason(), "timeout");
    assert!(err.is_retryable());
    assert_eq!(err.to_string(), "timeout: no answer within 5s");
}

#[tokio::test(start_paused = true)]
async fn a_panicking_service_costs_only_its_own_request() {
    let service = Scripted::default();
    service.script(1, [Step::Panic]);
    let m = metrics();
    let mut driver = Driver::new(service, &config(2), m.clone()).with_seed(9);
    let receivers = submit_all(&mut driver, 0..3).await;
    let report = driver.flush(Duration::from_secs(60)).await;
    assert!(
        report.is_clean(),
        "a panic is not a shutdown leftover: {report:?}"
    );
    for (id, rx) in receivers {
        let expected = if id == 1 {
            EventStatus::Errored
        } else {
            EventStatus::Delivered
        };
        assert_eq!(rx.wait().await, expected, "request {id}");
    }
    assert_eq!(m.discarded_count("panic"), events_of(1));
    assert_eq!(m.sent_events(), events_of(0) + events_of(2));
    assert_eq!(
        m.request_metrics().in_flight(),
        0,
        "the slot was given back"
    );
}
