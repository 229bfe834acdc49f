//! `target = "pyroscope"`: a window as `POST /ingest` requests of folded stacks,
//! following the server's rules (see `delivery-facts.md` §1):
//!
//! - `name=<app>.cpu{k=v,...}`: the app name is `app_name`, else the window's
//!   `service` label, else `profpipe`, its characters outside `[A-Za-z0-9_./-]`
//!   replaced by `_`; `.cpu` is the profile type Pyroscope requires after the last
//!   dot. Labels: the window's labels plus `hostname`, names outside
//!   `[A-Za-z0-9_.]` sanitised the same way, `__*` names (reserved) and empty values
//!   left out, `,` `{` `}` `=` in values replaced by `_`, names cut to 1024 and
//!   values to 2048 bytes, at most [`MAX_LABELS`] labels (the server allows 30 per
//!   series and adds `service_name` itself).
//! - `from`/`until`: the window's start and end in seconds (`until` at least
//!   `from + 1`); `sampleRate`, `spyName`, `format=folded`, `units=samples`,
//!   `aggregationType=sum`.
//! - Body: `frame;frame count` lines, no header; stacks that differ only by
//!   container are summed (a folded line has no place for it).
//! - A window with more distinct stacks than `max_request_stacks` (16,000) or more
//!   body bytes than `max_request_bytes` (4 MiB) is split into several requests
//!   with the same name and times, which the server sums.
//! - A line longer than [`MAX_LINE`] bytes would silently end the server's parse
//!   (a Go `bufio.Scanner` token limit): its stack keeps its **root** end (the
//!   server's own depth truncation also drops leaf frames) and ends with a
//!   `[truncated N frames]` frame; such stacks are counted in
//!   `component_dropped_stacks_total{reason="truncated"}` (the samples are kept).
//! - A window that started longer ago than `ingestion_window` (the server's
//!   `reject_older_than`, 1 h) is not sent: the server would refuse it with 400.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderValue, CONTENT_TYPE};
use reqwest::Url;
use serde::Deserialize;

use super::config::FOUR_MIB;
use super::join;
use super::service::{Answers, Body, HttpRequest, Probe};
use super::target::{HttpTarget, Shape};
use crate::component::{at_least_one, FieldError};
use crate::formats::timestamp::iso8601;
use crate::sinks::delivering::Refused;
use crate::sinks::pending::CompleteWindow;
use crate::telemetry::ComponentMetrics;
use crate::units::DurationStr;

/// Pyroscope's `max_profile_stacktrace_samples` default: more distinct stacks in
/// one push are refused.
pub const PYROSCOPE_MAX_STACKS: usize = 16_000;

/// `target = "pyroscope"`'s keys.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PyroscopeTarget {
    /// The application name (before `.cpu`); default the window's `service` label,
    /// else "profpipe".
    #[serde(default)]
    pub app_name: Option<String>,
    /// `sampleRate`, the profilers' frequency in Hz (Pyroscope turns each sample
    /// into 1e9/sampleRate ns of CPU).
    #[serde(default = "default_sample_rate")]
    pub sample_rate: u32,
    /// `spyName`.
    #[serde(default = "default_spy_name")]
    pub spy_name: String,
    /// Windows that started longer ago than this are dropped (counted, reason
    /// `too_old`) instead of sent: the server refuses them (`reject_older_than`,
    /// default 1h).
    #[serde(default = "default_ingestion_window")]
    pub ingestion_window: DurationStr,
    /// Most distinct stacks of one request (`max_profile_stacktrace_samples`).
    #[serde(default = "default_max_request_stacks")]
    pub max_request_stacks: usize,
}

fn default_sample_rate() -> u32 {
    crate::sinks::encoding::DEFAULT_SAMPLE_RATE
}
fn default_spy_name() -> String {
    "profpipe".into()
}
fn default_ingestion_window() -> DurationStr {
    DurationStr::from_secs(3600)
}
fn default_max_request_stacks() -> usize {
    PYROSCOPE_MAX_STACKS
}

impl HttpTarget for PyroscopeTarget {
    fn validate(&self) -> Vec<FieldError> {
        let mut errors: Vec<FieldError> = at_least_one(&["sample_rate"], self.sample_rate)
            .into_iter()
            .collect();
        if self.ingestion_window.get().is_zero() {
            errors.push(FieldError::new(
                &["ingestion_window"],
                "must be greater than zero",
            ));
        }
        errors.extend(at_least_one(
            &["max_request_stacks"],
            self.max_request_stacks,
        ));
        if self.max_request_stacks > PYROSCOPE_MAX_STACKS {
            errors.push(FieldError::new(
                &["max_request_stacks"],
                format!("Pyroscope refuses more than {PYROSCOPE_MAX_STACKS} stacks per push by default; raise it only if the server's max_profile_stacktrace_samples is raised too"),
            ));
        }
        errors
    }

