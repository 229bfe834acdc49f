//! The label sets and the metric families they key: the data both the agent's
//! [`super::Telemetry`] and each component's counters write to.

use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ComponentLabels {
    pub component_id: String,
    pub component_kind: String,
    pub component_type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProfilerErrorLabels {
    pub profiler: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DiscardLabels {
    pub component_id: String,
    pub component_kind: String,
    pub component_type: String,
    pub reason: String,
}

/// Every metric family, shared by [`super::Telemetry`] and each component's
/// [`super::ComponentMetrics`].
pub(super) struct Families {
    pub(super) registry: Mutex<Registry>,
    pub(super) received_events: Family<ComponentLabels, Counter>,
    pub(super) received_bytes: Family<ComponentLabels, Counter>,
    pub(super) sent_events: Family<ComponentLabels, Counter>,
    pub(super) sent_bytes: Family<ComponentLabels, Counter>,
    pub(super) discarded_events: Family<DiscardLabels, Counter>,
    pub(super) discarded_bytes: Family<DiscardLabels, Counter>,
    pub(super) errors: Family<DiscardLabels, Counter>,
    pub(super) dropped_stacks: Family<DiscardLabels, Counter>,
    pub(super) late_events: Family<ComponentLabels, Counter>,
    pub(super) cache_evictions: Family<DiscardLabels, Counter>,
    pub(super) profiler_errors: Family<ProfilerErrorLabels, Counter>,
    pub(super) buffer_bytes: Family<ComponentLabels, Gauge>,
    pub(super) buffer_max_bytes: Family<ComponentLabels, Gauge>,
    pub(super) buffer_peak_bytes: Family<ComponentLabels, Gauge>,
    pub(super) retried_requests: Family<DiscardLabels, Counter>,
    pub(super) rejected_events: Family<DiscardLabels, Counter>,
    pub(super) request_duration: Family<ComponentLabels, Histogram, fn() -> Histogram>,
    pub(super) requests_in_flight: Family<ComponentLabels, Gauge>,
    pub(super) disk: DiskFamilies,
    pub(super) symbols: super::symbol_cache::SymbolFamilies,
    pub(super) process: super::process::ProcessGauges,
}

/// The disk buffers' families (see [`super::DiskBufferMetrics`]).
#[derive(Default)]
pub(super) struct DiskFamilies {
    pub(super) bytes: Family<ComponentLabels, Gauge>,
    pub(super) records: Family<ComponentLabels, Gauge>,
    pub(super) oldest_age: Family<ComponentLabels, Gauge>,
    pub(super) written: Family<ComponentLabels, Counter>,
    pub(super) replayed: Family<ComponentLabels, Counter>,
    pub(super) redelivered: Family<ComponentLabels, Counter>,
    pub(super) corrupted: Family<DiscardLabels, Counter>,
    pub(super) dead_lettered: Family<ComponentLabels, Counter>,
    pub(super) dead_letter_dropped: Family<ComponentLabels, Counter>,
    pub(super) dead_letter_bytes: Family<ComponentLabels, Gauge>,
    /// The last delivery error each sink reported, by component id: the disk
    /// buffer quotes it when it gives a record up to its dead-letter file. One
    /// short string per sink.
    pub(super) last_error:
        std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, String>>>,
}

impl DiskFamilies {
    pub(super) fn register(&self, r: &mut Registry) {
        r.register(
            "buffer_disk_bytes",
            "Bytes of the disk buffer's files (segments and ledger)",
            self.bytes.clone(),
        );
        r.register(
            "buffer_disk_records",
            "Records in the disk buffer not yet acknowledged by the sink",
            self.records.clone(),
        );
        r.register(
            "buffer_disk_oldest_record_age_seconds",
            "Age of the oldest record not yet acknowledged (0 when none)",
            self.oldest_age.clone(),
        );
        r.register(
            "buffer_disk_records_written",
            "Records written to the disk buffer",
            self.written.clone(),
        );
        r.register(
            "buffer_disk_records_replayed",
            "Records read back that an earlier run of the agent had written",
            self.replayed.clone(),
        );
        r.register(
            "buffer_disk_records_redelivered",
            "Records handed to the sink again after it reported them errored",
            self.redelivered.clone(),
        );
        r.register(
            "buffer_disk_records_corrupted",
            "Records that could not be read back, by reason (checksum, header, torn, missing, ...)",
            self.corrupted.clone(),
        );
        r.register(
            "buffer_disk_dead_lettered_records",
            "Records moved to the dead-letter file after failing max_attempts times (or past max_record_age) while others were delivered",
            self.dead_lettered.clone(),
        );
        r.register(
            "buffer_disk_dead_letter_dropped_records",
            "Records that were due for the dead-letter file but did not fit in its max_bytes: dropped",
            self.dead_letter_dropped.clone(),
        );
        r.register(
            "buffer_disk_dead_letter_bytes",
            "Bytes of the disk buffer's dead-letter file",
            self.dead_letter_bytes.clone(),
        );
    }
}

/// Attempt latency buckets: 5ms to ~82s (a 30s timeout lands in a bucket of its own).
pub(super) fn request_duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 15))
}
