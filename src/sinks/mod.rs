//! Sinks: where profiles go.

use crate::component::{Kind, SinkConfig};

pub mod console;
pub mod driver;
pub mod encoding;
pub mod file;
pub mod http;
pub mod kafka;
pub mod pending;
pub mod s3;
pub mod template;
#[cfg(test)]
mod test_context;

pub static KINDS: &[Kind<dyn SinkConfig>] = &[
    Kind::sink::<console::ConsoleSinkConfig>("console"),
    Kind::sink::<file::FileSinkConfig>("file"),
    Kind::sink::<http::HttpSinkConfig>("http"),
    Kind::sink::<s3::S3SinkConfig>("s3"),
    Kind::sink::<kafka::KafkaSinkConfig>("kafka"),
];
