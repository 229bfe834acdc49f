//! `[sinks.ID] type = "http"`: the config table and its checks (no I/O).

use std::path::PathBuf;

use reqwest::Url;
use serde::Deserialize;

use super::auth::{validate_api_key, AuthConfig, SecretRef};
use crate::component::FieldError;
use crate::sinks::driver::RequestConfig;
use crate::sinks::encoding::{Compression, Encoding};
use crate::units::{ByteSize, DurationStr};

/// Which server the sink speaks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// Grafana Pyroscope's `POST /ingest`, folded stacks.
    Pyroscope,
    /// gProfiler Performance Studio's `POST /api/v2/profiles`, gzip JSON.
    Gprofiler,
    /// A POST of `encoding` to `endpoint` as it is.
    Generic,
}

impl Target {
    pub fn name(self) -> &'static str {
        match self {
            Target::Pyroscope => "pyroscope",
            Target::Gprofiler => "gprofiler",
            Target::Generic => "generic",
        }
    }
}

/// `tls = { ca_file = "..." }`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file of CA certificates trusted in addition to the system's.
    pub ca_file: PathBuf,
}

/// `[sinks.ID] type = "http"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSinkConfig {
    /// "pyroscope", "gprofiler" or "generic".
    pub target: Target,
    /// Base URL of the server (pyroscope: `http://host:4040`, `/ingest` is added;
    /// gprofiler: `https://studio`, `/api/v2/profiles` is added); for generic the
    /// URL POSTed to.
    pub endpoint: String,
    /// generic only: "json" (default), "collapsed" (gProfiler's collapsed text) or
    /// "pprof".
    #[serde(default)]
    pub encoding: Option<Encoding>,
    /// generic only: "none" (default) or "gzip" (`Content-Encoding: gzip`).
    #[serde(default)]
    pub compression: Option<Compression>,
    /// Credentials sent with every request and the healthcheck.
    #[serde(default)]
    pub auth: Option<AuthConfig>,
    /// gprofiler: the service's API key (`GPROFILER-API-KEY`), from a file or env.
    #[serde(default)]
    pub api_key: Option<SecretRef>,
    /// gprofiler: the service name; default the window's `service` label, else the
    /// host name.
    #[serde(default)]
    pub service_name: Option<String>,
    /// pyroscope: the application name (before `.cpu`); default the window's
    /// `service` label, else "profpipe".
    #[serde(default)]
    pub app_name: Option<String>,
    /// pyroscope: `sampleRate`, the profilers' frequency in Hz (Pyroscope turns each
    /// sample into 1e9/sampleRate ns of CPU); generic pprof: the period.
    #[serde(default = "default_sample_rate")]
    pub sample_rate: u32,
    /// pyroscope: `spyName`.
    #[serde(default = "default_spy_name")]
    pub spy_name: String,
    /// pyroscope: windows that started longer ago than this are dropped (counted,
    /// reason `too_old`) instead of sent: the server refuses them
    /// (`reject_older_than`, default 1h).
    #[serde(default = "default_ingestion_window")]
    pub ingestion_window: DurationStr,
    /// Most bytes of one request body (after compression); a larger window is split.
    /// Default: pyroscope 4 MiB (`max_profile_size_bytes`), gprofiler 4 MiB (the
    /// compressed limit), generic 10 MiB.
    #[serde(default)]
    pub max_request_bytes: Option<ByteSize>,
    /// Most distinct stacks of one request; default pyroscope 16000
    /// (`max_profile_stacktrace_samples`), unlimited otherwise.
    #[serde(default)]
    pub max_request_stacks: Option<usize>,
    /// generic: a URL fetched (GET, with `auth`) by the healthcheck; none: no check.
    #[serde(default)]
    pub healthcheck_url: Option<String>,
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    #[serde(default)]
    pub request: RequestConfig,
    /// Most distinct stacks held for windows not yet complete.
    #[serde(default = "default_max_pending_stacks")]
    pub max_pending_stacks: usize,
    /// Most bytes all pending windows hold together (charged to `[agent]
    /// memory_limit`).
    #[serde(default = "default_max_pending_bytes")]
    pub max_pending_bytes: ByteSize,
}

