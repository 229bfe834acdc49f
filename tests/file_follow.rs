//! The file source in `follow` mode: a growing file, a line written in two pieces,
//! and a rotation (rename + new file) deliver every line exactly once; and the
//! Prometheus endpoint serves the pipeline's counters.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use profpipe::component::{BuildError, SinkConfig, SinkContext, Task};
use profpipe::config::{self, AgentConfig, Config, SinkEntry, SourceEntry, TelemetryConfig};
use profpipe::event::Event;
use profpipe::shutdown::ShutdownTrigger;
use profpipe::sources::file::{FileSourceConfig, InputFormat};
use profpipe::telemetry::{server, Telemetry};
use profpipe::topology::{self, RunningTopology};

/// Sums the counts of every stack it receives, by frames.
#[derive(Debug, Default, Clone)]
struct Collect(Arc<Mutex<BTreeMap<String, u64>>>);

impl SinkConfig for Collect {
    fn inputs(&self) -> profpipe::event::DataTypes {
        profpipe::event::DataTypes::ALL
    }
    fn build(&self, cx: SinkContext) -> Result<Task, BuildError> {
        let totals = self.0.clone();
        let SinkContext { mut input, .. } = cx;
        Ok(Box::pin(async move {
            while let Some(ev) = input.recv().await {
                if let Event::Profile(p) = ev {
                    let mut t = totals.lock().unwrap();
                    for s in p.stacks {
                        *t.entry(s.frames.to_string()).or_default() += s.count;
                    }
                }
            }
            Ok(())
        }))
    }
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
    let sink = Collect::default();
    let config = Config {
        agent: AgentConfig::default(),
        telemetry: TelemetryConfig::default(),
        sources: vec![SourceEntry {
            id: "tail".into(),
            type_name: "file",
            labels: Default::default(),
            config: Box::new(source),
        }],
        transforms: vec![],
        sinks: vec![SinkEntry {
            id: "collect".into(),
            type_name: "collect",
            inputs: vec!["tail".into()],
            buffer: Default::default(),
            config: Box::new(sink.clone()),
        }],
    };
    let telemetry = Telemetry::new();
    let running = RunningTopology::start(topology::build(&config, &telemetry, "h".into()).unwrap());

    let writer = tokio::task::spawn_blocking(move || {
        let pause = || std::thread::sleep(Duration::from_millis(300));
        pause();
        for _ in 0..9 {
            append(&live, "a;b 1\n");
        }
        pause();
        append(&live, "a;c 2"); // half a line: must wait for its end
        pause();
        append(&live, "\n");
        for _ in 0..5 {
            append(&live, "a;b 1\n");
        }
        pause();
        // Rotation: the old file keeps its inode (and read offset), a new one starts.
        let rotated = live.with_extension("col.1");
        std::fs::rename(&live, &rotated).unwrap();
        append(&rotated, "a;d 4\n"); // written to the old file after the rename
        for _ in 0..7 {
            append(&live, "x;y 1\n");
        }
        pause();
        pause();
    });
    let stop = async move {
        writer.await.unwrap();
    };
    let outcome = running.run_until(stop, Duration::from_secs(10)).await;
    assert!(outcome.is_clean(), "{outcome:?}");
    let totals = sink.0.lock().unwrap().clone();
    let expect: BTreeMap<String, u64> = [("a;b", 15), ("a;c", 2), ("a;d", 4), ("x;y", 7)]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    assert_eq!(totals, expect);
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
    let running = RunningTopology::start(topology::build(&config, &telemetry, "h".into()).unwrap());
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
