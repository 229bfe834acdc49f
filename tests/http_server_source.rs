//! The `http_server` source against real HTTP clients (reqwest) on 127.0.0.1: what
//! is pushed reaches the sinks exactly, and every refusal has its status and reason.
//! Each test runs a real topology: http_server → file sink (or a stalled test sink).

mod common;

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use common::collect::Collect;
use common::run;
use profpipe::buffer::{BufferConfig, WhenFull};
use profpipe::config::{AgentConfig, Config};
use profpipe::formats::timestamp::file_stamp;
use profpipe::sinks::file::{FileFormat, FileSink, FileSinkConfig};
use profpipe::sinks::pending::PendingConfig;
use profpipe::sources::http_server::{AuthConfig, HttpServerConfig};
use profpipe::telemetry::Telemetry;
use profpipe::topology::Outcome;
use profpipe::units::{ByteSize, DurationStr};
use tokio::sync::oneshot;

/// 2023-12-03T16:30:00Z, in seconds.
const FROM: u64 = 1_701_621_000;
const UNTIL: u64 = FROM + 10;

/// A port nobody listens on right now (the kernel's pick).
fn free_address() -> std::net::SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

fn folded_sink(dir: &Path) -> FileSinkConfig {
    FileSinkConfig {
        sink: FileSink {
            path: dir.to_path_buf(),
            formats: vec![FileFormat::Folded],
            title: None,
            sample_rate: 11,
            retain_files: 100,
            retain_bytes: ByteSize(1 << 30),
        },
        pending: PendingConfig {
            max_pending_stacks: 10_000,
            max_pending_bytes: ByteSize::mib(8),
        },
    }
}

/// A running gateway: where it listens, and how to stop it.
struct Gateway {
    url: String,
    stop: Option<oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<Outcome>,
    telemetry: Telemetry,
}

impl Gateway {
    fn start(source: HttpServerConfig, sink: Box<dyn profpipe::component::SinkConfig>) -> Gateway {
        Gateway::start_with_buffer(source, sink, BufferConfig::default())
    }

    /// [`Gateway::start`] with the sink's input buffer configured.
    fn start_with_buffer(
        source: HttpServerConfig,
        sink: Box<dyn profpipe::component::SinkConfig>,
        buffer: BufferConfig,
    ) -> Gateway {
        let address = free_address();
        let source = HttpServerConfig { address, ..source };
        let mut sink_entry =
            run::sink_with_buffer("out", "file", &["gateway"], buffer, Collect::new());
        sink_entry.config = sink;
        let config: Config = run::config(
            AgentConfig::default(),
            vec![run::source("gateway", "http_server", source)],
            vec![],
            vec![sink_entry],
        );
        let telemetry = Telemetry::new();
        let running = run::start(&config, &telemetry);
        let (stop, stopped) = oneshot::channel();
        let done = tokio::spawn(running.run_until(
            async move {
                let _ = stopped.await;
            },
            Duration::from_secs(30),
        ));
        Gateway {
            url: format!("http://{address}"),
            stop: Some(stop),
            done,
            telemetry,
        }
    }

    fn files(dir: &Path) -> Gateway {
        Gateway::start(HttpServerConfig::default(), Box::new(folded_sink(dir)))
    }

