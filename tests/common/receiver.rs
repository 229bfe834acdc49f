//! A strict HTTP receiver for the `http` sink's tests: a real hyper server on
//! 127.0.0.1 (an ephemeral port, optionally TLS) that answers as the servers it
//! stands for do for what they refuse (`delivery-facts.md` §1 and §6), and records
//! what it accepted.
//!
//! - [`Personality::Pyroscope`]: `POST /ingest` with `name` (`app.<type>{k=v}`, a
//!   known profile type after the last dot, label names `[A-Za-z0-9_.]`, `__name__`
//!   reserved, at most 30 names with `service_name`), `from`/`until` digits, a
//!   `from` older than 1 h → 400 `not_in_ingestion_window`; a body over the limit →
//!   413; a bad count → 422; more than 16,000 distinct stacks → 400; a
//!   `Content-Encoding` (the server does not decode request bodies) → 422. A line
//!   over 64 KiB silently ends the parse, as Go's `bufio.Scanner` does: what came
//!   before it is kept and the answer is still 200 (`scanner_stopped` says so).
//!   `GET /ready`. Auth: if set, `Authorization` must match, else 401.
//! - [`Personality::Studio`] (Performance Studio): `POST /api/v2/profiles` without
//!   `Content-Length` → 411; a compressed length over 4 MiB → 413; a wrong
//!   `GPROFILER-API-KEY` or no `GPROFILER-SERVICE-NAME` → 400; a body that is not
//!   gzip JSON → 400; a missing `start_time`/`profile`/`gpid` → 422; `gpid: null`
//!   → 400; a profile without its `# {json}` line → 400; answers
//!   `{"message":"ok","gpid":N}`, a new N for `""`. `GET /api/v1/health_check`
//!   checks the key too (400).
//! - [`Personality::Generic`]: any `POST`, gzip decoded when `Content-Encoding:
//!   gzip`; collapsed or folded lines recorded. `GET /health` checks auth.
//!
//! Programmable failures: [`Receiver::fail_for`] answers every POST with a status
//! (and `Retry-After`) for a while; [`Receiver::fail_next`] answers the next N.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::Read;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Personality {
    Pyroscope,
    Studio,
    Generic,
    /// An OTLP/HTTP receiver: `POST /v1development/profiles` of
    /// `application/x-protobuf` (gzip decoded), kept as sent in `body`; answers
    /// an empty 200, or a partial success when asked ([`Receiver::partial_next`]).
    Otlp,
}

/// One accepted request.
#[derive(Clone, Debug)]
pub struct Accepted {
    pub path: String,
    pub query: BTreeMap<String, String>,
    pub headers: HashMap<String, String>,
    /// Bytes on the wire (the body as sent, compressed or not).
    pub wire_bytes: usize,
    /// `frames count` of every line (collapsed lines without their `idx;container;`).
    pub stacks: Vec<(String, u64)>,
    /// Studio: the upload's gpid as sent; Pyroscope/generic: null.
    pub gpid: Value,
    /// Studio and collapsed bodies: the `# {json}` header.
    pub header: Value,
    /// Pyroscope: the parse stopped at a line over 64 KiB.
    pub scanner_stopped: bool,
    /// OTLP: the request's bytes, decompressed.
    pub body: Vec<u8>,
}

#[derive(Default)]
struct State {
    accepted: Mutex<Vec<Accepted>>,
    /// Answers by status code, accepted or not.
    answers: Mutex<BTreeMap<u16, u64>>,
    outage: Mutex<Option<(Instant, u16, Option<u64>)>>,
    scripted: Mutex<VecDeque<u16>>,
    /// POSTs whose body contains this text answer this status.
    refused: Mutex<Option<(String, u16)>>,
    next_gpid: AtomicU64,
    /// OTLP: partial successes to answer, `(rejected_profiles, error_message)`.
    partial: Mutex<VecDeque<(i64, String)>>,
}

pub struct Receiver {
    pub addr: SocketAddr,
    personality: Personality,
    /// Expected `Authorization` (Pyroscope, generic) or API key (Studio).
    credential: Option<String>,
    max_body: usize,
    state: Arc<State>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

const PROFILE_TYPES: &[&str] = &[
    "cpu",
    "wall",
    "itimer",
    "goroutines",
    "exceptions",
    "seconds",
    "bytes",
];
const TYPE_PREFIXES: &[&str] = &["alloc_", "inuse_", "mutex_", "block_", "lock_"];

impl Receiver {
    /// Starts a plain-HTTP receiver.
    pub async fn start(personality: Personality, credential: Option<&str>) -> Arc<Receiver> {
        Self::start_with(personality, credential, None).await
    }

