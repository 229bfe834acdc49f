//! pprof (`profile.proto`, gzip-compressed) encoding of one window's folded stacks,
//! shared by every sink that writes pprof.
//!
//! A stack `comm;main;work 7` becomes:
//! - one `Function` and one `Location` (with one `Line`) per distinct frame name
//!   across the window (`comm`, `main`, `work`), ids 1, 2, 3 ...;
//! - one `Sample` with `location_id = [work, main, comm]` (pprof lists the leaf
//!   first) and `value = [7]`;
//! - string labels `container` (when known) and `app` (the process's app id, when
//!   the stack has gProfiler's `appid:` frame, which is then not a location) and a
//!   numeric label `pid` (when not 0).
//!
//! The profile: `sample_type = [samples/count]`, `period_type = cpu/nanoseconds`,
//! `period = 1e9 / sample_rate_hz` (one sample stands for that much CPU time),
//! `time_nanos` = window start, `duration_nanos` = window length, and comments
//! `host=<host>` and `<name>=<value>` for every label of the window (labels of the
//! whole profile have no other place in `profile.proto`); a part of a split window
//! adds `profile_id=<id>` and `part=<index>/<count>`. The string table starts
//! with `""` and holds each string once.

use std::io::Write;

use rustc_hash::FxHashMap;

use super::profile_json::PartInfo;
use crate::event::{LabelSet, Stack, Window};

pub mod proto;

use proto::{Function, Label, Line, Location, Profile, Sample, ValueType};

pub struct PprofInput<'a> {
    pub window: Window,
    pub stacks: &'a [Stack],
    pub labels: &'a LabelSet,
    pub host: &'a str,
    /// The profilers' frequency; 0 if unknown.
    pub sample_rate_hz: u32,
    /// Which part of a split window this is; said in the comments when there are
    /// several, as the json and collapsed encodings say it in their headers.
    pub part: Option<&'a PartInfo<'a>>,
}

/// Why bytes are not a pprof profile.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("not gzip: {0}")]
    Gzip(#[from] std::io::Error),
    #[error("not a profile.proto Profile: {0}")]
    Proto(#[from] prost::DecodeError),
}

/// The window as gzip-compressed `profile.proto` bytes.
///
/// Gzip at the default level, like every other gzip of profpipe. Deflate is most
/// of the cost of an encode; the fastest level (Go's `runtime/pprof` uses it) is
/// several times faster but its output about a quarter larger (BENCHMARKS.md), and
/// one window a minute costs milliseconds either way, while bytes go over the
/// network and into storage.
pub fn encode(input: &PprofInput<'_>) -> Vec<u8> {
    let bytes = prost::Message::encode_to_vec(&profile(input));
    let mut gz = flate2::write::GzEncoder::new(
        Vec::with_capacity(bytes.len() / 3 + 64),
        flate2::Compression::default(),
    );
    gz.write_all(&bytes).expect("writing to a Vec cannot fail");
    gz.finish().expect("writing to a Vec cannot fail")
}

/// Reads what [`encode`] writes (or any gzip-compressed pprof), for tests and tools.
pub fn decode(gzipped: &[u8]) -> Result<Profile, DecodeError> {
    let mut raw = Vec::with_capacity(gzipped.len() * 4);
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(gzipped), &mut raw)?;
    Ok(prost::Message::decode(raw.as_slice())?)
}

/// The string table being built: each distinct string once, `""` at index 0.
/// Keys borrow from the input, so a string is copied only into the table itself.
struct Strings<'a> {
    index: FxHashMap<&'a str, i64>,
    table: Vec<String>,
}

impl<'a> Strings<'a> {
    fn new(capacity: usize) -> Self {
        let mut index = FxHashMap::with_capacity_and_hasher(capacity, Default::default());
        index.insert("", 0);
        let mut table = Vec::with_capacity(capacity);
        table.push(String::new());
        Strings { index, table }
    }

    fn get(&mut self, s: &'a str) -> i64 {
        if let Some(&i) = self.index.get(s) {
            return i;
        }
        let i = self.table.len() as i64;
        self.table.push(s.to_owned());
        self.index.insert(s, i);
        i
    }
}

