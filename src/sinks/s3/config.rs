//! `[sinks.ID] type = "s3"`: the config table, its checks (no I/O) and the client
//! built from it.

use std::sync::Arc;
use std::time::Duration;

use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey};
use object_store::{ClientOptions, RetryConfig};
use serde::Deserialize;

use super::service::{Multipart, S3Service};
use crate::component::FieldError;
use crate::secret::Secret;
use crate::sinks::delivering::Delivering;
use crate::sinks::encoding::{Compression, Encoding};
use crate::sinks::template::Template;
use crate::units::ByteSize;

/// The default object key.
pub const DEFAULT_KEY: &str = "{service}/{date}/{host}/{window_start}.{ext}";

/// S3's smallest part (all but the last) of a multipart upload.
pub const MIN_PART_SIZE: u64 = 5 << 20;
/// S3's largest part.
pub const MAX_PART_SIZE: u64 = 5 << 30;

/// Environment variables read when the config names no keys: static keys, then
/// the rest of the AWS credential chain (web identity, ECS/EKS container
/// credentials, instance metadata). Nothing else of the environment (an
/// `AWS_ENDPOINT`, an `AWS_REGION`) changes where the sink writes: the config says.
const CREDENTIAL_ENV: &[&str] = &[
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_ARN",
    "AWS_ROLE_SESSION_NAME",
    "AWS_ENDPOINT_URL_STS",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
    "AWS_METADATA_ENDPOINT",
    "AWS_IMDSV1_FALLBACK",
];

/// `[sinks.ID] type = "s3"`: its own keys and the spine's (see
/// `sinks::delivering`).
pub type S3SinkConfig = Delivering<S3Sink>;

/// The s3 sink's own keys.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Sink {
    /// The bucket objects are written to. It must exist (the healthcheck says so).
    pub bucket: String,
    /// Object key template (see `sinks::template`); `{ext}` is the encoding's
    /// extension plus `.gz` when gzip-compressed.
    #[serde(default = "default_key")]
    pub key: String,
    /// `json` (default), `collapsed`, `pprof` or `otlp_proto` (see `sinks::encoding`).
    #[serde(default = "default_encoding")]
    pub encoding: Encoding,
    /// `none` (default) or `gzip`; gzip sets `Content-Encoding: gzip`.
    #[serde(default)]
    pub compression: Compression,
    /// An S3-compatible server's URL (`http://127.0.0.1:9000`); unset: AWS.
    /// An `http://` endpoint allows plain HTTP.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Signing region.
    #[serde(default = "default_region")]
    pub region: String,
    /// `true`: `ENDPOINT/BUCKET/KEY` (what most S3-compatible servers need);
    /// `false`: `BUCKET.s3.REGION.amazonaws.com/KEY`, or with `endpoint`, the
    /// endpoint is the bucket's own URL. Unset: `true` with an `endpoint`, `false`
    /// without.
    #[serde(default)]
    pub force_path_style: Option<bool>,
    /// Static credentials, each a secret (`"${NAME}"`, `{ env = "NAME" }` or
    /// `{ file = "/path" }`, see `crate::secret`). Unset: the
    /// `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` environment, else the AWS
    /// chain (web identity, container credentials, instance metadata).
    #[serde(default)]
    pub access_key_id: Option<Secret>,
    #[serde(default)]
    pub secret_access_key: Option<Secret>,
    #[serde(default)]
    pub session_token: Option<Secret>,
    /// Objects larger than this are sent as a multipart upload.
    #[serde(default = "default_multipart_threshold")]
    pub multipart_threshold: ByteSize,
    /// Size of each part of a multipart upload (5 MiB to 5 GiB).
    #[serde(default = "default_part_size")]
    pub part_size: ByteSize,
    /// The profilers' sampling frequency, for pprof's period.
    #[serde(default = "default_sample_rate")]
    pub sample_rate: u32,
}

fn default_key() -> String {
    DEFAULT_KEY.into()
}
fn default_encoding() -> Encoding {
    Encoding::Json
}
fn default_region() -> String {
    "us-east-1".into()
}
fn default_multipart_threshold() -> ByteSize {
    ByteSize(8 << 20)
}
fn default_part_size() -> ByteSize {
    ByteSize(8 << 20)
}
fn default_sample_rate() -> u32 {
    crate::sinks::encoding::DEFAULT_SAMPLE_RATE
}

