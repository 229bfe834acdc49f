//! `type = "http"`: windows POSTed to an HTTP server, through the sink driver.
//!
//! ```toml
//! [sinks.pyroscope]
//! type = "http"
//! inputs = ["fold"]
//! target = "pyroscope"                 # or "gprofiler", "generic"
//! endpoint = "http://127.0.0.1:4040"
//! auth = { strategy = "basic", user = "123456", password = "${PYROSCOPE_TOKEN}" }
//! ```
//!
//! A delivering sink on the spine (`sinks::delivering`): this module is its
//! config ([`HttpSink`]: `endpoint`, `auth`, `tls`, `max_request_bytes` and the
//! target's keys, [`Target`]), its request builder ([`HttpRequests`], the target's
//! [`Shape`]) and its service ([`service`]: retries on connection errors,
//! timeouts, 408, 429, 5xx; other 4xx are rejected and counted). Each complete
//! window becomes one or more requests, split within the target's limits
//! ([`pyroscope`], [`gprofiler`], [`generic`]). A window that cannot be sent at
//! all (older than Pyroscope's ingestion window, or one stack larger than a
//! request) is dropped before sending, counted in
//! `component_discarded_events_total` (reason `too_old`, `oversized`).

pub mod auth;
pub mod config;
pub mod generic;
pub mod gprofiler;
pub mod otlp;
pub mod pyroscope;
pub mod service;
pub mod target;

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::HeaderValue;
use reqwest::Url;

pub use config::{HttpSink, HttpSinkConfig, TlsConfig};
pub use target::{HttpTarget, Shape, Target};

use self::gprofiler::Gpid;
use self::service::{HttpRequest, HttpService};
use super::delivering::{DeliveringSink, Refused, RequestBuilder};
use super::driver::RequestConfig;
use super::pending::CompleteWindow;
use crate::component::{BuildError, FieldError};
use crate::telemetry::ComponentMetrics;

/// Longest a TCP (and TLS) connect may take, within `request.timeout`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

impl DeliveringSink for HttpSink {
    type Service = HttpService;
    type Builder = HttpRequests;

    fn parse(table: toml::Table) -> Result<Self, Vec<FieldError>> {
        HttpSink::parse(table)
    }

    fn validate(&self, _: &RequestConfig) -> Vec<FieldError> {
        self.check()
    }

    /// The client, credentials and probe. Reads secrets and the CA file: a missing
    /// one is an error here, at start.
    fn service(
        &self,
        _: &str,
        request: &RequestConfig,
        metrics: Option<&ComponentMetrics>,
    ) -> Result<HttpService, BuildError> {
        let service = self.http_service(request).map_err(BuildError)?;
        Ok(match metrics {
            Some(m) => service.with_metrics(m.clone()),
            None => service,
        })
    }

    fn builder(&self, metrics: &ComponentMetrics) -> Result<HttpRequests, BuildError> {
        let endpoint = self.endpoint_url().map_err(BuildError)?;
        Ok(HttpRequests {
            shape: self.target.get().shape(&endpoint, self.max_request_bytes()),
            metrics: metrics.clone(),
        })
    }
}

impl HttpSink {
    fn http_service(&self, request: &RequestConfig) -> Result<HttpService, String> {
        let endpoint = self.endpoint_url()?;
        let mut client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(CONNECT_TIMEOUT.min(request.timeout()))
            .user_agent(concat!("profpipe/", env!("CARGO_PKG_VERSION")));
        if let Some(tls) = &self.tls {
            let pem = std::fs::read(&tls.ca_file)
                .map_err(|e| format!("tls.ca_file {}: {e}", tls.ca_file.display()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| format!("tls.ca_file {}: {e}", tls.ca_file.display()))?;
            if certs.is_empty() {
                return Err(format!(
                    "tls.ca_file {}: no PEM certificate in it",
                    tls.ca_file.display()
                ));
            }
            client = client.tls_certs_merge(certs);
        }
        let client = client
            .build()
            .map_err(|e| format!("cannot set up the HTTP client: {e}"))?;
        let mut auth = Vec::new();
        if let Some(a) = &self.auth {
            auth.push(a.header().map_err(|e| format!("auth: {e}"))?);
        }
        let target = self.target.get();
        auth.extend(target.credentials()?);
        let probe = target.probe(&endpoint)?;
        Ok(HttpService::new(
            client,
            auth,
            probe,
            Arc::new(Gpid::default()),
        ))
    }
}

/// `base` with `path` appended to its own path (`https://h/pyroscope` +
/// `/ingest` = `https://h/pyroscope/ingest`).
pub(crate) fn join(base: &Url, path: &str) -> Url {
    let mut u = base.clone();
    let joined = format!("{}{path}", base.path().trim_end_matches('/'));
    u.set_path(&joined);
    u.set_query(None);
    u
}

/// A header value from a name (service names are plain text; anything a header
/// cannot hold becomes `_`).
pub(crate) fn header_value(s: &str) -> HeaderValue {
    let clean: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    HeaderValue::from_str(&clean).unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}

/// A window with one stack larger than a request may be.
pub(crate) fn oversized(e: crate::sinks::encoding::Oversized) -> Refused {
    Refused {
        reason: "oversized",
        message: format!("{e}; raise max_request_bytes if the server takes more"),
    }
}

/// The http sink's request builder: the target's shape.
pub struct HttpRequests {
    shape: Box<dyn Shape>,
    metrics: ComponentMetrics,
}

impl RequestBuilder for HttpRequests {
    type Request = HttpRequest;

    async fn build(&mut self, window: CompleteWindow) -> Result<Vec<HttpRequest>, Refused> {
        self.shape.requests(&window, &self.metrics)
    }
}
