//! `target = "otlp"`: OpenTelemetry profiles over OTLP/HTTP, as a Collector,
//! Pyroscope or any OTLP receiver takes them.
//!
//! ```toml
//! [sinks.otel]
//! type = "http"
//! inputs = ["fold"]
//! target = "otlp"
//! endpoint = "http://127.0.0.1:4318"   # /v1development/profiles is added
//! compression = "gzip"                 # or "none" (default)
//! ```
//!
//! - Each window is one `ExportProfilesServiceRequest` ([`crate::formats::otlp`]),
//!   `POST {endpoint}/v1development/profiles`, `Content-Type:
//!   application/x-protobuf`, gzip-compressed (`Content-Encoding: gzip`) if asked.
//!   A window whose request would pass `max_request_bytes` (default 4 MiB, the
//!   Collector's default message limit) or `max_request_stacks` is split into
//!   several complete requests (each its own dictionary) that share its delivery
//!   tokens.
//! - Answers as OTLP/HTTP specifies: 2xx is delivered; 429, 502, 503 and 504 are
//!   retried, honouring `Retry-After`; every other status is refused for good
//!   (counted as rejected). A 2xx carrying a partial success
//!   (`ExportProfilesServiceResponse.partial_success`) is delivered (retrying
//!   would not help) and its `rejected_profiles` counted in
//!   `component_errors_total{reason="otlp_partial_success"}`, with the receiver's
//!   `error_message` logged (WARN once, then DEBUG).

use reqwest::header::{HeaderMap, HeaderValue, CONTENT_ENCODING, CONTENT_TYPE};
use reqwest::Url;
use serde::Deserialize;

use super::config::FOUR_MIB;
use super::service::{Answers, Body, HttpRequest, Probe};
use super::target::{HttpTarget, Shape};
use super::{join, oversized};
use crate::component::{at_least_one, FieldError};
use crate::formats::otlp;
use crate::sinks::delivering::Refused;
use crate::sinks::encoding::{Compression, Encoder, Encoding, PartLimits};
use crate::sinks::pending::CompleteWindow;
use crate::telemetry::ComponentMetrics;

/// `target = "otlp"`'s keys.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpTarget {
    /// "none" (default) or "gzip" (`Content-Encoding: gzip`).
    #[serde(default)]
    pub compression: Compression,
    /// The profilers' frequency in Hz: the profiles' `period`.
    #[serde(default = "default_sample_rate")]
    pub sample_rate: u32,
    /// Most distinct stacks of one request; default unlimited.
    #[serde(default)]
    pub max_request_stacks: Option<usize>,
}

fn default_sample_rate() -> u32 {
    crate::sinks::encoding::DEFAULT_SAMPLE_RATE
}

/// OTLP/HTTP's path of the profiles signal.
pub const PATH: &str = "/v1development/profiles";

impl HttpTarget for OtlpTarget {
    fn validate(&self) -> Vec<FieldError> {
        let mut errors: Vec<FieldError> = at_least_one(&["sample_rate"], self.sample_rate)
            .into_iter()
            .collect();
        if self.max_request_stacks == Some(0) {
            errors.extend(at_least_one(&["max_request_stacks"], 0usize));
        }
        errors
    }

    fn default_max_request_bytes(&self) -> u64 {
        FOUR_MIB
    }

    /// OTLP/HTTP has no endpoint to ask without sending data.
    fn probe(&self, _: &Url) -> Result<Option<Probe>, String> {
        Ok(None)
    }

    fn shape(&self, endpoint: &Url, max_request_bytes: usize) -> Box<dyn Shape> {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(otlp::CONTENT_TYPE));
        if let Some(enc) = self.compression.content_encoding() {
            headers.insert(CONTENT_ENCODING, HeaderValue::from_static(enc));
        }
        Box::new(OtlpShape {
            url: join(endpoint, PATH),
            headers,
            encoder: Encoder {
                encoding: Encoding::OtlpProto,
                sample_rate_hz: self.sample_rate,
            },
            compression: self.compression,
            limits: PartLimits {
                max_bytes: max_request_bytes,
                max_stacks: self.max_request_stacks.unwrap_or(usize::MAX),
            },
        })
    }
}

struct OtlpShape {
    url: Url,
    headers: HeaderMap,
    encoder: Encoder,
    compression: Compression,
    limits: PartLimits,
}

impl Shape for OtlpShape {
    fn requests(
        &mut self,
        w: &CompleteWindow,
        _: &ComponentMetrics,
    ) -> Result<Vec<HttpRequest>, Refused> {
        let compression = self.compression;
        let parts = self
            .encoder
            .parts(w, self.limits, |b| compression.apply(b))
            .map_err(oversized)?;
        Ok(parts
            .into_iter()
            .map(|p| HttpRequest {
                url: self.url.clone(),
                headers: self.headers.clone(),
                body: Body::Bytes(p.bytes.into()),
                answers: Answers::Otlp,
            })
            .collect())
    }
}

/// What a 2xx answer's `partial_success` says: profiles refused and why. `None`
/// for a full success (an empty body, or no partial success in it) or a body
/// that is not a response (a receiver may answer 2xx with nothing we read).
pub fn partial_success(answer: &[u8]) -> Option<(u64, String)> {
    let response = otlp::decode_response(answer).ok()?;
    let p = response.partial_success?;
    if p.rejected_profiles <= 0 && p.error_message.is_empty() {
        return None;
    }
    Some((p.rejected_profiles.max(0) as u64, p.error_message))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::otlp::proto::{
        ExportProfilesPartialSuccess, ExportProfilesServiceResponse,
    };

    #[test]
    fn partial_success_is_read_and_full_success_is_not() {
        assert_eq!(partial_success(b""), None);
        let r = ExportProfilesServiceResponse {
            partial_success: Some(ExportProfilesPartialSuccess {
                rejected_profiles: 2,
                error_message: "too old".into(),
            }),
        };
        let bytes = prost::Message::encode_to_vec(&r);
        assert_eq!(partial_success(&bytes), Some((2, "too old".into())));
        let none = ExportProfilesServiceResponse {
            partial_success: Some(ExportProfilesPartialSuccess::default()),
        };
        assert_eq!(partial_success(&prost::Message::encode_to_vec(&none)), None);
    }
}
