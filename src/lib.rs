//! profpipe: a continuous-profiling agent.
//!
//! Sources run profilers (or read files) and emit events; transforms fold, filter
//! and merge stacks within bounded memory; sinks write or ship profiles. Components
//! are joined by byte-budgeted edges (see [`buffer`]) and declared in TOML
//! (see [`config`]).

pub mod buffer;
pub mod component;
pub mod config;
pub mod event;
pub mod formats;
pub mod process;
pub mod sinks;
pub mod sources;
pub mod telemetry;
pub mod topology;
pub mod transforms;