    fn default_max_request_bytes(&self) -> u64 {
        FOUR_MIB
    }

    /// Pyroscope's readiness endpoint, behind the same auth as /ingest on gateways
    /// such as Grafana Cloud's.
    fn probe(&self, endpoint: &Url) -> Result<Option<Probe>, String> {
        Ok(Some(Probe {
            url: join(endpoint, "/ready"),
            headers: HeaderMap::new(),
        }))
    }

    fn shape(&self, endpoint: &Url, max_request_bytes: usize) -> Box<dyn Shape> {
        Box::new(PyroscopeShape {
            pyroscope: Pyroscope {
                url: join(endpoint, "/ingest"),
                app_name: self.app_name.clone(),
                sample_rate: self.sample_rate,
                spy_name: self.spy_name.clone(),
                max_stacks: self.max_request_stacks,
                max_bytes: max_request_bytes,
            },
            ingestion_window: self.ingestion_window.get(),
        })
    }
}

struct PyroscopeShape {
    pyroscope: Pyroscope,
    ingestion_window: Duration,
}

impl Shape for PyroscopeShape {
    fn requests(
        &mut self,
        w: &CompleteWindow,
        metrics: &ComponentMetrics,
    ) -> Result<Vec<HttpRequest>, Refused> {
        let now = crate::window_clock::now_ms();
        let oldest = now.saturating_sub(self.ingestion_window.as_millis() as u64);
        if w.window.start_ms < oldest {
            return Err(Refused {
                reason: "too_old",
                message: format!(
                    "the window starting {} is older than ingestion_window ({}), which the server refuses",
                    iso8601(w.window.start_ms),
                    humantime::format_duration(self.ingestion_window)
                ),
            });
        }
        let pushes = self.pyroscope.pushes(w);
        metrics.dropped_stacks("truncated", pushes.truncated);
        metrics.errors("label_limit", pushes.labels_dropped);
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        Ok(pushes
            .requests
            .into_iter()
            .map(|(url, body)| HttpRequest {
                url,
                headers: headers.clone(),
                body: Body::Bytes(Bytes::from(body)),
                answers: Answers::Http,
            })
            .collect())
    }
}

/// Longest folded line (without its newline) the server reads: Go's default
/// `bufio.Scanner` buffer is 64 KiB, which must hold the line and its newline.
pub const MAX_LINE: usize = 64 * 1024 - 1;

/// Most labels of ours in `name` (the server's limit is 30 label names per series,
/// and it adds `service_name`, `__name__` and the spy's label).
pub const MAX_LABELS: usize = 25;

const MAX_LABEL_NAME: usize = 1024;
const MAX_LABEL_VALUE: usize = 2048;

/// The settings of the pyroscope target.
#[derive(Clone, Debug)]
pub struct Pyroscope {
    /// `<endpoint>/ingest`.
    pub url: Url,
    pub app_name: Option<String>,
    pub sample_rate: u32,
    pub spy_name: String,
    pub max_stacks: usize,
    pub max_bytes: usize,
}

/// The requests of one window.
#[derive(Debug, PartialEq, Eq)]
pub struct Pushes {
    /// URL (with its query) and body of each request.
    pub requests: Vec<(Url, Vec<u8>)>,
    /// Stacks shortened to fit [`MAX_LINE`].
    pub truncated: u64,
    /// Labels left out beyond [`MAX_LABELS`].
    pub labels_dropped: u64,
}

impl Pyroscope {
    pub fn pushes(&self, w: &CompleteWindow) -> Pushes {
        let (name, labels_dropped) = self.name(w);
        let from = w.window.start_ms / 1000;
        let until = w.window.end_ms.div_ceil(1000).max(from + 1);
        let mut url = self.url.clone();
        url.query_pairs_mut()
            .append_pair("name", &name)
            .append_pair("from", &from.to_string())
            .append_pair("until", &until.to_string())
            .append_pair("sampleRate", &self.sample_rate.to_string())
            .append_pair("spyName", &self.spy_name)
            .append_pair("format", "folded")
            .append_pair("units", "samples")
            .append_pair("aggregationType", "sum");
        let (lines, truncated) = lines(w);
        let requests = split(&lines, self.max_stacks, self.max_bytes)
            .into_iter()
            .map(|body| (url.clone(), body))
            .collect();
        Pushes {
            requests,
            truncated,
            labels_dropped,
        }
    }

