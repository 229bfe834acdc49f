//! What a delivering sink sends for a window: the window in one of the shared
//! encodings, cut into parts that each fit the destination's limits.
//!
//! `encoding = "json" | "collapsed" | "pprof" | "otlp_proto"` means the same bytes
//! in every sink:
//! - `json`: [`crate::formats::profile_json`] (one document per part);
//! - `collapsed`: gProfiler's collapsed text, its `# {json}` header first;
//! - `pprof`: gzip-compressed `profile.proto` ([`crate::formats::pprof`]);
//! - `otlp_proto`: an OpenTelemetry `ExportProfilesServiceRequest`
//!   ([`crate::formats::otlp`]), named as the Collector's Kafka receiver names it.
//!
//! A destination takes at most so many bytes (Kafka's `message.max.bytes`,
//! Performance Studio's 4 MiB) or stacks (Pyroscope's 16,000) per request. A window
//! over either is split into parts: consecutive runs of its sorted stacks, each part
//! a complete document of its encoding, all sharing one `profile_id`. Nothing is
//! truncated; only a single stack too large for the limit on its own cannot be
//! sent, and that is reported, not hidden.

use std::hash::Hasher;
use std::io::Write;

use serde::Deserialize;

use super::pending::CompleteWindow;
use crate::event::{LabelSet, Stack, Window};
use crate::formats::profile_json::{self, PartInfo};
use crate::formats::{collapsed, otlp, pprof};

/// `encoding = ...` of a delivering sink.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    Json,
    Collapsed,
    Pprof,
    /// OTLP profiles, the binary protobuf of one `ExportProfilesServiceRequest`.
    #[serde(rename = "otlp_proto")]
    OtlpProto,
}

impl Encoding {
    /// File extension, for object keys and file names.
    pub fn extension(self) -> &'static str {
        match self {
            Encoding::Json => "json",
            Encoding::Collapsed => "col",
            Encoding::Pprof => "pb.gz",
            Encoding::OtlpProto => "otlp.pb",
        }
    }

    /// `Content-Type` of one part.
    pub fn content_type(self) -> &'static str {
        match self {
            Encoding::Json => "application/json",
            Encoding::Collapsed => "text/plain; charset=utf-8",
            // pprof's own bytes are gzip; the type says what is inside.
            Encoding::Pprof => "application/vnd.google.protobuf",
            Encoding::OtlpProto => otlp::CONTENT_TYPE,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Encoding::Json => "json",
            Encoding::Collapsed => "collapsed",
            Encoding::Pprof => "pprof",
            Encoding::OtlpProto => "otlp_proto",
        }
    }
}

/// `compression = "none" | "gzip"` of the HTTP and S3 sinks (Kafka compresses
/// batches itself, with its own codecs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    #[default]
    None,
    Gzip,
}

impl Compression {
    pub fn apply(self, bytes: Vec<u8>) -> Vec<u8> {
        match self {
            Compression::None => bytes,
            Compression::Gzip => gzip(&bytes),
        }
    }

    /// The `Content-Encoding` it calls for, if any.
    pub fn content_encoding(self) -> Option<&'static str> {
        match self {
            Compression::None => None,
            Compression::Gzip => Some("gzip"),
        }
    }
}

/// Gzip at the default level: the usual trade of CPU for bytes on the wire.
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(bytes.len() / 4 + 64),
        flate2::Compression::default(),
    );
    enc.write_all(bytes).expect("writing to a Vec cannot fail");
    enc.finish().expect("writing to a Vec cannot fail")
}

/// The default `sample_rate` of every sink: the default pipeline's perf, py-spy and
/// rbspy frequency (`pipelines/default.toml`).
pub const DEFAULT_SAMPLE_RATE: u32 = 11;

/// What the encodings need beyond the window.
#[derive(Clone, Debug)]
pub struct Encoder {
    pub encoding: Encoding,
    /// The profilers' sampling frequency: pprof's period, Pyroscope's `sampleRate`.
    pub sample_rate_hz: u32,
}

/// Most of one part.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartLimits {
    /// Most bytes of a part once encoded (and compressed by the sink's `finish`).
    pub max_bytes: usize,
    /// Most stacks in a part.
    pub max_stacks: usize,
}

impl PartLimits {
    pub const NONE: PartLimits = PartLimits {
        max_bytes: usize::MAX,
        max_stacks: usize::MAX,
    };
}

