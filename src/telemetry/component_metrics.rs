//! The counters of one component.

use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;

use super::families::{ComponentLabels, DiscardLabels, Families};

#[derive(Clone)]
pub struct ComponentMetrics {
    families: Arc<Families>,
    labels: ComponentLabels,
    received_events: Counter,
    received_bytes: Counter,
    sent_events: Counter,
    sent_bytes: Counter,
    buffer_bytes: Gauge,
    buffer_max_bytes: Gauge,
    buffer_peak_bytes: Gauge,
}

impl ComponentMetrics {
    pub(super) fn new(families: Arc<Families>, labels: ComponentLabels) -> Self {
        let f = &*families;
        let received_events = f.received_events.get_or_create_owned(&labels);
        let received_bytes = f.received_bytes.get_or_create_owned(&labels);
        let sent_events = f.sent_events.get_or_create_owned(&labels);
        let sent_bytes = f.sent_bytes.get_or_create_owned(&labels);
        let buffer_bytes = f.buffer_bytes.get_or_create_owned(&labels);
        let buffer_max_bytes = f.buffer_max_bytes.get_or_create_owned(&labels);
        let buffer_peak_bytes = f.buffer_peak_bytes.get_or_create_owned(&labels);
        ComponentMetrics {
            families,
            labels,
            received_events,
            received_bytes,
            sent_events,
            sent_bytes,
            buffer_bytes,
            buffer_max_bytes,
            buffer_peak_bytes,
        }
    }

    pub fn id(&self) -> &str {
        &self.labels.component_id
    }

    pub fn received(&self, bytes: usize) {
        self.received_events.inc();
        self.received_bytes.inc_by(bytes as u64);
    }

    pub fn sent(&self, bytes: usize) {
        self.sent_events.inc();
        self.sent_bytes.inc_by(bytes as u64);
    }

    pub fn sent_many(&self, events: u64, bytes: u64) {
        self.sent_events.inc_by(events);
        self.sent_bytes.inc_by(bytes);
    }

    fn discard_labels(&self, reason: &str) -> DiscardLabels {
        DiscardLabels {
            component_id: self.labels.component_id.clone(),
            component_kind: self.labels.component_kind.clone(),
            component_type: self.labels.component_type.clone(),
            reason: reason.to_string(),
        }
    }

    /// Counts a discarded event. Rare path: looks the reason up each time.
    pub fn discarded(&self, reason: &str, bytes: usize) {
        let l = self.discard_labels(reason);
        self.families.discarded_events.get_or_create(&l).inc();
        self.families
            .discarded_bytes
            .get_or_create(&l)
            .inc_by(bytes as u64);
    }

    /// Counts `events` discarded at once (a sink request given up), with their bytes.
    pub fn discarded_many(&self, reason: &str, events: u64, bytes: u64) {
        let l = self.discard_labels(reason);
        self.families
            .discarded_events
            .get_or_create(&l)
            .inc_by(events);
        self.families
            .discarded_bytes
            .get_or_create(&l)
            .inc_by(bytes);
    }

    /// Counts a sink request attempted again after a retryable failure.
    pub fn retried(&self, reason: &str) {
        let l = self.discard_labels(reason);
        self.families.retried_requests.get_or_create(&l).inc();
    }

    /// Counts `events` a destination refused for good.
    pub fn rejected(&self, reason: &str, events: u64) {
        let l = self.discard_labels(reason);
        self.families
            .rejected_events
            .get_or_create(&l)
            .inc_by(events);
    }

    /// The request gauges of this component, created on first use so components
    /// that send no requests export no empty histograms.
    pub fn request_metrics(&self) -> RequestMetrics {
        RequestMetrics {
            in_flight: self
                .families
                .requests_in_flight
                .get_or_create_owned(&self.labels),
            duration: self
                .families
                .request_duration
                .get_or_create_owned(&self.labels),
        }
    }

    /// Counts `n` errors of one kind (malformed lines, failed writes, ...).
    pub fn errors(&self, reason: &str, n: u64) {
        if n > 0 {
            let l = self.discard_labels(reason);
            self.families.errors.get_or_create(&l).inc_by(n);
        }
    }

    /// Counts events that arrived after their window's watermark (written on their
    /// own, not lost): rare for local profilers, normal behind a push gateway.
    pub fn late(&self, n: u64) {
        self.families
            .late_events
            .get_or_create(&self.labels)
            .inc_by(n);
    }

    pub fn late_count(&self) -> u64 {
        self.families.late_events.get_or_create(&self.labels).get()
    }

