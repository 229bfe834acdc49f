//! How windows become messages (no broker needed); delivery against a real broker
//! is in `tests/kafka_sink.rs`.

use super::*;
use crate::event::{LabelSet, Stack, Window};

fn window(n: usize) -> CompleteWindow {
    CompleteWindow {
        window: Window::new(1_701_621_060_000, 1_701_621_120_000),
        host: "web-1".into(),
        labels: LabelSet::default().with("service", "checkout").unwrap(),
        stacks: (0..n)
            .map(|i| Stack::new(format!("python3;main;frame_{i:06}"), i as u64 + 1))
            .collect(),
        events: 3,
        bytes: 100,
    }
}

fn messages(key: &str, encoding: Encoding, max_bytes: usize) -> Messages {
    Messages {
        encoder: Encoder {
            encoding,
            sample_rate_hz: 11,
        },
        key: Template::parse(key).unwrap(),
        part_limits: PartLimits {
            max_bytes,
            max_stacks: usize::MAX,
        },
    }
}

fn header<'a>(m: &'a Message, name: &str) -> &'a str {
    m.headers
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no header {name}"))
}

#[test]
fn a_small_window_is_one_message_with_its_headers_and_key() {
    let w = window(10);
    let out = messages("{service}/{host}", Encoding::Json, 1 << 20)
        .of(&w)
        .unwrap();
    assert_eq!(out.len(), 1);
    let m = &out[0];
    assert_eq!(m.key, "checkout/web-1");
    assert_eq!(m.timestamp_ms, 1_701_621_120_000);
    assert_eq!(header(m, "part"), "0");
    assert_eq!(header(m, "parts"), "1");
    assert_eq!(header(m, "encoding"), "json");
    assert_eq!(header(m, "content-type"), "application/json");
    assert_eq!(header(m, "content-encoding"), "identity");
    let v: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
    assert_eq!(v["profile_id"].as_str(), Some(header(m, "profile_id")));
    assert_eq!(v["stacks"].as_array().unwrap().len(), 10);
    assert_eq!(v["samples"], 55);
}

#[test]
fn a_large_window_is_split_into_parts_that_each_fit_and_hold_every_stack_once() {
    let w = window(5000);
    for encoding in [Encoding::Json, Encoding::Collapsed] {
        let limit = 20_000;
        let out = messages("{host}", encoding, limit).of(&w).unwrap();
        assert!(out.len() > 3, "{encoding:?}: {} parts", out.len());
        let id = header(&out[0], "profile_id").to_string();
        let mut total = 0u64;
        for (i, m) in out.iter().enumerate() {
            assert!(m.payload.len() <= limit, "{encoding:?} part {i}");
            assert_eq!(m.key, "web-1", "all parts share the key (one partition)");
            assert_eq!(header(m, "profile_id"), id);
            assert_eq!(header(m, "part"), i.to_string());
            assert_eq!(header(m, "parts"), out.len().to_string());
            total += match encoding {
                Encoding::Json => {
                    let v: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
                    assert_eq!(v["part"], i);
                    v["samples"].as_u64().unwrap()
                }
                _ => std::str::from_utf8(&m.payload)
                    .unwrap()
                    .lines()
                    .filter(|l| !l.starts_with('#'))
                    .map(|l| l.rsplit_once(' ').unwrap().1.parse::<u64>().unwrap())
                    .sum(),
            };
        }
        assert_eq!(total, (1..=5000u64).sum::<u64>(), "{encoding:?}");
    }
}

#[test]
fn a_part_template_gives_each_part_its_own_key() {
    let w = window(3000);
    let out = messages("{host}/{profile_id}/{part}", Encoding::Json, 20_000)
        .of(&w)
        .unwrap();
    assert!(out.len() > 1);
    let id = header(&out[0], "profile_id");
    assert_eq!(out[1].key, format!("web-1/{id}/1"));
}

#[test]
fn a_stack_larger_than_a_message_is_an_error_not_a_truncation() {
    let mut w = window(2);
    w.stacks[0].frames = format!("comm;{}", "x".repeat(30_000)).into();
    let e = messages("{host}", Encoding::Collapsed, 10_000)
        .of(&w)
        .unwrap_err();
    assert_eq!(e.limit, 10_000);
    assert!(e.bytes > 10_000);
}

#[test]
fn the_sink_is_registered_and_refuses_what_it_cannot_do() {
    let kinds: Vec<&str> = crate::sinks::KINDS.iter().map(|k| k.name).collect();
    assert!(kinds.contains(&"kafka"));
    let c = KafkaSinkConfig::new(KafkaSink {
        message_timeout: crate::units::DurationStr::from_secs(30),
        ..KafkaSink::new(vec!["127.0.0.1:9092".into()], "profiles")
    });
    let errors = crate::component::SinkConfig::validate(&c);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].message.contains("request.timeout"), "{errors:?}");
}

#[test]
fn an_otlp_proto_message_is_the_bare_request_the_collector_reads() {
    let w = window(10);
    let out = messages("{host}", Encoding::OtlpProto, 1 << 20)
        .of(&w)
        .unwrap();
    assert_eq!(out.len(), 1);
    let m = &out[0];
    assert_eq!(header(m, "encoding"), "otlp_proto");
    assert_eq!(header(m, "content-type"), "application/x-protobuf");
    assert_eq!(header(m, "content-encoding"), "identity");
    // No framing around the request: the payload decodes as it is.
    let r = crate::formats::otlp::decode_request(&m.payload).unwrap();
    let samples: i64 = r.resource_profiles[0].scope_profiles[0].profiles[0]
        .samples
        .iter()
        .map(|s| s.values[0])
        .sum();
    assert_eq!(samples, 55);
}
