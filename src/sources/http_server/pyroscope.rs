//! Pyroscope's legacy push: `POST /ingest?name=app.cpu{k=v}&from=..&until=..`
//! with folded stacks in the body.
//!
//! ```text
//! POST /ingest?name=checkout.cpu%7Benv%3Dprod%7D&from=1701621000&until=1701621010&spyName=pyspy
//!
//! main;handle;parse 12
//! main;idle 3
//! ```
//!
//! As Pyroscope reads it: `name` is `app{labels}` (app `[A-Za-z0-9_./-]+`, label
//! names `[A-Za-z0-9_.]+`, values up to `,` or `}`, trimmed); the text after the
//! app's last `.` is the profile type and must be a known one (`cpu`, `wall`,
//! `alloc_space`, ...; a dot-free name is cpu); `from`/`until` are Unix times whose
//! digit count says the unit (13 = ms, 16 = µs, 19 = ns, else s), now when absent;
//! `format` absent, `folded` or `groups` is folded text, `lines` is one stack per
//! line counted once; other formats (trie, tree, pprof, jfr, speedscope, multipart)
//! are answered 415.
//!
//! Labels: `service` = the app without its type suffix (unless given), `profile_type`
//! = the suffix; `host`/`hostname` set the profile's host; names with `.` get `_`
//! (our label names are Prometheus-style); Pyroscope's internal `__*` labels are
//! dropped. Unlike Pyroscope, which skips count-less lines and answers 422 for a
//! bad count, every malformed line is answered 400 with its line number: a
//! partial profile is never taken.

use crate::event::{LabelSet, Stack, Window};
use crate::formats::folded;
use crate::formats::line::{is_blank_or_comment, trim_end};

use super::respond::Refusal;
use super::Push;

/// Profile types Pyroscope knows (the app name's suffix), exactly or as a prefix.
const TYPES: &[&str] = &[
    "cpu",
    "wall",
    "itimer",
    "goroutines",
    "goroutine",
    "exceptions",
    "seconds",
    "bytes",
    "samples",
];
const TYPE_PREFIXES: &[&str] = &["alloc_", "inuse_", "mutex_", "block_", "lock_"];

/// Longest `spyName` kept as the `profiler` label.
const MAX_SPY_NAME: usize = 64;

/// Reads one push. `now_ms` stands in for an absent `from`/`until`.
pub fn parse(
    query: Option<&str>,
    content_type: Option<&str>,
    body: &[u8],
    now_ms: u64,
) -> Result<Push, Refusal> {
    let mut name = None;
    let (mut from, mut until) = (None, None);
    let mut spy = None;
    let mut format = None;
    for (k, v) in query_pairs(query.unwrap_or("")) {
        match k.as_str() {
            "name" => name = Some(v),
            "from" => from = Some(parse_time("from", &v)?),
            "until" => until = Some(parse_time("until", &v)?),
            "spyName" => spy = Some(v),
            "format" => format = Some(v),
            // sampleRate, units, aggregationType: counts are kept as sample counts.
            _ => {}
        }
    }
    check_format(format.as_deref(), content_type)?;
    let lines_format = format.as_deref() == Some("lines");
    let name =
        name.ok_or_else(|| Refusal::BadRequest("the `name` parameter is required".into()))?;
    let (app, raw_labels) = parse_name(&name)?;
    let (service, profile_type) = split_type(&app)?;
    let from = from.unwrap_or(now_ms);
    let until = until.unwrap_or(now_ms);
    if until < from {
        return Err(Refusal::BadRequest(format!(
            "`until` ({until} ms) is before `from` ({from} ms)"
        )));
    }
    // A zero-length push still covers the instant it names.
    let window = Window::new(from, until.max(from + 1));

    let mut host = None;
    let mut labels = LabelSet::default();
    let mut has_service = false;
    for (k, v) in raw_labels {
        if k.starts_with("__") {
            continue;
        }
        if k == "host" || k == "hostname" {
            host = Some(v);
            continue;
        }
        let k = k.replace('.', "_");
        has_service |= k == "service";
        labels = labels
            .with(&k, &v)
            .map_err(|e| Refusal::BadRequest(format!("bad label in `name`: {e}")))?;
    }
    if !has_service {
        labels = labels
            .with("service", service)
            .map_err(|e| Refusal::BadRequest(format!("bad app name: {e}")))?;
    }
    labels = labels
        .with("profile_type", profile_type)
        .map_err(|e| Refusal::BadRequest(format!("bad profile type: {e}")))?;

    let stacks = if lines_format {
        parse_lines(body)
    } else {
        parse_folded(body)?
    };
    let mut profiler: String = spy.unwrap_or_else(|| "unknown".into());
    let mut cut = profiler.len().min(MAX_SPY_NAME);
    while !profiler.is_char_boundary(cut) {
        cut -= 1;
    }
    profiler.truncate(cut);
    Ok(Push {
        window,
        host,
        profiler,
        labels,
        stacks,
    })
}

