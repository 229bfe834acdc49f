//! gProfiler's collapsed files (`profile_*.col`): an optional `# {json}` metadata
//! line, then folded stacks whose first frames may be an application-metadata index
//! and a container name.
//!
//! ```text
//! # {"containers": ["web"], "application_metadata_enabled": true, ...}
//! 0;;swapper;secondary_startup_64_[k];cpu_startup_entry_[k] 631
//! 4;web;gunicorn: worke;appid: gunicorn: app:app;run (x.py:9)_[p] 3
//! ```
//!
//! Which prefixes a stack line carries is decided by the header, as gProfiler's
//! back end (the indexer) decides it:
//! - `metadata.run_arguments.profile_api_version == "v1"`: no prefix (plain folded);
//! - otherwise a container frame (empty when unknown), preceded by the index into
//!   `application_metadata` when `application_metadata_enabled` is true.
//!
//! profpipe's header also carries the profile's open labels as `"labels": {..}`
//! and, when a `service` label is set, `"service"` (and gProfiler's
//! `metadata.run_arguments.service_name`). Readers take them with
//! [`header_labels`]; a header without them (gProfiler's own, older profpipe) has
//! no labels.
//!
//! Without a header the lines are read as plain folded stacks. The index is checked
//! and dropped (profpipe does not carry per-process application metadata); the
//! `appid: ...` frame gProfiler inserts after the comm is kept as a frame, as the
//! indexer keeps it.

use std::collections::{BTreeSet, HashSet};
use std::io::{self, BufRead, Write};
use std::sync::Arc;

use serde_json::{json, Value};

use super::line::{
    self, decode, is_blank_or_comment, parse_u64, split_count, trim_end, trim_start, FormatStats,
    LineError, LineErrorKind,
};
use super::reader::{LineFormat, LineReader};
use super::timestamp::iso8601;
use crate::event::{LabelSet, Stack, Window};

/// The format's name in logs and configs.
pub const NAME: &str = "collapsed";

/// Largest header line accepted. gProfiler can embed a whole HTML flame graph in it.
pub const DEFAULT_MAX_HEADER_BYTES: usize = 64 << 20;

/// Distinct container names kept interned by one reader.
const MAX_INTERNED_CONTAINERS: usize = 4096;

/// The prefix frames of each stack line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Lines start with `<index>;` into the header's `application_metadata`.
    pub app_metadata_index: bool,
    /// Lines carry `<container>;` (possibly empty) before the comm.
    pub container: bool,
}

impl Layout {
    /// Plain folded lines: `comm;frames count`.
    pub const FOLDED: Layout = Layout {
        app_metadata_index: false,
        container: false,
    };
    /// gProfiler v2 with application metadata: `idx;container;comm;frames count`.
    pub const V2: Layout = Layout {
        app_metadata_index: true,
        container: true,
    };

    /// The layout a header announces (see the module docs).
    pub fn from_header(header: &Value) -> Layout {
        let v1 = header
            .pointer("/metadata/run_arguments/profile_api_version")
            .and_then(Value::as_str)
            == Some("v1");
        if v1 {
            return Layout::FOLDED;
        }
        let app_metadata_index = header
            .get("application_metadata_enabled")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        Layout {
            app_metadata_index,
            container: true,
        }
    }
}

/// The collapsed grammar and what it learnt from the header.
#[derive(Debug, Default)]
pub struct Collapsed {
    /// Forced by the caller, or decided by the header.
    layout: Option<Layout>,
    metadata: Option<Value>,
    containers: HashSet<Arc<str>>,
}

/// A collapsed-file parser. The first line it is given may be the header.
pub type CollapsedReader = LineReader<Collapsed>;

impl Collapsed {
    /// A format with a fixed layout; a header is still read (for its metadata) but
    /// does not change the layout.
    pub fn with_layout(layout: Layout) -> Self {
        Collapsed {
            layout: Some(layout),
            ..Self::default()
        }
    }

    /// The layout in use: [`Layout::FOLDED`] until a header said otherwise.
    pub fn layout(&self) -> Layout {
        self.layout.unwrap_or(Layout::FOLDED)
    }

    /// The header's JSON, once a header line was read.
    pub fn metadata(&self) -> Option<&Value> {
        self.metadata.as_ref()
    }

