//! Builds the component graph, wires the edges, runs it and shuts it down.

pub mod shutdown;
pub mod watermarks;
