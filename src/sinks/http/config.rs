//! `[sinks.ID] type = "http"`: the config table and its checks (no I/O).

use std::path::PathBuf;

use reqwest::Url;
use serde::Deserialize;

use super::auth::AuthConfig;
use super::target::Target;
use crate::component::{parse_tagged, peel, FieldError};
use crate::sinks::delivering::Delivering;
use crate::units::ByteSize;

/// `tls = { ca_file = "..." }`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file of CA certificates trusted in addition to the system's.
    pub ca_file: PathBuf,
}

/// `[sinks.ID] type = "http"`: the spine's keys (see `sinks::delivering`), the
/// keys every target has, and the target's own.
pub type HttpSinkConfig = Delivering<HttpSink>;

/// The http sink's own keys.
#[derive(Debug)]
pub struct HttpSink {
    /// Base URL of the server (pyroscope: `http://host:4040`, `/ingest` is added;
    /// gprofiler: `https://studio`, `/api/v2/profiles` is added); for generic the
    /// URL POSTed to.
    pub endpoint: String,
    /// Credentials sent with every request and the healthcheck.
    pub auth: Option<AuthConfig>,
    pub tls: Option<TlsConfig>,
    /// Most bytes of one request body (after compression); a larger window is split.
    /// Default: the target's (pyroscope 4 MiB, gprofiler 4 MiB compressed, generic
    /// 10 MiB).
    pub max_request_bytes: Option<ByteSize>,
    /// `target = "..."` and its keys.
    pub target: Target,
}

/// The keys every target has.
#[derive(Deserialize)]
struct Common {
    endpoint: String,
    #[serde(default)]
    auth: Option<AuthConfig>,
    #[serde(default)]
    tls: Option<TlsConfig>,
    #[serde(default)]
    max_request_bytes: Option<ByteSize>,
}

/// Pyroscope's `max_profile_size_bytes` default; Performance Studio's compressed
/// `CONFIG_MAX_CONTENT_LEN`.
pub const FOUR_MIB: u64 = 4 << 20;

impl HttpSink {
    /// Reads the common keys, then the target's from the rest. A key that belongs
    /// to another target is named as such.
    pub fn parse(table: toml::Table) -> Result<Self, Vec<FieldError>> {
        let (common, rest) = peel::<Common>(table);
        let target = parse_tagged::<Target>(rest, "target")
            .map_err(|errors| errors.into_iter().map(misplaced).collect::<Vec<_>>());
        match (common, target) {
            (Ok(c), Ok(target)) => Ok(HttpSink {
                endpoint: c.endpoint,
                auth: c.auth,
                tls: c.tls,
                max_request_bytes: c.max_request_bytes,
                target,
            }),
            (c, t) => Err([c.err(), t.err()].into_iter().flatten().flatten().collect()),
        }
    }

    pub fn max_request_bytes(&self) -> usize {
        self.max_request_bytes
            .map_or(self.target.get().default_max_request_bytes(), ByteSize::get) as usize
    }

    /// The endpoint, checked: http or https, no credentials in it.
    pub fn endpoint_url(&self) -> Result<Url, String> {
        parse_url(&self.endpoint)
    }

    pub fn check(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        if let Err(e) = self.endpoint_url() {
            errors.push(FieldError::new(&["endpoint"], e));
        }
        if let Some(auth) = &self.auth {
            errors.extend(auth.validate());
        }
        if self.max_request_bytes.is_some_and(|b| b.get() < 1024) {
            errors.push(FieldError::new(
                &["max_request_bytes"],
                "must be at least 1KiB",
            ));
        }
        errors.extend(self.target.get().validate());
        errors
    }
}

/// "unknown field `app_name`" of a gprofiler target: "applies only to target =
/// "pyroscope"" when another target has it.
fn misplaced(mut e: FieldError) -> FieldError {
    let Some(name) = e
        .message
        .strip_prefix("unknown field `")
        .and_then(|r| r.split_once('`'))
    else {
        return e;
    };
    let name = name.0.to_string();
    let owners: Vec<String> = Target::keys()
        .into_iter()
        .filter(|(_, keys)| keys.contains(&name.as_str()))
        .map(|(t, _)| format!("\"{t}\""))
        .collect();
    if !owners.is_empty() {
        e.path = vec![name.clone()];
        e.message = format!("applies only to target = {}", owners.join(" or "));
    }
    e
}

