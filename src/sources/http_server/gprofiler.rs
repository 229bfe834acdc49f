//! gProfiler's upload to Performance Studio: `POST /api/v2/profiles`, a gzipped JSON
//! body, answered `{"message": "ok", "gpid": N}`.
//!
//! ```text
//! POST /api/v2/profiles?key=..&service=checkout&hostname=web-1&timestamp=..&version=1.50.0
//! GPROFILER-API-KEY: ..             GPROFILER-SERVICE-NAME: checkout
//! Content-Encoding: gzip            Content-Type: application/json
//!
//! {"start_time": "2023-12-03T16:30:00.000000", "end_time": "2023-12-03T16:31:00.000000",
//!  "hostname": "web-1", "profile": "# {json}\n0;web;comm;f1;f2 12\n...", "gpid": ""}
//! ```
//!
//! As Performance Studio reads it: `start_time`, `profile` and `gpid` are required;
//! `gpid: null` is refused; `""` asks the server for a new gpid, which the agent
//! sends back with its next upload; `profile` is gProfiler's collapsed text whose
//! first line is the `# {json}` metadata header (refused without it: "Failed to
//! parse v2 metadata"). Times are ISO 8601, UTC when they carry no offset.
//!
//! Labels: `service` from `GPROFILER-SERVICE-NAME`, else the `service` query
//! parameter, else the header's labels (profpipe's own collapsed files carry them);
//! the host from the body's `hostname`, else the query's, else the header's
//! `metadata.hostname`.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Deserialize;
use serde_json::Value;

use crate::event::{LabelSet, Window};
use crate::formats::collapsed::{header_labels, CollapsedReader};

use super::pyroscope::query_pairs;
use super::respond::Refusal;
use super::Push;

/// The header the agent names its service in.
pub const SERVICE_HEADER: &str = "gprofiler-service-name";

#[derive(Deserialize)]
struct AgentData {
    start_time: String,
    #[serde(default)]
    end_time: Option<String>,
    #[serde(default)]
    hostname: Option<String>,
    profile: String,
    gpid: Value,
}

/// Hands out gpids to agents that ask for one: unique within this process, starting
/// at a random point so two restarts are unlikely to hand out the same ones.
#[derive(Debug)]
pub struct Gpids(AtomicU64);

impl Default for Gpids {
    fn default() -> Self {
        Gpids(AtomicU64::new(fastrand::u64(1..1 << 40)))
    }
}

impl Gpids {
    fn next(&self) -> u64 {
        self.0.fetch_add(1, Ordering::Relaxed)
    }
}

/// One upload, and the gpid to answer with.
pub struct Upload {
    pub push: Push,
    pub gpid: u64,
}

/// Reads one upload whose body (`json`) is already decompressed.
pub fn parse(
    query: Option<&str>,
    service_header: Option<&str>,
    json: &[u8],
    gpids: &Gpids,
) -> Result<Upload, Refusal> {
    let data: AgentData = serde_json::from_slice(json)
        .map_err(|e| Refusal::BadRequest(format!("bad upload JSON: {e}")))?;
    let gpid = match &data.gpid {
        Value::Number(n) => n
            .as_u64()
            .ok_or_else(|| Refusal::BadRequest(format!("bad gpid {n}")))?,
        Value::String(s) if s.is_empty() => gpids.next(),
        Value::String(s) => s
            .parse()
            .map_err(|_| Refusal::BadRequest(format!("bad gpid {s:?}")))?,
        Value::Null => return Err(Refusal::BadRequest("gpid must not be null".into())),
        other => return Err(Refusal::BadRequest(format!("bad gpid {other}"))),
    };
    let start = parse_time("start_time", &data.start_time)?;
    let end = match &data.end_time {
        Some(t) => parse_time("end_time", t)?,
        None => start + 1,
    };
    if end < start {
        return Err(Refusal::BadRequest(format!(
            "end_time {} is before start_time {}",
            data.end_time.as_deref().unwrap_or(""),
            data.start_time
        )));
    }

    let mut reader = CollapsedReader::new();
    let mut stacks = Vec::new();
    for (i, line) in data.profile.as_bytes().split(|&b| b == b'\n').enumerate() {
        match reader.parse_line(line) {
            Ok(Some(s)) if s.count > 0 => stacks.push(s),
            Ok(_) => {}
            Err(e) if i == 0 => {
                return Err(Refusal::BadRequest(format!(
                    "Failed to parse v2 metadata: {e}"
                )))
            }
            Err(e) => return Err(Refusal::BadRequest(format!("profile line {}: {e}", i + 1))),
        }
        if i == 0 && reader.metadata().is_none() {
            return Err(Refusal::BadRequest(
                "Failed to parse v2 metadata: the profile must start with a `# {json}` line".into(),
            ));
        }
    }
    let header = reader.take_metadata().unwrap_or(Value::Null);

    let query: Vec<(String, String)> = query_pairs(query.unwrap_or("")).collect();
    let q = |name: &str| {
        query
            .iter()
            .find(|(k, v)| k == name && !v.is_empty())
            .map(|(_, v)| v.clone())
    };
    let mut labels: LabelSet = header_labels(&header);
    let service = service_header
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .or_else(|| q("service"));
    if let Some(s) = service {
        labels = labels
            .with("service", &s)
            .map_err(|e| Refusal::BadRequest(format!("bad service name: {e}")))?;
    }
    let host = data
        .hostname
        .filter(|h| !h.is_empty())
        .or_else(|| q("hostname"))
        .or_else(|| {
            header
                .pointer("/metadata/hostname")
                .and_then(Value::as_str)
                .map(str::to_string)
        });
    Ok(Upload {
        push: Push {
            window: Window::new(start, end.max(start + 1)),
            host,
            profiler: "gprofiler".into(),
            labels,
            stacks,
        },
        gpid,
    })
}

