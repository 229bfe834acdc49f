//! `target = "generic"`: a POST of the window in one of the shared encodings
//! (`json`, `collapsed`, `pprof`; [`crate::sinks::encoding`]) to `endpoint`, gzip
//! if `compression = "gzip"`. A window over `max_request_bytes` (after compression)
//! or `max_request_stacks` is cut into parts with [`Encoder::parts`]; each request
//! says which part it is in `X-Profpipe-Profile-Id` and `X-Profpipe-Part: i/n`, so
//! a receiver can reassemble or deduplicate a retried part.

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderValue, CONTENT_ENCODING, CONTENT_TYPE};

use crate::sinks::encoding::{Compression, Encoder, Oversized, PartLimits};
use crate::sinks::pending::CompleteWindow;

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
