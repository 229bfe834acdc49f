//! `type = "http"`: windows POSTed to an HTTP server, through the sink driver.
//!
//! ```toml
//! [sinks.pyroscope]
//! type = "http"
//! inputs = ["fold"]
//! target = "pyroscope"                 # or "gprofiler", "generic"
//! endpoint = "http://127.0.0.1:4040"
//! auth = { strategy = "basic", user = "123456", password_env = "PYROSCOPE_TOKEN" }
//! ```
//!
//! Each complete window becomes one or more requests (split within the target's
//! limits: [`pyroscope`], [`gprofiler`], [`generic`]) that share the window's
//! delivery tokens: the window counts as delivered once every part is. Requests go
//! through the [`Driver`]: at most `request.concurrency` in flight (the wait for a
//! slot is the sink's backpressure), retried as [`service`] says (connection
//! errors, timeouts, 408, 429, 5xx; other 4xx are rejected and counted), flushed at
//! shutdown within `[agent] shutdown_timeout`. A window that cannot be sent at all
//! (older than Pyroscope's ingestion window, or one stack larger than a request) is
//! dropped before sending, counted in `component_discarded_events_total` (reason
//! `too_old`, `oversized`) and its tokens resolved `Rejected`.
//!
//! A window's events and bytes are counted with its first request.

pub mod auth;
pub mod config;
pub mod generic;
pub mod gprofiler;
pub mod pyroscope;
pub mod service;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_ENCODING, CONTENT_TYPE};
use reqwest::Url;

pub use config::{HttpSinkConfig, Target, TlsConfig};

use self::generic::Generic;
use self::gprofiler::Gpid;
use self::pyroscope::Pyroscope;
use self::service::{Body, HttpRequest, HttpService, Probe};
use super::driver::{self, Driver};
use super::encoding::{Encoder, PartLimits};
use super::pending::{run_windows, CompleteWindow, PendingLimits, WindowWriter};
use crate::buffer::BoxFuture;
use crate::component::{BuildError, FieldError, SinkConfig, SinkContext, Task};
use crate::event::{Batch, EventFinalizers, EventStatus};
use crate::formats::timestamp::iso8601;
use crate::telemetry::ComponentMetrics;

/// Longest a TCP (and TLS) connect may take, within `request.timeout`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How windows become requests, per target.
#[derive(Debug)]
enum Shape {
    Pyroscope(Pyroscope),
    Gprofiler {
        url: Url,
        service_name: Option<String>,
        spawn_time: String,
        max_bytes: usize,
    },
    Generic {
        url: Url,
        generic: Generic,
    },
}

/// A window refused before sending.
struct Refused {
    reason: &'static str,
    message: String,
}

impl SinkConfig for HttpSinkConfig {
    fn memory_bound(&self) -> u64 {
        self.max_pending_bytes.get()
    }

    fn inputs(&self) -> crate::event::DataTypes {
        crate::event::DataTypes::PROFILES_AND_DIAGNOSTICS
    }

    fn validate(&self) -> Vec<FieldError> {
        HttpSinkConfig::validate(self)
    }

    fn build(&self, cx: SinkContext) -> Result<Task, BuildError> {
        let (service, shape) = self.service().map_err(BuildError)?;
        let SinkContext { cx, input } = cx;
        let limits = PendingLimits {
            max_stacks: self.max_pending_stacks,
            max_bytes: self.max_pending_bytes.get(),
        };
        let driver = Driver::new(service, &self.request, cx.metrics.clone());
        let ingestion_window = self.ingestion_window.get();
        Ok(Box::pin(async move {
            let mut writer = HttpWriter {
                driver,
                shape,
                ingestion_window,
                metrics: cx.metrics.clone(),
                warned: HashSet::new(),
            };
            run_windows(input, &cx, limits, &mut writer).await;
            let report = writer.driver.flush(cx.shutdown_timeout).await;
            report.warn_if_undelivered(&cx.id);
            Ok(())
        }))
    }

