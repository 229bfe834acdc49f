//! profpipe: a continuous-profiling agent.
//!
//! Sources run profilers (or read files) and emit events; transforms fold, filter
//! and merge stacks within bounded memory; sinks write or ship profiles. Components
//! are joined by byte-budgeted edges (see [`buffer`]) and declared in TOML
//! (see [`config`]).
//!
//! Layers, bottom up (a module imports only from its own layer or below):
//! 1. plain types: [`units`], [`secret`], [`shutdown`], [`window_clock`], [`watermarks`],
//!    [`event`], and the metrics registry [`telemetry`];
//! 2. mechanisms: [`formats`], [`process`], [`state_dir`] (private, locked
//!    directories), [`buffer`], and the window stores [`window`];
//! 3. the component model [`component`], then the components [`sources`],
//!    [`transforms`], [`sinks`];
//! 4. assembly: [`config`] (reads TOML against a registry it is handed),
//!    [`topology`] (runs a config), [`registry`] (every component type), and
//!    [`control`] (runs configs a control server asks for; nothing imports it).

pub mod buffer;
pub mod component;
pub mod config;
pub mod control;
pub mod event;
pub mod formats;
pub mod process;
pub mod registry;
pub mod secret;
pub mod shutdown;
pub mod sinks;
pub mod sources;
pub mod state_dir;
pub mod telemetry;
pub mod topology;
pub mod transforms;
pub mod units;
pub mod watermarks;
pub mod window;
pub mod window_clock;