    /// `app.cpu{k=v,...}` and how many labels were left out.
    fn name(&self, w: &CompleteWindow) -> (String, u64) {
        let app = self
            .app_name
            .as_deref()
            .or_else(|| w.labels.get("service"))
            .unwrap_or("profpipe");
        let mut app: String = app
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "_./-".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        if app.trim_matches('.').is_empty() {
            app = "profpipe".into();
        }
        let mut labels: BTreeMap<String, String> = BTreeMap::new();
        let host = std::iter::once(("hostname", &*w.host));
        for (k, v) in w.labels.iter().chain(host) {
            let k = label_name(k);
            let v = label_value(v);
            if k.starts_with("__") || k.is_empty() || v.is_empty() {
                continue;
            }
            labels.entry(k).or_insert(v);
        }
        let dropped = labels.len().saturating_sub(MAX_LABELS) as u64;
        let mut name = format!("{}.cpu{{", app.trim_end_matches('.'));
        for (i, (k, v)) in labels.iter().take(MAX_LABELS).enumerate() {
            if i > 0 {
                name.push(',');
            }
            let _ = write!(name, "{k}={v}");
        }
        name.push('}');
        (name, dropped)
    }
}

fn label_name(k: &str) -> String {
    let k: String = k
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    cut(&k, MAX_LABEL_NAME).to_string()
}