    /// Starts a receiver; with `tls`, every connection is a TLS one.
    pub async fn start_with(
        personality: Personality,
        credential: Option<&str>,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> Arc<Receiver> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let max_body = match personality {
            Personality::Studio => 4 << 20,
            _ => 256 << 20,
        };
        let state = Arc::new(State {
            next_gpid: AtomicU64::new(1000),
            ..State::default()
        });
        let r = Arc::new(Receiver {
            addr,
            personality,
            credential: credential.map(str::to_string),
            max_body,
            state,
            task: Mutex::new(None),
        });
        // The accept loop holds the receiver weakly, so dropping it stops the loop.
        let weak = Arc::downgrade(&r);
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let Some(me) = weak.upgrade() else { return };
                let tls = tls.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let me = me.clone();
                        async move { Ok::<_, std::convert::Infallible>(me.handle(req).await) }
                    });
                    let http = hyper::server::conn::http1::Builder::new();
                    match tls {
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(tcp).await {
                                let _ = http.serve_connection(TokioIo::new(stream), service).await;
                            }
                        }
                        None => {
                            let _ = http.serve_connection(TokioIo::new(tcp), service).await;
                        }
                    }
                });
            }
        });
        *r.task.lock().unwrap() = Some(task);
        r
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every POST answers `status` (with `Retry-After: retry_after`) for `d`.
    pub fn fail_for(&self, d: Duration, status: u16, retry_after: Option<u64>) {
        *self.state.outage.lock().unwrap() = Some((Instant::now() + d, status, retry_after));
    }

    /// The next `n` POSTs answer `status`.
    pub fn fail_next(&self, n: usize, status: u16) {
        self.state
            .scripted
            .lock()
            .unwrap()
            .extend(std::iter::repeat_n(status, n));
    }

    /// OTLP: the next accepted request is answered with a partial success.
    pub fn partial_next(&self, rejected_profiles: i64, message: &str) {
        self.state
            .partial
            .lock()
            .unwrap()
            .push_back((rejected_profiles, message.to_string()));
    }

    /// Every POST whose (uncompressed) body contains `needle` answers `status`,
    /// until [`Receiver::stop_refusing`]: one record a sink can never deliver.
    pub fn refuse_containing(&self, needle: &str, status: u16) {
        *self.state.refused.lock().unwrap() = Some((needle.to_string(), status));
    }

    pub fn stop_refusing(&self) {
        *self.state.refused.lock().unwrap() = None;
    }

    pub fn accepted(&self) -> Vec<Accepted> {
        self.state.accepted.lock().unwrap().clone()
    }

    /// How many answers had `status`.
    pub fn answered(&self, status: u16) -> u64 {
        self.state
            .answers
            .lock()
            .unwrap()
            .get(&status)
            .copied()
            .unwrap_or(0)
    }

    pub fn outage_over(&self) -> bool {
        self.state
            .outage
            .lock()
            .unwrap()
            .is_none_or(|(until, _, _)| Instant::now() >= until)
    }

    async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let response = self.answer(req).await;
        *self
            .state
            .answers
            .lock()
            .unwrap()
            .entry(response.status().as_u16())
            .or_insert(0) += 1;
        response
    }

    async fn answer(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let (parts, body) = req.into_parts();
        let path = parts.uri.path().to_string();
        let query: BTreeMap<String, String> = parts.uri.query().map(url_pairs).unwrap_or_default();
        let headers: HashMap<String, String> = parts
            .headers
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
            .collect();
        if parts.method == Method::GET {
            return self.probe(&path, &headers);
        }
        if parts.method != Method::POST {
            return reply(405, "method not allowed");
        }
        // Programmable failures come first: a server that is down reads nothing.
        if let Some(status) = self.state.scripted.lock().unwrap().pop_front() {
            return reply(status, "scripted failure");
        }
        let outage = *self.state.outage.lock().unwrap();
        if let Some((until, status, retry_after)) = outage {
            if Instant::now() < until {
                let mut r = reply(status, "unavailable");
                if let Some(s) = retry_after {
                    r.headers_mut()
                        .insert("retry-after", s.to_string().parse().unwrap());
                }
                return r;
            }
        }
        if self.personality == Personality::Studio && !headers.contains_key("content-length") {
            return reply(411, "Length Required");
        }
        if headers
            .get("content-length")
            .and_then(|l| l.parse::<usize>().ok())
            .is_some_and(|l| l > self.max_body)
        {
            return reply(413, "request body too large");
        }
        let Ok(collected) = body.collect().await else {
            return reply(408, "body read failed");
        };
        let body = collected.to_bytes();
        if body.len() > self.max_body {
            return reply(413, "request body too large");
        }
        if let Some((needle, status)) = &*self.state.refused.lock().unwrap() {
            if memchr::memmem::find(&body, needle.as_bytes()).is_some() {
                return reply(*status, "refused by the test");
            }
        }
        let result = match self.personality {
            Personality::Pyroscope => self.pyroscope(&path, &query, &headers, &body),
            Personality::Studio => self.studio(&path, &headers, &body),
            Personality::Generic => self.generic(&headers, &body),
            Personality::Otlp => self.otlp(&path, &headers, &body),
        };
        match result {
            Ok((mut accepted, answer)) => {
                accepted.path = path;
                accepted.query = query;
                accepted.headers = headers;
                accepted.wire_bytes = body.len();
                self.state.accepted.lock().unwrap().push(accepted);
                if self.personality == Personality::Otlp {
                    return self.otlp_answer();
                }
                reply(200, &answer)
            }
            Err((status, message)) => reply(
                status,
                &json!({"code": status, "message": message}).to_string(),
            ),
        }
    }

    fn probe(&self, path: &str, headers: &HashMap<String, String>) -> Response<Full<Bytes>> {
        match (self.personality, path) {
            (Personality::Pyroscope, "/ready") | (Personality::Generic, "/health") => {
                if !self.authorized(headers) {
                    return reply(401, "unauthorized");
                }
                reply(200, "ready")
            }
            (Personality::Studio, "/api/v1/health_check") => {
                if headers.get("gprofiler-api-key") != self.credential.as_ref() {
                    return reply(400, "{\"detail\":\"invalid api key\"}");
                }
                reply(200, "{\"message\":\"ok\"}")
            }
            _ => reply(404, "not found"),
        }
    }

    /// `POST /v1development/profiles`: protobuf, maybe gzip; decoded by the test.
    fn otlp(
        &self,
        path: &str,
        headers: &HashMap<String, String>,
        body: &[u8],
    ) -> Result<(Accepted, String), (u16, String)> {
        if path != "/v1development/profiles" {
            return Err((404, format!("no signal at {path}")));
        }
        if headers.get("content-type").map(String::as_str) != Some("application/x-protobuf") {
            return Err((415, "Content-Type must be application/x-protobuf".into()));
        }
        let body = match headers.get("content-encoding").map(String::as_str) {
            Some("gzip") => {
                let mut out = Vec::new();
                std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(body), &mut out)
                    .map_err(|e| (400, format!("bad gzip: {e}")))?;
                out
            }
            None => body.to_vec(),
            Some(other) => return Err((415, format!("Content-Encoding {other}"))),
        };
        let mut a = Accepted::empty();
        a.body = body;
        Ok((a, String::new()))
    }

    /// An empty 200 (full success) or the next scripted partial success.
    fn otlp_answer(&self) -> Response<Full<Bytes>> {
        use profpipe::formats::otlp::proto::{
            ExportProfilesPartialSuccess, ExportProfilesServiceResponse,
        };
        let body = match self.state.partial.lock().unwrap().pop_front() {
            Some((rejected_profiles, error_message)) => {
                prost::Message::encode_to_vec(&ExportProfilesServiceResponse {
                    partial_success: Some(ExportProfilesPartialSuccess {
                        rejected_profiles,
                        error_message,
                    }),
                })
            }
            None => Vec::new(),
        };
        Response::builder()
            .status(200)
            .header("content-type", "application/x-protobuf")
            .body(Full::new(Bytes::from(body)))
            .unwrap()
    }

    fn authorized(&self, headers: &HashMap<String, String>) -> bool {
        self.credential
            .as_ref()
            .is_none_or(|c| headers.get("authorization") == Some(c))
    }

    fn pyroscope(
        &self,
        path: &str,
        query: &BTreeMap<String, String>,
        headers: &HashMap<String, String>,
        body: &[u8],
    ) -> Result<(Accepted, String), (u16, String)> {
        if path != "/ingest" && path != "/pyroscope/ingest" {
            return Err((404, "not found".into()));
        }
        if !self.authorized(headers) {
            return Err((401, "unauthorized".into()));
        }
        let name = query
            .get("name")
            .ok_or((400, "name is required".to_string()))?;
        check_pyroscope_name(name).map_err(|m| (400, m))?;
        for key in ["from", "until"] {
            let v = query.get(key).ok_or((400, format!("{key} is required")))?;
            if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
                return Err((400, format!("bad {key}")));
            }
        }
        let from: u64 = query["from"].parse().unwrap();
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        if from + 3600 < now {
            return Err((400, "not_in_ingestion_window".into()));
        }
        if headers.contains_key("content-encoding") {
            return Err((
                422,
                "cannot parse body (request bodies are not decoded)".into(),
            ));
        }
        let mut stacks = Vec::new();
        let mut scanner_stopped = false;
        for line in body.split(|b| *b == b'\n') {
            if line.len() > 64 * 1024 - 1 {
                scanner_stopped = true;
                break;
            }
            let line = std::str::from_utf8(line).map_err(|_| (422, "not UTF-8".to_string()))?;
            let Some((stack, count)) = line.rsplit_once(' ') else {
                continue;
            };
            let count: u64 = count
                .parse()
                .map_err(|_| (422, format!("bad count in {line:?}")))?;
            stacks.push((stack.to_string(), count));
        }
        let distinct: std::collections::HashSet<&str> =
            stacks.iter().map(|s| s.0.as_str()).collect();
        if distinct.len() > 16_000 {
            return Err((
                400,
                format!("profile has {} samples, more than 16000", distinct.len()),
            ));
        }
        Ok((
            Accepted {
                stacks,
                scanner_stopped,
                ..Accepted::empty()
            },
            String::new(),
        ))
    }

    fn studio(
        &self,
        path: &str,
        headers: &HashMap<String, String>,
        body: &[u8],
    ) -> Result<(Accepted, String), (u16, String)> {
        if path != "/api/v2/profiles" {
            return Err((404, "not found".into()));
        }
        if headers.get("gprofiler-api-key") != self.credential.as_ref() {
            return Err((400, "invalid api key".into()));
        }
        if headers
            .get("gprofiler-service-name")
            .is_none_or(|s| s.is_empty())
        {
            return Err((400, "service name is required".into()));
        }
        let text = gunzip(body).ok_or((400, "body is not gzip".to_string()))?;
        let doc: Value =
            serde_json::from_str(&text).map_err(|e| (400, format!("not JSON: {e}")))?;
        for field in ["start_time", "profile", "gpid"] {
            if doc.get(field).is_none() {
                return Err((422, format!("field required: {field}")));
            }
        }
        if doc["gpid"].is_null() {
            return Err((400, "gpid must not be null".into()));
        }
        let profile = doc["profile"]
            .as_str()
            .ok_or((422, "profile must be a string".to_string()))?;
        let (header, stacks) =
            collapsed(profile).ok_or((400, "Failed to parse v2 metadata".to_string()))?;
        let gpid = match &doc["gpid"] {
            Value::String(s) if s.is_empty() => self.state.next_gpid.fetch_add(1, Ordering::SeqCst),
            Value::Number(n) => n.as_u64().ok_or((400, "bad gpid".to_string()))?,
            Value::String(s) => s.parse().map_err(|_| (400, "bad gpid".to_string()))?,
            _ => return Err((400, "bad gpid".into())),
        };
        Ok((
            Accepted {
                stacks,
                gpid: doc["gpid"].clone(),
                header,
                ..Accepted::empty()
            },
            json!({"message": "ok", "gpid": gpid}).to_string(),
        ))
    }

    fn generic(
        &self,
        headers: &HashMap<String, String>,
        body: &[u8],
    ) -> Result<(Accepted, String), (u16, String)> {
        if !self.authorized(headers) {
            return Err((401, "unauthorized".into()));
        }
        let text = if headers.get("content-encoding").map(String::as_str) == Some("gzip") {
            gunzip(body).ok_or((400, "body is not gzip".to_string()))?
        } else {
            String::from_utf8_lossy(body).into_owned()
        };
        let (header, stacks) = if text.starts_with("# ") {
            collapsed(&text).ok_or((400, "bad collapsed header".to_string()))?
        } else if text.starts_with('{') {
            profile_json(&text).ok_or((400, "bad profpipe.profile.v1 document".to_string()))?
        } else {
            (Value::Null, folded(&text).map_err(|m| (400, m))?)
        };
        Ok((
            Accepted {
                stacks,
                header,
                ..Accepted::empty()
            },
            String::new(),
        ))
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(t) = self.task.lock().unwrap().take() {
            t.abort();
        }
    }
}

