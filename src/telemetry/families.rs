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
    pub(super) profiler_errors: Family<ProfilerErrorLabels, Counter>,
    pub(super) buffer_bytes: Family<ComponentLabels, Gauge>,
    pub(super) buffer_max_bytes: Family<ComponentLabels, Gauge>,
    pub(super) buffer_peak_bytes: Family<ComponentLabels, Gauge>,
    pub(super) retried_requests: Family<DiscardLabels, Counter>,
    pub(super) rejected_events: Family<DiscardLabels, Counter>,
    pub(super) request_duration: Family<ComponentLabels, Histogram, fn() -> Histogram>,
    pub(super) requests_in_flight: Family<ComponentLabels, Gauge>,
    pub(super) disk: super::disk_buffer::DiskFamilies,
    pub(super) process: super::process::ProcessGauges,
}

/// Attempt latency buckets: 5ms to ~82s (a 30s timeout lands in a bucket of its own).
pub(super) fn request_duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 15))
}
