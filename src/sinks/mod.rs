//! Sinks: where profiles go.

use crate::component::{Kind, SinkConfig};

pub mod console;
pub mod delivering;
pub mod driver;
pub mod encoding;
pub mod file;
pub mod http;
pub mod kafka;
pub mod local;
pub mod pending;
pub mod s3;
pub mod template;
#[cfg(test)]
mod test_context;

pub static KINDS: &[Kind<dyn SinkConfig>] = &[
    local::kind::<console::ConsoleSink>("console"),
    local::kind::<file::FileSink>("file"),
    delivering::kind::<http::HttpSink>("http"),
    delivering::kind::<s3::S3Sink>("s3"),
    delivering::kind::<kafka::KafkaSink>("kafka"),
];
