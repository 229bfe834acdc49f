//! Glue shared by the live sources (`perf`, `py_spy`, `rbspy`, `pyperf`): finding
//! their profiler program, sending what a window produced, and keeping one
//! long-running profiler alive under the supervisor.

pub mod binary;
pub mod emitter;
pub mod rotating;