    fn healthcheck(&self) -> Option<BoxFuture<'static, Result<(), crate::component::Unhealthy>>> {
        let timeout = self.request.timeout();
        let built = self.service();
        Some(Box::pin(async move {
            let (service, _) = built?;
            Ok(driver::healthcheck(&service, timeout).await?)
        }))
    }
}

impl HttpSinkConfig {
    /// The client, credentials and request shape. Reads secrets and the CA file:
    /// a missing one is an error here, at start.
    fn service(&self) -> Result<(HttpService, Shape), String> {
        let endpoint = self.endpoint_url()?;
        let mut client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(CONNECT_TIMEOUT.min(self.request.timeout()))
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
        let (shape, probe) = match self.target {
            Target::Pyroscope => {
                let shape = Shape::Pyroscope(Pyroscope {
                    url: join(&endpoint, "/ingest"),
                    app_name: self.app_name.clone(),
                    sample_rate: self.sample_rate,
                    spy_name: self.spy_name.clone(),
                    max_stacks: self.max_request_stacks(),
                    max_bytes: self.max_request_bytes(),
                });
                // Pyroscope's readiness endpoint, behind the same auth as /ingest
                // on gateways such as Grafana Cloud's.
                let probe = Probe {
                    url: join(&endpoint, "/ready"),
                    headers: HeaderMap::new(),
                };
                (shape, Some(probe))
            }
            Target::Gprofiler => {
                let key = self
                    .api_key
                    .as_ref()
                    .ok_or("api_key is required")?
                    .load()
                    .map_err(|e| format!("api_key: {e}"))?;
                let key = auth::sensitive(key.expose()).map_err(|e| format!("api_key: {e}"))?;
                auth.push((HeaderName::from_static("gprofiler-api-key"), key));
                let mut headers = HeaderMap::new();
                if let Some(s) = &self.service_name {
                    headers.insert(SERVICE_HEADER, header_value(s));
                }
                let shape = Shape::Gprofiler {
                    url: join(&endpoint, "/api/v2/profiles"),
                    service_name: self.service_name.clone(),
                    spawn_time: iso8601(crate::window_clock::now_ms()),
                    max_bytes: self.max_request_bytes(),
                };
                // What gProfiler checks at start; sent with the key, so a server
                // that checks it refuses a bad one now.
                let probe = Probe {
                    url: join(&endpoint, "/api/v1/health_check"),
                    headers,
                };
                (shape, Some(probe))
            }
            Target::Generic => {
                let generic = Generic {
                    encoder: Encoder {
                        encoding: self.encoding(),
                        sample_rate_hz: self.sample_rate,
                    },
                    compression: self.compression(),
                    limits: PartLimits {
                        max_bytes: self.max_request_bytes(),
                        max_stacks: self.max_request_stacks(),
                    },
                };
                let probe = match &self.healthcheck_url {
                    Some(u) => Some(Probe {
                        url: Url::parse(u).map_err(|e| format!("healthcheck_url: {e}"))?,
                        headers: HeaderMap::new(),
                    }),
                    None => None,
                };
                (
                    Shape::Generic {
                        url: endpoint,
                        generic,
                    },
                    probe,
                )
            }
        };
        let service = HttpService::new(client, auth, probe, Arc::new(Gpid::default()));
        Ok((service, shape))
    }
}

const SERVICE_HEADER: HeaderName = HeaderName::from_static("gprofiler-service-name");

/// `base` with `path` appended to its own path (`https://h/pyroscope` +
/// `/ingest` = `https://h/pyroscope/ingest`).
fn join(base: &Url, path: &str) -> Url {
    let mut u = base.clone();
    let joined = format!("{}{path}", base.path().trim_end_matches('/'));
    u.set_path(&joined);
    u.set_query(None);
    u
}

