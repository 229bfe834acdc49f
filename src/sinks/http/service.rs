//! One HTTP attempt through the sink driver, and the one place where an answer
//! becomes an outcome:
//!
//! | answer | outcome | `reason` |
//! |---|---|---|
//! | 2xx | delivered | |
//! | 408, 429, 5xx | retried, honouring `Retry-After` (seconds or HTTP-date) | `http_408`, `http_429`, `http_500`, `http_502`, `http_503`, `http_504`, `http_5xx` |
//! | connection refused/reset, DNS, TLS handshake | retried | `connect` |
//! | no answer within `request.timeout` | retried | `timeout` |
//! | other 4xx | rejected for good, counted | `http_400`, `http_401`, `http_403`, `http_404`, `http_411`, `http_413`, `http_422`, `http_4xx` |
//! | 1xx, 3xx (redirects are not followed: a POST must not turn into a GET) | rejected | `http_3xx` |
//!
//! Reasons are a fixed set, so metric labels stay bounded; the server's message
//! goes to the log line as a short one-line excerpt (`formats::excerpt`: an HTML
//! error page gives only its title), never to a label.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use reqwest::{Method, StatusCode, Url};

use super::gprofiler::{Gpid, Upload};
use crate::buffer::BoxFuture;
use crate::formats::excerpt::excerpt;
use crate::sinks::driver::{DeliveryError, Service};
use crate::telemetry::ComponentMetrics;

/// One request: where, which headers, what body, how its answer is read.
#[derive(Debug)]
pub struct HttpRequest {
    pub url: Url,
    pub headers: HeaderMap,
    pub body: Body,
    pub answers: Answers,
}

/// How a request's answer is read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Answers {
    /// The table of the module documentation.
    #[default]
    Http,
    /// OTLP/HTTP's rules: only 429, 502, 503 and 504 are retried, every other
    /// failure is refused for good; a 2xx may carry a partial success, which is
    /// counted (`otlp_partial_success`) and logged.
    Otlp,
}

#[derive(Debug)]
pub enum Body {
    /// Sent as it is.
    Bytes(Bytes),
    /// A Performance Studio upload: built at each attempt with the gpid known then.
    Gprofiler(Upload),
}

/// What the healthcheck fetches.
#[derive(Debug)]
pub struct Probe {
    pub url: Url,
    pub headers: HeaderMap,
}

pub struct HttpService {
    client: reqwest::Client,
    /// Where partial successes are counted (none for a healthcheck's service).
    metrics: Option<ComponentMetrics>,
    /// A partial success was logged at WARN already.
    warned_partial: AtomicBool,
    /// The credential headers, sent with every request and probe.
    auth: Vec<(HeaderName, HeaderValue)>,
    probe: Option<Probe>,
    /// Performance Studio's process id, kept across failed uploads.
    gpid: Arc<Gpid>,
}

impl HttpService {
    pub fn new(
        client: reqwest::Client,
        auth: Vec<(HeaderName, HeaderValue)>,
        probe: Option<Probe>,
        gpid: Arc<Gpid>,
    ) -> Self {
        HttpService {
            client,
            metrics: None,
            warned_partial: AtomicBool::new(false),
            auth,
            probe,
            gpid,
        }
    }

    /// Counts partial successes in `metrics`.
    pub fn with_metrics(mut self, metrics: ComponentMetrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// An OTLP receiver took only part of a request: counted, logged (WARN once,
    /// then DEBUG), not retried (it would refuse the same again).
    fn partial_success(&self, answer: &[u8]) {
        let Some((rejected, message)) = super::otlp::partial_success(answer) else {
            return;
        };
        let component = self.metrics.as_ref().map_or("", |m| m.id());
        if let Some(m) = &self.metrics {
            m.errors("otlp_partial_success", rejected);
        }
        let message = excerpt(message.as_bytes()).unwrap_or_default();
        if !self.warned_partial.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                component,
                rejected_profiles = rejected,
                "the OTLP receiver refused part of a request: {message} (further ones are counted in component_errors_total{{reason=\"otlp_partial_success\"}})"
            );
        } else {
            tracing::debug!(
                component,
                rejected_profiles = rejected,
                "partial success: {message}"
            );
        }
    }

    async fn send(
        &self,
        method: Method,
        url: &Url,
        headers: &HeaderMap,
        body: Option<Bytes>,
    ) -> Result<(StatusCode, HeaderMap, Bytes), DeliveryError> {
        let mut rb = self
            .client
            .request(method, url.clone())
            .headers(headers.clone());
        for (name, value) in &self.auth {
            rb = rb.header(name, value);
        }
        if let Some(body) = body {
            // A full body: reqwest sends its Content-Length (Performance Studio
            // answers 411 to chunked uploads).
            rb = rb.body(body);
        }
        let response = rb.send().await.map_err(transport)?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.bytes().await.map_err(transport)?;
        Ok((status, headers, body))
    }
}

