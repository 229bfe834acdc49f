//! Builds the component graph, wires the edges, runs it and shuts it down.

mod builder;
pub mod healthcheck;
mod reload;
mod running;
mod scale;

pub use builder::{build, BuildErrors, Built, BuiltTask};
pub use healthcheck::run_healthchecks;
pub use running::{Outcome, ReloadError, Reloaded, RunningTopology};