    /// Counts entries evicted from one of the component's bounded caches (`reason`
    /// names the cache: `python_files`, `app_ids`, ...).
    pub fn cache_evictions(&self, cache: &str, n: u64) {
        if n > 0 {
            let l = self.discard_labels(cache);
            self.families.cache_evictions.get_or_create(&l).inc_by(n);
        }
    }

    pub fn cache_eviction_count(&self, cache: &str) -> u64 {
        self.families
            .cache_evictions
            .get_or_create(&self.discard_labels(cache))
            .get()
    }

    /// Counts stacks removed or merged inside events (not whole events).
    pub fn dropped_stacks(&self, reason: &str, n: u64) {
        if n > 0 {
            let l = self.discard_labels(reason);
            self.families.dropped_stacks.get_or_create(&l).inc_by(n);
        }
    }

    pub fn dropped_stack_count(&self, reason: &str) -> u64 {
        self.families
            .dropped_stacks
            .get_or_create(&self.discard_labels(reason))
            .get()
    }

    pub fn set_buffer_bytes(&self, bytes: u64) {
        let b = bytes.min(i64::MAX as u64) as i64;
        self.buffer_bytes.set(b);
        let peak = &self.buffer_peak_bytes;
        // Gauges have no fetch_max; a racy max is fine because both racers are
        // bounded by the same budget and the peak is a report, not a control.
        if b > peak.get() {
            peak.set(b);
        }
    }

    /// The counters of this component's disk buffer.
    /// Remembers the last delivery error of this sink (the last only; cut to 300
    /// bytes), for its disk buffer to quote when it dead-letters a record.
    pub fn note_delivery_error(&self, message: &str) {
        let mut end = message.len().min(300);
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        let mut map = self
            .families
            .disk
            .last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        map.insert(
            self.labels.component_id.to_string(),
            message[..end].to_string(),
        );
    }

    pub fn disk_buffer(&self) -> super::DiskBufferMetrics {
        super::DiskBufferMetrics::new(&self.families.disk, self.labels.clone())
    }

    /// The metrics of this component's symbol caches (the perf source's).
    pub fn symbol_cache(&self) -> super::SymbolCacheMetrics {
        super::SymbolCacheMetrics::new(&self.families.symbols, &self.labels)
    }

    pub fn set_buffer_max_bytes(&self, bytes: u64) {
        self.buffer_max_bytes.set(bytes.min(i64::MAX as u64) as i64);
    }

    // Readers, for tests and reports.
    pub fn received_events(&self) -> u64 {
        self.received_events.get()
    }
    pub fn sent_events(&self) -> u64 {
        self.sent_events.get()
    }
    pub fn discarded_events(&self) -> u64 {
        let mut total = 0;
        for reason in ["buffer_full", "memory_limit", "overflow"] {
            let l = self.discard_labels(reason);
            total += self.families.discarded_events.get_or_create(&l).get();
        }
        total
    }
    pub fn sent_bytes(&self) -> u64 {
        self.sent_bytes.get()
    }
    pub fn discarded_count(&self, reason: &str) -> u64 {
        let l = self.discard_labels(reason);
        self.families.discarded_events.get_or_create(&l).get()
    }
    pub fn retried_count(&self, reason: &str) -> u64 {
        let l = self.discard_labels(reason);
        self.families.retried_requests.get_or_create(&l).get()
    }
    pub fn rejected_count(&self, reason: &str) -> u64 {
        let l = self.discard_labels(reason);
        self.families.rejected_events.get_or_create(&l).get()
    }
    pub fn error_count(&self, reason: &str) -> u64 {
        self.families
            .errors
            .get_or_create(&self.discard_labels(reason))
            .get()
    }
    pub fn buffer_peak_bytes(&self) -> u64 {
        self.buffer_peak_bytes.get().max(0) as u64
    }
    pub fn buffer_max_bytes(&self) -> u64 {
        self.buffer_max_bytes.get().max(0) as u64
    }
}

/// Per-request gauges of one sink, looked up once by its driver.
#[derive(Clone, Debug)]
pub struct RequestMetrics {
    in_flight: Gauge,
    duration: Histogram,
}

impl RequestMetrics {
    /// One more request holds a concurrency slot.
    pub fn start(&self) {
        self.in_flight.inc();
    }
    /// A request gave its slot back.
    pub fn finish(&self) {
        self.in_flight.dec();
    }
    /// Records the latency of one attempt.
    pub fn observe_attempt(&self, took: std::time::Duration) {
        self.duration.observe(took.as_secs_f64());
    }
    pub fn in_flight(&self) -> i64 {
        self.in_flight.get()
    }
}