/// Pyroscope's `max_profile_stacktrace_samples` default: more distinct stacks in
/// one push are refused.
pub const PYROSCOPE_MAX_STACKS: usize = 16_000;
/// Pyroscope's `max_profile_size_bytes` default; Performance Studio's compressed
/// `CONFIG_MAX_CONTENT_LEN`.
pub const FOUR_MIB: u64 = 4 << 20;
const GENERIC_MAX_BYTES: u64 = 10 << 20;

fn default_sample_rate() -> u32 {
    crate::sinks::encoding::DEFAULT_SAMPLE_RATE
}
fn default_spy_name() -> String {
    "profpipe".into()
}
fn default_ingestion_window() -> DurationStr {
    DurationStr::from_secs(3600)
}
fn default_max_pending_stacks() -> usize {
    crate::sinks::pending::DEFAULT_MAX_PENDING_STACKS
}
fn default_max_pending_bytes() -> ByteSize {
    ByteSize(crate::window::DEFAULT_STORE_BYTES)
}

impl HttpSinkConfig {
    pub fn encoding(&self) -> Encoding {
        self.encoding.unwrap_or(Encoding::Json)
    }

    pub fn compression(&self) -> Compression {
        self.compression.unwrap_or_default()
    }

    pub fn max_request_bytes(&self) -> usize {
        let default = match self.target {
            Target::Pyroscope | Target::Gprofiler => FOUR_MIB,
            Target::Generic => GENERIC_MAX_BYTES,
        };
        self.max_request_bytes.map_or(default, ByteSize::get) as usize
    }

    pub fn max_request_stacks(&self) -> usize {
        let default = match self.target {
            Target::Pyroscope => PYROSCOPE_MAX_STACKS,
            _ => usize::MAX,
        };
        self.max_request_stacks.unwrap_or(default)
    }

    /// The endpoint, checked: http or https, no credentials in it.
    pub fn endpoint_url(&self) -> Result<Url, String> {
        parse_url(&self.endpoint)
    }

    pub fn validate(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        if let Err(e) = self.endpoint_url() {
            errors.push(FieldError::new(&["endpoint"], e));
        }
        if let Some(u) = &self.healthcheck_url {
            if let Err(e) = parse_url(u) {
                errors.push(FieldError::new(&["healthcheck_url"], e));
            }
        }
        let only = |errors: &mut Vec<FieldError>, field: &str, set: bool, target: &str| {
            if set {
                errors.push(FieldError::new(
                    &[field],
                    format!("applies only to target = \"{target}\""),
                ));
            }
        };
        let t = self.target;
        only(
            &mut errors,
            "encoding",
            self.encoding.is_some() && t != Target::Generic,
            "generic",
        );
        only(
            &mut errors,
            "compression",
            self.compression.is_some() && t != Target::Generic,
            "generic",
        );
        only(
            &mut errors,
            "healthcheck_url",
            self.healthcheck_url.is_some() && t != Target::Generic,
            "generic",
        );
        only(
            &mut errors,
            "api_key",
            self.api_key.is_some() && t != Target::Gprofiler,
            "gprofiler",
        );
        only(
            &mut errors,
            "service_name",
            self.service_name.is_some() && t != Target::Gprofiler,
            "gprofiler",
        );
        only(
            &mut errors,
            "app_name",
            self.app_name.is_some() && t != Target::Pyroscope,
            "pyroscope",
        );
        match (t, &self.api_key) {
            (Target::Gprofiler, None) => errors.push(FieldError::new(
                &["api_key"],
                "Performance Studio needs the service's API key: api_key = { file = \"...\" } or { env = \"...\" }",
            )),
            (Target::Gprofiler, Some(k)) => errors.extend(validate_api_key(k)),
            _ => {}
        }
        if let Some(auth) = &self.auth {
            errors.extend(auth.validate());
        }
        if self.sample_rate == 0 {
            errors.push(FieldError::new(&["sample_rate"], "must be at least 1 (Hz)"));
        }
        if self.ingestion_window.get().is_zero() {
            errors.push(FieldError::new(
                &["ingestion_window"],
                "must be greater than zero",
            ));
        }
        if self.max_request_bytes.is_some_and(|b| b.get() < 1024) {
            errors.push(FieldError::new(
                &["max_request_bytes"],
                "must be at least 1KiB",
            ));
        }
        if self.max_request_stacks == Some(0) {
            errors.push(FieldError::new(
                &["max_request_stacks"],
                "must be at least 1",
            ));
        }
        if t == Target::Pyroscope
            && self
                .max_request_stacks
                .is_some_and(|n| n > PYROSCOPE_MAX_STACKS)
        {
            errors.push(FieldError::new(
                &["max_request_stacks"],
                format!("Pyroscope refuses more than {PYROSCOPE_MAX_STACKS} stacks per push by default; raise it only if the server's max_profile_stacktrace_samples is raised too"),
            ));
        }
        if self.max_pending_stacks == 0 {
            errors.push(FieldError::new(
                &["max_pending_stacks"],
                "must be at least 1",
            ));
        }
        errors.extend(self.request.validate());
        errors
    }
}

