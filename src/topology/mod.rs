//! Builds the component graph, wires the edges, runs it and shuts it down.

mod builder;
mod running;

pub use builder::{build, BuildErrors, Built, BuiltTask};
pub use running::{Outcome, RunningTopology};
