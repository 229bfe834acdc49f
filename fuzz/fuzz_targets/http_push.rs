//! The push gateway's request bodies and query strings (`http_server` source):
//! Pyroscope's `/ingest` (folded or `lines` text, `name=app.cpu{k=v}&from=&until=`)
//! and gProfiler's `/api/v2/profiles` (gzipped JSON, ISO times with offsets), read
//! exactly as the handler reads them. Any request is a push or a refusal with a
//! 4xx status, never a panic; a push's window is never inverted.
//!
//! Input: five lines (path selector, query, Content-Type, GPROFILER-SERVICE-NAME,
//! Content-Encoding), then the body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use profpipe::sources::http_server::parse_request;

fn field(s: &[u8]) -> Option<&str> {
    std::str::from_utf8(s).ok().filter(|s| !s.is_empty())
}

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(6, |&b| b == b'\n');
    let (Some(path), Some(query), Some(ct), Some(service), Some(encoding), Some(body)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return;
    };
    let path = match path.first().copied().unwrap_or(0) % 4 {
        0 => "/ingest",
        1 => "/pyroscope/ingest",
        2 => "/api/v2/profiles",
        _ => "/api/v1/profiles",
    };
    // A small decompression limit reaches the 413 path with small inputs.
    match parse_request(
        path,
        field(query),
        field(ct),
        field(service),
        field(encoding),
        64 * 1024,
        body,
    ) {
        Ok(push) => assert!(
            push.window.start_ms < push.window.end_ms,
            "{:?}",
            push.window
        ),
        Err((status, message)) => {
            assert!((400..500).contains(&status), "{status} {message}");
            assert!(!message.is_empty());
        }
    }
});
