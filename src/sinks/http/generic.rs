//! `target = "generic"`: a POST of the window in one of the shared encodings
//! (`json`, `collapsed`, `pprof`; [`crate::sinks::encoding`]) to `endpoint`, gzip
//! if `compression = "gzip"`. A window over `max_request_bytes` (after compression)
//! or `max_request_stacks` is cut into parts with [`Encoder::parts`]; each request
//! says which part it is in `X-Profpipe-Profile-Id` and `X-Profpipe-Part: i/n`, so
//! a receiver can reassemble or deduplicate a retried part.

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderValue, CONTENT_ENCODING, CONTENT_TYPE};
use reqwest::Url;
use serde::Deserialize;

use super::config::parse_url;
use super::oversized;
use super::service::{Answers, Body, HttpRequest, Probe};
use super::target::{HttpTarget, Shape};
use crate::component::{at_least_one, FieldError};
use crate::sinks::delivering::Refused;
use crate::sinks::encoding::{Compression, Encoder, Encoding, Oversized, PartLimits};
use crate::sinks::pending::CompleteWindow;
use crate::telemetry::ComponentMetrics;

/// `target = "generic"`'s keys.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenericTarget {
    /// "json" (default), "collapsed" (gProfiler's collapsed text) or "pprof".
    #[serde(default = "default_encoding")]
    pub encoding: Encoding,
    /// "none" (default) or "gzip" (`Content-Encoding: gzip`).
    #[serde(default)]
    pub compression: Compression,
    /// The profilers' frequency in Hz, for pprof's period.
    #[serde(default = "default_sample_rate")]
    pub sample_rate: u32,
    /// A URL fetched (GET, with `auth`) by the healthcheck; none: no check.
    #[serde(default)]
    pub healthcheck_url: Option<String>,
    /// Most distinct stacks of one request; default unlimited.
    #[serde(default)]
    pub max_request_stacks: Option<usize>,
}

fn default_encoding() -> Encoding {
    Encoding::Json
}
fn default_sample_rate() -> u32 {
    crate::sinks::encoding::DEFAULT_SAMPLE_RATE
}

/// Default `max_request_bytes` of the generic target.
const GENERIC_MAX_BYTES: u64 = 10 << 20;

impl HttpTarget for GenericTarget {
    fn validate(&self) -> Vec<FieldError> {
        let mut errors: Vec<FieldError> = at_least_one(&["sample_rate"], self.sample_rate)
            .into_iter()
            .collect();
        if let Some(u) = &self.healthcheck_url {
            if let Err(e) = parse_url(u) {
                errors.push(FieldError::new(&["healthcheck_url"], e));
            }
        }
        if self.max_request_stacks == Some(0) {
            errors.extend(at_least_one(&["max_request_stacks"], 0usize));
        }
        errors
    }

    fn default_max_request_bytes(&self) -> u64 {
        GENERIC_MAX_BYTES
    }

    fn probe(&self, _: &Url) -> Result<Option<Probe>, String> {
        match &self.healthcheck_url {
            Some(u) => Ok(Some(Probe {
                url: Url::parse(u).map_err(|e| format!("healthcheck_url: {e}"))?,
                headers: HeaderMap::new(),
            })),
            None => Ok(None),
        }
    }

    fn shape(&self, endpoint: &Url, max_request_bytes: usize) -> Box<dyn Shape> {
        Box::new(GenericShape {
            url: endpoint.clone(),
            generic: Generic {
                encoder: Encoder {
                    encoding: self.encoding,
                    sample_rate_hz: self.sample_rate,
                },
                compression: self.compression,
                limits: PartLimits {
                    max_bytes: max_request_bytes,
                    max_stacks: self.max_request_stacks.unwrap_or(usize::MAX),
                },
            },
        })
    }
}

struct GenericShape {
    url: Url,
    generic: Generic,
}

impl Shape for GenericShape {
    fn requests(
        &mut self,
        w: &CompleteWindow,
        _: &ComponentMetrics,
    ) -> Result<Vec<HttpRequest>, Refused> {
        Ok(self
            .generic
            .bodies(w)
            .map_err(oversized)?
            .into_iter()
            .map(|(headers, body)| HttpRequest {
                url: self.url.clone(),
                headers,
                body: Body::Bytes(body),
                answers: Answers::Http,
            })
            .collect())
    }
}

pub const PROFILE_ID: &str = "x-profpipe-profile-id";
pub const PART: &str = "x-profpipe-part";

#[derive(Clone, Debug)]
pub struct Generic {
    pub encoder: Encoder,
    pub compression: Compression,
    pub limits: PartLimits,
}

impl Generic {
    /// Headers and body of each part.
    pub fn bodies(&self, w: &CompleteWindow) -> Result<Vec<(HeaderMap, Bytes)>, Oversized> {
        let compression = self.compression;
        let parts = self
            .encoder
            .parts(w, self.limits, |b| compression.apply(b))?;
        Ok(parts
            .into_iter()
            .map(|p| {
                let mut h = HeaderMap::new();
                h.insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static(self.encoder.encoding.content_type()),
                );
                if let Some(enc) = compression.content_encoding() {
                    h.insert(CONTENT_ENCODING, HeaderValue::from_static(enc));
                }
                let id = HeaderValue::from_str(&p.profile_id).expect("hex digits");
                h.insert(PROFILE_ID, id);
                let part = format!("{}/{}", p.index, p.count);
                h.insert(PART, HeaderValue::from_str(&part).expect("digits"));
                (h, Bytes::from(p.bytes))
            })
            .collect())
    }
}