/// One part of a window, ready to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Part {
    pub profile_id: String,
    pub index: usize,
    pub count: usize,
    pub bytes: Vec<u8>,
    pub stacks: usize,
    pub samples: u64,
}

/// A single stack that does not fit a part on its own.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("one stack encodes to {bytes} bytes, more than the {limit}-byte limit of one part")]
pub struct Oversized {
    pub bytes: usize,
    pub limit: usize,
}

impl Encoder {
    /// One part's document, uncompressed (pprof is gzip by definition).
    pub fn encode(
        &self,
        host: &str,
        window: Window,
        labels: &LabelSet,
        stacks: &[Stack],
        part: &PartInfo<'_>,
    ) -> Vec<u8> {
        match self.encoding {
            Encoding::Json => {
                let mut out = Vec::with_capacity(estimate(stacks) + 256);
                profile_json::write(&mut out, host, window, labels, stacks, part)
                    .expect("writing to a Vec cannot fail");
                out
            }
            Encoding::Collapsed => {
                let mut out = Vec::with_capacity(estimate(stacks) + 512);
                let info = collapsed::HeaderInfo {
                    hostname: host,
                    window,
                };
                let mut header = collapsed::header(&info, labels, stacks);
                if part.count > 1 {
                    header["profpipe_part"] = serde_json::json!({
                        "profile_id": part.profile_id, "part": part.index, "parts": part.count,
                    });
                }
                collapsed::write_with_header(&mut out, &header, stacks)
                    .expect("writing to a Vec cannot fail");
                out
            }
            Encoding::Pprof => pprof::encode(&pprof::PprofInput {
                window,
                stacks,
                labels,
                host,
                sample_rate_hz: self.sample_rate_hz,
                part: Some(part),
            }),
            Encoding::OtlpProto => otlp::encode_request(&otlp::OtlpInput {
                window,
                stacks,
                labels,
                host,
                sample_rate_hz: self.sample_rate_hz,
                part: Some(part),
            }),
        }
    }

    /// The window as parts within `limits`, each passed through `finish` (the
    /// sink's compression) before its size is checked.
    pub fn parts(
        &self,
        w: &CompleteWindow,
        limits: PartLimits,
        finish: impl Fn(Vec<u8>) -> Vec<u8>,
    ) -> Result<Vec<Part>, Oversized> {
        let id = profile_id(&w.host, w.window, &w.labels);
        let max_stacks = limits.max_stacks.max(1);
        // First guess: runs of at most `max_bytes` of frame text. Encodings differ
        // from raw text (json adds, gzip and pprof shrink), so a run that comes out
        // too large makes the budget shrink by how much it missed, and all runs are
        // cut again: a few rounds at most, and parts stay even.
        let mut budget = limits.max_bytes;
        loop {
            let runs = cut(&w.stacks, budget, max_stacks);
            let count = runs.len();
            let mut parts = Vec::with_capacity(count);
            let mut largest = 0usize;
            for (index, run) in runs.iter().enumerate() {
                let stacks = &w.stacks[run.clone()];
                let info = PartInfo {
                    profile_id: &id,
                    index,
                    count,
                };
                let bytes = finish(self.encode(&w.host, w.window, &w.labels, stacks, &info));
                largest = largest.max(bytes.len());
                if bytes.len() > limits.max_bytes {
                    if stacks.len() == 1 {
                        return Err(Oversized {
                            bytes: bytes.len(),
                            limit: limits.max_bytes,
                        });
                    }
                    break;
                }
                parts.push(Part {
                    profile_id: id.clone(),
                    index,
                    count,
                    bytes,
                    stacks: stacks.len(),
                    samples: stacks.iter().map(|s| s.count).sum(),
                });
            }
            if parts.len() == count {
                return Ok(parts);
            }
            let scaled =
                (budget as u128 * limits.max_bytes as u128 / largest.max(1) as u128) as usize;
            budget = (scaled / 10 * 9).min(budget / 2 + budget / 4).max(1);
        }
    }
}

/// Raw bytes of a run of stacks, the measure `cut` uses.
fn estimate(stacks: &[Stack]) -> usize {
    stacks.iter().map(stack_bytes).sum()
}

fn stack_bytes(s: &Stack) -> usize {
    s.frames.len() + s.container.as_ref().map_or(0, |c| c.len()) + 24
}

