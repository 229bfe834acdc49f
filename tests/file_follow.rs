//! The file source in `follow` mode: a growing file, a line written in two pieces,
//! and a rotation (rename + new file) deliver every line exactly once; and the
//! Prometheus endpoint serves the pipeline's counters.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::time::Duration;

use common::collect::Collect;
use common::events::{profiles, watermarks};
use common::run;
use profpipe::config::{self, AgentConfig};
use profpipe::event::Watermark;
use profpipe::shutdown::ShutdownTrigger;
use profpipe::sources::file::{FileSourceConfig, InputFormat};
use profpipe::telemetry::{server, Telemetry};
use profpipe::window_clock::now_ms;

/// The counts of every stack received, summed by frames.
fn totals(sink: &Collect) -> BTreeMap<String, u64> {
    let mut t = BTreeMap::new();
    sink.with(|events| {
        for p in profiles(events) {
            for s in &p.stacks {
                *t.entry(s.frames.to_string()).or_default() += s.count;
            }
        }
    });
    t
}

/// Waits until the follow loop has read the files after this call: it closes a window
/// in each poll after reading, so once a window that began after now has closed, a
/// whole read began after now (and its lines have been sent).
async fn caught_up(sink: &Collect, window_ms: u64) {
    let t = now_ms();
    sink.wait_until(
        "the follow loop read the files again",
        Duration::from_secs(20),
        |events| {
            watermarks(events)
                .iter()
                .any(|&w| w != Watermark::FINISHED && w > t + window_ms)
        },
    )
    .await;
}

fn append(path: &std::path::Path, text: &str) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_reads_growing_and_rotated_files_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("app.col");
    append(&live, "a;b 1\n");
    let source = FileSourceConfig {
        paths: vec![format!("{}/app.col*", dir.path().display())],
        format: InputFormat::Collapsed,
        follow: true,
        window: "1s".parse().unwrap(),
        poll_interval: "50ms".parse().unwrap(),
        ..Default::default()
    };
    let sink = Collect::new();
    let config = run::config(
        AgentConfig::default(),
        vec![run::source("tail", "file", source)],
        vec![],
        vec![run::sink("collect", "collect", &["tail"], sink.clone())],
    );
    let telemetry = Telemetry::new();
    let running = run::start(&config, &telemetry);

    // Each step waits until the source has read what the last one wrote.
    let window_ms = 1000;
    let steps = async {
        caught_up(&sink, window_ms).await;
        for _ in 0..9 {
            append(&live, "a;b 1\n");
        }
        caught_up(&sink, window_ms).await;
        append(&live, "a;c 2"); // half a line: must wait for its end
        caught_up(&sink, window_ms).await;
        append(&live, "\n");
        for _ in 0..5 {
            append(&live, "a;b 1\n");
        }
        caught_up(&sink, window_ms).await;
        // Rotation: the old file keeps its inode (and read offset), a new one starts.
        let rotated = live.with_extension("col.1");
        std::fs::rename(&live, &rotated).unwrap();
        append(&rotated, "a;d 4\n"); // written to the old file after the rename
        for _ in 0..7 {
            append(&live, "x;y 1\n");
        }
        caught_up(&sink, window_ms).await;
    };
    let outcome = running.run_until(steps, Duration::from_secs(10)).await;
    assert!(outcome.is_clean(), "{outcome:?}");
    let expect: BTreeMap<String, u64> = [("a;b", 15), ("a;c", 2), ("a;d", 4), ("x;y", 7)]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    assert_eq!(totals(&sink), expect);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_endpoint_serves_component_counters() {
    let repo = env!("CARGO_MANIFEST_DIR");
    let text = format!(
        r#"
        [sources.files]
        type = "file"
        paths = ["{repo}/pipelines/captures/sample.col"]
        format = "collapsed"

        [sinks.out]
        type = "file"
        inputs = ["files"]
        path = "{}"
        formats = ["folded"]
        "#,
        tempfile::tempdir().unwrap().keep().display()
    );
    let config =
        config::load_str("test.toml".as_ref(), &text, &profpipe::registry::registry()).unwrap();
    let telemetry = Telemetry::new();
    let running = run::start(&config, &telemetry);
    // The server outlives the (finite) pipeline: it has a shutdown of its own.
    let (server_stop, server_signal) = ShutdownTrigger::new();
    let (addr, _server) = server::serve(
        "127.0.0.1:0".parse().unwrap(),
        telemetry.clone(),
        server_signal,
    )
    .await
    .unwrap();
    assert!(addr.ip().is_loopback());
    let outcome = running
        .run_until(std::future::pending(), Duration::from_secs(10))
        .await;
    assert!(outcome.is_clean());

    let body = tokio::task::spawn_blocking(move || get(addr, "/metrics"))
        .await
        .unwrap();
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    for needle in [
        r#"profpipe_component_sent_events_total{component_id="files",component_kind="source",component_type="file"} 1"#,
        r#"profpipe_component_received_events_total{component_id="out",component_kind="sink",component_type="file"} 1"#,
        "profpipe_buffer_max_bytes{",
        "profpipe_process_resident_memory_bytes ",
        "profpipe_process_open_fds ",
    ] {
        assert!(body.contains(needle), "missing {needle} in:\n{body}");
    }
    let missing = tokio::task::spawn_blocking(move || get(addr, "/nope"))
        .await
        .unwrap();
    assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
    server_stop.trigger();
}

/// A plain HTTP/1.1 GET over a socket.
fn get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}