impl Service for HttpService {
    type Request = HttpRequest;

    fn call<'a>(&'a self, req: &'a HttpRequest) -> BoxFuture<'a, Result<(), DeliveryError>> {
        Box::pin(async move {
            let body = match &req.body {
                Body::Bytes(b) => b.clone(),
                Body::Gprofiler(u) => u.body(self.gpid.get()),
            };
            let (status, headers, answer) = self
                .send(Method::POST, &req.url, &req.headers, Some(body))
                .await?;
            match req.answers {
                Answers::Http => classify(status, &headers, &answer)?,
                Answers::Otlp => classify_otlp(status, &headers, &answer)?,
            }
            if let Body::Gprofiler(_) = req.body {
                self.gpid.learn(&answer);
            }
            if req.answers == Answers::Otlp {
                self.partial_success(&answer);
            }
            Ok(())
        })
    }

    fn healthcheck(&self) -> BoxFuture<'_, Result<(), DeliveryError>> {
        Box::pin(async move {
            let Some(probe) = &self.probe else {
                return Ok(());
            };
            let (status, headers, answer) = self
                .send(Method::GET, &probe.url, &probe.headers, None)
                .await
                .map_err(|e| match e {
                    // Which server could not be reached, for the start-up error.
                    DeliveryError::Retryable {
                        reason, message, ..
                    } => DeliveryError::retryable(reason, format!("{}: {message}", probe.url)),
                    other => other,
                })?;
            classify(status, &headers, &answer).map_err(|e| match status.as_u16() {
                401 | 403 => DeliveryError::permanent(
                    e.reason(),
                    format!(
                        "{} refused our credentials ({status}); check `auth` / `api_key`",
                        probe.url
                    ),
                ),
                _ => e,
            })
        })
    }
}