impl S3Sink {
    pub fn check(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        if self.bucket.is_empty() {
            errors.push(FieldError::new(&["bucket"], "must name a bucket"));
        } else if self.bucket.contains('/') {
            errors.push(FieldError::new(
                &["bucket"],
                "is a bucket name, without `/` (put prefixes in `key`)",
            ));
        }
        match Template::parse(&self.key) {
            Ok(_) if self.key.trim_matches('/').is_empty() => {
                errors.push(FieldError::new(&["key"], "must not be empty"))
            }
            Ok(_) => {}
            Err(e) => errors.push(FieldError::new(&["key"], e)),
        }
        if self.encoding == Encoding::Pprof && self.compression == Compression::Gzip {
            errors.push(FieldError::new(
                &["compression"],
                "pprof is gzip-compressed already: use compression = \"none\"",
            ));
        }
        if let Some(e) = &self.endpoint {
            if !(e.starts_with("http://") || e.starts_with("https://")) {
                errors.push(FieldError::new(
                    &["endpoint"],
                    format!("must be an http:// or https:// URL, got {e:?}"),
                ));
            }
        }
        if self.region.is_empty() {
            errors.push(FieldError::new(&["region"], "must not be empty"));
        }
        match (&self.access_key_id, &self.secret_access_key) {
            (Some(_), None) => errors.push(FieldError::new(
                &["secret_access_key"],
                "is needed with access_key_id",
            )),
            (None, Some(_)) => errors.push(FieldError::new(
                &["access_key_id"],
                "is needed with secret_access_key",
            )),
            _ => {}
        }
        if self.session_token.is_some() && self.access_key_id.is_none() {
            errors.push(FieldError::new(
                &["session_token"],
                "only goes with access_key_id and secret_access_key",
            ));
        }
        let part = self.part_size.get();
        if !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&part) {
            errors.push(FieldError::new(
                &["part_size"],
                format!(
                    "must be between 5MiB and 5GiB (S3's limits), got {}",
                    self.part_size
                ),
            ));
        }
        if self.multipart_threshold.get() < MIN_PART_SIZE {
            errors.push(FieldError::new(
                &["multipart_threshold"],
                format!("must be at least 5MiB, got {}", self.multipart_threshold),
            ));
        }
        if self.sample_rate == 0 {
            errors.push(FieldError::new(&["sample_rate"], "must be at least 1"));
        }
        for (field, secret) in [
            ("access_key_id", &self.access_key_id),
            ("secret_access_key", &self.secret_access_key),
            ("session_token", &self.session_token),
        ] {
            if let Some(Err(e)) = secret.as_ref().map(Secret::check) {
                errors.push(FieldError::new(&[field], e));
            }
        }
        errors
    }

    pub fn template(&self) -> Template {
        Template::parse(&self.key).expect("validated")
    }

    pub fn path_style(&self) -> bool {
        self.force_path_style.unwrap_or(self.endpoint.is_some())
    }

    /// The client: config first, then the credential environment.
    pub fn client(&self) -> Result<AmazonS3, String> {
        let mut b = AmazonS3Builder::new()
            .with_bucket_name(&self.bucket)
            .with_region(&self.region)
            .with_virtual_hosted_style_request(!self.path_style())
            // The driver owns retries (one policy, counted); object_store's own
            // would multiply them and hide failures from the metrics.
            .with_retry(RetryConfig {
                max_retries: 0,
                retry_timeout: Duration::from_secs(1),
                ..RetryConfig::default()
            })
            .with_client_options(
                // The driver's `request.timeout` bounds each attempt.
                ClientOptions::new().with_timeout_disabled(),
            );
        if let Some(e) = &self.endpoint {
            b = b
                .with_endpoint(e.trim_end_matches('/'))
                .with_allow_http(e.starts_with("http://"));
        }
        let load = |field: &str, s: &Secret| s.load().map_err(|e| format!("{field}: {e}"));
        match (&self.access_key_id, &self.secret_access_key) {
            (Some(id), Some(secret)) => {
                b = b
                    .with_access_key_id(load("access_key_id", id)?.expose())
                    .with_secret_access_key(load("secret_access_key", secret)?.expose());
                if let Some(t) = &self.session_token {
                    b = b.with_token(load("session_token", t)?.expose());
                }
            }
            _ => {
                for name in CREDENTIAL_ENV {
                    if let Ok(value) = std::env::var(name) {
                        let key: AmazonS3ConfigKey = name
                            .to_ascii_lowercase()
                            .parse()
                            .expect("object_store knows every name listed");
                        b = b.with_config(key, value);
                    }
                }
            }
        }
        b.build()
            .map_err(|e| format!("cannot configure the S3 client: {e}"))
    }

    pub fn s3_service(&self) -> Result<S3Service, String> {
        let client = self.client()?;
        Ok(S3Service::new(
            Arc::new(client),
            self.bucket.clone(),
            Multipart {
                threshold: self.multipart_threshold.get(),
                part_size: self.part_size.get(),
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> S3SinkConfig {
        toml::from_str(s).unwrap()
    }

    fn paths(c: &S3SinkConfig) -> Vec<String> {
        crate::component::SinkConfig::validate(c)
            .iter()
            .map(|e| e.path.join("."))
            .collect()
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let c = parse(r#"bucket = "b""#);
        assert_eq!(c.key, DEFAULT_KEY);
        assert_eq!(c.encoding, Encoding::Json);
        assert_eq!(c.compression, Compression::None);
        assert_eq!(c.region, "us-east-1");
        assert_eq!(c.multipart_threshold.get(), 8 << 20);
        assert!(!c.path_style());
        assert!(paths(&c).is_empty());
        let c = parse(
            r#"bucket = "b"
endpoint = "http://127.0.0.1:9000""#,
        );
        assert!(c.path_style());
    }

    #[test]
    fn each_bad_field_is_named() {
        let c = parse(
            r#"bucket = "a/b"
key = "{host"
encoding = "pprof"
compression = "gzip"
endpoint = "127.0.0.1:9000"
access_key_id = "k"
part_size = "1MiB"
multipart_threshold = "1KiB"
max_pending_stacks = 0
request = { concurrency = 0 }"#,
        );
        assert_eq!(
            paths(&c),
            [
                "bucket",
                "key",
                "compression",
                "endpoint",
                "secret_access_key",
                "part_size",
                "multipart_threshold",
                "request.concurrency",
                "max_pending_stacks"
            ]
        );
    }

    #[test]
    fn secrets_are_redacted_in_debug() {
        let c = parse(
            r#"bucket = "b"
access_key_id = "AKIDSHOWNOWHERE"
secret_access_key = "verysecretvalue""#,
        );
        let d = format!("{c:?}");
        assert!(
            !d.contains("verysecretvalue") && !d.contains("AKIDSHOWNOWHERE"),
            "{d}"
        );
        assert!(d.contains("***"), "{d}");
    }

    #[test]
    fn unknown_fields_are_refused() {
        let e = toml::from_str::<S3SinkConfig>("bucket = \"b\"\nbuket = 1").unwrap_err();
        assert!(e.to_string().contains("buket"), "{e}");
    }
}
