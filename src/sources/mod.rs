//! Sources: where events come from.

pub mod file;
pub mod http_server;
pub mod live;
pub mod perf;
pub mod py_spy;
pub mod pyperf;
pub mod rbspy;
pub mod runtime_config;
pub mod runtime_runs;
pub mod runtime_sampler;

use crate::component::{Kind, SourceConfig};

pub static KINDS: &[Kind<dyn SourceConfig>] = &[
    Kind::source::<file::FileSourceConfig>("file"),
    Kind::source::<http_server::HttpServerConfig>("http_server"),
    Kind::source::<perf::PerfSourceConfig>("perf"),
    Kind::source::<py_spy::PySpyConfig>("py_spy"),
    Kind::source::<pyperf::PyPerfSourceConfig>("pyperf"),
    Kind::source::<rbspy::RbSpyConfig>("rbspy"),
];