    async fn stop(mut self) -> Outcome {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(60), self.done)
            .await
            .expect("the gateway did not stop")
            .unwrap()
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

async fn ingest(url: &str, query: &str, body: &'static str) -> reqwest::Response {
    client()
        .post(format!("{url}/ingest?{query}"))
        .body(body)
        .send()
        .await
        .unwrap()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// The folded file the sink wrote for host `host`'s window ending at `end_s`.
fn folded(dir: &Path, end_s: u64, host: &str) -> String {
    let name = format!("profile_{}_{host}.folded", file_stamp(end_s * 1000));
    std::fs::read_to_string(dir.join(&name)).unwrap_or_else(|e| {
        let have: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        panic!("{name}: {e}; the directory holds {have:?}")
    })
}

async fn json_of(r: reqwest::Response) -> serde_json::Value {
    serde_json::from_slice(&r.bytes().await.unwrap()).unwrap()
}

async fn error_message(r: reqwest::Response) -> String {
    let v = json_of(r).await;
    v["message"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pyroscope_push_is_written_exactly_and_answered_once_written() {
    let tmp = tempfile::tempdir().unwrap();
    let gw = Gateway::files(tmp.path());
    let q = format!("name=checkout.cpu%7Benv%3Dprod%2Chostname%3Dweb-1%7D&from={FROM}&until={UNTIL}&spyName=pyspy&sampleRate=100");
    let r = ingest(
        &gw.url,
        &q,
        "main;handle;parse 12\nmain;idle 3\nmain;handle;parse 1\n",
    )
    .await;
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    // 2xx means written: the file is there already.
    assert_eq!(
        folded(tmp.path(), UNTIL, "web-1"),
        "main;handle;parse 13\nmain;idle 3\n"
    );
    let source = gw.telemetry.component("gateway", "source", "http_server");
    assert_eq!(source.sent_events(), 1);
    assert!(gw.stop().await.is_clean());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gzipped_gprofiler_upload_is_written_and_answered_with_a_gpid() {
    let tmp = tempfile::tempdir().unwrap();
    let gw = Gateway::files(tmp.path());
    let profile = "# {\"application_metadata_enabled\": true, \"metadata\": {\"hostname\": \"h\"}}\n0;web;app;main;run 7\n1;;app;main 2\n";
    let body = serde_json::json!({
        "start_time": "2023-12-03T16:30:00.000000",
        "end_time": "2023-12-03T16:30:10.000000",
        "hostname": "db-1",
        "profile": profile,
        "cpu_avg": 1.5, "mem_avg": 20.0, "spawn_time": "2023-12-03T16:00:00", "gpid": "",
    });
    let upload = |body: &serde_json::Value| {
        client()
            .post(format!(
                "{}/api/v2/profiles?service=q&hostname=x&version=1.50.0",
                gw.url
            ))
            .header("GPROFILER-SERVICE-NAME", "checkout")
            .header("Content-Encoding", "gzip")
            .header("Content-Type", "application/json")
            .body(gzip(body.to_string().as_bytes()))
            .send()
    };
    let r = upload(&body).await.unwrap();
    assert_eq!(r.status(), 200);
    let answer = json_of(r).await;
    assert_eq!(answer["message"], "ok");
    let gpid = answer["gpid"].as_u64().expect("a numeric gpid");
    assert_eq!(
        folded(tmp.path(), UNTIL, "db-1"),
        "app;main 2\napp;main;run 7\n"
    );

    // The agent sends its gpid back next time; it is kept.
    let mut again = body.clone();
    again["gpid"] = gpid.into();
    let r = upload(&again).await.unwrap();
    assert_eq!(json_of(r).await["gpid"], gpid);
    // gProfiler's start-up check.
    let r = client()
        .get(format!("{}/api/v1/health_check", gw.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(gw.stop().await.is_clean());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hosts_with_the_same_window_are_kept_apart() {
    let tmp = tempfile::tempdir().unwrap();
    let gw = Gateway::files(tmp.path());
    for (host, body) in [("a", "a;x 1\n"), ("b", "b;y 2\n")] {
        let q = format!("name=app%7Bhost%3D{host}%7D&from={FROM}&until={UNTIL}");
        assert_eq!(ingest(&gw.url, &q, body).await.status(), 200);
    }
    assert_eq!(folded(tmp.path(), UNTIL, "a"), "a;x 1\n");
    assert_eq!(folded(tmp.path(), UNTIL, "b"), "b;y 2\n");
    // A push naming no host is the peer's.
    let q = format!("name=app&from={FROM}&until={UNTIL}");
    assert_eq!(ingest(&gw.url, &q, "c 3\n").await.status(), 200);
    assert_eq!(folded(tmp.path(), UNTIL, "127.0.0.1"), "c 3\n");
    assert!(gw.stop().await.is_clean());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_have_their_status_and_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let token = tmp.path().join("token");
    std::fs::write(&token, "s3cret\n").unwrap();
    let out = tmp.path().join("out");
    let gw = Gateway::start(
        HttpServerConfig {
            auth: Some(AuthConfig {
                token: profpipe::secret::Secret::File(token),
            }),
            max_body_size: ByteSize(1024),
            max_decompressed_size: ByteSize(4096),
            ..HttpServerConfig::default()
        },
        Box::new(folded_sink(&out)),
    );
    let c = client();
    let url = &gw.url;
    let push = |query: &str, body: Vec<u8>| {
        c.post(format!("{url}/ingest?{query}"))
            .bearer_auth("s3cret")
            .body(body)
    };
    let q = format!("name=app&from={FROM}&until={UNTIL}");

    // 401: no token, a wrong one.
    let r = c
        .post(format!("{url}/ingest?{q}"))
        .body("a 1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = c
        .post(format!("{url}/ingest?{q}"))
        .bearer_auth("nope")
        .body("a 1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // 400 with the reason.
    let r = push(&q, b"a;b 1\na;b many\n".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let msg = error_message(r).await;
    assert!(msg.starts_with("line 2: sample count is not"), "{msg}");
    let r = push("name=my.service", b"a 1".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(error_message(r).await.contains("unknown profile type"));

    // 413: over max_body_size, and a gzip bomb over max_decompressed_size.
    let r = push(&q, vec![b'a'; 2048]).send().await.unwrap();
    assert_eq!(r.status(), 413);
    let bomb = gzip(&vec![b'\n'; 64 * 1024]);
    assert!(bomb.len() < 1024, "the bomb is small: {}", bomb.len());
    let r = push(&q, bomb)
        .header("Content-Encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert!(error_message(r).await.contains("max_decompressed_size"));

    // 404 and 405.
    let r = c.post(format!("{url}/nowhere")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let r = c.get(format!("{url}/ingest")).send().await.unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "POST");

    // 415: a format we do not read.
    let r = push(&format!("{q}&format=pprof"), b"x".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);

    // Nothing refused reached the sink; a good push still does.
    let r = push(&q, b"ok 1\n".to_vec()).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let written: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("profile_"))
        .collect();
    assert_eq!(written.len(), 1);
    let source = gw.telemetry.component("gateway", "source", "http_server");
    assert_eq!(source.error_count("unauthorized"), 2);
    assert_eq!(source.error_count("too_large"), 2);
    assert!(gw.stop().await.is_clean());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_sink_gets_503_with_retry_after_and_excess_requests_too() {
    let (open, gate) = tokio::sync::watch::channel(false);
    let stalled = Collect::gated(gate);
    let gw = Gateway::start(
        HttpServerConfig {
            ack_timeout: DurationStr(Duration::from_millis(300)),
            retry_after: DurationStr::from_secs(7),
            ..HttpServerConfig::default()
        },
        Box::new(stalled.clone()),
    );
    let q = format!("name=app&from={FROM}&until={UNTIL}");
    let r = ingest(&gw.url, &q, "a 1\n").await;
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "7");
    assert!(error_message(r).await.contains("ack_timeout"));
    let source = gw.telemetry.component("gateway", "source", "http_server");
    assert_eq!(source.error_count("ack_timeout"), 1);

    // Once the sink moves, what was pushed is there (at-least-once) and pushes are
    // answered 200 again.
    open.send(true).unwrap();
    stalled
        .wait_until("the first push", Duration::from_secs(30), |evs| {
            evs.iter()
                .any(|e| matches!(e, profpipe::event::Event::Profile(_)))
        })
        .await;
    assert_eq!(ingest(&gw.url, &q, "b 1\n").await.status(), 200);
    assert!(gw.stop().await.is_clean());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_over_max_concurrent_requests_get_503_at_once() {
    let (open, gate) = tokio::sync::watch::channel(false);
    let gw = Gateway::start(
        HttpServerConfig {
            max_concurrent_requests: 1,
            ack_timeout: DurationStr::from_secs(60),
            ..HttpServerConfig::default()
        },
        Box::new(Collect::gated(gate)),
    );
    let q = format!("name=app&from={FROM}&until={UNTIL}");
    let url = gw.url.clone();
    let q1 = q.clone();
    let first = tokio::spawn(async move { ingest(&url, &q1, "a 1\n").await.status() });
    // The first request holds the only slot once its event is sent.
    let source = gw.telemetry.component("gateway", "source", "http_server");
    common::wait::until_async("the first push is sent", Duration::from_secs(30), || {
        source.sent_events() == 1
    })
    .await;
    let r = ingest(&gw.url, &q, "b 1\n").await;
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    assert!(error_message(r).await.contains("requests at once"));
    open.send(true).unwrap();
    assert_eq!(first.await.unwrap(), 200);
    assert!(gw.stop().await.is_clean());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_refuses_new_connections_and_lets_requests_in_flight_finish() {
    let (open, gate) = tokio::sync::watch::channel(false);
    let gw = Gateway::start(
        HttpServerConfig {
            ack_timeout: DurationStr::from_secs(60),
            ..HttpServerConfig::default()
        },
        Box::new(Collect::gated(gate)),
    );
    let q = format!("name=app&from={FROM}&until={UNTIL}");
    let url = gw.url.clone();
    let in_flight = tokio::spawn(async move { ingest(&url, &q, "a 1\n").await.status() });
    let source = gw.telemetry.component("gateway", "source", "http_server");
    common::wait::until_async("the push is sent", Duration::from_secs(30), || {
        source.sent_events() == 1
    })
    .await;
    let address = gw.url.trim_start_matches("http://").to_string();
    let mut gw = gw;
    let _ = gw.stop.take().unwrap().send(());
    // The listener closes at once...
    let mut refused = false;
    for _ in 0..1500 {
        if tokio::net::TcpStream::connect(&address).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(refused, "still accepting connections after shutdown");
    // ...and the request in flight is answered once its data is delivered.
    open.send(true).unwrap();
    assert_eq!(in_flight.await.unwrap(), 200);
    let outcome = tokio::time::timeout(Duration::from_secs(60), gw.done)
        .await
        .unwrap()
        .unwrap();
    assert!(outcome.is_clean(), "{outcome:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_a_sink_refuses_for_good_is_answered_422() {
    // A stalled sink behind a `drop_newest` buffer that one push fills: the next push
    // is dropped by policy, its tokens resolved Rejected.
    let (open, gate) = tokio::sync::watch::channel(false);
    let gw = Gateway::start_with_buffer(
        HttpServerConfig {
            ack_timeout: DurationStr::from_secs(60),
            ..HttpServerConfig::default()
        },
        Box::new(Collect::gated(gate)),
        BufferConfig {
            max_bytes: ByteSize(64),
            when_full: WhenFull::DropNewest,
            ..Default::default()
        },
    );
    let q = format!("name=app&from={FROM}&until={UNTIL}");
    let url = gw.url.clone();
    let q1 = q.clone();
    let first = tokio::spawn(async move { ingest(&url, &q1, "a 1\n").await.status() });
    let sink = gw.telemetry.component("out", "sink", "file");
    common::wait::until_async(
        "the first push is buffered",
        Duration::from_secs(30),
        || sink.received_events() == 1,
    )
    .await;
    let r = ingest(&gw.url, &q, "b 1\n").await;
    assert_eq!(r.status(), 422);
    assert!(error_message(r).await.contains("refused the data for good"));
    open.send(true).unwrap();
    assert_eq!(first.await.unwrap(), 200);
    assert!(gw.stop().await.is_clean());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_body_over_the_limit_is_cut_off_with_413() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let tmp = tempfile::tempdir().unwrap();
    let gw = Gateway::start(
        HttpServerConfig {
            max_body_size: ByteSize(1024),
            ..HttpServerConfig::default()
        },
        Box::new(folded_sink(tmp.path())),
    );
    // No Content-Length: the limit is found while streaming.
    let address = gw.url.trim_start_matches("http://").to_string();
    let mut s = tokio::net::TcpStream::connect(&address).await.unwrap();
    let head = format!(
        "POST /ingest?name=app&from={FROM}&until={UNTIL} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let chunk = format!("400\r\n{}\r\n", "a".repeat(0x400));
    for _ in 0..2 {
        if s.write_all(chunk.as_bytes()).await.is_err() {
            break; // the server may stop reading once it has answered
        }
    }
    let _ = s.write_all(b"0\r\n\r\n").await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("max_body_size"), "{answer}");
    assert!(gw.stop().await.is_clean());
}
