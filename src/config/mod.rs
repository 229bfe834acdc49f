//! TOML → typed, validated pipeline config.
//!
//! Loading never stops at the first problem: it reads every table, checks every
//! field and the graph, and returns all errors together, each with the file, line
//! and column it points at ([`ConfigErrors`]). The [`Config`] it returns has already
//! passed every check that needs no I/O; `topology::build` consumes it.
//!
//! One job per file: `load.rs` orchestrates; `report.rs` collects located problems;
//! `settings.rs`, `component.rs`, `inputs.rs`, `buffer.rs` and `labels.rs` read
//! tables; `env_vars.rs` expands `${NAME}`; `retry.rs` reads a table to its last problem, `describe.rs` words each one and
//! `serde_text.rs` holds the only reading of serde's message text; `checks.rs` and
//! `graph.rs` check across tables; `suggest.rs` is "did you mean"; `pipeline.rs`
//! holds what a load returns, and the registry it reads against.

pub mod agent;
mod buffer;
mod checks;
mod component;
mod data_types;
mod declared;
mod describe;
mod env_vars;
mod errors;
mod graph;
mod inputs;
mod labels;
mod load;
mod locate;
mod pipeline;
mod redact;
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

pub use agent::{AgentConfig, TelemetryConfig};
pub use errors::{ConfigError, ConfigErrors};
pub use load::{load_file, load_str, load_str_with_env};
pub use pipeline::{Config, Registry, SinkEntry, SourceEntry, TransformEntry};