impl Accepted {
    fn empty() -> Accepted {
        Accepted {
            path: String::new(),
            query: BTreeMap::new(),
            headers: HashMap::new(),
            wire_bytes: 0,
            stacks: Vec::new(),
            gpid: Value::Null,
            header: Value::Null,
            scanner_stopped: false,
            body: Vec::new(),
        }
    }
}

fn reply(status: u16, body: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = StatusCode::from_u16(status).unwrap();
    r
}

fn url_pairs(q: &str) -> BTreeMap<String, String> {
    q.split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect()
}

/// `application/x-www-form-urlencoded` decoding.
fn decode(s: &str) -> String {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz");
                out.push(u8::from_str_radix(hex, 16).unwrap_or(b'?'));
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn check_pyroscope_name(name: &str) -> Result<(), String> {
    let (app, labels) = match name.split_once('{') {
        Some((app, rest)) => (app, rest.strip_suffix('}').ok_or("unclosed `{`")?),
        None => (name, ""),
    };
    if app.is_empty()
        || !app
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_./-".contains(c))
    {
        return Err(format!("bad app name {app:?}"));
    }
    if let Some((_, ty)) = app.rsplit_once('.') {
        if !PROFILE_TYPES.contains(&ty) && !TYPE_PREFIXES.iter().any(|p| ty.starts_with(p)) {
            return Err(format!("unknown profile type {ty:?}"));
        }
    }
    let mut names = 1; // service_name, added by the server
    for pair in labels.split(',').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').ok_or(format!("bad label {pair:?}"))?;
        if k.is_empty()
            || !k
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
        {
            return Err(format!("bad label name {k:?}"));
        }
        if k == "__name__" {
            return Err("__name__ is reserved".into());
        }
        if k.len() > 1024 || v.trim().len() > 2048 {
            return Err(format!("label {k:?} too long"));
        }
        names += 1;
    }
    if names > 30 {
        return Err(format!("{names} label names, more than 30"));
    }
    Ok(())
}