    fn intern(&mut self, name: &str) -> Arc<str> {
        if let Some(c) = self.containers.get(name) {
            return c.clone();
        }
        let c: Arc<str> = Arc::from(name);
        if self.containers.len() < MAX_INTERNED_CONTAINERS {
            self.containers.insert(c.clone());
        }
        c
    }
}

impl LineFormat for Collapsed {
    const NAME: &'static str = NAME;
    const MAX_HEADER_BYTES: Option<usize> = Some(DEFAULT_MAX_HEADER_BYTES);

    /// `# {json}`: the header decides the layout unless the caller fixed it.
    fn parse_header(&mut self, line: &[u8]) -> Option<Result<(), LineError>> {
        let json = trim_start(line).strip_prefix(b"#")?;
        if !trim_start(json).starts_with(b"{") {
            return None;
        }
        Some(match serde_json::from_slice::<Value>(trim_end(json)) {
            Ok(v @ Value::Object(_)) => {
                if self.layout.is_none() {
                    self.layout = Some(Layout::from_header(&v));
                }
                self.metadata = Some(v);
                Ok(())
            }
            _ => Err(LineError::new(LineErrorKind::BadHeader, line)),
        })
    }

    /// `[idx;][container;]comm;frames count`, the prefixes as the layout says.
    fn parse(&mut self, line: &[u8], stats: &mut FormatStats) -> Result<Option<Stack>, LineError> {
        if is_blank_or_comment(line) {
            return Ok(None);
        }
        let (mut rest, count) = split_count(trim_start(line))?;
        let layout = self.layout();
        if layout.app_metadata_index {
            let (idx, tail) = split_frame(rest).ok_or_else(|| bad_prefix(line))?;
            parse_u64(idx).ok_or_else(|| bad_prefix(line))?;
            rest = tail;
        }
        let mut container = None;
        let mut lossy = false;
        if layout.container {
            let (name, tail) = split_frame(rest).ok_or_else(|| bad_prefix(line))?;
            if !name.is_empty() {
                let (name, l) = decode(name);
                lossy |= l;
                container = Some(self.intern(&name));
            }
            rest = tail;
        }
        if rest.is_empty() {
            return Err(LineError::new(LineErrorKind::EmptyStack, line));
        }
        let (frames, l) = decode(rest);
        if lossy || l {
            stats.record_non_utf8(NAME);
        }
        let mut stack = Stack::new(frames, count);
        stack.container = container;
        Ok(Some(stack))
    }
}

/// What the header said, asked of the reader (as before the format was split out).
impl LineReader<Collapsed> {
    /// A reader with a fixed layout (see [`Collapsed::with_layout`]).
    pub fn with_layout(layout: Layout) -> Self {
        Self::with_format(Collapsed::with_layout(layout))
    }

    /// The layout in use: [`Layout::FOLDED`] until a header said otherwise.
    pub fn layout(&self) -> Layout {
        self.format().layout()
    }

    /// The header's JSON, once a header line was read.
    pub fn metadata(&self) -> Option<&Value> {
        self.format().metadata()
    }

    pub fn take_metadata(&mut self) -> Option<Value> {
        self.format_mut().metadata.take()
    }
}

fn bad_prefix(line: &[u8]) -> LineError {
    LineError::new(LineErrorKind::BadPrefix, line)
}

/// `b"a;b;c"` → `(b"a", b"b;c")`; `None` without a `;`.
fn split_frame(s: &[u8]) -> Option<(&[u8], &[u8])> {
    let i = memchr::memchr(b';', s)?;
    Some((&s[..i], &s[i + 1..]))
}

/// A whole collapsed file, read.
#[derive(Debug)]
pub struct CollapsedFile {
    /// The header's JSON, if the file had one.
    pub metadata: Option<Value>,
    pub layout: Layout,
    pub stacks: Vec<Stack>,
    pub stats: FormatStats,
}

/// Reads a whole collapsed file (header optional). Bad lines are counted and skipped.
pub fn read<R: BufRead>(reader: R) -> io::Result<CollapsedFile> {
    let mut parser = CollapsedReader::new();
    let stacks = parser.read_all(reader)?;
    let (format, stats) = parser.into_parts();
    Ok(CollapsedFile {
        layout: format.layout(),
        metadata: format.metadata,
        stacks,
        stats,
    })
}

/// What the writer puts in the header besides the container list.
#[derive(Clone, Debug)]
pub struct HeaderInfo<'a> {
    pub hostname: &'a str,
    pub window: Window,
}

