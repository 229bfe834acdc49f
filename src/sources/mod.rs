//! Sources: where events come from.

pub mod file;
pub mod live;
pub mod perf;
pub mod py_spy;
pub mod pyperf;
pub mod rbspy;
pub mod runtime_config;
pub mod runtime_runs;

use crate::component::{parse_source, Kind, SourceConfig};

pub static KINDS: &[Kind<dyn SourceConfig>] = &[
    Kind {
        name: "file",
        parse: parse_source::<file::FileSourceConfig>,
    },
    Kind {
        name: "perf",
        parse: parse_source::<perf::PerfSourceConfig>,
    },
    Kind {
        name: "py_spy",
        parse: parse_source::<py_spy::PySpyConfig>,
    },
    Kind {
        name: "pyperf",
        parse: parse_source::<pyperf::PyPerfSourceConfig>,
    },
    Kind {
        name: "rbspy",
        parse: parse_source::<rbspy::RbSpyConfig>,
    },
];
