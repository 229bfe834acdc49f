//! TOML → typed, validated pipeline config.
//!
//! Loading never stops at the first problem: it reads every table, checks every
//! field and the graph, and returns all errors together, each with the file, line
//! and column it points at ([`ConfigErrors`]). The [`Config`] it returns has already
//! passed every check that needs no I/O; `topology::build` consumes it.
//!
//! One job per file: `load.rs` orchestrates; `report.rs` collects located problems;
//! `settings.rs`, `component.rs`, `inputs.rs`, `buffer.rs` and `labels.rs` read
//! tables; `retry.rs` reads a table to its last problem, `describe.rs` words each one and
//! `serde_text.rs` holds the only reading of serde's message text; `checks.rs` and
//! `graph.rs` check across tables; `suggest.rs` is "did you mean".

pub mod agent;
mod buffer;
mod checks;
mod component;
mod data_types;
mod declared;
mod describe;
mod errors;
mod graph;
mod inputs;
mod labels;
mod load;
mod locate;
mod report;
mod retry;
mod serde_text;
mod settings;
mod size;
mod suggest;
#[doc(hidden)]
pub mod test_kinds;
#[cfg(test)]
mod tests;

use crate::buffer::BufferConfig;
use crate::component::{Kind, SinkConfig, SourceConfig, TransformConfig};
use crate::event::{ComponentId, LabelSet};

pub use agent::{AgentConfig, TelemetryConfig};
pub use errors::{ConfigError, ConfigErrors};
pub use load::{load_file, load_str};

/// A validated pipeline.
#[derive(Debug)]
pub struct Config {
    pub agent: AgentConfig,
    pub telemetry: TelemetryConfig,
    pub sources: Vec<SourceEntry>,
    pub transforms: Vec<TransformEntry>,
    pub sinks: Vec<SinkEntry>,
}

#[derive(Debug)]
pub struct SourceEntry {
    pub id: ComponentId,
    /// The `type` it was declared with, e.g. "file".
    pub type_name: &'static str,
    /// Its `labels = { ... }`, applied (over `[agent] labels`) to every data event
    /// it emits. Read by the loader, not by the source's kind.
    pub labels: LabelSet,
    pub config: Box<dyn SourceConfig>,
}

#[derive(Debug)]
pub struct TransformEntry {
    pub id: ComponentId,
    pub type_name: &'static str,
    pub inputs: Vec<ComponentId>,
    pub buffer: BufferConfig,
    pub config: Box<dyn TransformConfig>,
}

#[derive(Debug)]
pub struct SinkEntry {
    pub id: ComponentId,
    pub type_name: &'static str,
    pub inputs: Vec<ComponentId>,
    pub buffer: BufferConfig,
    pub config: Box<dyn SinkConfig>,
}

/// The component types a config may name.
pub struct Registry {
    pub sources: &'static [Kind<dyn SourceConfig>],
    pub transforms: &'static [Kind<dyn TransformConfig>],
    pub sinks: &'static [Kind<dyn SinkConfig>],
}
