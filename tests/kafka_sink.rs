//! The `kafka` sink against a real broker (tansu, from `scripts/setup-test-env.sh`),
//! read back with an rdkafka consumer:
//!
//! - a pipeline delivers N windows, in each encoding and codec, split into parts
//!   where they exceed `message_max_bytes`; the test reads back exactly N profiles
//!   with the stacks and counts `profpipe fold` gives for the same input;
//! - the broker is frozen for 30 s mid-run (SIGSTOP; a restart would lose the
//!   memory-stored topics): with `when_full = "block"` nothing is lost and the
//!   source is held back, with `drop_newest` received = delivered + dropped exactly;
//! - an unreachable broker and a missing topic fail the healthcheck clearly.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use common::run::{profpipe, wait_with_timeout};
use common::tansu::{consume_all, profiles, Record, Tansu};
use profpipe::telemetry::Telemetry;

/// `frames -> count` of folded text (`frames count` lines).
fn folded_counts(text: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let (frames, n) = line.rsplit_once(' ').expect("a folded line");
        *out.entry(frames.to_string()).or_default() += n.parse::<u64>().unwrap();
    }
    out
}

/// `frames -> count` of one profile's parts, in whichever encoding they are.
fn profile_counts(parts: &[Record]) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for r in parts {
        match r.header("encoding") {
            "json" => {
                let v: serde_json::Value = serde_json::from_slice(&r.payload).unwrap();
                assert_eq!(v["schema"], "profpipe.profile.v1");
                assert_eq!(v["profile_id"].as_str(), Some(r.header("profile_id")));
                assert_eq!(v["part"].to_string(), r.header("part"));
                assert_eq!(v["parts"].to_string(), r.header("parts"));
                for (frames, n) in common::events::json_stacks(&v) {
                    *out.entry(frames).or_default() += n;
                }
            }
            "collapsed" => {
                let text = std::str::from_utf8(&r.payload).unwrap();
                assert!(text.starts_with("# {"), "collapsed part without its header");
                for line in text.lines().filter(|l| !l.starts_with('#')) {
                    // `0;container;frames count`
                    let rest = line.strip_prefix("0;").expect("a collapsed line");
                    let (_container, stack) = rest.split_once(';').unwrap();
                    let (frames, n) = stack.rsplit_once(' ').unwrap();
                    *out.entry(frames.to_string()).or_default() += n.parse::<u64>().unwrap();
                }
            }
            "otlp_proto" => {
                // Decoded by OpenTelemetry's own classes (scripts/check-otlp.py), as
                // the Collector's Kafka receiver would take the message's bytes.
                assert_eq!(r.header("content-type"), "application/x-protobuf");
                let file = tempfile::NamedTempFile::new().unwrap();
                std::fs::write(file.path(), &r.payload).unwrap();
                let v = common::otlp::check(file.path());
                if r.header("parts") != "1" {
                    let a = &v["profile_attributes"];
                    assert_eq!(a["profpipe.profile_id"], r.header("profile_id"));
                    assert_eq!(a["profpipe.part"].to_string(), r.header("part"));
                    assert_eq!(a["profpipe.parts"].to_string(), r.header("parts"));
                }
                for (frames, n) in v["stacks"].as_object().unwrap() {
                    *out.entry(frames.clone()).or_default() += n.as_u64().unwrap();
                }
            }
            other => panic!("unexpected encoding {other}"),
        }
    }
    out
}