/// The `Profile` message of a window (before encoding).
pub fn profile(input: &PprofInput<'_>) -> Profile {
    let stacks = input.stacks;
    let mut strings = Strings::new(stacks.len() + 16);
    let sample_type = ValueType {
        r#type: strings.get("samples"),
        unit: strings.get("count"),
    };
    let period_type = ValueType {
        r#type: strings.get("cpu"),
        unit: strings.get("nanoseconds"),
    };
    let container_key = strings.get("container");
    let pid_key = strings.get("pid");
    let app_key = strings.get("app");

    // Frame name -> its Location id, which is also its Function id.
    let mut frames: FxHashMap<&str, u64> =
        FxHashMap::with_capacity_and_hasher(stacks.len(), Default::default());
    let mut functions: Vec<Function> = Vec::with_capacity(stacks.len());
    let mut locations: Vec<Location> = Vec::with_capacity(stacks.len());
    let mut samples: Vec<Sample> = Vec::with_capacity(stacks.len());
    for stack in stacks {
        let depth = stack.frames.split(';').count();
        let mut ids = Vec::with_capacity(depth);
        for frame in stack.frames_without_app() {
            let id = match frames.get(frame) {
                Some(&id) => id,
                None => {
                    let id = functions.len() as u64 + 1;
                    let name = strings.get(frame);
                    functions.push(Function {
                        id,
                        name,
                        system_name: name,
                        ..Function::default()
                    });
                    locations.push(Location {
                        id,
                        line: vec![Line {
                            function_id: id,
                            ..Line::default()
                        }],
                        ..Location::default()
                    });
                    frames.insert(frame, id);
                    id
                }
            };
            ids.push(id);
        }
        ids.reverse();
        let mut label = Vec::new();
        if let Some(c) = &stack.container {
            label.push(Label {
                key: container_key,
                str: strings.get(c),
                ..Label::default()
            });
        }
        if let Some(app) = stack.app() {
            label.push(Label {
                key: app_key,
                str: strings.get(app),
                ..Label::default()
            });
        }
        if stack.pid != 0 {
            label.push(Label {
                key: pid_key,
                num: i64::from(stack.pid),
                ..Label::default()
            });
        }
        samples.push(Sample {
            location_id: ids,
            value: vec![i64::try_from(stack.count).unwrap_or(i64::MAX)],
            label,
        });
    }

    // Comments are owned strings made here, so they are added after the borrowed
    // ones; the table still holds each string once.
    let mut comment = Vec::with_capacity(input.labels.len() + 1);
    let mut owned = vec![format!("host={}", input.host)];
    owned.extend(input.labels.iter().map(|(k, v)| format!("{k}={v}")));
    if let Some(p) = input.part.filter(|p| p.count > 1) {
        owned.push(format!("profile_id={}", p.profile_id));
        owned.push(format!("part={}/{}", p.index, p.count));
    }
    for text in owned {
        comment.push(match strings.index.get(text.as_str()) {
            Some(&i) => i,
            None => {
                strings.table.push(text);
                strings.table.len() as i64 - 1
            }
        });
    }

    let w = input.window;
    Profile {
        sample_type: vec![sample_type],
        sample: samples,
        location: locations,
        function: functions,
        string_table: strings.table,
        time_nanos: ms_to_ns(w.start_ms),
        duration_nanos: ms_to_ns(w.end_ms.saturating_sub(w.start_ms)),
        period_type: Some(period_type),
        period: period_ns(input.sample_rate_hz),
        comment,
        default_sample_type: 0,
    }
}

/// CPU time one sample stands for. An unknown rate (0) gives 0, which pprof tools
/// read as "period not known", rather than a made-up figure that would scale every
/// value wrongly.
pub fn period_ns(hz: u32) -> i64 {
    if hz == 0 {
        0
    } else {
        (1_000_000_000 + i64::from(hz) / 2) / i64::from(hz)
    }
}