/// ISO 8601 as Python's `isoformat()` writes it: `2023-12-03T16:30:00.123456`,
/// optionally with `Z` or `±HH:MM` (`±HHMM`); no offset means UTC. The offset is at
/// most 23:59 (as Python's `timezone` takes it) and the time is checked to fall
/// between 1970 and 9999, so nothing here can overflow: a value out of range is
/// refused like any malformed time.
fn parse_time(field: &str, text: &str) -> Result<u64, Refusal> {
    let bad = || Refusal::BadRequest(format!("`{field}` is not an ISO 8601 time: {text:?}"));
    let t = text.trim();
    let (base, offset_ms) = match t.get(19..).and_then(|tail| {
        let i = tail.rfind(['+', '-'])?;
        Some((19 + i, &tail[i..]))
    }) {
        Some((i, off)) => {
            let sign: i64 = if off.starts_with('-') { -1 } else { 1 };
            let (h, m) = match off[1..].split_once(':') {
                Some((h, m)) => (offset_part(h), offset_part(m)),
                // Byte positions may cut a multi-byte character: `get`, never `[..]`.
                None if off.len() == 5 => (
                    off.get(1..3).and_then(offset_part),
                    off.get(3..).and_then(offset_part),
                ),
                None => return Err(bad()),
            };
            let (Some(h), Some(m)) = (h, m) else {
                return Err(bad());
            };
            if h > 23 || m > 59 {
                return Err(Refusal::BadRequest(format!(
                    "`{field}` has a UTC offset out of range (at most ±23:59): {text:?}"
                )));
            }
            (&t[..i], sign * (h * 3_600_000 + m * 60_000))
        }
        None => (t.trim_end_matches('Z'), 0),
    };
    let at = humantime::parse_rfc3339_weak(base).map_err(|_| bad())?;
    let ms = at
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| bad())?
        .as_millis();
    // humantime stops at year 9999 (< 2^48 ms), so the offset cannot overflow it.
    let ms = i64::try_from(ms).map_err(|_| bad())?;
    ms.checked_sub(offset_ms)
        .and_then(|ms| u64::try_from(ms).ok())
        .ok_or_else(bad)
}