#[test]
fn a_pipeline_delivers_every_window_with_the_stacks_profpipe_fold_gives() {
    const N: usize = 4;
    let broker = Tansu::start();
    // (sink id, topic, encoding, compression, message_max_bytes): the small limits
    // split every window of the capture into several parts, the large ones do not.
    let sinks = [
        ("json_zstd", "p-json-zstd", "json", "zstd", 8_192u64),
        ("json_lz4", "p-json-lz4", "json", "lz4", 1_000_000),
        ("col_gzip", "p-col-gzip", "collapsed", "gzip", 6_144),
        ("col_none", "p-col-none", "collapsed", "none", 1_000_000),
        ("otlp_zstd", "p-otlp-zstd", "otlp_proto", "zstd", 6_144),
        ("otlp_none", "p-otlp-none", "otlp_proto", "none", 1_000_000),
    ];
    for (_, topic, ..) in &sinks {
        broker.create_topic(topic, 3);
    }
    let tmp = tempfile::tempdir().unwrap();
    let pieces = common::split_capture(tmp.path(), N);
    assert_eq!(pieces.len(), N);
    let mut text = format!(
        r#"
[agent]
hostname = "kafka-test"
state_dir = {state:?}

[sources.capture]
type = "file"
paths = [{glob:?}]
format = "perf_script"

[transforms.fold]
type = "fold"
inputs = ["capture"]
kernel = true
count = "period"
"#,
        state = tmp.path().join("state"),
        glob = tmp.path().join("part-*.perf"),
    );
    for (id, topic, encoding, compression, max) in &sinks {
        text += &format!(
            r#"
[sinks.{id}]
type = "kafka"
inputs = ["fold"]
brokers = ["{broker}"]
topic = "{topic}"
encoding = "{encoding}"
compression = "{compression}"
message_max_bytes = "{max}"
"#,
            broker = broker.broker()
        );
    }
    let config = common::run::write_config(tmp.path(), "kafka.toml", &text);
    let mut child = profpipe()
        .args(["--log", "warn", "run", "--config"])
        .arg(&config)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_with_timeout(&mut child, Duration::from_secs(180));
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(status.success(), "profpipe run failed: {status}\n{stderr}");
    assert!(
        !stderr.contains("WARN") && !stderr.contains("ERROR"),
        "a clean run logs nothing at warn: {stderr}"
    );

    // What `profpipe fold` makes of each piece: the window of that file.
    let expected: Vec<BTreeMap<String, u64>> = pieces
        .iter()
        .map(|p| {
            let out = profpipe()
                .args(["fold", "--kernel"])
                .arg(p)
                .output()
                .unwrap();
            assert!(out.status.success());
            folded_counts(&String::from_utf8(out.stdout).unwrap())
        })
        .collect();

    for (id, topic, _, _, max) in &sinks {
        let records = consume_all(&broker.broker(), topic, N);
        let by_id = profiles(&records);
        assert_eq!(by_id.len(), N, "{id}: profiles in {topic}");
        if *max < 100_000 {
            assert!(
                records.len() >= 2 * N,
                "{id}: only {} messages",
                records.len()
            );
        } else {
            assert_eq!(records.len(), N, "{id}: one message per window");
        }
        // One file = one window; windows increase with the file order.
        let mut got: Vec<(i64, BTreeMap<String, u64>)> = by_id
            .values()
            .map(|parts| {
                for p in parts {
                    assert_eq!(p.key.as_deref(), Some("kafka-test"), "{id}: key");
                    assert_eq!(
                        p.partition, parts[0].partition,
                        "{id}: parts share a partition"
                    );
                    assert!((p.payload.len() as u64) < *max, "{id}: part over the limit");
                }
                (parts[0].timestamp, profile_counts(parts))
            })
            .collect();
        got.sort_by_key(|g| g.0);
        for (i, ((_, counts), want)) in got.iter().zip(&expected).enumerate() {
            assert_eq!(
                counts, want,
                "{id}: window {i} differs from `profpipe fold`"
            );
        }
    }
}

/// Collapsed input files, one window each: `files` files of `stacks` distinct
/// stacks, file `f` stack `s` counted `1 + (f * 7 + s) % 13`.
fn collapsed_files(dir: &Path, files: usize, stacks: usize) -> Vec<BTreeMap<String, u64>> {
    (0..files)
        .map(|f| {
            let mut text = String::new();
            let mut want = BTreeMap::new();
            for s in 0..stacks {
                let frames = format!("app;main;file_{f:04};work_{s:03}");
                let n = 1 + ((f * 7 + s) % 13) as u64;
                text += &format!("{frames} {n}\n");
                want.insert(frames, n);
            }
            std::fs::write(dir.join(format!("w_{f:04}.col")), text).unwrap();
            want
        })
        .collect()
}

struct Outage {
    sent: u64,
    received: u64,
    discarded: u64,
    source_sent: u64,
    source_sent_late_in_outage: (u64, u64),
    profiles: Vec<BTreeMap<String, u64>>,
    records: usize,
}

