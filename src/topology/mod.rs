//! Builds the component graph, wires the edges, runs it and shuts it down.

mod builder;
pub mod healthcheck;
mod running;

pub use builder::{build, BuildErrors, Built, BuiltTask};
pub use healthcheck::run_healthchecks;
pub use running::{Outcome, RunningTopology};
