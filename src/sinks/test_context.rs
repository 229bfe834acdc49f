//! What the sinks' unit tests share: a sink's context, fed by a test edge.

use std::sync::Arc;

use crate::buffer::{edge, BufferConfig, EdgeSender, MemoryBudget};
use crate::component::{ComponentContext, SinkContext};
use crate::telemetry::{ComponentMetrics, Telemetry};

/// A context for sink `id` of type `ty` on `host`, downstream of `upstream`; the
/// sender feeds its input, and the metrics are the sink's own.
pub fn sink_context(
    ty: &str,
    id: &str,
    host: &str,
    upstream: &[&str],
) -> (EdgeSender, SinkContext, ComponentMetrics) {
    let t = Telemetry::new();
    let cx = ComponentContext {
        host: host.into(),
        upstream_sources: upstream.iter().map(|s| Arc::from(*s)).collect(),
        ..ComponentContext::standalone(id, "sink", ty, &t)
    };
    let metrics = cx.metrics.clone();
    let (tx, input) = edge(
        BufferConfig::default(),
        MemoryBudget::new(1 << 30),
        metrics.clone(),
    );
    (tx, SinkContext { cx, input }, metrics)
}