/// file source (collapsed, `files` windows) → kafka sink whose buffer is
/// `when_full`; the broker is frozen for 30 s once the first window is delivered.
async fn run_with_outage(when_full: &str, files: usize) -> (Outage, Vec<BTreeMap<String, u64>>) {
    let broker = Tansu::start();
    broker.create_topic("profiles", 2);
    let tmp = tempfile::tempdir().unwrap();
    let want = collapsed_files(tmp.path(), files, 200);
    // librdkafka rides out the outage itself (message_timeout > 30 s), so the
    // driver does not resend what the frozen broker may already have taken.
    let text = format!(
        r#"
[agent]
hostname = "outage-test"
state_dir = {state:?}
shutdown_timeout = "60s"

[sources.files]
type = "file"
paths = [{glob:?}]
format = "collapsed"

[sinks.kafka]
type = "kafka"
inputs = ["files"]
brokers = "{broker}"
topic = "profiles"
message_timeout = "90s"
request = {{ concurrency = 2, timeout = "100s", retry_max_backoff = "2s" }}
buffer = {{ max_bytes = "256KiB", when_full = "{when_full}" }}
"#,
        state = tmp.path().join("state"),
        glob = tmp.path().join("w_*.col"),
        broker = broker.broker(),
    );
    let registry = profpipe::registry::registry();
    let config =
        profpipe::config::load_str(Path::new("outage.toml"), &text, &registry).expect("config");
    let telemetry = Telemetry::new();
    let running = common::run::start(&config, &telemetry);
    let sink = telemetry.component("kafka", "sink", "kafka");
    let source = telemetry.component("files", "source", "file");

    common::wait::until_async(
        "the first window delivered",
        Duration::from_secs(60),
        || sink.sent_events() > 0,
    )
    .await;
    broker.freeze();
    let frozen = Instant::now();
    tokio::time::sleep(Duration::from_secs(20)).await;
    let a = source.sent_events();
    tokio::time::sleep(Duration::from_secs(30).saturating_sub(frozen.elapsed())).await;
    let b = source.sent_events();
    broker.thaw();
    let outcome = tokio::time::timeout(
        Duration::from_secs(240),
        running.run_until(std::future::pending(), Duration::from_secs(60)),
    )
    .await
    .expect("the pipeline drains after the broker is back");
    assert!(outcome.is_clean(), "{outcome:?}");

    let records = consume_all(&broker.broker(), "profiles", sink.sent_events() as usize);
    let by_id = profiles(&records);
    let outage = Outage {
        sent: sink.sent_events(),
        received: sink.received_events(),
        discarded: sink.discarded_events(),
        source_sent: source.sent_events(),
        source_sent_late_in_outage: (a, b),
        profiles: by_id.values().map(|p| profile_counts(p)).collect(),
        records: records.len(),
    };
    (outage, want)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_block_a_frozen_broker_loses_nothing_and_holds_the_source_back() {
    const FILES: usize = 400;
    let (o, want) = run_with_outage("block", FILES).await;
    // Held back: during the outage the source stopped sending, well short of the end.
    let (a, b) = o.source_sent_late_in_outage;
    assert_eq!(a, b, "the source kept sending while the broker was frozen");
    assert!(
        b < FILES as u64,
        "the source sent everything ({b}) during the outage"
    );
    // Nothing lost, nothing twice.
    assert_eq!(o.source_sent, FILES as u64);
    assert_eq!(o.discarded, 0);
    assert_eq!((o.received, o.sent), (FILES as u64, FILES as u64));
    assert_eq!(o.records, FILES, "one message per window, none twice");
    let mut got = o.profiles;
    got.sort();
    let mut want = want;
    want.sort();
    assert_eq!(got, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_drop_newest_every_window_is_delivered_or_counted_dropped() {
    const FILES: usize = 400;
    let (o, want) = run_with_outage("drop_newest", FILES).await;
    assert_eq!(
        o.source_sent, FILES as u64,
        "drop_newest never blocks the source"
    );
    assert_eq!(o.received, FILES as u64);
    assert!(
        o.discarded > 0,
        "expected drops while the broker was frozen"
    );
    assert_eq!(
        o.received,
        o.sent + o.discarded,
        "received = delivered + dropped"
    );
    assert_eq!(
        o.profiles.len() as u64,
        o.sent,
        "what arrived is what was counted sent"
    );
    assert_eq!(
        o.records as u64, o.sent,
        "one message per window, none twice"
    );
    // Each window that arrived is exactly one of the input files.
    for p in &o.profiles {
        assert!(want.contains(p), "a window arrived altered");
    }
}

#[test]
fn an_unreachable_broker_or_a_missing_topic_fails_the_healthcheck_clearly() {
    let broker = Tansu::start();
    broker.create_topic("present", 1);
    let tmp = tempfile::tempdir().unwrap();
    let nobody = format!("127.0.0.1:{}", common::tansu::free_port());
    for (brokers, topic, expect) in [
        (
            nobody.as_str(),
            "present",
            "cannot fetch metadata from brokers",
        ),
        (broker.broker().as_str(), "absent", "topic `absent`"),
    ] {
        let text = format!(
            r#"
[sources.files]
type = "file"
paths = ["/nonexistent/*.col"]
format = "collapsed"

[sinks.kafka]
type = "kafka"
inputs = ["files"]
brokers = ["{brokers}"]
topic = "{topic}"
"#
        );
        let config = common::run::write_config(tmp.path(), "hc.toml", &text);
        // Plain validation needs no broker.
        let out = profpipe().arg("validate").arg(&config).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let started = Instant::now();
        let out = profpipe()
            .args(["validate", "--healthcheck"])
            .arg(&config)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "healthcheck passed for {brokers} {topic}"
        );
        assert!(stderr.contains(expect), "{brokers} {topic}: {stderr}");
        assert!(started.elapsed() < Duration::from_secs(60));
        // And `run` refuses to start rather than retrying in a loop.
        let mut child = profpipe()
            .args(["--log", "error", "run", "--config"])
            .arg(&config)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let status = wait_with_timeout(&mut child, Duration::from_secs(60));
        assert!(!status.success());
    }
    // The present topic passes.
    let text = format!(
        "[sources.files]\ntype = \"file\"\npaths = [\"/nonexistent/*.col\"]\nformat = \"collapsed\"\n\n\
         [sinks.kafka]\ntype = \"kafka\"\ninputs = [\"files\"]\nbrokers = [\"{}\"]\ntopic = \"present\"\n",
        broker.broker()
    );
    let config = common::run::write_config(tmp.path(), "ok.toml", &text);
    let out = profpipe()
        .args(["validate", "--healthcheck"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
