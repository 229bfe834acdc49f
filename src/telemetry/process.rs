//! The agent's own resource use: resident memory and open file descriptors, read
//! from /proc/self at each scrape. These are the figures gProfiler's operators had to
//! alert on (2.8 GB RSS, 3,000 leaked pipes).

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Default)]
pub(super) struct ProcessGauges {
    rss_bytes: Gauge,
    open_fds: Gauge,
    /// Delivery tokens dropped without an outcome (each counted as not delivered):
    /// non-zero means a component lost events, a bug worth an alert.
    unresolved_tokens: Counter,
}

impl ProcessGauges {
    pub(super) fn register(&self, r: &mut Registry) {
        r.register(
            "process_resident_memory_bytes",
            "Resident set size of the agent",
            self.rss_bytes.clone(),
        );
        r.register(
            "process_open_fds",
            "Open file descriptors of the agent",
            self.open_fds.clone(),
        );
        r.register(
            "delivery_tokens_unresolved",
            "Delivery tokens dropped without an outcome (counted as not delivered)",
            self.unresolved_tokens.clone(),
        );
    }

    pub(super) fn refresh(&self) {
        if let Some(rss) = resident_bytes() {
            self.rss_bytes.set(rss as i64);
        }
        if let Some(n) = open_fds() {
            self.open_fds.set(n as i64);
        }
        let seen = crate::event::finalization::unresolved_tokens();
        let shown = self.unresolved_tokens.get();
        self.unresolved_tokens.inc_by(seen.saturating_sub(shown));
    }
}

/// VmRSS of this process, in bytes.
pub fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Number of entries in /proc/self/fd (minus the one used to read it).
pub fn open_fds() -> Option<u64> {
    let n = std::fs::read_dir("/proc/self/fd").ok()?.count() as u64;
    Some(n.saturating_sub(1))
}
