//! Metrics, named after Vector's component spec and prefixed `profpipe_`:
//! `component_received_events_total`, `component_sent_events_total`,
//! `component_discarded_events_total{reason}` (and their `_event_bytes_total`
//! twins), `buffer_size_bytes`, `buffer_max_bytes`, `buffer_peak_bytes`, plus the
//! process's own RSS and open fds. Delivering sinks (through `sinks::driver`) add
//! `component_retried_requests_total{reason}`, `component_rejected_events_total{reason}`,
//! `component_request_duration_seconds` (attempt latency) and
//! `component_requests_in_flight`. Disk buffers add `buffer_disk_*` (see
//! [`DiskBufferMetrics`]). Exposed in Prometheus text format by
//! [`server::serve`] when `[telemetry] listen` is set.

mod component_metrics;
mod disk_buffer;
mod families;
mod process;
mod rate_limited;
pub mod server;
mod symbol_cache;

use std::sync::{Arc, Mutex};

use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

pub use component_metrics::{ComponentMetrics, RequestMetrics};
pub use disk_buffer::DiskBufferMetrics;
use families::{request_duration_histogram, Families};
pub use families::{ComponentLabels, DiscardLabels, ProfilerErrorLabels};
pub use rate_limited::RateLimited;
pub use symbol_cache::{SymbolCacheFigures, SymbolCacheMetrics};

/// All metric families of one agent. Cheap to clone.
#[derive(Clone)]
pub struct Telemetry {
    inner: Arc<Families>,
}

impl Default for Telemetry {
    fn default() -> Self {
        Self::new()
    }
}

impl Telemetry {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("profpipe");
        let f = Families {
            received_events: Family::default(),
            received_bytes: Family::default(),
            sent_events: Family::default(),
            sent_bytes: Family::default(),
            discarded_events: Family::default(),
            discarded_bytes: Family::default(),
            errors: Family::default(),
            dropped_stacks: Family::default(),
            late_events: Family::default(),
            cache_evictions: Family::default(),
            profiler_errors: Family::default(),
            buffer_bytes: Family::default(),
            buffer_max_bytes: Family::default(),
            buffer_peak_bytes: Family::default(),
            retried_requests: Family::default(),
            rejected_events: Family::default(),
            request_duration: Family::new_with_constructor(request_duration_histogram),
            requests_in_flight: Family::default(),
            process: process::ProcessGauges::default(),
            disk: Default::default(),
            symbols: Default::default(),
            registry: Mutex::new(Registry::default()),
        };
        registry.register(
            "component_received_events",
            "Events offered to the component's input",
            f.received_events.clone(),
        );
        registry.register(
            "component_received_event_bytes",
            "Bytes of events offered to the component's input",
            f.received_bytes.clone(),
        );
        registry.register(
            "component_sent_events",
            "Events the component emitted (sinks: delivered)",
            f.sent_events.clone(),
        );
        registry.register(
            "component_sent_event_bytes",
            "Bytes of events the component emitted (sinks: delivered)",
            f.sent_bytes.clone(),
        );
        registry.register(
            "component_discarded_events",
            "Events discarded, by reason",
            f.discarded_events.clone(),
        );
        registry.register(
            "component_discarded_event_bytes",
            "Bytes of events discarded, by reason",
            f.discarded_bytes.clone(),
        );
        registry.register(
            "component_errors",
            "Errors by reason (malformed input lines, failed writes, ...)",
            f.errors.clone(),
        );
        registry.register(
            "component_dropped_stacks",
            "Stacks removed or merged inside events, by reason (filtered, overflow)",
            f.dropped_stacks.clone(),
        );
        registry.register(
            "component_late_events",
            "Events that arrived after their window was complete; written on their own, not lost",
            f.late_events.clone(),
        );
        registry.register(
            "component_cache_evictions",
            "Entries evicted from a component's bounded cache at its bound, by cache (reason)",
            f.cache_evictions.clone(),
        );
        registry.register(
            "profiler_errors",
            "Profiler runs that failed, by profiler and reason class",
            f.profiler_errors.clone(),
        );
        registry.register(
            "buffer_size_bytes",
            "Bytes of events waiting in the component's input buffer",
            f.buffer_bytes.clone(),
        );
        registry.register(
            "buffer_max_bytes",
            "Capacity of the component's input buffer",
            f.buffer_max_bytes.clone(),
        );
        registry.register(
            "buffer_peak_bytes",
            "Highest value buffer_size_bytes has reached",
            f.buffer_peak_bytes.clone(),
        );
        registry.register(
            "component_retried_requests",
            "Sink requests attempted again after a retryable failure, by reason",
            f.retried_requests.clone(),
        );
        registry.register(
            "component_rejected_events",
            "Events a destination refused for good (never retried), by reason",
            f.rejected_events.clone(),
        );
        registry.register(
            "component_request_duration_seconds",
            "Duration of one delivery attempt of a sink request",
            f.request_duration.clone(),
        );
        registry.register(
            "component_requests_in_flight",
            "Sink requests holding a concurrency slot (attempting or backing off)",
            f.requests_in_flight.clone(),
        );
        f.disk.register(&mut registry);
        f.symbols.register(&mut registry);
        f.process.register(&mut registry);
        *f.registry.lock().unwrap() = registry;
        Telemetry { inner: Arc::new(f) }
    }

    /// The counters of one component, labelled with its id, kind ("source",
    /// "transform", "sink") and type ("file", "fold", ...).
    pub fn component(&self, id: &str, kind: &str, ty: &str) -> ComponentMetrics {
        ComponentMetrics::new(
            self.inner.clone(),
            ComponentLabels {
                component_id: id.to_string(),
                component_kind: kind.to_string(),
                component_type: ty.to_string(),
            },
        )
    }

    /// Counts a failed profiler run in `profpipe_profiler_errors_total`.
    pub fn profiler_error(&self, profiler: &str, reason: &str) {
        self.inner
            .profiler_errors
            .get_or_create(&ProfilerErrorLabels {
                profiler: profiler.to_string(),
                reason: reason.to_string(),
            })
            .inc();
    }

    /// Reads `profpipe_profiler_errors_total{profiler,reason}`.
    pub fn profiler_errors(&self, profiler: &str, reason: &str) -> u64 {
        self.inner
            .profiler_errors
            .get_or_create(&ProfilerErrorLabels {
                profiler: profiler.to_string(),
                reason: reason.to_string(),
            })
            .get()
    }

    /// Registers a metric that a component defines itself (e.g. per-profiler errors).
    pub fn register(
        &self,
        name: &str,
        help: &str,
        metric: impl prometheus_client::registry::Metric,
    ) {
        self.inner
            .registry
            .lock()
            .unwrap()
            .register(name, help, metric);
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        self.inner.process.refresh();
        let mut out = String::new();
        let reg = self.inner.registry.lock().unwrap();
        prometheus_client::encoding::text::encode(&mut out, &reg)
            .expect("writing to a String cannot fail");
        out
    }
}