fn check_format(format: Option<&str>, content_type: Option<&str>) -> Result<(), Refusal> {
    let ct = content_type.unwrap_or("").to_ascii_lowercase();
    if ct.starts_with("multipart/form-data") || ct.contains("+trie") || ct.contains("+tree") {
        return Err(Refusal::Unsupported(format!(
            "Content-Type {ct} (pprof, trie, tree) is not supported; push folded text"
        )));
    }
    match format {
        None | Some("") | Some("folded") | Some("groups") | Some("lines") => Ok(()),
        Some(f) => Err(Refusal::Unsupported(format!(
            "format={f} is not supported; push folded text (format=folded)"
        ))),
    }
}

/// `app{k=v,k2=v2}` → `("app", [(k, v), (k2, v2)])`.
fn parse_name(name: &str) -> Result<(String, Vec<(String, String)>), Refusal> {
    let bad = |why: &str| Refusal::BadRequest(format!("bad `name` {name:?}: {why}"));
    let (app, rest) = match name.find('{') {
        Some(i) => (&name[..i], Some(&name[i + 1..])),
        None => (name, None),
    };
    if app.is_empty() {
        return Err(bad("the application name is empty"));
    }
    if !app
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"_./-".contains(&b))
    {
        return Err(bad(
            "the application name may hold only A-Z a-z 0-9 _ . / -",
        ));
    }
    let mut labels = Vec::new();
    if let Some(rest) = rest {
        let inner = rest
            .strip_suffix('}')
            .ok_or_else(|| bad("labels must end with `}`"))?;
        for pair in inner.split(',').filter(|p| !p.trim().is_empty()) {
            let (k, v) = pair
                .split_once('=')
                .ok_or_else(|| bad("a label has no `=`"))?;
            let k = k.trim();
            if k.is_empty()
                || !k
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_.".contains(&b))
            {
                return Err(bad("label names may hold only A-Z a-z 0-9 _ ."));
            }
            if k == "__name__" {
                return Err(bad("the label __name__ is reserved"));
            }
            labels.push((k.to_string(), v.trim().to_string()));
        }
    }
    Ok((app.to_string(), labels))
}

/// `checkout.cpu` → `("checkout", "cpu")`; a dot-free name is cpu.
fn split_type(app: &str) -> Result<(&str, &str), Refusal> {
    let Some((service, ty)) = app.rsplit_once('.') else {
        return Ok((app, "cpu"));
    };
    let known = TYPES.contains(&ty) || TYPE_PREFIXES.iter().any(|p| ty.starts_with(p));
    if !known || service.is_empty() {
        return Err(Refusal::BadRequest(format!(
            "unknown profile type {ty:?} in application name {app:?} (the text after the last `.` is the profile type: send {app}.cpu, or a name without dots)"
        )));
    }
    Ok((service, ty))
}

/// A Unix time as Pyroscope reads it: 13 digits = ms, 16 = µs, 19 = ns, else s.
fn parse_time(field: &str, v: &str) -> Result<u64, Refusal> {
    let bad = || {
        Refusal::BadRequest(format!(
            "`{field}` must be a Unix time in digits, got {v:?}"
        ))
    };
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let n: u64 = v.parse().map_err(|_| bad())?;
    Ok(match v.len() {
        13 => n,
        16 => n / 1_000,
        19 => n / 1_000_000,
        _ => n.checked_mul(1000).ok_or_else(bad)?,
    })
}

