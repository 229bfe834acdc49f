//! Parsers and writers of the stack formats profpipe reads and writes.

pub mod collapsed;
pub mod excerpt;
pub mod flamegraph;
pub mod folded;
pub mod line;
pub mod otlp;
pub mod perf_data;
pub mod perf_script;
pub mod pprof;
pub mod profile_json;
pub mod py_spy_raw;
pub mod pyperf;
pub mod reader;
pub mod timestamp;
