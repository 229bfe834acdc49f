//! Driving one component by hand: its context and its edges.

use std::path::Path;

use profpipe::buffer::{edge, BufferConfig, EdgeSender, Input, MemoryBudget};
use profpipe::component::ComponentContext;
use profpipe::telemetry::Telemetry;

/// The context of a component outside any topology, with its scratch space under
/// `state_dir` and the given upstream sources.
pub fn standalone(
    id: &str,
    kind: &str,
    ty: &str,
    telemetry: &Telemetry,
    state_dir: Option<&Path>,
    upstream_sources: &[&str],
) -> ComponentContext {
    let mut cx = ComponentContext::standalone(id, kind, ty, telemetry);
    if let Some(dir) = state_dir {
        cx.state_dir = dir.to_path_buf();
    }
    if !upstream_sources.is_empty() {
        cx.upstream_sources = upstream_sources.iter().map(|s| (*s).into()).collect();
    }
    cx
}

/// An edge with the default buffer and a budget nothing in a test reaches, whose
/// consumer is a test sink named `consumer`.
pub fn test_edge(telemetry: &Telemetry, consumer: &str) -> (EdgeSender, Input) {
    edge(
        BufferConfig::default(),
        MemoryBudget::new(1 << 30),
        telemetry.component(consumer, "sink", "test"),
    )
}