/// The header JSON of a file holding `stacks`: small, but with every key gProfiler's
/// back end reads (`application_metadata_enabled`, `metadata.hostname`,
/// `metadata.run_arguments.profile_api_version`, ...), plus `labels` (and `service`
/// when that label is set).
pub fn header<'a>(
    info: &HeaderInfo<'_>,
    labels: &LabelSet,
    stacks: impl IntoIterator<Item = &'a Stack>,
) -> Value {
    let containers: BTreeSet<&str> = stacks
        .into_iter()
        .filter_map(|s| s.container.as_deref())
        .filter(|c| !c.is_empty())
        .collect();
    let start = iso8601(info.window.start_ms);
    let end = iso8601(info.window.end_ms);
    let mut header = json!({
        "containers": containers,
        "container_names_enabled": true,
        "hostname": info.hostname,
        "metadata": {
            "hostname": info.hostname,
            "agent": "profpipe",
            "agent_version": env!("CARGO_PKG_VERSION"),
            "start_time": start,
            "end_time": end,
            "current_time": end,
            "profiling_mode": "cpu",
            "run_arguments": {
                "profile_api_version": "v2",
                "profiling_mode": "cpu",
            },
        },
        "application_metadata": [null],
        "application_metadata_enabled": true,
        "profiling_mode": "cpu",
        "labels": labels,
    });
    if let Some(service) = labels.get("service") {
        header["service"] = json!(service);
        header["metadata"]["run_arguments"]["service_name"] = json!(service);
    }
    header
}

/// The labels a header carries (`"labels": {..}`). A header without them, or with
/// names or values a label set refuses, gives the labels that are valid: reading
/// never fails on them.
pub fn header_labels(header: &Value) -> LabelSet {
    let mut set = LabelSet::default();
    let Some(labels) = header.get("labels").and_then(Value::as_object) else {
        return set;
    };
    for (name, value) in labels {
        if let Some(value) = value.as_str() {
            if let Ok(s) = set.with(name, value) {
                set = s;
            }
        }
    }
    set
}

/// Writes the `# {json}` header line.
pub fn write_header<W: Write + ?Sized>(w: &mut W, header: &Value) -> io::Result<()> {
    w.write_all(b"# ")?;
    serde_json::to_writer(&mut *w, header)?;
    w.write_all(b"\n")
}

/// Writes one stack as `0;<container>;<frames> <count>` (index 0: no metadata).
pub fn write_stack<W: Write + ?Sized>(w: &mut W, stack: &Stack) -> io::Result<()> {
    w.write_all(b"0;")?;
    if let Some(c) = &stack.container {
        // A container name with `;` would shift every frame: replace it.
        if c.contains(';') {
            line::write_frames(w, &c.replace(';', "_"))?;
        } else {
            line::write_frames(w, c)?;
        }
    }
    w.write_all(b";")?;
    line::write_frames(w, &stack.frames)?;
    writeln!(w, " {}", stack.count)
}

/// Writes a whole file: the header (with `labels`), then the stacks in the order
/// given.
pub fn write<W: Write + ?Sized>(
    w: &mut W,
    info: &HeaderInfo<'_>,
    labels: &LabelSet,
    stacks: &[Stack],
) -> io::Result<()> {
    write_with_header(w, &header(info, labels, stacks), stacks)
}