/// Consecutive runs of at most `budget` estimated bytes and `max_stacks` stacks;
/// at least one run (an empty window is one empty part).
fn cut(stacks: &[Stack], budget: usize, max_stacks: usize) -> Vec<std::ops::Range<usize>> {
    let mut runs = Vec::new();
    let (mut start, mut bytes) = (0, 0usize);
    for (i, s) in stacks.iter().enumerate() {
        let b = stack_bytes(s);
        if i > start && (bytes.saturating_add(b) > budget || i - start >= max_stacks) {
            runs.push(start..i);
            start = i;
            bytes = 0;
        }
        bytes = bytes.saturating_add(b);
    }
    runs.push(start..stacks.len());
    runs
}

/// A stable id of a window's profile: the same host, window and labels give the
/// same id on every run (a retried or replayed profile keeps its id), 16 hex digits.
pub fn profile_id(host: &str, window: Window, labels: &LabelSet) -> String {
    // FNV-1a: stable across Rust versions, unlike std's SipHash keys.
    struct Fnv(u64);
    impl Hasher for Fnv {
        fn finish(&self) -> u64 {
            self.0
        }
        fn write(&mut self, bytes: &[u8]) {
            for b in bytes {
                self.0 ^= u64::from(*b);
                self.0 = self.0.wrapping_mul(0x100_0000_01b3);
            }
        }
    }
    let mut h = Fnv(0xcbf2_9ce4_8422_2325);
    h.write(host.as_bytes());
    h.write(&[0]);
    h.write(&window.start_ms.to_be_bytes());
    h.write(&window.end_ms.to_be_bytes());
    for (k, v) in labels.iter() {
        h.write(k.as_bytes());
        h.write(&[0]);
        h.write(v.as_bytes());
        h.write(&[0]);
    }
    format!("{:016x}", h.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(n: usize) -> CompleteWindow {
        CompleteWindow {
            window: Window::new(60_000, 120_000),
            host: "h".into(),
            labels: LabelSet::default().with("service", "s").unwrap(),
            stacks: (0..n)
                .map(|i| Stack::new(format!("comm;frame_{i:06};leaf"), i as u64 + 1))
                .collect(),
            events: 1,
            bytes: 0,
        }
    }

    fn encoder(encoding: Encoding) -> Encoder {
        Encoder {
            encoding,
            sample_rate_hz: 11,
        }
    }

    #[test]
    fn a_window_within_limits_is_one_part() {
        let w = window(10);
        let parts = encoder(Encoding::Json)
            .parts(&w, PartLimits::NONE, |b| b)
            .unwrap();
        assert_eq!(parts.len(), 1);
        assert_eq!(
            (parts[0].index, parts[0].count, parts[0].stacks),
            (0, 1, 10)
        );
        assert_eq!(parts[0].samples, 55);
    }

    #[test]
    fn parts_respect_both_limits_and_hold_every_stack_once() {
        let w = window(5000);
        for encoding in [Encoding::Json, Encoding::Collapsed] {
            for limits in [
                PartLimits {
                    max_bytes: 20_000,
                    max_stacks: usize::MAX,
                },
                PartLimits {
                    max_bytes: usize::MAX,
                    max_stacks: 1000,
                },
                PartLimits {
                    max_bytes: 50_000,
                    max_stacks: 300,
                },
            ] {
                let parts = encoder(encoding).parts(&w, limits, |b| b).unwrap();
                assert!(parts.len() > 1, "{encoding:?} {limits:?}");
                let mut seen = 0;
                for (i, p) in parts.iter().enumerate() {
                    assert!(p.bytes.len() <= limits.max_bytes, "{encoding:?} {limits:?}");
                    assert!(p.stacks <= limits.max_stacks);
                    assert_eq!((p.index, p.count), (i, parts.len()));
                    assert_eq!(p.profile_id, parts[0].profile_id);
                    seen += p.stacks;
                }
                assert_eq!(seen, 5000);
                let samples: u64 = parts.iter().map(|p| p.samples).sum();
                assert_eq!(samples, w.stacks.iter().map(|s| s.count).sum::<u64>());
            }
        }
    }

    #[test]
    fn json_parts_say_which_part_they_are() {
        let w = window(100);
        let limits = PartLimits {
            max_bytes: usize::MAX,
            max_stacks: 40,
        };
        let parts = encoder(Encoding::Json).parts(&w, limits, |b| b).unwrap();
        assert_eq!(parts.len(), 3);
        let v: serde_json::Value = serde_json::from_slice(&parts[2].bytes).unwrap();
        assert_eq!(
            (v["part"].as_u64(), v["parts"].as_u64()),
            (Some(2), Some(3))
        );
        assert_eq!(v["profile_id"], parts[0].profile_id.as_str());
    }

    #[test]
    fn pprof_parts_say_which_part_they_are_in_comments() {
        let w = window(100);
        let limits = PartLimits {
            max_bytes: usize::MAX,
            max_stacks: 40,
        };
        let parts = encoder(Encoding::Pprof).parts(&w, limits, |b| b).unwrap();
        assert_eq!(parts.len(), 3);
        let p = pprof::decode(&parts[1].bytes).unwrap();
        let comments: Vec<&str> = p
            .comment
            .iter()
            .map(|&i| p.string_table[i as usize].as_str())
            .collect();
        assert!(comments.contains(&"part=1/3"), "{comments:?}");
        let id = format!("profile_id={}", parts[0].profile_id);
        assert!(comments.contains(&id.as_str()), "{comments:?}");
        // A window in one part has no part comments.
        let one = encoder(Encoding::Pprof)
            .parts(&w, PartLimits::NONE, |b| b)
            .unwrap();
        let p = pprof::decode(&one[0].bytes).unwrap();
        assert!(p
            .comment
            .iter()
            .all(|&i| !p.string_table[i as usize].starts_with("part=")));
    }

    #[test]
    fn otlp_parts_are_whole_requests_that_together_hold_the_window_once() {
        use crate::formats::otlp::proto::any_value::Value;
        let w = window(3000);
        let limits = PartLimits {
            max_bytes: 30_000,
            max_stacks: usize::MAX,
        };
        let parts = encoder(Encoding::OtlpProto)
            .parts(&w, limits, |b| b)
            .unwrap();
        assert!(parts.len() > 2, "{} parts", parts.len());
        let mut samples = 0;
        let mut stacks = std::collections::BTreeSet::new();
        for p in &parts {
            assert!(p.bytes.len() <= limits.max_bytes);
            let r = otlp::decode_request(&p.bytes).unwrap();
            let d = r.dictionary.unwrap();
            let prof = &r.resource_profiles[0].scope_profiles[0].profiles[0];
            let part =
                prof.attribute_indices
                    .iter()
                    .find_map(|&i| match otlp::attribute_value(&d, i) {
                        Some(("profpipe.part", Value::IntValue(n))) => Some(*n),
                        _ => None,
                    });
            assert_eq!(part, Some(p.index as i64));
            for s in &prof.samples {
                samples += s.values[0] as u64;
                assert!(stacks.insert((p.index, s.stack_index)));
            }
            // Each part's dictionary holds only its own stacks (and the zero one).
            assert_eq!(d.stack_table.len(), p.stacks + 1);
        }
        assert_eq!(parts.iter().map(|p| p.stacks).sum::<usize>(), 3000);
        assert_eq!(samples, w.stacks.iter().map(|s| s.count).sum::<u64>());
    }

    #[test]
    fn compressed_parts_are_measured_after_compression() {
        let w = window(5000);
        let limit = 10_000;
        let limits = PartLimits {
            max_bytes: limit,
            max_stacks: usize::MAX,
        };
        let gz = encoder(Encoding::Json)
            .parts(&w, limits, |b| gzip(&b))
            .unwrap();
        let plain = encoder(Encoding::Json).parts(&w, limits, |b| b).unwrap();
        assert!(gz.iter().all(|p| p.bytes.len() <= limit));
        assert!(gz.len() < plain.len(), "{} vs {}", gz.len(), plain.len());
    }

    #[test]
    fn a_stack_too_large_alone_is_an_error() {
        let mut w = window(3);
        w.stacks[1].frames = format!("comm;{}", "x".repeat(5000)).into();
        let limits = PartLimits {
            max_bytes: 1000,
            max_stacks: usize::MAX,
        };
        let e = encoder(Encoding::Collapsed)
            .parts(&w, limits, |b| b)
            .unwrap_err();
        assert!(e.bytes > 1000 && e.limit == 1000, "{e}");
    }

    #[test]
    fn profile_ids_are_stable_and_distinguish_windows() {
        let l = LabelSet::default();
        let a = profile_id("h", Window::new(0, 60_000), &l);
        assert_eq!(a, profile_id("h", Window::new(0, 60_000), &l));
        assert_ne!(a, profile_id("h", Window::new(60_000, 120_000), &l));
        assert_ne!(a, profile_id("h2", Window::new(0, 60_000), &l));
        assert_eq!(a.len(), 16);
    }
}