/// The hours or minutes of a UTC offset: one or two digits, nothing else (no sign,
/// no spaces), so the value is small before any arithmetic.
fn offset_part(digits: &str) -> Option<i64> {
    ((1..=2).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Stack;

    const T0: u64 = 1_701_621_000_000; // 2023-12-03T16:30:00Z

    fn body(profile: &str, gpid: Value) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "start_time": "2023-12-03T16:30:00.000000",
            "end_time": "2023-12-03T16:31:00",
            "hostname": "web-1",
            "profile": profile,
            "cpu_avg": 1.5, "mem_avg": 20, "spawn_time": "2023-12-03T16:00:00", "gpid": gpid,
        }))
        .unwrap()
    }

    const PROFILE: &str = "# {\"application_metadata_enabled\": true, \"metadata\": {\"hostname\": \"h\"}}\n0;web;app;main;run 7\n1;;app;main 2\n";

    #[test]
    fn an_upload_becomes_a_push() {
        let gpids = Gpids::default();
        let u = parse(
            Some("service=q&hostname=other"),
            Some("checkout"),
            &body(PROFILE, Value::from(12)),
            &gpids,
        )
        .unwrap();
        assert_eq!(u.gpid, 12);
        assert_eq!(u.push.window, Window::new(T0, T0 + 60_000));
        assert_eq!(u.push.host.as_deref(), Some("web-1"));
        assert_eq!(u.push.labels.get("service"), Some("checkout"));
        let mut web = Stack::new("app;main;run", 7);
        web.container = Some("web".into());
        assert_eq!(u.push.stacks, vec![web, Stack::new("app;main", 2)]);
    }

    #[test]
    fn gpids_are_echoed_or_allocated() {
        let gpids = Gpids::default();
        let a = parse(None, None, &body(PROFILE, Value::from("")), &gpids).unwrap();
        let b = parse(None, None, &body(PROFILE, Value::from("")), &gpids).unwrap();
        assert_ne!(a.gpid, b.gpid);
        let c = parse(None, None, &body(PROFILE, Value::from("77")), &gpids).unwrap();
        assert_eq!(c.gpid, 77);
        assert!(parse(None, None, &body(PROFILE, Value::Null), &gpids).is_err());
    }

    #[test]
    fn refusals_say_why() {
        let gpids = Gpids::default();
        let msg = |json: &[u8]| match parse(None, None, json, &gpids) {
            Err(r) => r.to_string(),
            Ok(_) => panic!("accepted"),
        };
        assert!(msg(&body("0;;a;b 1\n", Value::from(1))).contains("Failed to parse v2 metadata"));
        assert!(msg(b"{\"profile\": \"\"}").contains("missing field `start_time`"));
        let bad_line = format!("{PROFILE}0;;a;b x\n");
        assert!(msg(&body(&bad_line, Value::from(1))).starts_with("profile line 4: "));
    }

    #[test]
    fn iso_times_with_and_without_offsets() {
        assert_eq!(parse_time("t", "2023-12-03T16:30:00").unwrap(), T0);
        assert_eq!(
            parse_time("t", "2023-12-03T16:30:00.250000Z").unwrap(),
            T0 + 250
        );
        assert_eq!(parse_time("t", "2023-12-03T16:30:00+00:00").unwrap(), T0);
        assert_eq!(parse_time("t", "2023-12-03T18:30:00+02:00").unwrap(), T0);
        assert_eq!(
            parse_time("t", "2023-12-03T15:30:00.5-01:00").unwrap(),
            T0 + 500
        );
        assert!(parse_time("t", "yesterday").is_err());
        assert_eq!(parse_time("t", "2023-12-03T18:30:00+0200").unwrap(), T0);
    }

    /// Found by fuzzing: `h * 3_600_000` overflowed (a panic with overflow checks,
    /// a wrong window in a release build).
    #[test]
    fn an_offset_out_of_range_is_a_bad_request() {
        for t in [
            "2023-12-03T16:30:00+99999999999:00",
            "2023-12-03T16:30:00-9223372036854775807:00",
            "2023-12-03T16:30:00+00:9999999999999999",
            "2023-12-03T16:30:00+24:00",
            "2023-12-03T16:30:00+00:60",
            "2023-12-03T16:30:00+9999",
        ] {
            match parse_time("start_time", t) {
                Err(r) => {
                    assert_eq!(r.status().as_u16(), 400, "{t}");
                    assert!(r.to_string().contains("start_time"), "{t}: {r}");
                }
                Ok(ms) => panic!("{t} taken as {ms}"),
            }
        }
        let msg = match parse_time("end_time", "2023-12-03T16:30:00+99:00") {
            Err(r) => r.to_string(),
            Ok(ms) => panic!("taken as {ms}"),
        };
        assert!(msg.contains("out of range (at most ±23:59)"), "{msg}");
        assert!(parse_time("t", "2023-12-03T16:30:00+ 5:00").is_err());
        assert!(parse_time("t", "2023-12-03T16:30:00+1é1").is_err());
        let body = serde_json::to_vec(&serde_json::json!({
            "start_time": "2023-12-03T16:30:00+99999999999:00",
            "profile": PROFILE, "gpid": 1,
        }))
        .unwrap();
        assert!(parse(None, None, &body, &Gpids::default()).is_err());
    }
}