/// Writes a whole file with a header the caller built (from [`header`], with keys
/// of its own added), then the stacks in the order given.
pub fn write_with_header<W: Write + ?Sized>(
    w: &mut W,
    header: &Value,
    stacks: &[Stack],
) -> io::Result<()> {
    write_header(w, header)?;
    for stack in stacks {
        write_stack(w, stack)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn stack(container: Option<&str>, frames: &str, count: u64) -> Stack {
        let mut s = Stack::new(frames, count);
        s.container = container.map(Arc::from);
        s
    }

    #[test]
    fn v2_lines_with_header() {
        let mut r = CollapsedReader::new();
        let header = br#"# {"application_metadata_enabled": true, "containers": ["web"]}"#;
        assert_eq!(r.parse_line(header).unwrap(), None);
        assert_eq!(r.layout(), Layout::V2);
        assert_eq!(r.metadata().unwrap()["containers"][0], "web");
        assert_eq!(
            r.parse_line(b"0;;swapper;idle_[k] 631").unwrap(),
            Some(stack(None, "swapper;idle_[k]", 631))
        );
        assert_eq!(
            r.parse_line(b"4;web;gunicorn: worke;appid: gunicorn: a;run (x.py:9)_[p] 3")
                .unwrap(),
            Some(stack(
                Some("web"),
                "gunicorn: worke;appid: gunicorn: a;run (x.py:9)_[p]",
                3
            ))
        );
        assert_eq!(r.parse_line(b"# later comment").unwrap(), None);
        assert_eq!(
            r.parse_line(b"x;web;f 1").unwrap_err().kind,
            LineErrorKind::BadPrefix
        );
        assert_eq!(
            r.parse_line(b"0;web 1").unwrap_err().kind,
            LineErrorKind::BadPrefix
        );
        assert_eq!(
            r.parse_line(b"0;web; 1").unwrap_err().kind,
            LineErrorKind::EmptyStack
        );
    }

    #[test]
    fn layout_follows_the_header() {
        let no_meta = json!({"application_metadata_enabled": false});
        assert_eq!(
            Layout::from_header(&no_meta),
            Layout {
                app_metadata_index: false,
                container: true
            }
        );
        let v1 = json!({"application_metadata_enabled": true,
                        "metadata": {"run_arguments": {"profile_api_version": "v1"}}});
        assert_eq!(Layout::from_header(&v1), Layout::FOLDED);
        let mut r = CollapsedReader::new();
        r.parse_line(br#"# {"application_metadata_enabled": false}"#)
            .unwrap();
        assert_eq!(
            r.parse_line(b"db;postgres;f 2").unwrap(),
            Some(stack(Some("db"), "postgres;f", 2))
        );
    }

    #[test]
    fn no_header_means_plain_folded() {
        let mut r = CollapsedReader::new();
        assert_eq!(
            r.parse_line(b"0;;perf;main 5").unwrap(),
            Some(stack(None, "0;;perf;main", 5))
        );
        assert_eq!(r.layout(), Layout::FOLDED);
        // A header after the first line is only a comment.
        assert_eq!(
            r.parse_line(br#"# {"application_metadata_enabled": true}"#)
                .unwrap(),
            None
        );
        assert_eq!(r.layout(), Layout::FOLDED);
        let mut r = CollapsedReader::new();
        assert_eq!(r.parse_line(b"# just a comment").unwrap(), None);
        assert_eq!(r.layout(), Layout::FOLDED);
    }

    #[test]
    fn bad_header_is_counted_and_falls_back() {
        let mut r = CollapsedReader::new();
        assert_eq!(
            r.parse_line(b"# {not json").unwrap_err().kind,
            LineErrorKind::BadHeader
        );
        assert_eq!(r.layout(), Layout::FOLDED);
        assert_eq!(r.stats().errors_of(LineErrorKind::BadHeader), 1);
    }

    #[test]
    fn writer_golden() {
        let stacks = vec![
            stack(None, "swapper;idle_[k]", 631),
            stack(Some("web"), "gunicorn;run_[p]", 3),
            stack(Some("db"), "postgres;exec", 1),
        ];
        let info = HeaderInfo {
            hostname: "host-1",
            window: Window::new(1_701_621_000_000, 1_701_621_060_000),
        };
        let mut out = Vec::new();
        write(&mut out, &info, &LabelSet::default(), &stacks).unwrap();
        let text = String::from_utf8(out).unwrap();
        let mut lines = text.lines();
        let head: Value =
            serde_json::from_str(lines.next().unwrap().strip_prefix("# ").unwrap()).unwrap();
        assert_eq!(head["containers"], json!(["db", "web"]));
        assert_eq!(head["application_metadata"], json!([null]));
        assert_eq!(head["application_metadata_enabled"], json!(true));
        assert_eq!(head["metadata"]["hostname"], "host-1");
        assert_eq!(head["metadata"]["agent"], "profpipe");
        assert_eq!(head["metadata"]["start_time"], "2023-12-03T16:30:00.000Z");
        assert_eq!(head["metadata"]["end_time"], "2023-12-03T16:31:00.000Z");
        assert_eq!(
            head["metadata"]["run_arguments"]["profile_api_version"],
            "v2"
        );
        assert_eq!(
            lines.collect::<Vec<_>>(),
            vec![
                "0;;swapper;idle_[k] 631",
                "0;web;gunicorn;run_[p] 3",
                "0;db;postgres;exec 1"
            ]
        );
        let back = read(text.as_bytes()).unwrap();
        assert_eq!(back.layout, Layout::V2);
        assert_eq!(back.stacks, stacks);
        assert_eq!(back.stats.bad_lines, 0);
    }

    #[test]
    fn header_carries_labels_and_service() {
        let labels = LabelSet::default()
            .with("service", "checkout")
            .unwrap()
            .with("env", "prod")
            .unwrap();
        let info = HeaderInfo {
            hostname: "host-1",
            window: Window::new(0, 60_000),
        };
        let mut out = Vec::new();
        write(&mut out, &info, &labels, &[stack(None, "a;b", 1)]).unwrap();
        let back = read(&out[..]).unwrap();
        let head = back.metadata.unwrap();
        assert_eq!(
            head["labels"],
            json!({"env": "prod", "service": "checkout"})
        );
        assert_eq!(head["service"], "checkout");
        assert_eq!(
            head["metadata"]["run_arguments"]["service_name"],
            "checkout"
        );
        assert_eq!(header_labels(&head), labels);
        assert_eq!(back.layout, Layout::V2);

        // Without labels: an empty object, no service.
        let mut out = Vec::new();
        write(
            &mut out,
            &info,
            &LabelSet::default(),
            &[stack(None, "a;b", 1)],
        )
        .unwrap();
        let head = read(&out[..]).unwrap().metadata.unwrap();
        assert_eq!(head["labels"], json!({}));
        assert!(head.get("service").is_none());
    }

    #[test]
    fn old_headers_have_no_labels() {
        let old = json!({"application_metadata_enabled": true, "containers": ["web"]});
        assert!(header_labels(&old).is_empty());
        let odd = json!({"labels": {"ok": "1", "bad-name": "2", "num": 3}});
        assert_eq!(header_labels(&odd).to_string(), "ok=1");
        let bytes = std::fs::read(test_stackfile()).unwrap();
        let original = read(&bytes[..]).unwrap();
        assert!(header_labels(original.metadata.as_ref().unwrap()).is_empty());
    }

    fn test_stackfile() -> PathBuf {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../shared/conformance/gprofiler-format/test_stackfile");
        assert!(
            path.exists(),
            "conformance file {} is missing: this test needs the shared/ directory beside \
             the repository (CI always provides it)",
            path.display()
        );
        path
    }

    fn multiset(stacks: &[Stack]) -> Vec<(Option<String>, String, u64)> {
        let mut v: Vec<_> = stacks
            .iter()
            .map(|s| {
                (
                    s.container.as_deref().map(String::from),
                    s.frames.to_string(),
                    s.count,
                )
            })
            .collect();
        v.sort();
        v
    }

    #[test]
    fn gprofiler_test_stackfile_round_trips() {
        let bytes = std::fs::read(test_stackfile()).unwrap();
        let original = read(&bytes[..]).unwrap();
        assert_eq!(original.layout, Layout::V2);
        assert_eq!(original.stats.bad_lines, 0, "{:?}", original.stats);
        assert_eq!(original.stacks.len(), 73);
        let meta = original.metadata.as_ref().unwrap();
        assert_eq!(meta["metadata"]["hostname"], "ip-172-31-33-27");
        let total: u64 = original.stacks.iter().map(|s| s.count).sum();
        assert!(original
            .stacks
            .iter()
            .any(|s| s.container.as_deref() == Some("gprofiler-ps-webapp")
                && s.frames.starts_with("gunicorn: worke;appid: ")));
        assert!(original.stacks.iter().all(|s| !s.frames.starts_with("0;")));

        let info = HeaderInfo {
            hostname: "ip-172-31-33-27",
            window: Window::new(1_701_621_000_000, 1_701_621_060_000),
        };
        let mut out = Vec::new();
        write(&mut out, &info, &LabelSet::default(), &original.stacks).unwrap();
        let again = read(&out[..]).unwrap();
        assert_eq!(again.layout, Layout::V2);
        assert_eq!(again.stats.bad_lines, 0);
        assert_eq!(multiset(&again.stacks), multiset(&original.stacks));
        assert_eq!(again.stacks.iter().map(|s| s.count).sum::<u64>(), total);
        let containers = &again.metadata.unwrap()["containers"];
        assert_eq!(
            containers,
            &json!([
                "gprofiler-ps-agents-logs-backend",
                "gprofiler-ps-ch-indexer",
                "gprofiler-ps-clickhouse",
                "gprofiler-ps-webapp"
            ])
        );
    }
}