fn label_value(v: &str) -> String {
    let v: String = v
        .chars()
        .map(|c| {
            if matches!(c, ',' | '{' | '}' | '=') || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect();
    cut(v.trim(), MAX_LABEL_VALUE).to_string()
}

/// The longest prefix of `s` of at most `max` bytes, on a char boundary.
fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The window's folded lines (`frames count`, no newline) with containers merged
/// and long stacks shortened; sorted by frames. Returns how many were shortened.
fn lines(w: &CompleteWindow) -> (Vec<String>, u64) {
    let mut merged: BTreeMap<String, u64> = BTreeMap::new();
    let mut truncated = 0;
    for s in &w.stacks {
        // Newlines inside frames would split a line (the folded writers' rule).
        let frames = s.frames.replace(['\n', '\r'], " ");
        let count_len = 1 + decimal_len(s.count);
        let frames = if frames.len() + count_len > MAX_LINE {
            truncated += 1;
            keep_root(&frames, MAX_LINE - count_len)
        } else {
            frames
        };
        *merged.entry(frames).or_insert(0) += s.count;
    }
    let lines = merged
        .into_iter()
        .map(|(frames, count)| format!("{frames} {count}"))
        .collect();
    (lines, truncated)
}

fn decimal_len(n: u64) -> usize {
    n.checked_ilog10().map_or(1, |d| d as usize + 1)
}

/// `frames` cut to at most `max` bytes keeping the root end: whole frames from the
/// root, then `[truncated N frames]` for the N leaf-side frames left out.
fn keep_root(frames: &str, max: usize) -> String {
    let all: Vec<&str> = frames.split(';').collect();
    let marker = |n: usize| format!("[truncated {n} frames]");
    let mut kept = 0usize;
    let mut len = 0usize;
    for (i, f) in all.iter().enumerate() {
        let with = len + usize::from(i > 0) + f.len();
        // Room must remain for `;` and the marker of what is left out.
        if with + 1 + marker(all.len() - i - 1).len() > max {
            break;
        }
        len = with;
        kept = i + 1;
    }
    let mut out = String::with_capacity(max);
    if kept == 0 {
        // A first frame longer than the limit on its own: cut inside it.
        let room = max.saturating_sub(1 + marker(all.len()).len());
        out.push_str(cut(all[0], room));
        out.push(';');
        out.push_str(&marker(all.len() - 1));
        return out;
    }
    out.push_str(&all[..kept].join(";"));
    out.push(';');
    out.push_str(&marker(all.len() - kept));
    out
}

/// Bodies of at most `max_stacks` lines and `max_bytes` bytes (at least one line
/// each; an empty window is one empty body).
fn split(lines: &[String], max_stacks: usize, max_bytes: usize) -> Vec<Vec<u8>> {
    let mut bodies = Vec::new();
    let mut body: Vec<u8> = Vec::new();
    let mut n = 0;
    for line in lines {
        if n > 0 && (n >= max_stacks || body.len() + line.len() + 1 > max_bytes) {
            bodies.push(std::mem::take(&mut body));
            n = 0;
        }
        body.extend_from_slice(line.as_bytes());
        body.push(b'\n');
        n += 1;
    }
    bodies.push(body);
    bodies
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{LabelSet, Stack, Window};

    fn window(stacks: Vec<Stack>, labels: LabelSet) -> CompleteWindow {
        CompleteWindow {
            window: Window::new(1_700_000_000_500, 1_700_000_060_500),
            host: "web-1".into(),
            labels,
            stacks,
            events: 1,
            bytes: 0,
        }
    }

    fn target() -> Pyroscope {
        Pyroscope {
            url: Url::parse("http://127.0.0.1:4040/ingest").unwrap(),
            app_name: None,
            sample_rate: 99,
            spy_name: "profpipe".into(),
            max_stacks: 16_000,
            max_bytes: 4 << 20,
        }
    }

    fn query(url: &Url) -> BTreeMap<String, String> {
        url.query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }

    #[test]
    fn the_query_follows_the_server_rules() {
        let labels = LabelSet::default()
            .with("service", "my.shop/api v2")
            .unwrap()
            .with("env", "prod,eu}")
            .unwrap();
        let w = window(vec![Stack::new("a;b", 3)], labels);
        let p = target().pushes(&w);
        let q = query(&p.requests[0].0);
        assert_eq!(
            q["name"],
            "my.shop/api_v2.cpu{env=prod_eu_,hostname=web-1,service=my.shop/api v2}"
        );
        assert_eq!(
            (q["from"].as_str(), q["until"].as_str()),
            ("1700000000", "1700000061")
        );
        assert_eq!(
            (
                q["sampleRate"].as_str(),
                q["spyName"].as_str(),
                q["format"].as_str()
            ),
            ("99", "profpipe", "folded")
        );
        assert_eq!(p.requests[0].1, b"a;b 3\n");
        let mut t = target();
        t.app_name = Some("checkout".into());
        assert!(query(&t.pushes(&w).requests[0].0)["name"].starts_with("checkout.cpu{"));
    }

    #[test]
    fn containers_merge_and_windows_split_by_stacks_and_bytes() {
        let mut stacks: Vec<Stack> = (0..40_000)
            .map(|i| Stack::new(format!("comm;f{i:05}"), 1))
            .collect();
        let mut c = Stack::new("comm;f00000", 2);
        c.container = Some("db".into());
        stacks.push(c);
        let p = target().pushes(&window(stacks, LabelSet::default()));
        let sizes: Vec<usize> = p
            .requests
            .iter()
            .map(|r| r.1.split(|b| *b == b'\n').filter(|l| !l.is_empty()).count())
            .collect();
        assert_eq!(sizes, [16_000, 16_000, 8_000]);
        assert!(p.requests[0].1.starts_with(b"comm;f00000 3\n"));
        let mut t = target();
        t.max_bytes = 100_000;
        let p = t.pushes(&window(
            (0..40_000)
                .map(|i| Stack::new(format!("comm;f{i:05}"), 1))
                .collect(),
            LabelSet::default(),
        ));
        assert!(p.requests.iter().all(|r| r.1.len() <= 100_000));
        assert_eq!(
            p.requests.iter().map(|r| r.1.len()).sum::<usize>(),
            40_000 * 14
        );
    }

    #[test]
    fn a_line_over_64k_keeps_its_root_and_says_so() {
        let frames: Vec<String> = (0..10_000).map(|i| format!("frame_{i:05}")).collect();
        let long = format!("comm;{}", frames.join(";"));
        let w = window(
            vec![Stack::new(long, 7), Stack::new("comm;short", 1)],
            LabelSet::default(),
        );
        let p = target().pushes(&w);
        assert_eq!(p.truncated, 1);
        let body = String::from_utf8(p.requests[0].1.clone()).unwrap();
        let first = body.lines().next().unwrap();
        assert!(first.len() <= MAX_LINE, "{}", first.len());
        assert!(first.starts_with("comm;frame_00000;frame_00001;"));
        let (stack, count) = first.rsplit_once(' ').unwrap();
        assert_eq!(count, "7");
        let kept = stack.split(';').count() - 1;
        assert_eq!(
            stack.rsplit(';').next().unwrap(),
            format!("[truncated {} frames]", 10_001 - kept)
        );
        assert_eq!(body.lines().nth(1), Some("comm;short 1"));
        let one = keep_root(&"x".repeat(100_000), 1000);
        assert!(
            one.len() <= 1000 && one.ends_with(";[truncated 0 frames]"),
            "{}",
            one.len()
        );
    }
}
