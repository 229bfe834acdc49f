//! Every answer the server gives, and its status code, in one place.
//!
//! Errors carry a JSON body `{"code": <status>, "message": "<reason>"}` (the shape
//! Pyroscope answers with); 503 answers also carry `Retry-After`.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{header, Response, StatusCode};

pub type Body = Full<Bytes>;

/// Why a request was not accepted; each maps to one status code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// 400: the request is malformed (bad `name`, bad line, bad JSON), with where.
    #[error("{0}")]
    BadRequest(String),
    /// 401: `auth` is set and the request does not carry the token.
    #[error("missing or wrong bearer token")]
    Unauthorized,
    /// 404.
    #[error("no such endpoint: {0}")]
    NotFound(String),
    /// 405, with the methods the path takes.
    #[error("method not allowed; use {0}")]
    MethodNotAllowed(&'static str),
    /// 408: the body did not arrive within `read_timeout`.
    #[error("the request body did not arrive within {0:?}")]
    Timeout(Duration),
    /// 413: over `max_body_size` or, decompressed, `max_decompressed_size`.
    #[error("{0}")]
    TooLarge(String),
    /// 415: a payload format or encoding we do not read.
    #[error("{0}")]
    Unsupported(String),
    /// 422: a sink refused the data for good (it will never take it).
    #[error("a sink refused the data for good")]
    Rejected,
    /// 503 + Retry-After: too many requests at once, delivery failed or was slower
    /// than `ack_timeout`, or the agent is shutting down.
    #[error("{0}")]
    Unavailable(String),
}

impl Refusal {
    pub fn status(&self) -> StatusCode {
        match self {
            Refusal::BadRequest(_) => StatusCode::BAD_REQUEST,
            Refusal::Unauthorized => StatusCode::UNAUTHORIZED,
            Refusal::NotFound(_) => StatusCode::NOT_FOUND,
            Refusal::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Refusal::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
            Refusal::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Refusal::Unsupported(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Refusal::Rejected => StatusCode::UNPROCESSABLE_ENTITY,
            Refusal::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The reason label under which the refusal is counted.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::BadRequest(_) => "bad_request",
            Refusal::Unauthorized => "unauthorized",
            Refusal::NotFound(_) => "not_found",
            Refusal::MethodNotAllowed(_) => "method_not_allowed",
            Refusal::Timeout(_) => "read_timeout",
            Refusal::TooLarge(_) => "too_large",
            Refusal::Unsupported(_) => "unsupported",
            Refusal::Rejected => "rejected",
            Refusal::Unavailable(_) => "unavailable",
        }
    }

    pub fn into_response(self, retry_after: Duration) -> Response<Body> {
        let status = self.status();
        let body = serde_json::json!({ "code": status.as_u16(), "message": self.to_string() });
        let mut r = json(status, &body);
        match self {
            Refusal::Unavailable(_) => {
                let secs = retry_after.as_secs().max(1).to_string();
                r.headers_mut()
                    .insert(header::RETRY_AFTER, secs.parse().expect("digits"));
            }
            Refusal::MethodNotAllowed(allow) => {
                r.headers_mut()
                    .insert(header::ALLOW, allow.parse().expect("static"));
            }
            Refusal::Unauthorized => {
                r.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, "Bearer".parse().expect("static"));
            }
            _ => {}
        }
        r
    }
}

/// 200 with an empty body: what Pyroscope answers a push it took.
pub fn ok_empty() -> Response<Body> {
    Response::new(Full::new(Bytes::new()))
}

/// `status` with `value` as a JSON body.
pub fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(value.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        "application/json".parse().expect("static"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unavailable_carries_retry_after_in_whole_seconds() {
        let r = Refusal::Unavailable("busy".into()).into_response(Duration::from_millis(1500));
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers()[header::RETRY_AFTER], "1");
        let r = Refusal::MethodNotAllowed("POST").into_response(Duration::from_secs(5));
        assert_eq!(r.headers()[header::ALLOW], "POST");
        assert!(!r.headers().contains_key(header::RETRY_AFTER));
    }
}
