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

/// Counts per stack in every folded file under `dir`.
fn folded_totals(dir: &std::path::Path) -> BTreeMap<String, u64> {
    let mut t = BTreeMap::new();
    for path in common::walk(dir) {
        if path.extension().is_none_or(|e| e != "folded") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        for line in text.lines() {
            if let Some((frames, n)) = line.rsplit_once(' ') {
                *t.entry(frames.to_string()).or_default() += n.parse::<u64>().unwrap();
            }
        }
    }
    t
}

/// The committed offset in a checkpoint file (one followed file).
fn checkpoint_offset(path: &std::path::Path) -> u64 {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|l| l.split_whitespace().nth(2)?.parse().ok())
        .max()
        .unwrap_or(0)
}

/// `kill -9` of the agent mid-stream loses no line: the restarted agent goes on from
/// the read position persisted past the last delivered bytes. Lines are read twice
/// only past that position.
#[test]
fn a_killed_agent_resumes_where_delivery_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.col");
    let out = dir.path().join("out");
    let state = dir.path().join("state");
    let text = format!(
        r#"
[agent]
state_dir = {state:?}
shutdown_timeout = "10s"

[sources.tail]
type = "file"
paths = [{input:?}]
format = "collapsed"
follow = true
window = "1s"
poll_interval = "50ms"
read_size = "4KiB"

[sinks.out]
type = "file"
inputs = ["tail"]
path = {out:?}
formats = ["folded"]
retain_files = 100000
"#
    );
    let config = run::write_config(dir.path(), "pipeline.toml", &text);
    let checkpoints = state.join("tail").join("checkpoints");
    let line = |i: usize| format!("proc;line_{i:06} 1\n");
    let mut written = 0usize;
    let write_more = |written: &mut usize, n: usize| {
        let text: String = (*written..*written + n).map(line).collect();
        append(&input, &text);
        *written += n;
    };
    write_more(&mut written, 500);
    let start = || {
        run::profpipe()
            .args(["--log", "warn", "run", "--config"])
            .arg(&config)
            .stdin(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut agent = start();
    // Keep writing while the agent reads and delivers, until delivery has moved the
    // persisted read position well into the file.
    common::wait::until(
        "the read position advances",
        Duration::from_secs(30),
        || {
            write_more(&mut written, 50);
            std::thread::sleep(Duration::from_millis(20)); // a steady writer, not a wait
            checkpoint_offset(&checkpoints) > 20_000
        },
    );
    write_more(&mut written, 200);
    agent.kill().unwrap(); // SIGKILL: no shutdown, no flush
    agent.wait().unwrap();
    let committed = checkpoint_offset(&checkpoints);
    let line_len = line(0).len() as u64;
    let first_run = folded_totals(&out);
    write_more(&mut written, 500);

    let mut agent = start();
    let all_there = || {
        let t = folded_totals(&out);
        (0..written).all(|i| t.contains_key(&format!("proc;line_{i:06}")))
    };
    common::wait::until(
        "every line arrives after the restart",
        Duration::from_secs(60),
        all_there,
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(agent.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert!(run::wait_with_timeout(&mut agent, Duration::from_secs(30)).success());

    let totals = folded_totals(&out);
    let missing: Vec<usize> = (0..written)
        .filter(|i| !totals.contains_key(&format!("proc;line_{i:06}")))
        .collect();
    assert!(missing.is_empty(), "lines lost: {missing:?}");
    let delivered: u64 = totals.values().sum();
    let duplicates = delivered - written as u64;
    // Everything before the persisted position was delivered in the first run and
    // must not come again; only lines past it may.
    let replayable = written as u64 - committed / line_len;
    assert!(committed > 0 && committed % line_len == 0, "{committed}");
    assert!(
        duplicates <= replayable,
        "{duplicates} duplicates, but only {replayable} lines were past the read position"
    );
    let before: u64 = first_run.values().sum();
    assert!(
        before >= committed / line_len,
        "the checkpoint never runs ahead of delivery"
    );
    eprintln!(
        "kill -9 after {} delivered lines (checkpoint at line {}): {duplicates} duplicates",
        before,
        committed / line_len
    );
}
