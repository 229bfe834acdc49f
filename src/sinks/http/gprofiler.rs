//! `target = "gprofiler"`: a window as Performance Studio uploads,
//! `POST <endpoint>/api/v2/profiles` (see `gprofiler-facts.md` §4 and
//! `delivery-facts.md` §6):
//!
//! - headers `GPROFILER-API-KEY` (the secret, marked sensitive),
//!   `GPROFILER-SERVICE-NAME`, `Content-Encoding: gzip`, `Content-Type:
//!   application/json`, and always a `Content-Length` (the server answers 411 to a
//!   chunked upload); query `service`, `hostname`, `timestamp`, `version`. The key
//!   is not put in the query as gProfiler does: URLs end up in logs.
//! - body: gzip of `{start_time, end_time, hostname, profile, spawn_time, gpid}`,
//!   times in ISO 8601, `profile` the collapsed text with its `# {json}` header
//!   ([`Encoding::Collapsed`], the same bytes as the other sinks' `collapsed`).
//! - the server checks its 4 MiB limit against the *compressed* length: a window
//!   whose body would pass `max_request_bytes` (4 MiB) is split with
//!   [`Encoder::parts`], the size measured after JSON and gzip.
//! - the gpid the server answers (`{"message":"ok","gpid":N}`) is sent with every
//!   later upload, and kept when an upload fails (gProfiler resets it to `""` on a
//!   failure, so the server registers a new process). Until the first answer it is
//!   `""`, which asks the server for one.
//!
//! The heartbeat (`/api/metrics/heartbeat`) is not this sink's: it is a control
//! plane, not delivery.

use std::sync::Mutex;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_ENCODING, CONTENT_TYPE};
use reqwest::Url;
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::sensitive;
use super::config::FOUR_MIB;
use super::service::{Answers, Body, HttpRequest, Probe};
use super::target::{HttpTarget, Shape};
use super::{header_value, join, oversized};
use crate::component::FieldError;
use crate::event::Window;
use crate::formats::timestamp::iso8601;
use crate::secret::Secret;
use crate::sinks::delivering::Refused;
use crate::sinks::encoding::{gzip, Encoder, Encoding, Oversized, PartLimits};
use crate::sinks::pending::CompleteWindow;
use crate::telemetry::ComponentMetrics;

/// `target = "gprofiler"`'s keys.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GprofilerTarget {
    /// The service's API key (`GPROFILER-API-KEY`): a secret (`"${NAME}"`,
    /// `{ env = "NAME" }` or `{ file = "/path" }`).
    pub api_key: Secret,
    /// The service name; default the window's `service` label, else the host name.
    #[serde(default)]
    pub service_name: Option<String>,
}

const API_KEY: HeaderName = HeaderName::from_static("gprofiler-api-key");
const SERVICE_HEADER: HeaderName = HeaderName::from_static("gprofiler-service-name");

impl HttpTarget for GprofilerTarget {
    fn validate(&self) -> Vec<FieldError> {
        match self.api_key.check() {
            Err(e) => vec![FieldError::new(&["api_key"], e)],
            Ok(()) => Vec::new(),
        }
    }

    fn default_max_request_bytes(&self) -> u64 {
        FOUR_MIB
    }

    fn credentials(&self) -> Result<Vec<(HeaderName, HeaderValue)>, String> {
        let key = self.api_key.load().map_err(|e| format!("api_key: {e}"))?;
        let key = sensitive(key.expose()).map_err(|e| format!("api_key: {e}"))?;
        Ok(vec![(API_KEY, key)])
    }

    /// What gProfiler checks at start; sent with the key, so a server that checks
    /// it refuses a bad one now.
    fn probe(&self, endpoint: &Url) -> Result<Option<Probe>, String> {
        let mut headers = HeaderMap::new();
        if let Some(s) = &self.service_name {
            headers.insert(SERVICE_HEADER, header_value(s));
        }
        Ok(Some(Probe {
            url: join(endpoint, "/api/v1/health_check"),
            headers,
        }))
    }

