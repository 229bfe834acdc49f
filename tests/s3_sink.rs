//! The `s3` sink against a real S3 server (s3s-fs, SigV4-checking): what it writes
//! reads back exactly (as `profpipe fold` folds the same input), an outage of the
//! server loses nothing with `block` and counts every drop with `drop_newest`, large
//! windows go as multipart uploads, and a bad credential stops the agent at start.

mod common;

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::run::{self, profpipe};
use common::s3::{self, S3Server, ACCESS_KEY, SECRET_KEY};
use common::wait::until_async;
use profpipe::buffer::{BufferConfig, WhenFull};
use profpipe::component::{BuildError, SourceConfig, SourceContext, Task};
use profpipe::event::{Event, Labels, Profile, Stack, Watermark, Window};
use profpipe::sinks::s3::S3SinkConfig;
use profpipe::telemetry::Telemetry;
use profpipe::units::ByteSize;

const BUCKET: &str = "profiles";
const BASE_MS: u64 = 1_796_205_600_000;

/// `(frames, count)` lines of a profile, sorted.
type Stacks = Vec<(String, u64)>;

/// The stacks of one `json` document.
fn json_stacks(doc: &[u8]) -> (u64, Stacks) {
    let v: serde_json::Value = serde_json::from_slice(doc).unwrap();
    let mut stacks: Stacks = common::events::json_stacks(&v);
    stacks.sort();
    (v["start_ms"].as_u64().unwrap(), stacks)
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .unwrap();
    out
}

/// `frames count` lines (folded or collapsed text) as sorted stacks.
fn text_stacks(text: &str) -> Stacks {
    let mut v: Stacks = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (f, n) = l.rsplit_once(' ').unwrap();
            (f.to_string(), n.parse().unwrap())
        })
        .collect();
    v.sort();
    v
}

fn sink_toml(server: &S3Server, extra: &str) -> String {
    format!(
        r#"type = "s3"
bucket = "{BUCKET}"
endpoint = "{}"
access_key_id = "{ACCESS_KEY}"
secret_access_key = "{SECRET_KEY}"
request = {{ concurrency = 4, retry_initial_backoff = "100ms", retry_max_backoff = "1s" }}
{extra}
"#,
        server.endpoint()
    )
}