fn parse_url(text: &str) -> Result<Url, String> {
    let url = Url::parse(text).map_err(|e| format!("{text:?} is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("{text:?}: the scheme must be http or https"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        // A URL is logged and shown in errors; a secret in it would leak.
        return Err("credentials do not belong in the URL: use `auth`".into());
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<HttpSinkConfig, String> {
        toml::from_str(s).map_err(|e| e.to_string())
    }

    fn paths(c: &HttpSinkConfig) -> Vec<String> {
        c.validate().iter().map(|e| e.path.join(".")).collect()
    }

    #[test]
    fn each_target_parses_with_its_keys() {
        let c = parse(
            "target = \"pyroscope\"\nendpoint = \"http://127.0.0.1:4040\"\napp_name = \"web\"",
        )
        .unwrap();
        assert!(c.validate().is_empty(), "{:?}", c.validate());
        assert_eq!(
            (c.max_request_stacks(), c.max_request_bytes()),
            (16_000, 4 << 20)
        );
        let c = parse(
            "target = \"gprofiler\"\nendpoint = \"https://studio\"\napi_key = { env = \"K\" }",
        )
        .unwrap();
        assert!(c.validate().is_empty(), "{:?}", c.validate());
        let c = parse("target = \"generic\"\nendpoint = \"http://h/p\"\nencoding = \"pprof\"\ncompression = \"gzip\"").unwrap();
        assert!(c.validate().is_empty());
        assert_eq!(c.encoding(), Encoding::Pprof);
        let e = parse("target = \"loki\"\nendpoint = \"http://h\"").unwrap_err();
        assert!(e.contains("loki"), "{e}");
    }

    #[test]
    fn misplaced_and_bad_keys_are_named() {
        let c = parse("target = \"pyroscope\"\nendpoint = \"ftp://u:p@h\"\nencoding = \"json\"\napi_key = { env = \"K\" }\nmax_request_stacks = 20000").unwrap();
        assert_eq!(
            paths(&c),
            ["endpoint", "encoding", "api_key", "max_request_stacks"]
        );
        let c = parse("target = \"gprofiler\"\nendpoint = \"https://u:p@studio\"").unwrap();
        let errors = c.validate();
        assert!(errors[0].message.contains("use `auth`"), "{errors:?}");
        assert_eq!(errors[1].path, ["api_key"]);
    }
}