/// A transport failure (no answer): always worth retrying.
fn transport(e: reqwest::Error) -> DeliveryError {
    let reason = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else {
        "transport"
    };
    // The URL holds no secret (refused at validation), but keep errors short.
    let e = e.without_url();
    DeliveryError::retryable(reason, error_chain(&e))
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// The status table of the module documentation.
pub fn classify(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Result<(), DeliveryError> {
    if status.is_success() {
        return Ok(());
    }
    let code = status.as_u16();
    let message = match excerpt(body) {
        Some(e) => format!("{status}: {e}"),
        None => status.to_string(),
    };
    let retryable = |reason: &'static str| DeliveryError::Retryable {
        reason,
        message: message.clone(),
        retry_after: retry_after(headers, SystemTime::now()),
    };
    Err(match code {
        408 => retryable("http_408"),
        429 => retryable("http_429"),
        500..=599 => retryable(match code {
            500 => "http_500",
            502 => "http_502",
            503 => "http_503",
            504 => "http_504",
            _ => "http_5xx",
        }),
        400..=499 => DeliveryError::permanent(
            match code {
                400 => "http_400",
                401 => "http_401",
                403 => "http_403",
                404 => "http_404",
                411 => "http_411",
                413 => "http_413",
                422 => "http_422",
                _ => "http_4xx",
            },
            message,
        ),
        _ => DeliveryError::permanent(
            "http_3xx",
            format!("{message} (redirects are not followed: point `endpoint` at the final URL)"),
        ),
    })
}

/// OTLP/HTTP's rules (specification, "OTLP/HTTP Response"): 429, 502, 503 and
/// 504 are retryable (with `Retry-After`), every other non-2xx is not.
pub fn classify_otlp(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), DeliveryError> {
    match classify(status, headers, body) {
        Err(DeliveryError::Retryable {
            reason, message, ..
        }) if !matches!(status.as_u16(), 429 | 502 | 503 | 504) => {
            Err(DeliveryError::permanent(reason, message))
        }
        other => other,
    }
}

/// `Retry-After: 120` or `Retry-After: Wed, 21 Oct 2015 07:28:00 GMT`.
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let text = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = text.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(text).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_retry_after(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn statuses_map_to_outcomes() {
        let none = HeaderMap::new();
        assert!(classify(StatusCode::OK, &none, b"").is_ok());
        assert!(classify(StatusCode::NO_CONTENT, &none, b"").is_ok());
        for (code, reason) in [
            (408, "http_408"),
            (429, "http_429"),
            (503, "http_503"),
            (599, "http_5xx"),
        ] {
            let e = classify(StatusCode::from_u16(code).unwrap(), &none, b"busy").unwrap_err();
            assert!(e.is_retryable(), "{code}");
            assert_eq!(e.reason(), reason);
        }
        for (code, reason) in [
            (400, "http_400"),
            (401, "http_401"),
            (411, "http_411"),
            (413, "http_413"),
            (422, "http_422"),
            (418, "http_4xx"),
            (302, "http_3xx"),
        ] {
            let e =
                classify(StatusCode::from_u16(code).unwrap(), &none, b"{\"code\":3}").unwrap_err();
            assert!(!e.is_retryable(), "{code}");
            assert_eq!(e.reason(), reason);
        }
        let e = classify(StatusCode::BAD_REQUEST, &none, b"not_in_ingestion_window").unwrap_err();
        assert!(e.to_string().contains("not_in_ingestion_window"), "{e}");
        // A proxy's HTML page: its title, on one line.
        let page = b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx/1.25.3</center>\r\n</body>\r\n</html>\r\n";
        let e = classify(StatusCode::BAD_GATEWAY, &none, page).unwrap_err();
        assert_eq!(e.to_string(), "http_502: 502 Bad Gateway: 502 Bad Gateway");
        let e = classify(
            StatusCode::SERVICE_UNAVAILABLE,
            &none,
            &[0x0a, 0x05, 0x08, 0x0e],
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "http_503: 503 Service Unavailable");
    }

    #[test]
    fn otlp_retries_only_what_otlp_http_says() {
        let none = HeaderMap::new();
        for code in [429, 502, 503, 504] {
            let e = classify_otlp(StatusCode::from_u16(code).unwrap(), &none, b"").unwrap_err();
            assert!(e.is_retryable(), "{code}");
        }
        for code in [400, 408, 413, 500, 501] {
            let e = classify_otlp(StatusCode::from_u16(code).unwrap(), &none, b"").unwrap_err();
            assert!(!e.is_retryable(), "{code}");
        }
        assert!(classify_otlp(StatusCode::OK, &none, b"").is_ok());
    }

    #[test]
    fn retry_after_takes_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480);
        assert_eq!(
            retry_after(&with_retry_after("7"), now),
            Some(Duration::from_secs(7))
        );
        // 2015-10-21T07:28:00Z is 1445412480.
        let h = with_retry_after("Wed, 21 Oct 2015 07:28:30 GMT");
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(30)));
        let h = with_retry_after("Wed, 21 Oct 2015 07:27:00 GMT");
        assert_eq!(
            retry_after(&h, now),
            Some(Duration::ZERO),
            "a past date: now"
        );
        assert_eq!(retry_after(&with_retry_after("soon"), now), None);
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
        let e = classify(StatusCode::TOO_MANY_REQUESTS, &with_retry_after("3"), b"").unwrap_err();
        assert!(
            matches!(e, DeliveryError::Retryable { retry_after: Some(d), .. } if d == Duration::from_secs(3))
        );
    }
}
