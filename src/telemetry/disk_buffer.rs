//! The metrics of a disk buffer: `profpipe_buffer_disk_bytes`,
//! `profpipe_buffer_disk_records`, `profpipe_buffer_disk_oldest_record_age_seconds`,
//! `profpipe_buffer_disk_records_{written,replayed,redelivered}_total` and
//! `profpipe_buffer_disk_records_corrupted_total{reason}`, and the dead-letter
//! file's `profpipe_buffer_disk_dead_lettered_records_total`,
//! `profpipe_buffer_disk_dead_letter_dropped_records_total` and
//! `profpipe_buffer_disk_dead_letter_bytes`. Records dropped at the
//! limit are `component_discarded_events_total{reason}` like any buffer's.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use super::families::{ComponentLabels, DiscardLabels, DiskFamilies};

/// One disk buffer's metrics. Cheap to clone.
#[derive(Clone)]
pub struct DiskBufferMetrics {
    corrupted: Family<DiscardLabels, Counter>,
    labels: ComponentLabels,
    bytes: Gauge,
    records: Gauge,
    oldest_age: Gauge,
    written: Counter,
    replayed: Counter,
    redelivered: Counter,
    dead_lettered: Counter,
    dead_letter_dropped: Counter,
    dead_letter_bytes: Gauge,
    last_error: LastErrors,
}

type LastErrors = std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, String>>>;

impl DiskBufferMetrics {
    pub(super) fn new(d: &DiskFamilies, labels: ComponentLabels) -> Self {
        DiskBufferMetrics {
            bytes: d.bytes.get_or_create_owned(&labels),
            records: d.records.get_or_create_owned(&labels),
            oldest_age: d.oldest_age.get_or_create_owned(&labels),
            written: d.written.get_or_create_owned(&labels),
            replayed: d.replayed.get_or_create_owned(&labels),
            redelivered: d.redelivered.get_or_create_owned(&labels),
            dead_lettered: d.dead_lettered.get_or_create_owned(&labels),
            dead_letter_dropped: d.dead_letter_dropped.get_or_create_owned(&labels),
            dead_letter_bytes: d.dead_letter_bytes.get_or_create_owned(&labels),
            corrupted: d.corrupted.clone(),
            last_error: d.last_error.clone(),
            labels,
        }
    }

    fn reason(&self, reason: &str) -> DiscardLabels {
        DiscardLabels {
            component_id: self.labels.component_id.clone(),
            component_kind: self.labels.component_kind.clone(),
            component_type: self.labels.component_type.clone(),
            reason: reason.to_string(),
        }
    }

    pub fn set_disk(&self, bytes: u64, records: u64, oldest_age_s: u64) {
        self.bytes.set(bytes.min(i64::MAX as u64) as i64);
        self.records.set(records.min(i64::MAX as u64) as i64);
        self.oldest_age
            .set(oldest_age_s.min(i64::MAX as u64) as i64);
    }
    pub fn written(&self) {
        self.written.inc();
    }
    pub fn replayed(&self) {
        self.replayed.inc();
    }
    pub fn redelivered(&self) {
        self.redelivered.inc();
    }
    pub fn corrupted(&self, reason: &str, n: u64) {
        self.corrupted.get_or_create(&self.reason(reason)).inc_by(n);
    }
    pub fn dead_lettered(&self) {
        self.dead_lettered.inc();
    }
    pub fn dead_letter_dropped(&self) {
        self.dead_letter_dropped.inc();
    }
    pub fn set_dead_letter_bytes(&self, bytes: u64) {
        self.dead_letter_bytes
            .set(bytes.min(i64::MAX as u64) as i64);
    }
    /// The last delivery error the sink in front of this buffer reported, if any.
    pub fn last_delivery_error(&self) -> Option<String> {
        let map = self.last_error.lock().unwrap_or_else(|e| e.into_inner());
        map.get(&*self.labels.component_id).cloned()
    }

    // Readers, for tests and reports.
    pub fn disk_bytes(&self) -> u64 {
        self.bytes.get().max(0) as u64
    }
    pub fn records(&self) -> u64 {
        self.records.get().max(0) as u64
    }
    pub fn written_count(&self) -> u64 {
        self.written.get()
    }
    pub fn replayed_count(&self) -> u64 {
        self.replayed.get()
    }
    pub fn redelivered_count(&self) -> u64 {
        self.redelivered.get()
    }
    pub fn dead_lettered_count(&self) -> u64 {
        self.dead_lettered.get()
    }
    pub fn dead_letter_dropped_count(&self) -> u64 {
        self.dead_letter_dropped.get()
    }
    pub fn dead_letter_bytes(&self) -> u64 {
        self.dead_letter_bytes.get().max(0) as u64
    }
    pub fn corrupted_count(&self, reason: &str) -> u64 {
        self.corrupted.get_or_create(&self.reason(reason)).get()
    }
}