/// N windows through `profpipe run` (file source → fold → s3, gzip json) read
/// back as exactly N objects, each holding the stacks and counts `profpipe fold`
/// gives for that window's input.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_read_back_as_profpipe_fold_folds_them() {
    const N: usize = 3;
    let server = S3Server::start(BUCKET);
    let tmp = tempfile::tempdir().unwrap();
    let parts = common::split_capture(tmp.path(), N);
    let paths: Vec<String> = parts.iter().map(|p| format!("{:?}", p)).collect();
    let config = format!(
        r#"[agent]
state_dir = {state:?}

[sources.capture]
type = "file"
paths = [{paths}]
format = "perf_script"

[transforms.fold]
type = "fold"
inputs = ["capture"]
kernel = true
count = "period"

[sinks.archive]
inputs = ["fold"]
{sink}"#,
        state = tmp.path().join("state"),
        paths = paths.join(", "),
        sink = sink_toml(&server, r#"compression = "gzip""#),
    );
    let file = run::write_config(tmp.path(), "s3.toml", &config);
    let out = profpipe()
        .args(["--log", "warn", "run", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let objects = s3::objects(&server.client(BUCKET)).await;
    assert_eq!(
        objects.len(),
        N,
        "{:?}",
        objects.iter().map(|o| &o.0).collect::<Vec<_>>()
    );
    for ((key, body), part) in objects.iter().zip(&parts) {
        assert!(
            key.starts_with("unknown/") && key.ends_with(".json.gz"),
            "{key}"
        );
        let (_, got) = json_stacks(&gunzip(body));
        let fold = profpipe()
            .args(["fold", "--kernel"])
            .arg(part)
            .output()
            .unwrap();
        assert!(fold.status.success());
        let want = text_stacks(&String::from_utf8(fold.stdout).unwrap());
        assert!(!want.is_empty());
        assert_eq!(
            got,
            want,
            "{key} differs from `profpipe fold {}`",
            part.display()
        );
    }
}

/// Emits `windows` one-profile windows (each followed by its watermark), one per
/// `every`, counting what it handed to its output.
#[derive(Debug)]
struct Paced {
    windows: u64,
    every: Duration,
    stacks: usize,
    emitted: Arc<AtomicU64>,
}

fn window(i: u64) -> Window {
    Window::new(BASE_MS + i * 1000, BASE_MS + (i + 1) * 1000)
}

/// Window `i`'s stacks: distinct per window, so a mixed-up object shows.
fn stacks_of(i: u64, n: usize) -> Vec<Stack> {
    (0..n as u64)
        .map(|k| Stack::new(format!("app;main;work_{};leaf_{k:06}", i % 13), i + k + 1))
        .collect()
}

impl SourceConfig for Paced {
    fn outputs(&self) -> profpipe::event::DataTypes {
        profpipe::event::DataTypes::PROFILE
    }
    fn is_finite(&self) -> bool {
        true
    }
    fn build(&self, cx: SourceContext) -> Result<Task, BuildError> {
        let (windows, every, n, emitted) =
            (self.windows, self.every, self.stacks, self.emitted.clone());
        let id = cx.cx.id.clone();
        let mut out = cx.out;
        Ok(Box::pin(async move {
            for i in 0..windows {
                let p = Profile {
                    finalizers: Default::default(),
                    window: window(i),
                    labels: Labels {
                        extra: Default::default(),
                        host: "h".into(),
                        source: id.clone(),
                        profiler: "perf".into(),
                    },
                    stacks: stacks_of(i, n).into(),
                };
                if out.send(Event::Profile(p)).await.is_err() {
                    break;
                }
                emitted.fetch_add(1, Ordering::SeqCst);
                let w = Watermark {
                    source: id.clone(),
                    complete_until_ms: window(i).end_ms,
                };
                if out.send(Event::Watermark(w)).await.is_err() {
                    break;
                }
                tokio::time::sleep(every).await;
            }
            Ok(())
        }))
    }
}

fn s3_config(server: &S3Server, extra: &str) -> S3SinkConfig {
    toml::from_str(&sink_toml(server, extra).replace("type = \"s3\"\n", "")).unwrap()
}

/// Objects of the bucket by window start, each checked against what `Paced` sent.
async fn check_objects(server: &S3Server, stacks: usize) -> BTreeMap<u64, usize> {
    let mut seen = BTreeMap::new();
    for (key, body) in s3::objects(&server.client(BUCKET)).await {
        let (start, got) = json_stacks(&body);
        let i = (start - BASE_MS) / 1000;
        let mut want: Stacks = stacks_of(i, stacks)
            .iter()
            .map(|s| (s.frames.to_string(), s.count))
            .collect();
        want.sort();
        assert_eq!(got, want, "{key}");
        *seen.entry(i).or_insert(0) += 1;
    }
    seen
}

struct Outage {
    emitted_at_stop: u64,
    emitted_at_restart: u64,
    emitted_10s_before_restart: u64,
}

/// Runs `windows` paced windows into the sink behind a small edge that does
/// `when_full`; stops the server once 50 windows are delivered, restarts it 30 s
/// later, and runs to the end.
async fn run_with_outage(
    server: &mut S3Server,
    windows: u64,
    when_full: WhenFull,
) -> (Telemetry, Outage) {
    let state = tempfile::tempdir().unwrap();
    let emitted = Arc::new(AtomicU64::new(0));
    let source = Paced {
        windows,
        every: Duration::from_millis(10),
        stacks: 20,
        emitted: emitted.clone(),
    };
    let sink = run::sink_with_buffer(
        "out",
        "s3",
        &["paced"],
        BufferConfig {
            max_bytes: ByteSize(64 * 1024),
            when_full,
            ..Default::default()
        },
        s3_config(server, ""),
    );
    let config = run::config(
        run::agent_with_state(state.path()),
        vec![run::source("paced", "paced", source)],
        vec![],
        vec![sink],
    );
    let telemetry = Telemetry::new();
    let running = run::start(&config, &telemetry);
    let metrics = telemetry.component("out", "sink", "s3");
    let task = tokio::spawn(run::to_end(running));
    until_async("50 windows delivered", Duration::from_secs(60), || {
        metrics.sent_events() >= 50
    })
    .await;
    server.stop();
    let emitted_at_stop = emitted.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(20)).await;
    let emitted_10s_before_restart = emitted.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(10)).await;
    let emitted_at_restart = emitted.load(Ordering::SeqCst);
    server.resume();
    tokio::time::timeout(Duration::from_secs(180), task)
        .await
        .expect("the pipeline ends once the server is back")
        .unwrap();
    (
        telemetry,
        Outage {
            emitted_at_stop,
            emitted_at_restart,
            emitted_10s_before_restart,
        },
    )
}

/// `block`: the source is held while the server is down, and once it is back
/// every window is delivered, exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_with_block_loses_nothing_and_holds_the_source() {
    const N: u64 = 1500;
    let mut server = S3Server::start(BUCKET);
    let (telemetry, o) = run_with_outage(&mut server, N, WhenFull::Block).await;
    let m = telemetry.component("out", "sink", "s3");
    // Unheld, the source would have sent 1000 more windows in those 10 s.
    assert_eq!(
        o.emitted_10s_before_restart, o.emitted_at_restart,
        "the source went on while the sink could not deliver"
    );
    assert!(
        o.emitted_at_restart < N,
        "the source finished during the outage"
    );
    assert!(o.emitted_at_restart >= o.emitted_at_stop);
    assert!(
        m.retried_count("connect") > 0,
        "no retries while the server was down"
    );
    assert_eq!(m.discarded_events(), 0);
    assert_eq!(m.sent_events(), N);
    let seen = check_objects(&server, 20).await;
    assert_eq!(seen.len() as u64, N);
    assert!(seen.values().all(|&n| n == 1), "a window written twice");
}

