//! One request: route, authenticate, take a concurrency slot, read the body within
//! its limits, parse it, hand its events to the emitter and wait for their
//! delivery outcome.

use std::convert::Infallible;
use std::io::Read;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::{header, Method, Request, Response, StatusCode};
use tokio::sync::{mpsc, Semaphore};
use tokio::time::Instant;

use crate::event::{Batch, ComponentId, EventStatus, Labels, Profile};
use crate::telemetry::ComponentMetrics;

use super::auth::Token;
use super::config::HttpServerConfig;
use super::gprofiler::{self, Gpids};
use super::pyroscope;
use super::respond::{json, ok_empty, Body, Refusal};
use super::Push;

/// Most stacks in one event: a large push becomes several events of one batch.
pub const BATCH_STACKS: usize = 10_000;

/// What the handler hands the emitter: the events of one request, and the end of
/// its window (for the watermark).
pub struct Job {
    pub profiles: Vec<Profile>,
    pub end_ms: u64,
}

/// What every request of the server shares.
pub struct Shared {
    pub id: ComponentId,
    pub config: HttpServerConfig,
    pub token: Option<Token>,
    /// One permit per request being handled (`max_concurrent_requests`).
    pub requests: Arc<Semaphore>,
    /// To the emitter; bounded by [`JOB_QUEUE`](super::server::JOB_QUEUE).
    pub jobs: mpsc::Sender<Job>,
    pub metrics: ComponentMetrics,
    pub gpids: Arc<Gpids>,
}

enum Endpoint {
    Pyroscope,
    GProfiler,
    Health,
}

/// The service function: every outcome becomes a response.
pub async fn handle(
    shared: Arc<Shared>,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let retry_after = shared.config.retry_after.get();
    Ok(match route(&shared, peer, req).await {
        Ok(r) => r,
        Err(refusal) => {
            shared.metrics.errors(refusal.reason(), 1);
            tracing::debug!(component = %shared.id, %peer, status = refusal.status().as_u16(), reason = %refusal, "push refused");
            refusal.into_response(retry_after)
        }
    })
}

fn endpoint(method: &Method, path: &str) -> Result<Endpoint, Refusal> {
    let (endpoint, allow) = match path {
        "/ingest" | "/pyroscope/ingest" => (Endpoint::Pyroscope, "POST"),
        "/api/v1/profiles" | "/api/v2/profiles" => (Endpoint::GProfiler, "POST"),
        "/api/v1/health_check" | "/ready" => (Endpoint::Health, "GET, HEAD"),
        other => return Err(Refusal::NotFound(other.to_string())),
    };
    let ok = match endpoint {
        Endpoint::Health => method == Method::GET || method == Method::HEAD,
        _ => method == Method::POST,
    };
    if ok {
        Ok(endpoint)
    } else {
        Err(Refusal::MethodNotAllowed(allow))
    }
}

