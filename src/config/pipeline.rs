//! What loading returns, a validated pipeline, and what it reads against: the
//! registry of component types.

use super::agent::{AgentConfig, TelemetryConfig};
use crate::buffer::BufferConfig;
use crate::component::{Kind, SinkConfig, SourceConfig, TransformConfig};
use crate::event::{ComponentId, LabelSet};

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
    /// Its table as declared (after `${NAME}` substitution): a reload compares it
    /// to tell a changed component from one that keeps running.
    pub declared: String,
    pub config: Box<dyn SourceConfig>,
}

#[derive(Debug)]
pub struct TransformEntry {
    pub id: ComponentId,
    pub type_name: &'static str,
    pub inputs: Vec<ComponentId>,
    pub buffer: BufferConfig,
    /// Its table as declared (after `${NAME}` substitution): a reload compares it
    /// to tell a changed component from one that keeps running.
    pub declared: String,
    pub config: Box<dyn TransformConfig>,
}

#[derive(Debug)]
pub struct SinkEntry {
    pub id: ComponentId,
    pub type_name: &'static str,
    pub inputs: Vec<ComponentId>,
    pub buffer: BufferConfig,
    /// Its table as declared (after `${NAME}` substitution): a reload compares it
    /// to tell a changed component from one that keeps running.
    pub declared: String,
    pub config: Box<dyn SinkConfig>,
}

/// The component types a config may name.
pub struct Registry {
    pub sources: &'static [Kind<dyn SourceConfig>],
    pub transforms: &'static [Kind<dyn TransformConfig>],
    pub sinks: &'static [Kind<dyn SinkConfig>],
}
