//! The metrics of an in-process symbolizer's caches (the perf source's):
//! `profpipe_symbol_cache_bytes`, `profpipe_symbol_cache_kernel_bytes`,
//! `profpipe_symbol_cache_files`,
//! `profpipe_symbol_cache_perf_maps` and the totals
//! `profpipe_symbol_cache_{hits,misses,evictions,load_failures}_total`.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::families::ComponentLabels;

#[derive(Default)]
pub(super) struct SymbolFamilies {
    bytes: Family<ComponentLabels, Gauge>,
    kernel_bytes: Family<ComponentLabels, Gauge>,
    files: Family<ComponentLabels, Gauge>,
    perf_maps: Family<ComponentLabels, Gauge>,
    hits: Family<ComponentLabels, Counter>,
    misses: Family<ComponentLabels, Counter>,
    evictions: Family<ComponentLabels, Counter>,
    load_failures: Family<ComponentLabels, Counter>,
}

impl SymbolFamilies {
    pub(super) fn register(&self, r: &mut Registry) {
        r.register(
            "symbol_cache_bytes",
            "Bytes of symbol tables held between windows (bounded by the source's symbol_cache)",
            self.bytes.clone(),
        );
        r.register(
            "symbol_cache_kernel_bytes",
            "Bytes of kernel symbols, read once from /proc/kallsyms",
            self.kernel_bytes.clone(),
        );
        r.register(
            "symbol_cache_files",
            "ELF files whose symbols are cached",
            self.files.clone(),
        );
        r.register(
            "symbol_cache_perf_maps",
            "JIT perf maps (/tmp/perf-PID.map) cached",
            self.perf_maps.clone(),
        );
        r.register(
            "symbol_cache_hits",
            "Symbol table lookups served from the cache",
            self.hits.clone(),
        );
        r.register(
            "symbol_cache_misses",
            "Symbol table lookups that read the file",
            self.misses.clone(),
        );
        r.register(
            "symbol_cache_evictions",
            "Symbol tables dropped to stay under the byte limit",
            self.evictions.clone(),
        );
        r.register(
            "symbol_cache_load_failures",
            "Mapped files whose symbols could not be read (their frames stay [unknown])",
            self.load_failures.clone(),
        );
    }
}

/// What a symbolizer's caches hold and did so far (totals since it started).
#[derive(Clone, Copy, Debug, Default)]
pub struct SymbolCacheFigures {
    pub bytes: u64,
    pub kernel_bytes: u64,
    pub files: u64,
    pub perf_maps: u64,
    pub hits: u64,
    pub misses: u64,
    pub evictions: u64,
    pub load_failures: u64,
}

/// One component's symbol cache metrics.
pub struct SymbolCacheMetrics {
    bytes: Gauge,
    kernel_bytes: Gauge,
    files: Gauge,
    perf_maps: Gauge,
    hits: Counter,
    misses: Counter,
    evictions: Counter,
    load_failures: Counter,
}

impl SymbolCacheMetrics {
    pub(super) fn new(f: &SymbolFamilies, labels: &ComponentLabels) -> Self {
        SymbolCacheMetrics {
            bytes: f.bytes.get_or_create_owned(labels),
            kernel_bytes: f.kernel_bytes.get_or_create_owned(labels),
            files: f.files.get_or_create_owned(labels),
            perf_maps: f.perf_maps.get_or_create_owned(labels),
            hits: f.hits.get_or_create_owned(labels),
            misses: f.misses.get_or_create_owned(labels),
            evictions: f.evictions.get_or_create_owned(labels),
            load_failures: f.load_failures.get_or_create_owned(labels),
        }
    }

    /// Sets the gauges and brings the totals up to `f`'s.
    pub fn report(&self, f: &SymbolCacheFigures) {
        let gauge = |v: u64| v.min(i64::MAX as u64) as i64;
        self.bytes.set(gauge(f.bytes));
        self.kernel_bytes.set(gauge(f.kernel_bytes));
        self.files.set(gauge(f.files));
        self.perf_maps.set(gauge(f.perf_maps));
        for (c, v) in [
            (&self.hits, f.hits),
            (&self.misses, f.misses),
            (&self.evictions, f.evictions),
            (&self.load_failures, f.load_failures),
        ] {
            c.inc_by(v.saturating_sub(c.get()));
        }
    }

    pub fn bytes(&self) -> u64 {
        self.bytes.get().max(0) as u64
    }
}