fn gunzip(body: &[u8]) -> Option<String> {
    let mut text = String::new();
    flate2::read::GzDecoder::new(body)
        .read_to_string(&mut text)
        .ok()?;
    Some(text)
}

/// A collapsed file: its header and `frames count` of its lines (without the
/// `idx;container;` prefix). None without a `# {json}` first line.
fn collapsed(text: &str) -> Option<(Value, Vec<(String, u64)>)> {
    let mut lines = text.lines();
    let header: Value = serde_json::from_str(lines.next()?.strip_prefix("# ")?).ok()?;
    let mut stacks = Vec::new();
    for line in lines {
        let (stack, count) = line.rsplit_once(' ')?;
        let mut fields = stack.splitn(3, ';');
        let (_idx, _container, frames) = (fields.next()?, fields.next()?, fields.next()?);
        stacks.push((frames.to_string(), count.parse().ok()?));
    }
    Some((header, stacks))
}

/// A `profpipe.profile.v1` document: itself and `frames count` of its stacks.
fn profile_json(text: &str) -> Option<(Value, Vec<(String, u64)>)> {
    let doc: Value = serde_json::from_str(text).ok()?;
    let mut stacks = Vec::new();
    for s in doc["stacks"].as_array()? {
        let frames: Vec<&str> = s["frames"]
            .as_array()?
            .iter()
            .filter_map(Value::as_str)
            .collect();
        stacks.push((frames.join(";"), s["count"].as_u64()?));
    }
    Some((doc, stacks))
}

fn folded(text: &str) -> Result<Vec<(String, u64)>, String> {
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (s, c) = l.rsplit_once(' ').ok_or(format!("bad line {l:?}"))?;
            Ok((
                s.to_string(),
                c.parse().map_err(|_| format!("bad count {l:?}"))?,
            ))
        })
        .collect()
}
