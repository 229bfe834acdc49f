//! The `json` encoding: one window's profile (or one part of it) as one JSON
//! document, for analytics jobs reading Kafka or S3.
//!
//! ```json
//! {"schema":"profpipe.profile.v1",
//!  "profile_id":"7d3f0c2a9b1e4f60","part":0,"parts":1,
//!  "host":"web-1","labels":{"service":"checkout"},
//!  "start":"2026-12-02T10:00:00.000Z","end":"2026-12-02T10:01:00.000Z",
//!  "start_ms":1796205600000,"end_ms":1796205660000,
//!  "samples":12,
//!  "stacks":[{"frames":["python3","main","work"],"container":"api",
//!             "app":"python: x.py (/srv/x.py)","count":12}]}
//! ```
//!
//! `frames` are root first, the first being the process name. `container` is
//! omitted when unknown; `app`, the process's app id (gProfiler's `appid:` frame,
//! which is then not among the frames), when there is none. `samples` is the sum of this part's counts; the parts of a
//! profile share its `profile_id` and together hold every stack once.

use std::io::{self, Write};

use serde::Serialize;

use super::timestamp::iso8601;
use crate::event::{LabelSet, Stack, Window};

/// The `schema` value; bumped on any incompatible change.
pub const SCHEMA: &str = "profpipe.profile.v1";

/// Which part of which profile a document is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartInfo<'a> {
    pub profile_id: &'a str,
    pub index: usize,
    pub count: usize,
}

#[derive(Serialize)]
struct Document<'a> {
    schema: &'static str,
    profile_id: &'a str,
    part: usize,
    parts: usize,
    host: &'a str,
    labels: &'a LabelSet,
    start: String,
    end: String,
    start_ms: u64,
    end_ms: u64,
    samples: u64,
    stacks: StackList<'a>,
}

struct StackList<'a>(&'a [Stack]);

#[derive(Serialize)]
struct StackDoc<'a> {
    frames: Vec<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    container: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    app: Option<&'a str>,
    count: u64,
}

impl Serialize for StackList<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // Streamed: one stack's frame list at a time, not a copy of the window.
        s.collect_seq(self.0.iter().map(|st| StackDoc {
            frames: st.frames_without_app().collect(),
            container: st.container.as_deref().filter(|c| !c.is_empty()),
            app: st.app(),
            count: st.count,
        }))
    }
}

/// Writes one document.
pub fn write<W: Write>(
    w: W,
    host: &str,
    window: Window,
    labels: &LabelSet,
    stacks: &[Stack],
    part: &PartInfo<'_>,
) -> io::Result<()> {
    let doc = Document {
        schema: SCHEMA,
        profile_id: part.profile_id,
        part: part.index,
        parts: part.count,
        host,
        labels,
        start: iso8601(window.start_ms),
        end: iso8601(window.end_ms),
        start_ms: window.start_ms,
        end_ms: window.end_ms,
        samples: stacks.iter().map(|s| s.count).sum(),
        stacks: StackList(stacks),
    };
    serde_json::to_writer(w, &doc).map_err(io::Error::other)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_shape() {
        let labels = LabelSet::default().with("service", "checkout").unwrap();
        let mut s = Stack::new("python3;main;work", 12);
        s.container = Some("api".into());
        let stacks = [s, Stack::new("perl;appid: java: x.jar;x", 1)];
        let part = PartInfo {
            profile_id: "abc",
            index: 1,
            count: 2,
        };
        let mut out = Vec::new();
        write(
            &mut out,
            "web-1",
            Window::new(0, 60_000),
            &labels,
            &stacks,
            &part,
        )
        .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["schema"], SCHEMA);
        assert_eq!(v["profile_id"], "abc");
        assert_eq!(
            (v["part"].as_u64(), v["parts"].as_u64()),
            (Some(1), Some(2))
        );
        assert_eq!(v["labels"]["service"], "checkout");
        assert_eq!(v["end"], "1970-01-01T00:01:00.000Z");
        assert_eq!(v["samples"], 13);
        assert_eq!(
            v["stacks"][0]["frames"],
            serde_json::json!(["python3", "main", "work"])
        );
        assert_eq!(v["stacks"][0]["container"], "api");
        assert!(v["stacks"][1].get("container").is_none());
        // The appid frame is the label `app`, not a frame.
        assert!(v["stacks"][0].get("app").is_none());
        assert_eq!(v["stacks"][1]["app"], "java: x.jar");
        assert_eq!(v["stacks"][1]["frames"], serde_json::json!(["perl", "x"]));
    }
}