    fn shape(&self, endpoint: &Url, max_request_bytes: usize) -> Box<dyn Shape> {
        Box::new(GprofilerShape {
            url: join(endpoint, "/api/v2/profiles"),
            service_name: self.service_name.clone(),
            spawn_time: iso8601(crate::window_clock::now_ms()),
            max_bytes: max_request_bytes,
        })
    }
}

struct GprofilerShape {
    url: Url,
    service_name: Option<String>,
    spawn_time: String,
    max_bytes: usize,
}

impl Shape for GprofilerShape {
    fn requests(
        &mut self,
        w: &CompleteWindow,
        _: &ComponentMetrics,
    ) -> Result<Vec<HttpRequest>, Refused> {
        let uploads = uploads(w, &self.spawn_time, self.max_bytes).map_err(oversized)?;
        let service = self
            .service_name
            .as_deref()
            .or_else(|| w.labels.get("service"))
            .unwrap_or(&w.host);
        let mut url = self.url.clone();
        url.query_pairs_mut()
            .append_pair("service", service)
            .append_pair("hostname", &w.host)
            .append_pair("timestamp", &timestamp(w.window))
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
                answers: Answers::Http,
            })
            .collect())
    }
}

/// Room kept below the limit for the difference between the gpid measured with
/// (`""`) and one the server gives later (an integer).
const GPID_ROOM: usize = 64;

/// Performance Studio's id of this agent process, once it gave one.
#[derive(Debug, Default)]
pub struct Gpid(Mutex<Option<u64>>);

impl Gpid {
    /// What the next upload sends: the known gpid, or `""` for "allocate one".
    pub fn get(&self) -> Value {
        match *self.0.lock().expect("gpid lock") {
            Some(id) => json!(id),
            None => json!(""),
        }
    }

    /// Keeps the gpid of a successful upload's answer; an answer without one
    /// changes nothing.
    pub fn learn(&self, answer: &[u8]) {
        let Ok(v) = serde_json::from_slice::<Value>(answer) else {
            return;
        };
        let id = match &v["gpid"] {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.parse().ok(),
            _ => None,
        };
        if let Some(id) = id {
            *self.0.lock().expect("gpid lock") = Some(id);
        }
    }

    pub fn known(&self) -> Option<u64> {
        *self.0.lock().expect("gpid lock")
    }
}

/// One upload: the document without its gpid, gzipped per attempt with the gpid
/// known then.
#[derive(Debug)]
pub struct Upload {
    fields: Value,
    /// Compressed size when it was cut (with gpid `""`).
    compressed: usize,
    /// The last body built and its gpid: retries with an unchanged gpid reuse it
    /// instead of compressing again.
    cache: Mutex<(Value, bytes::Bytes)>,
}

impl Upload {
    fn new(w: &CompleteWindow, spawn_time: &str, profile: String) -> Upload {
        let fields = json!({
            "start_time": iso8601(w.window.start_ms),
            "end_time": iso8601(w.window.end_ms),
            "hostname": &*w.host,
            "profile": profile,
            "spawn_time": spawn_time,
        });
        let body = encode(&fields, json!(""));
        Upload {
            fields,
            compressed: body.len(),
            cache: Mutex::new((json!(""), body)),
        }
    }

    /// The gzip JSON body with `gpid`.
    pub fn body(&self, gpid: Value) -> bytes::Bytes {
        let mut cache = self.cache.lock().expect("upload cache lock");
        if cache.0 != gpid {
            *cache = (gpid.clone(), encode(&self.fields, gpid));
        }
        cache.1.clone()
    }

    pub fn compressed_len(&self) -> usize {
        self.compressed
    }
}

fn encode(fields: &Value, gpid: Value) -> bytes::Bytes {
    let mut doc = fields.clone();
    doc["gpid"] = gpid;
    gzip(&serde_json::to_vec(&doc).expect("a JSON value serialises")).into()
}