async fn route(
    shared: &Shared,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<Body>, Refusal> {
    let endpoint = endpoint(req.method(), req.uri().path())?;
    if let Endpoint::Health = endpoint {
        return Ok(json(StatusCode::OK, &serde_json::json!({"message": "ok"})));
    }
    if let Some(token) = &shared.token {
        if !token.allows(req.headers()) {
            return Err(Refusal::Unauthorized);
        }
    }
    let _slot = shared.requests.clone().try_acquire_owned().map_err(|_| {
        Refusal::Unavailable(format!(
            "more than {} requests at once",
            shared.config.max_concurrent_requests
        ))
    })?;
    let (parts, body) = req.into_parts();
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let gzip = is_gzip(header(header::CONTENT_ENCODING.as_str()).as_deref())?;
    let body = read_body(&shared.config, &parts.headers, body).await?;
    shared.metrics.received(body.len());
    let request = Parse {
        endpoint,
        gzip,
        max_decompressed: shared.config.max_decompressed_size.get(),
        query: parts.uri.query().map(str::to_string),
        content_type: header(header::CONTENT_TYPE.as_str()),
        service: header(gprofiler::SERVICE_HEADER),
        now_ms: crate::window_clock::now_ms(),
    };
    let gpids = shared.gpids.clone();
    // Decompressing and parsing megabytes is CPU work: keep it off the runtime.
    let parsed = tokio::task::spawn_blocking(move || request.run(body, &gpids))
        .await
        .map_err(|e| Refusal::Unavailable(format!("the parser failed: {e}")))?;
    let (push, gpid) = parsed?;
    deliver(shared, peer, push).await?;
    Ok(match gpid {
        Some(gpid) => json(
            StatusCode::OK,
            &serde_json::json!({"message": "ok", "gpid": gpid}),
        ),
        None => ok_empty(),
    })
}

/// `Content-Encoding`: gzip or none.
fn is_gzip(encoding: Option<&str>) -> Result<bool, Refusal> {
    match encoding {
        None | Some("identity") => Ok(false),
        Some(e) if e.eq_ignore_ascii_case("gzip") => Ok(true),
        Some(e) => Err(Refusal::Unsupported(format!(
            "Content-Encoding {e} is not supported (use gzip or none)"
        ))),
    }
}

/// What is read from a request's bytes once its body is in: everything the client
/// controls goes through here (and, in `fuzz/`, through [`parse_request`]).
struct Parse {
    endpoint: Endpoint,
    gzip: bool,
    max_decompressed: u64,
    query: Option<String>,
    content_type: Option<String>,
    service: Option<String>,
    /// Stands in for a Pyroscope push's absent `from`/`until`.
    now_ms: u64,
}

impl Parse {
    /// Decompresses and parses the body: the push, and a gProfiler upload's gpid.
    fn run(self, body: Bytes, gpids: &Gpids) -> Result<(Push, Option<u64>), Refusal> {
        let body = if self.gzip {
            gunzip(&body, self.max_decompressed)?
        } else {
            body
        };
        match self.endpoint {
            Endpoint::Pyroscope => pyroscope::parse(
                self.query.as_deref(),
                self.content_type.as_deref(),
                &body,
                self.now_ms,
            )
            .map(|p| (p, None)),
            _ => gprofiler::parse(self.query.as_deref(), self.service.as_deref(), &body, gpids)
                .map(|u| (u.push, Some(u.gpid))),
        }
    }
}

/// One POST as the handler reads it, from its path, query, headers and body, for
/// the fuzz targets (`fuzz/`) and tests: the push, or the status and message of
/// the refusal.
#[cfg(any(test, fuzzing))]
pub fn parse_request(
    path: &str,
    query: Option<&str>,
    content_type: Option<&str>,
    service: Option<&str>,
    content_encoding: Option<&str>,
    max_decompressed: u64,
    body: &[u8],
) -> Result<Push, (u16, String)> {
    let refused = |r: Refusal| (r.status().as_u16(), r.to_string());
    let endpoint = endpoint(&Method::POST, path).map_err(refused)?;
    if let Endpoint::Health = endpoint {
        return Err((405, "not a push".into()));
    }
    let request = Parse {
        endpoint,
        gzip: is_gzip(content_encoding).map_err(refused)?,
        max_decompressed,
        query: query.map(str::to_string),
        content_type: content_type.map(str::to_string),
        service: service.map(str::to_string),
        now_ms: 1_701_621_000_000,
    };
    request
        .run(Bytes::copy_from_slice(body), &Gpids::default())
        .map(|(push, _)| push)
        .map_err(refused)
}

/// The body, at most `max_body_size` bytes (413 past it, told by `Content-Length`
/// before anything is read, or found while streaming), within `read_timeout` (408).
async fn read_body(
    config: &HttpServerConfig,
    headers: &hyper::HeaderMap,
    body: Incoming,
) -> Result<Bytes, Refusal> {
    let max = config.max_body_size.get();
    let too_large = || {
        Refusal::TooLarge(format!(
            "the body is larger than max_body_size ({})",
            config.max_body_size
        ))
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max) {
        return Err(too_large());
    }
    let read_timeout = config.read_timeout.get();
    let limited = Limited::new(body, usize::try_from(max).unwrap_or(usize::MAX));
    match tokio::time::timeout(read_timeout, limited.collect()).await {
        Err(_) => Err(Refusal::Timeout(read_timeout)),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e))
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(too_large())
        }
        Ok(Err(e)) => Err(Refusal::BadRequest(format!("cannot read the body: {e}"))),
    }
}