/// `text` as an http(s) URL without credentials.
pub fn parse_url(text: &str) -> Result<Url, String> {
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
    use crate::component::SinkConfig;

    fn parse(s: &str) -> Result<HttpSinkConfig, Vec<FieldError>> {
        HttpSinkConfig::parse(toml::from_str(s).unwrap())
    }

    fn paths(errors: &[FieldError]) -> Vec<String> {
        errors.iter().map(|e| e.path.join(".")).collect()
    }

    #[test]
    fn each_target_parses_with_its_keys() {
        let c = parse(
            "target = \"pyroscope\"\nendpoint = \"http://127.0.0.1:4040\"\napp_name = \"web\"",
        )
        .unwrap();
        assert!(c.validate().is_empty(), "{:?}", c.validate());
        assert_eq!(c.max_request_bytes(), 4 << 20);
        assert_eq!(c.target.name(), "pyroscope");
        let c = parse(
            "target = \"gprofiler\"\nendpoint = \"https://studio\"\napi_key = { env = \"K\" }",
        )
        .unwrap();
        assert!(c.validate().is_empty(), "{:?}", c.validate());
        let c = parse("target = \"gprofiler\"\nendpoint = \"https://studio\"\napi_key = \"${K}\"");
        assert!(c.is_ok(), "a plain string is a secret too");
        let c = parse("target = \"generic\"\nendpoint = \"http://h/p\"\nencoding = \"pprof\"\ncompression = \"gzip\"").unwrap();
        assert!(c.validate().is_empty());
        assert_eq!(c.max_request_bytes(), 10 << 20);
        let e = parse("target = \"loki\"\nendpoint = \"http://h\"").unwrap_err();
        assert_eq!(paths(&e), ["target"]);
        assert!(e[0].message.contains("loki"), "{e:?}");
    }

    #[test]
    fn misplaced_and_bad_keys_are_named() {
        // serde stops at the first unknown key; the loader asks again without it
        // (see `config::retry`), so every one is reported there.
        let e = parse("target = \"pyroscope\"\nendpoint = \"http://h\"\nencoding = \"json\"")
            .unwrap_err();
        assert_eq!(paths(&e), ["encoding"]);
        assert_eq!(e[0].message, "applies only to target = \"generic\"");
        let e = parse("target = \"pyroscope\"\nendpoint = \"http://h\"\napi_key = { env = \"K\" }")
            .unwrap_err();
        assert_eq!(e[0].message, "applies only to target = \"gprofiler\"");
        let e =
            parse("target = \"pyroscope\"\nendpoint = \"http://h\"\nap_name = \"x\"").unwrap_err();
        assert_eq!(paths(&e), ["ap_name"]);
        assert!(e[0].message.contains("unknown field `ap_name`"), "{e:?}");
        let c =
            parse("target = \"pyroscope\"\nendpoint = \"ftp://u:p@h\"\nmax_request_stacks = 20000")
                .unwrap();
        assert_eq!(paths(&c.validate()), ["endpoint", "max_request_stacks"]);
        let c = parse(
            "target = \"gprofiler\"\nendpoint = \"https://u:p@studio\"\napi_key = { env = \"K\" }",
        )
        .unwrap();
        let errors = c.validate();
        assert!(errors[0].message.contains("use `auth`"), "{errors:?}");
        let e = parse("target = \"gprofiler\"\nendpoint = \"https://studio\"").unwrap_err();
        assert_eq!(e[0].message.trim(), "missing field `api_key`");
        assert!(e[0].path.is_empty(), "{e:?}");
        let e = parse("target = \"gprofiler\"\nendpoint = \"https://studio\"\napi_key = 5")
            .unwrap_err();
        assert_eq!(paths(&e), ["api_key"]);
    }
}