/// The uploads of one window, each within `max_bytes` compressed.
pub fn uploads(
    w: &CompleteWindow,
    spawn_time: &str,
    max_bytes: usize,
) -> Result<Vec<Upload>, Oversized> {
    let encoder = Encoder {
        encoding: Encoding::Collapsed,
        sample_rate_hz: 0,
    };
    let limit = max_bytes.saturating_sub(GPID_ROOM).max(1);
    // Every document measured, in order: the last round of `parts` is the one
    // kept, so its uploads are the last `parts.len()` measured (no second gzip).
    let measured = std::cell::RefCell::new(Vec::new());
    let measure = |profile: Vec<u8>| {
        let profile = String::from_utf8(profile)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
        let doc = Upload::new(w, spawn_time, profile);
        // Only the length is looked at.
        let size = vec![0u8; doc.compressed];
        measured.borrow_mut().push(doc);
        size
    };
    let parts = encoder.parts(
        w,
        PartLimits {
            max_bytes: limit,
            max_stacks: usize::MAX,
        },
        measure,
    )?;
    let mut measured = measured.into_inner();
    let first = measured.len() - parts.len();
    Ok(measured.split_off(first))
}

/// `timestamp` of the query: the window's end, as gProfiler sends its upload time.
pub fn timestamp(window: Window) -> String {
    iso8601(window.end_ms)
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;
    use crate::event::{LabelSet, Stack};

    fn window(n: usize) -> CompleteWindow {
        let mut rng = fastrand::Rng::with_seed(5);
        CompleteWindow {
            window: Window::new(1_700_000_000_000, 1_700_000_060_000),
            host: "web-1".into(),
            labels: LabelSet::default(),
            // Random frames, so gzip cannot shrink them to nothing.
            stacks: (0..n)
                .map(|i| {
                    let f: String = (0..40).map(|_| rng.alphanumeric()).collect();
                    Stack::new(format!("comm;{i:06}_{f}"), i as u64 + 1)
                })
                .collect(),
            events: 1,
            bytes: 0,
        }
    }

    fn decode(body: &[u8]) -> Value {
        let mut text = String::new();
        flate2::read::GzDecoder::new(body)
            .read_to_string(&mut text)
            .unwrap();
        serde_json::from_str(&text).unwrap()
    }

    #[test]
    fn an_upload_is_gzip_json_with_the_collapsed_profile() {
        let w = window(3);
        let ups = uploads(&w, "2023-11-14T22:00:00.000Z", 4 << 20).unwrap();
        assert_eq!(ups.len(), 1);
        let v = decode(&ups[0].body(json!("")));
        assert_eq!(v["gpid"], "");
        assert_eq!(v["hostname"], "web-1");
        assert_eq!(v["start_time"], "2023-11-14T22:13:20.000Z");
        let profile = v["profile"].as_str().unwrap();
        assert!(profile.starts_with("# {"));
        assert_eq!(profile.lines().count(), 4);
        assert!(profile
            .lines()
            .nth(1)
            .unwrap()
            .starts_with("0;;comm;000000_"));
        assert_eq!(decode(&ups[0].body(json!(77)))["gpid"], 77);
    }

    #[test]
    fn a_large_window_is_split_under_the_compressed_limit() {
        let w = window(20_000);
        let limit = 200_000;
        let ups = uploads(&w, "t", limit).unwrap();
        assert!(ups.len() > 1, "{}", ups.len());
        let mut lines = 0;
        for u in &ups {
            let body = u.body(json!(u64::MAX));
            assert!(body.len() <= limit, "{} > {limit}", body.len());
            lines += decode(&body)["profile"]
                .as_str()
                .unwrap()
                .lines()
                .skip(1)
                .count();
        }
        assert_eq!(lines, 20_000);
    }

    #[test]
    fn the_gpid_is_learned_and_kept() {
        let g = Gpid::default();
        assert_eq!(g.get(), json!(""));
        g.learn(br#"{"message":"ok","gpid":42}"#);
        assert_eq!(g.get(), json!(42));
        g.learn(b"<html>502 Bad Gateway</html>");
        g.learn(br#"{"message":"error"}"#);
        assert_eq!(g.known(), Some(42));
    }
}