fn parse_folded(body: &[u8]) -> Result<Vec<Stack>, Refusal> {
    let mut stacks = Vec::new();
    for (i, line) in body.split(|&b| b == b'\n').enumerate() {
        match folded::parse_line(line) {
            Ok(Some(s)) if s.count > 0 => stacks.push(s),
            Ok(_) => {}
            Err(e) => return Err(Refusal::BadRequest(format!("line {}: {e}", i + 1))),
        }
    }
    Ok(stacks)
}

/// `format=lines`: each line is one sample of the stack it holds.
fn parse_lines(body: &[u8]) -> Vec<Stack> {
    body.split(|&b| b == b'\n')
        .filter(|l| !is_blank_or_comment(l))
        .map(|l| Stack::new(String::from_utf8_lossy(trim_end(l)), 1))
        .collect()
}

/// The `k=v` pairs of a query string, percent-decoded (`+` is a space).
pub fn query_pairs(query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    query.split('&').filter(|p| !p.is_empty()).map(|p| {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        (percent_decode(k), percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                match std::str::from_utf8(&b[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(v) => {
                        out.push(v);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_701_621_000_000;

    #[test]
    fn a_folded_push_with_labels() {
        let q = "name=checkout.cpu%7Benv%3Dprod%2Chostname%3Dweb-1%2Cservice.version%3D2%7D&from=1701621000&until=1701621010&spyName=pyspy&sampleRate=100";
        let p = parse(Some(q), None, b"main;handle;parse 12\n\nmain;idle 3\n", NOW).unwrap();
        assert_eq!(p.window, Window::new(1_701_621_000_000, 1_701_621_010_000));
        assert_eq!(p.host.as_deref(), Some("web-1"));
        assert_eq!(p.profiler, "pyspy");
        assert_eq!(
            p.labels.to_string(),
            "env=prod,profile_type=cpu,service=checkout,service_version=2"
        );
        assert_eq!(
            p.stacks,
            vec![
                Stack::new("main;handle;parse", 12),
                Stack::new("main;idle", 3)
            ]
        );
    }

    #[test]
    fn times_by_digit_count_and_defaults() {
        assert_eq!(parse_time("from", "1701621000").unwrap(), NOW);
        assert_eq!(parse_time("from", "1701621000000").unwrap(), NOW);
        assert_eq!(parse_time("from", "1701621000000000").unwrap(), NOW);
        assert_eq!(parse_time("from", "1701621000000000000").unwrap(), NOW);
        assert!(parse_time("from", "now-1h").is_err());
        let p = parse(Some("name=app"), None, b"a 1", NOW).unwrap();
        assert_eq!(p.window, Window::new(NOW, NOW + 1));
        assert_eq!(p.labels.get("service"), Some("app"));
        assert_eq!(p.profiler, "unknown");
    }

    #[test]
    fn bad_input_says_why() {
        let err = |q: &str, body: &[u8]| match parse(Some(q), None, body, NOW) {
            Err(r) => (r.status().as_u16(), r.to_string()),
            Ok(p) => panic!("accepted {q}: {p:?}"),
        };
        let (code, msg) = err("name=my.service", b"a 1");
        assert_eq!(code, 400);
        assert!(msg.contains("unknown profile type \"service\""), "{msg}");
        let (code, msg) = err("name=app.cpu", b"a;b 1\na;b x\n");
        assert_eq!(code, 400);
        assert!(msg.starts_with("line 2: "), "{msg}");
        assert_eq!(err("from=1", b"").0, 400);
        assert_eq!(err("name=a%20b", b"").0, 400);
        assert_eq!(err("name=app{k}", b"").0, 400);
        assert_eq!(err("name=app&from=20&until=10", b"").0, 400);
        assert_eq!(err("name=app&format=pprof", b"").0, 415);
    }

    #[test]
    fn lines_format_counts_each_line_once() {
        let p = parse(Some("name=app&format=lines"), None, b"a;b\na;b\n", NOW).unwrap();
        assert_eq!(p.stacks, vec![Stack::new("a;b", 1), Stack::new("a;b", 1)]);
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%7Bb%3Dc%7D+d"), "a{b=c} d");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
    }
}
