//! The `[sources.ID] type = "http_server"` table.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

use crate::secret::Secret;

use crate::component::{at_least_one, FieldError};
use crate::units::{ByteSize, DurationStr};

/// Default port: Pyroscope's, so clients configured for a Pyroscope server on this
/// host push to us unchanged.
pub const DEFAULT_PORT: u16 = 4040;

/// Most requests `max_concurrent_requests` may allow: each holds up to
/// `max_decompressed_size` while it waits for its acknowledgement.
pub const MAX_CONCURRENT_REQUESTS: usize = 4096;

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpServerConfig {
    /// Where to listen. Loopback by default; a gateway for other hosts sets e.g.
    /// "0.0.0.0:4040" (and should set `auth`).
    pub address: SocketAddr,
    /// Largest request body as received (compressed or not); more is answered 413.
    pub max_body_size: ByteSize,
    /// Largest body once gzip is undone (gzip bombs); more is answered 413.
    pub max_decompressed_size: ByteSize,
    /// Requests handled at once (reading, parsing or waiting for delivery); one more
    /// is answered 503 with `Retry-After` at once.
    pub max_concurrent_requests: usize,
    /// How long a request waits for every sink it feeds to confirm delivery before
    /// it is answered 503 with `Retry-After` (its data may still be delivered
    /// later: a client that retries may send it twice).
    pub ack_timeout: DurationStr,
    /// The `Retry-After` given with 503 answers.
    pub retry_after: DurationStr,
    /// Longest time to receive one request's head and body; a slower client gets
    /// 408 (or the connection is closed while the head is incomplete).
    pub read_timeout: DurationStr,
    /// Optional bearer token every push must carry.
    pub auth: Option<AuthConfig>,
}

/// `auth = { token = "${PUSH_TOKEN}" }` (or `token = { env = "..." }`, `token =
/// { file = "..." }`): the bearer token pushes must carry (`Authorization: Bearer
/// <token>`, or gProfiler's `GPROFILER-API-KEY` header).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// The token, a [`Secret`] (surrounding whitespace is ignored).
    pub token: Secret,
}

impl Default for HttpServerConfig {
    fn default() -> Self {
        HttpServerConfig {
            address: SocketAddr::from(([127, 0, 0, 1], DEFAULT_PORT)),
            max_body_size: ByteSize::mib(16),
            max_decompressed_size: ByteSize::mib(64),
            max_concurrent_requests: 16,
            // Below the 10 s remote_timeout of Grafana Alloy's pyroscope.write, so
            // the client hears our answer rather than its own timeout.
            ack_timeout: DurationStr::from_secs(8),
            retry_after: DurationStr::from_secs(5),
            read_timeout: DurationStr::from_secs(30),
            auth: None,
        }
    }
}

impl HttpServerConfig {
    pub fn check(&self) -> Vec<FieldError> {
        let mut e = Vec::new();
        e.extend(at_least_one(
            &["max_concurrent_requests"],
            self.max_concurrent_requests,
        ));
        if self.max_concurrent_requests > MAX_CONCURRENT_REQUESTS {
            e.push(FieldError::new(
                &["max_concurrent_requests"],
                format!("must be at most {MAX_CONCURRENT_REQUESTS}"),
            ));
        }
        if self.max_body_size.get() == 0 {
            e.push(FieldError::new(
                &["max_body_size"],
                "must be greater than 0",
            ));
        }
        if self.max_decompressed_size < self.max_body_size {
            e.push(FieldError::new(
                &["max_decompressed_size"],
                "must be at least max_body_size",
            ));
        }
        for (field, d) in [
            ("ack_timeout", self.ack_timeout),
            ("read_timeout", self.read_timeout),
        ] {
            if d.get() < Duration::from_millis(10) {
                e.push(FieldError::new(&[field], "must be at least 10ms"));
            }
        }
        if self.retry_after.get() < Duration::from_secs(1) {
            e.push(FieldError::new(
                &["retry_after"],
                "must be at least 1s (Retry-After is in whole seconds)",
            ));
        }
        if let Some(Err(why)) = self.auth.as_ref().map(|a| a.token.check()) {
            e.push(FieldError::new(&["auth", "token"], why));
        }
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_loopback() {
        let c = HttpServerConfig::default();
        assert!(c.check().is_empty(), "{:?}", c.check());
        assert!(c.address.ip().is_loopback());
        assert_eq!(c.address.port(), DEFAULT_PORT);
    }

    #[test]
    fn every_bad_field_is_named() {
        let c = HttpServerConfig {
            max_concurrent_requests: 0,
            max_body_size: ByteSize(0),
            ack_timeout: DurationStr(Duration::ZERO),
            retry_after: DurationStr(Duration::from_millis(10)),
            auth: Some(AuthConfig {
                token: Secret::Env(String::new()),
            }),
            ..HttpServerConfig::default()
        };
        let paths: Vec<String> = c.check().iter().map(|e| e.path.join(".")).collect();
        assert_eq!(
            paths,
            [
                "max_concurrent_requests",
                "max_body_size",
                "ack_timeout",
                "retry_after",
                "auth.token"
            ]
        );
    }

    #[test]
    fn the_token_is_a_secret_of_any_spelling() {
        for token in [r#""${T}""#, r#"{ env = "T" }"#, r#"{ file = "/t" }"#] {
            let table: toml::Value =
                toml::from_str(&format!("auth = {{ token = {token} }}")).unwrap();
            crate::component::parse_table::<HttpServerConfig>(table).unwrap();
        }
        let table: toml::Value = toml::from_str("auth = { token_file = \"/t\" }").unwrap();
        let errors = crate::component::parse_table::<HttpServerConfig>(table).unwrap_err();
        assert!(errors[0].message.contains("token_file"), "{errors:?}");
        let ok: toml::Value =
            toml::from_str("address = \"0.0.0.0:4040\"\nauth = { token = { env = \"T\" } }")
                .unwrap();
        let c = crate::component::parse_table::<HttpServerConfig>(ok).unwrap();
        assert!(c.check().is_empty());
        assert_eq!(c.address.port(), 4040);
    }
}