/// Undoes gzip, stopping at `max` bytes (413): a small bomb never becomes a big
/// allocation.
fn gunzip(body: &[u8], max: u64) -> Result<Bytes, Refusal> {
    let mut out = Vec::new();
    let mut decoder = flate2::read::MultiGzDecoder::new(body).take(max + 1);
    decoder
        .read_to_end(&mut out)
        .map_err(|e| Refusal::BadRequest(format!("bad gzip body: {e}")))?;
    if out.len() as u64 > max {
        return Err(Refusal::TooLarge(format!(
            "the body is larger than max_decompressed_size ({}) once decompressed",
            crate::units::ByteSize(max)
        )));
    }
    Ok(Bytes::from(out))
}

/// Sends the push's events (through the emitter) and waits, at most `ack_timeout`
/// in all, for every sink's outcome.
async fn deliver(shared: &Shared, peer: SocketAddr, push: Push) -> Result<(), Refusal> {
    let Push {
        window,
        host,
        profiler,
        labels,
        mut stacks,
    } = push;
    if stacks.is_empty() {
        // Nothing to deliver (an empty profile): taken, as Pyroscope takes it.
        return Ok(());
    }
    let ack_timeout = shared.config.ack_timeout.get();
    let deadline = Instant::now() + ack_timeout;
    let slow = |what: &str| {
        Refusal::Unavailable(format!(
            "{what} within ack_timeout ({}); retry later",
            humantime::format_duration(ack_timeout)
        ))
    };
    // Reserving first: a request that gives up waiting leaves nothing half-sent.
    let permit = match tokio::time::timeout_at(deadline, shared.jobs.reserve()).await {
        Err(_) => {
            shared.metrics.errors("ack_timeout", 1);
            return Err(slow("the pipeline did not take the data"));
        }
        Ok(Err(_)) => return Err(Refusal::Unavailable("the agent is shutting down".into())),
        Ok(Ok(p)) => p,
    };
    let labels = Labels {
        host: host.unwrap_or_else(|| peer.ip().to_string()).into(),
        source: shared.id.clone(),
        profiler: profiler.into(),
        extra: labels,
    };
    let (batch, rx) = Batch::new();
    let mut profiles = Vec::with_capacity(stacks.len().div_ceil(BATCH_STACKS));
    while !stacks.is_empty() {
        let rest = stacks.split_off(stacks.len().min(BATCH_STACKS));
        let mut p = Profile::new(window, labels.clone(), std::mem::replace(&mut stacks, rest));
        p.finalizers = batch.finalizers();
        profiles.push(p);
    }
    drop(batch);
    permit.send(Job {
        profiles,
        end_ms: window.end_ms,
    });
    match tokio::time::timeout_at(deadline, rx.wait()).await {
        Err(_) => {
            shared.metrics.errors("ack_timeout", 1);
            Err(slow("delivery was not confirmed"))
        }
        Ok(EventStatus::Delivered) => Ok(()),
        Ok(EventStatus::Rejected) => Err(Refusal::Rejected),
        Ok(EventStatus::Errored) => Err(Refusal::Unavailable(
            "a sink could not deliver the data; retry later".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fuzz target's path (`fuzz/fuzz_targets/http_push.rs`): a gzipped upload
    /// with an offset out of range is a 400 naming the field, a gzip bomb a 413.
    #[test]
    fn requests_read_as_the_handler_reads_them() {
        use std::io::Write;
        let gzip = |b: &[u8]| {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(b).unwrap();
            e.finish().unwrap()
        };
        let upload = br##"{"start_time": "2023-12-03T16:30:00+99999999999:00", "profile": "# {}\n0;;a;b 1\n", "gpid": 1}"##;
        let (status, msg) = parse_request(
            "/api/v2/profiles",
            None,
            None,
            None,
            Some("gzip"),
            1 << 20,
            &gzip(upload),
        )
        .unwrap_err();
        assert_eq!(status, 400);
        assert!(msg.contains("start_time"), "{msg}");
        let bomb = gzip(&vec![b'a'; 1 << 20]);
        let (status, _) = parse_request(
            "/ingest",
            Some("name=app"),
            None,
            None,
            Some("gzip"),
            1024,
            &bomb,
        )
        .unwrap_err();
        assert_eq!(status, 413);
        let push = parse_request(
            "/ingest",
            Some("name=app"),
            None,
            None,
            None,
            1024,
            b"a;b 2\n",
        )
        .unwrap();
        assert_eq!(push.stacks.len(), 1);
        assert_eq!(
            parse_request("/nope", None, None, None, None, 1024, b"")
                .unwrap_err()
                .0,
            404
        );
    }
}