/// `drop_newest`: what the sink received is what it delivered plus what its full
/// edge dropped, exactly, and the bucket holds exactly the delivered windows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_with_drop_newest_counts_every_drop() {
    const N: u64 = 4000;
    let mut server = S3Server::start(BUCKET);
    let (telemetry, o) = run_with_outage(&mut server, N, WhenFull::DropNewest).await;
    let m = telemetry.component("out", "sink", "s3");
    assert!(
        o.emitted_at_restart > o.emitted_at_stop,
        "the source was held"
    );
    let dropped = m.discarded_count("buffer_full") + m.discarded_count("memory_limit");
    assert!(dropped > 0, "nothing dropped during a 30 s outage");
    assert_eq!(m.received_events(), N);
    assert_eq!(m.received_events(), m.sent_events() + dropped);
    assert_eq!(m.discarded_events(), dropped);
    let seen = check_objects(&server, 20).await;
    assert_eq!(seen.len() as u64, m.sent_events());
    assert!(seen.values().all(|&n| n == 1), "a window written twice");
}

/// A window over `multipart_threshold` goes as a multipart upload and reads back
/// whole (collapsed encoding).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_window_goes_as_a_multipart_upload() {
    let server = S3Server::start(BUCKET);
    let state = tempfile::tempdir().unwrap();
    let stacks = 250_000; // about 9 MiB of collapsed text
    let source = Paced {
        windows: 1,
        every: Duration::ZERO,
        stacks,
        emitted: Default::default(),
    };
    let sink = run::sink(
        "out",
        "s3",
        &["paced"],
        s3_config(
            &server,
            r#"encoding = "collapsed"
multipart_threshold = "5MiB"
part_size = "5MiB"
max_pending_bytes = "128MiB""#,
        ),
    );
    let agent = profpipe::config::AgentConfig {
        memory_limit: ByteSize(512 << 20),
        ..run::agent_with_state(state.path())
    };
    let config = run::config(
        agent,
        vec![run::source("paced", "paced", source)],
        vec![],
        vec![sink],
    );
    let telemetry = Telemetry::new();
    run::to_end(run::start(&config, &telemetry)).await;
    let objects = s3::objects(&server.client(BUCKET)).await;
    assert_eq!(objects.len(), 1);
    let (key, body) = &objects[0];
    assert!(key.ends_with(".col"), "{key}");
    assert!(
        body.len() > 5 << 20,
        "only {} bytes: not multipart",
        body.len()
    );
    // Collapsed lines start with gProfiler's metadata index and container.
    let got: Stacks = text_stacks(std::str::from_utf8(body).unwrap())
        .into_iter()
        .map(|(f, n)| (f.splitn(3, ';').nth(2).unwrap().to_string(), n))
        .collect();
    let mut want: Stacks = stacks_of(0, stacks)
        .iter()
        .map(|s| (s.frames.to_string(), s.count))
        .collect();
    want.sort();
    assert_eq!(got.len(), want.len());
    if let Some((g, w)) = got.iter().zip(&want).find(|(g, w)| g != w) {
        panic!("the stacks read back differ: got {g:?}, sent {w:?}");
    }
    assert_eq!(telemetry.component("out", "sink", "s3").sent_events(), 1);
}

/// `profpipe run` with a wrong secret, or a bucket that does not exist, stops at
/// start with the sink's name and S3's reason, instead of retrying in silence.
#[test]
fn a_bad_credential_or_bucket_is_a_clear_error_at_start() {
    let server = S3Server::start(BUCKET);
    let tmp = tempfile::tempdir().unwrap();
    for (name, sink, expect) in [
        (
            "secret",
            sink_toml(&server, "").replace(SECRET_KEY, "not-the-secret"),
            "SignatureDoesNotMatch",
        ),
        (
            "bucket",
            sink_toml(&server, "").replace(&format!("\"{BUCKET}\""), "\"no-such-bucket\""),
            "not_found",
        ),
    ] {
        let config = format!(
            r#"[agent]
state_dir = {state:?}

[sources.capture]
type = "file"
paths = ["pipelines/captures/host-sample.perf.txt"]
format = "perf_script"

[transforms.fold]
type = "fold"
inputs = ["capture"]

[sinks.archive]
inputs = ["fold"]
{sink}"#,
            state = tmp.path().join("state"),
        );
        let file = run::write_config(tmp.path(), &format!("{name}.toml"), &config);
        let mut child = profpipe()
            .current_dir(common::repo())
            .args(["--log", "warn", "run", "--config"])
            .arg(&file)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let status = run::wait_with_timeout(&mut child, Duration::from_secs(60));
        let mut stderr = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        assert_eq!(status.code(), Some(1), "{name}: {stderr}");
        assert!(
            stderr.contains("healthcheck failed") && stderr.contains("archive"),
            "{name}: {stderr}"
        );
        assert!(stderr.contains(expect), "{name}: {stderr}");
        assert!(
            !stderr.contains("not-the-secret"),
            "{name}: the secret was logged"
        );
    }
    // Nothing was written.
    assert_eq!(common::walk(&server.dir.path().join(BUCKET)).len(), 0);
}
