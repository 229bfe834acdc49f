//! Stand-in component kinds for config tests: small configs with typed fields
//! (a `file`, `perf` and `py_spy` source, a `fold` and `symbol_filter` transform, a
//! `file` and `kafka` sink) and a [`registry`] of them. None of them can be built.
//!
//! Shared by the loader's unit tests and `tests/config_errors.rs`, so it is part
//! of the library (integration tests cannot see `cfg(test)` items), hidden from the
//! docs. It uses only the component model, never the real components: config is
//! tested against the registry it is handed.

use serde::Deserialize;

use super::pipeline::Registry;
use crate::component::{
    BuildError, FieldError, Kind, SinkConfig, SinkContext, SourceConfig, SourceContext, Task,
    TransformConfig, TransformContext,
};
use crate::units::{ByteSize, DurationStr, RegexStr};

fn not_built() -> Result<Task, BuildError> {
    Err(BuildError("test kinds are not built".into()))
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
enum ReadMode {
    Once,
    Follow,
}

/// `type = "file"` source: reads a file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSource {
    path: String,
    #[serde(default = "default_window")]
    window: DurationStr,
    #[serde(default = "default_mode")]
    mode: ReadMode,
}

fn default_window() -> DurationStr {
    DurationStr::from_secs(60)
}

fn default_mode() -> ReadMode {
    ReadMode::Follow
}

impl SourceConfig for FileSource {
    fn outputs(&self) -> crate::event::DataTypes {
        crate::event::DataTypes::PROFILE
    }
    fn validate(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        if !self.path.starts_with('/') {
            errors.push(FieldError::new(&["path"], "must be an absolute path"));
        }
        if self.window.get().as_millis() < 100 {
            errors.push(FieldError::new(&["window"], "must be at least 100ms"));
        }
        errors
    }
    fn is_finite(&self) -> bool {
        self.mode == ReadMode::Once
    }
    fn build(&self, _: SourceContext) -> Result<Task, BuildError> {
        not_built()
    }
}

/// `type = "perf"` source. Without `deny_unknown_fields`: serde ignores unknown
/// fields and `parse_table` collects them.
#[allow(dead_code)] // fields are only parsed
#[derive(Debug, Deserialize)]
struct PerfSource {
    #[serde(default = "default_frequency")]
    frequency: u32,
    #[serde(default = "default_window")]
    window: DurationStr,
}

fn default_frequency() -> u32 {
    11
}

impl SourceConfig for PerfSource {
    fn outputs(&self) -> crate::event::DataTypes {
        crate::event::DataTypes::PROFILE
    }
    fn validate(&self) -> Vec<FieldError> {
        if (1..=1000).contains(&self.frequency) {
            Vec::new()
        } else {
            vec![FieldError::new(
                &["frequency"],
                "must be between 1 and 1000 (Hz)",
            )]
        }
    }
    fn build(&self, _: SourceContext) -> Result<Task, BuildError> {
        not_built()
    }
}

/// `type = "py_spy"`: no fields at all.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PySpySource {}

impl SourceConfig for PySpySource {
    fn outputs(&self) -> crate::event::DataTypes {
        crate::event::DataTypes::PROFILE
    }
    fn build(&self, _: SourceContext) -> Result<Task, BuildError> {
        not_built()
    }
}

/// `type = "fold"` transform.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FoldTransform {
    #[serde(default = "default_max_stacks")]
    max_stacks: u64,
}

fn default_max_stacks() -> u64 {
    100_000
}

impl TransformConfig for FoldTransform {
    fn inputs(&self) -> crate::event::DataTypes {
        crate::event::DataTypes::ALL
    }
    fn validate(&self) -> Vec<FieldError> {
        if self.max_stacks == 0 {
            vec![FieldError::new(&["max_stacks"], "must be at least 1")]
        } else {
            Vec::new()
        }
    }
    fn build(&self, _: TransformContext) -> Result<Task, BuildError> {
        not_built()
    }
}

/// `type = "symbol_filter"` transform.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SymbolFilterTransform {
    drop_frames: Vec<RegexStr>,
}

impl TransformConfig for SymbolFilterTransform {
    fn inputs(&self) -> crate::event::DataTypes {
        crate::event::DataTypes::ALL
    }
    fn validate(&self) -> Vec<FieldError> {
        if self.drop_frames.is_empty() {
            vec![FieldError::new(
                &["drop_frames"],
                "must list at least one pattern",
            )]
        } else {
            Vec::new()
        }
    }
    fn build(&self, _: TransformContext) -> Result<Task, BuildError> {
        not_built()
    }
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
enum Format {
    Collapsed,
    Flamegraph,
    Pprof,
}

/// `type = "file"` sink.
#[allow(dead_code)] // fields are only parsed
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSink {
    path: String,
    #[serde(default)]
    formats: Vec<Format>,
}

impl SinkConfig for FileSink {
    fn inputs(&self) -> crate::event::DataTypes {
        crate::event::DataTypes::ALL
    }
    fn build(&self, _: SinkContext) -> Result<Task, BuildError> {
        not_built()
    }
}

/// `type = "kafka"` sink.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KafkaSink {
    brokers: String,
    topic: String,
    #[serde(default = "default_max_message")]
    max_message: ByteSize,
}

fn default_max_message() -> ByteSize {
    ByteSize::mib(1)
}

impl SinkConfig for KafkaSink {
    fn inputs(&self) -> crate::event::DataTypes {
        crate::event::DataTypes::ALL
    }
    fn validate(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        for (i, broker) in self.brokers.split(',').enumerate() {
            if !broker.contains(':') {
                errors.push(FieldError::new(
                    &["brokers"],
                    format!("broker {} (`{broker}`) has no port", i + 1),
                ));
            }
        }
        if self.topic.is_empty() {
            errors.push(FieldError::new(&["topic"], "must not be empty"));
        }
        if self.max_message.get() == 0 {
            errors.push(FieldError::new(&["max_message"], "must be greater than 0"));
        }
        errors
    }
    fn build(&self, _: SinkContext) -> Result<Task, BuildError> {
        not_built()
    }
}

static SOURCES: &[Kind<dyn SourceConfig>] = &[
    Kind::source::<FileSource>("file"),
    Kind::source::<PerfSource>("perf"),
    Kind::source::<PySpySource>("py_spy"),
];

static TRANSFORMS: &[Kind<dyn TransformConfig>] = &[
    Kind::transform::<FoldTransform>("fold"),
    Kind::transform::<SymbolFilterTransform>("symbol_filter"),
];

static SINKS: &[Kind<dyn SinkConfig>] = &[
    Kind::sink::<FileSink>("file"),
    Kind::sink::<KafkaSink>("kafka"),
];

/// The registry of the test kinds.
pub fn registry() -> Registry {
    Registry {
        sources: SOURCES,
        transforms: TRANSFORMS,
        sinks: SINKS,
    }
}
