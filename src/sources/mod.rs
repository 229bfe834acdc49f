//! Sources: where events come from.

pub mod file;
pub mod perf;
pub mod window_clock;

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
];
