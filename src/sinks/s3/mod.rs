//! `type = "s3"`: one object per complete window in an S3 bucket (AWS or any
//! S3-compatible server), written through the sink driver.
//!
//! ```toml
//! [sinks.archive]
//! type = "s3"
//! inputs = ["fold"]
//! bucket = "profiles"
//! key = "{service}/{date}/{host}/{window_start}.{ext}"   # the default
//! encoding = "json"          # json | collapsed | pprof | otlp_proto
//! compression = "gzip"       # none | gzip (not with pprof, gzip already)
//! endpoint = "http://127.0.0.1:9000"   # unset: AWS
//! region = "us-east-1"
//! access_key_id = "${S3_KEY}"
//! secret_access_key = "${S3_SECRET}"
//! ```
//!
//! An object holds exactly one window of one host: one document of the shared
//! encoding (see `sinks::encoding`), compressed if asked. A window is already a
//! batch (every profile of a host for, by default, a minute), so windows are not
//! grouped further: every object reads back on its own, and its key says which
//! window it is. Bodies over `multipart_threshold` go as a multipart upload in
//! `part_size` parts, aborted when a part or the completion fails, or the attempt
//! is cancelled.
//!
//! A key used already by this sink (a late profile's window, written on its own)
//! gets `~N` before its extension, so no object is overwritten by its own sink.
//! (That memory is the last [`RECENT_KEYS`] keys of this process.)
//!
//! The window's delivery tokens resolve `Delivered` once S3 confirmed the PUT (or
//! the multipart completion); failures are retried by the driver, see
//! [`service::classify`] for what is retried.

mod config;
mod service;

use std::collections::{HashSet, VecDeque};

use bytes::Bytes;

pub use config::{S3Sink, S3SinkConfig, DEFAULT_KEY};
pub use service::{classify, Multipart, S3Object, S3Service};

use super::delivering::{DeliveringSink, Refused, RequestBuilder};
use super::driver::RequestConfig;
use super::encoding::{Compression, Encoder, PartLimits};
use super::pending::CompleteWindow;
use super::template::{Template, Values};
use crate::component::{parse_table, BuildError, FieldError};
use crate::telemetry::ComponentMetrics;

/// Keys remembered to avoid overwriting a window's object with a later one of the
/// same key (at 1 window a minute per host, hours of a large gateway).
pub const RECENT_KEYS: usize = 16_384;

impl DeliveringSink for S3Sink {
    type Service = S3Service;
    type Builder = Objects;

    fn parse(table: toml::Table) -> Result<Self, Vec<FieldError>> {
        parse_table(toml::Value::Table(table))
    }

    fn validate(&self, _: &RequestConfig) -> Vec<FieldError> {
        self.check()
    }

    fn service(
        &self,
        _: &str,
        _: &RequestConfig,
        _: Option<&ComponentMetrics>,
    ) -> Result<S3Service, BuildError> {
        self.s3_service().map_err(BuildError)
    }

    fn builder(&self, _: &ComponentMetrics) -> Result<Objects, BuildError> {
        Ok(Objects {
            format: Format {
                encoder: Encoder {
                    encoding: self.encoding,
                    sample_rate_hz: self.sample_rate,
                },
                compression: self.compression,
                template: self.template(),
            },
            recent: RecentKeys::default(),
        })
    }
}

/// How a window becomes an object's key and body.
#[derive(Clone)]
struct Format {
    encoder: Encoder,
    compression: Compression,
    template: Template,
}

impl Format {
    /// `{ext}`: the encoding's, plus `.gz` when compressed.
    fn ext(&self) -> String {
        match self.compression {
            Compression::None => self.encoder.encoding.extension().to_string(),
            Compression::Gzip => format!("{}.gz", self.encoder.encoding.extension()),
        }
    }

    /// The key (before de-duplication) and body of one window. CPU-bound.
    fn render(&self, w: &CompleteWindow) -> Result<(String, Vec<u8>), String> {
        let compression = self.compression;
        let mut parts = self
            .encoder
            .parts(w, PartLimits::NONE, |b| compression.apply(b))
            .map_err(|e| e.to_string())?;
        // No limit, so one part.
        let part = parts.pop().expect("a window encodes to at least one part");
        let ext = self.ext();
        let key = self.template.render(&Values {
            host: &w.host,
            window: w.window,
            labels: &w.labels,
            ext: &ext,
            part: 0,
            profile_id: &part.profile_id,
        });
        Ok((key, part.bytes))
    }
}

/// The last keys written, oldest first.
#[derive(Default)]
struct RecentKeys {
    order: VecDeque<String>,
    set: HashSet<String>,
}

impl RecentKeys {
    /// `key`, or `key` with `~N` before its extension `ext` if used already.
    fn unused(&mut self, key: String, ext: &str) -> String {
        let mut candidate = key.clone();
        let mut n = 0;
        while self.set.contains(&candidate) {
            n += 1;
            candidate = match key.strip_suffix(&format!(".{ext}")) {
                Some(stem) => format!("{stem}~{n}.{ext}"),
                None => format!("{key}~{n}"),
            };
        }
        if self.order.len() >= RECENT_KEYS {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        self.order.push_back(candidate.clone());
        self.set.insert(candidate.clone());
        candidate
    }
}

/// The s3 sink's request builder: one object per window.
pub struct Objects {
    format: Format,
    recent: RecentKeys,
}

impl RequestBuilder for Objects {
    type Request = S3Object;

    async fn build(&mut self, window: CompleteWindow) -> Result<Vec<S3Object>, Refused> {
        let format = self.format.clone();
        // Encoding and gzip of a large window take a while: not on the runtime.
        let (key, body) = tokio::task::spawn_blocking(move || format.render(&window))
            .await
            .unwrap_or_else(|e| Err(format!("encoder task failed: {e}")))
            .map_err(|message| Refused {
                reason: "encode_failed",
                message,
            })?;
        let key = self.recent.unused(key, &self.format.ext());
        Ok(vec![S3Object {
            key: object_store::path::Path::from(key),
            body: Bytes::from(body),
            content_type: self.format.encoder.encoding.content_type(),
            content_encoding: self.format.compression.content_encoding(),
        }])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_used_again_gets_a_suffix_before_its_extension() {
        let mut r = RecentKeys::default();
        assert_eq!(r.unused("a/b.json.gz".into(), "json.gz"), "a/b.json.gz");
        assert_eq!(r.unused("a/b.json.gz".into(), "json.gz"), "a/b~1.json.gz");
        assert_eq!(r.unused("a/b.json.gz".into(), "json.gz"), "a/b~2.json.gz");
        assert_eq!(r.unused("a/noext".into(), "json"), "a/noext");
        assert_eq!(r.unused("a/noext".into(), "json"), "a/noext~1");
    }
}