fn ms_to_ns(ms: u64) -> i64 {
    i64::try_from(ms.saturating_mul(1_000_000)).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use super::*;

    fn stack(frames: &str, count: u64, container: Option<&str>, pid: u32) -> Stack {
        let mut s = Stack::new(frames, count);
        s.container = container.map(Arc::from);
        s.pid = pid;
        s
    }

    fn input<'a>(stacks: &'a [Stack], labels: &'a LabelSet, hz: u32) -> PprofInput<'a> {
        PprofInput {
            window: Window::new(60_000, 120_000),
            stacks,
            labels,
            host: "web-1",
            sample_rate_hz: hz,
            part: None,
        }
    }

    fn s(p: &Profile, i: i64) -> &str {
        &p.string_table[i as usize]
    }

    /// Each sample as `root;...;leaf` (read back root first) and its value.
    fn stacks_of(p: &Profile) -> BTreeMap<String, i64> {
        let names: FxHashMap<u64, &str> = p
            .location
            .iter()
            .map(|l| {
                let f = &p.function[(l.line[0].function_id - 1) as usize];
                assert_eq!(f.id, l.line[0].function_id);
                (l.id, s(p, f.name))
            })
            .collect();
        let mut out = BTreeMap::new();
        for sample in &p.sample {
            let frames: Vec<&str> = sample
                .location_id
                .iter()
                .rev()
                .map(|id| names[id])
                .collect();
            *out.entry(frames.join(";")).or_default() += sample.value[0];
        }
        out
    }

    #[test]
    fn round_trip_keeps_stacks_totals_and_metadata() {
        let stacks = vec![
            stack("bash;main;read", 3, None, 0),
            stack("bash;main;write", 5, Some("web"), 42),
            stack("python;main;read", 1, None, 0),
        ];
        let labels = LabelSet::default()
            .with("service", "shop")
            .unwrap()
            .with("env", "prod")
            .unwrap();
        let p = decode(&encode(&input(&stacks, &labels, 11))).unwrap();

        assert_eq!(p.string_table[0], "");
        let mut distinct = p.string_table.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), p.string_table.len(), "strings repeat");

        // bash, main, read, write, python
        assert_eq!(p.function.len(), 5);
        assert_eq!(p.location.len(), 5);
        assert!(p.function.iter().all(|f| f.id != 0));
        assert_eq!(p.sample.len(), 3);
        let total: i64 = p.sample.iter().map(|s| s.value[0]).sum();
        assert_eq!(total, 9);
        let want: BTreeMap<String, i64> = [
            ("bash;main;read".to_string(), 3),
            ("bash;main;write".to_string(), 5),
            ("python;main;read".to_string(), 1),
        ]
        .into();
        assert_eq!(stacks_of(&p), want);

        // Leaf first: the first location of the first sample is `read`.
        let leaf = p.sample[0].location_id[0];
        let f = &p.function[(leaf - 1) as usize];
        assert_eq!(s(&p, f.name), "read");

        assert_eq!(p.sample_type.len(), 1);
        let st = p.sample_type[0];
        assert_eq!((s(&p, st.r#type), s(&p, st.unit)), ("samples", "count"));
        let pt = p.period_type.unwrap();
        assert_eq!((s(&p, pt.r#type), s(&p, pt.unit)), ("cpu", "nanoseconds"));
        assert_eq!(p.period, 90_909_091);
        assert_eq!(p.time_nanos, 60_000_000_000);
        assert_eq!(p.duration_nanos, 60_000_000_000);
        let comments: Vec<&str> = p.comment.iter().map(|&i| s(&p, i)).collect();
        assert_eq!(comments, ["host=web-1", "env=prod", "service=shop"]);

        // Sample labels: container and pid on the second stack only.
        assert!(p.sample[0].label.is_empty());
        let l = &p.sample[1].label;
        assert_eq!(l.len(), 2);
        assert_eq!((s(&p, l[0].key), s(&p, l[0].str)), ("container", "web"));
        assert_eq!((s(&p, l[1].key), l[1].num), ("pid", 42));
    }

    #[test]
    fn unknown_rate_gives_period_zero_and_empty_window_is_valid() {
        assert_eq!(period_ns(0), 0);
        assert_eq!(period_ns(100), 10_000_000);
        let labels = LabelSet::default();
        let p = decode(&encode(&input(&[], &labels, 0))).unwrap();
        assert_eq!(p.period, 0);
        assert!(p.sample.is_empty() && p.function.is_empty());
        assert_eq!(p.string_table[0], "");
        assert_eq!(p.sample_type.len(), 1);
    }

    #[test]
    fn a_frame_equal_to_a_fixed_string_is_stored_once() {
        // "count" is also the unit's name; "host=web-1" also a comment.
        let stacks = vec![stack("count;host=web-1", 2, None, 0)];
        let labels = LabelSet::default();
        let p = decode(&encode(&input(&stacks, &labels, 11))).unwrap();
        let n = |x: &str| p.string_table.iter().filter(|t| *t == x).count();
        assert_eq!((n("count"), n("host=web-1")), (1, 1));
        assert_eq!(stacks_of(&p)["count;host=web-1"], 2);
    }

    #[test]
    fn the_appid_frame_becomes_the_label_app() {
        let stacks = vec![stack(
            "python3;appid: python: x.py (/srv/x.py);main;work",
            4,
            None,
            9,
        )];
        let labels = LabelSet::default();
        let p = decode(&encode(&input(&stacks, &labels, 11))).unwrap();
        assert_eq!(stacks_of(&p)["python3;main;work"], 4);
        let l = &p.sample[0].label;
        assert_eq!(
            (s(&p, l[0].key), s(&p, l[0].str)),
            ("app", "python: x.py (/srv/x.py)")
        );
        assert_eq!((s(&p, l[1].key), l[1].num), ("pid", 9));
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(matches!(decode(b"not gzip"), Err(DecodeError::Gzip(_))));
        let gz = {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(&[0xff, 0xff, 0xff]).unwrap();
            e.finish().unwrap()
        };
        assert!(matches!(decode(&gz), Err(DecodeError::Proto(_))));
    }
}