/// A header value from a name (service names are plain text; anything a header
/// cannot hold becomes `_`).
fn header_value(s: &str) -> HeaderValue {
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

struct HttpWriter {
    driver: Driver<HttpService>,
    shape: Shape,
    ingestion_window: Duration,
    metrics: ComponentMetrics,
    /// Reasons of refused windows already logged at WARN.
    warned: HashSet<&'static str>,
}

impl HttpWriter {
    fn requests(&self, w: &CompleteWindow) -> Result<Vec<HttpRequest>, Refused> {
        match &self.shape {
            Shape::Pyroscope(p) => {
                let now = crate::window_clock::now_ms();
                let oldest = now.saturating_sub(self.ingestion_window.as_millis() as u64);
                if w.window.start_ms < oldest {
                    return Err(Refused {
                        reason: "too_old",
                        message: format!(
                            "the window starting {} is older than ingestion_window ({}), which the server refuses",
                            iso8601(w.window.start_ms),
                            humantime::format_duration(self.ingestion_window)
                        ),
                    });
                }
                let pushes = p.pushes(w);
                self.metrics.dropped_stacks("truncated", pushes.truncated);
                self.metrics.errors("label_limit", pushes.labels_dropped);
                let mut headers = HeaderMap::new();
                headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
                Ok(pushes
                    .requests
                    .into_iter()
                    .map(|(url, body)| HttpRequest {
                        url,
                        headers: headers.clone(),
                        body: Body::Bytes(Bytes::from(body)),
                    })
                    .collect())
            }
            Shape::Gprofiler {
                url,
                service_name,
                spawn_time,
                max_bytes,
            } => {
                let uploads = gprofiler::uploads(w, spawn_time, *max_bytes).map_err(oversized)?;
                let service = service_name
                    .as_deref()
                    .or_else(|| w.labels.get("service"))
                    .unwrap_or(&w.host);
                let mut url = url.clone();
                url.query_pairs_mut()
                    .append_pair("service", service)
                    .append_pair("hostname", &w.host)
                    .append_pair("timestamp", &gprofiler::timestamp(w.window))
                    .append_pair("version", env!("CARGO_PKG_VERSION"));
                let mut headers = HeaderMap::new();
                headers.insert(SERVICE_HEADER, header_value(service));
                headers.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
                headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                Ok(uploads
                    .into_iter()
                    .map(|u| HttpRequest {
                        url: url.clone(),
                        headers: headers.clone(),
                        body: Body::Gprofiler(u),
                    })
                    .collect())
            }
            Shape::Generic { url, generic } => Ok(generic
                .bodies(w)
                .map_err(oversized)?
                .into_iter()
                .map(|(headers, body)| HttpRequest {
                    url: url.clone(),
                    headers,
                    body: Body::Bytes(body),
                })
                .collect()),
        }
    }
}

fn oversized(e: crate::sinks::encoding::Oversized) -> Refused {
    Refused {
        reason: "oversized",
        message: format!("{e}; raise max_request_bytes if the server takes more"),
    }
}

impl WindowWriter for HttpWriter {
    /// Only for callers that want the outcome: delivers and waits for it.
    async fn write(&mut self, window: CompleteWindow) -> EventStatus {
        let (batch, rx) = Batch::new();
        self.deliver(window, batch.finalizers()).await;
        drop(batch);
        rx.wait().await
    }

    async fn deliver(&mut self, w: CompleteWindow, finalizers: EventFinalizers) {
        let requests = match self.requests(&w) {
            Ok(r) => r,
            Err(refused) => {
                self.metrics
                    .discarded_many(refused.reason, w.events, w.bytes);
                finalizers.resolve(EventStatus::Rejected);
                if self.warned.insert(refused.reason) {
                    tracing::warn!(
                        component = self.metrics.id(),
                        reason = refused.reason,
                        "window dropped: {} (further ones are only counted)",
                        refused.message
                    );
                }
                return;
            }
        };
        let last = requests.len().saturating_sub(1);
        let mut finalizers = Some(finalizers);
        for (i, req) in requests.into_iter().enumerate() {
            let tokens = if i == last {
                finalizers.take().unwrap_or_default()
            } else {
                finalizers.clone().unwrap_or_default()
            };
            let (events, bytes) = if i == 0 { (w.events, w.bytes) } else { (0, 0) };
            self.driver.submit(req, tokens, events, bytes).await;
        }
    }
}
