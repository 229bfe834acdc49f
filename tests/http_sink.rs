//! The `http` sink against a strict receiver ([`common::receiver`]): real HTTP (and
//! TLS) on 127.0.0.1, real pipelines, the `profpipe` binary for start-up checks.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::receiver::{Personality, Receiver};
use common::run::{self, profpipe};
use common::wait::until_async;
use profpipe::buffer::{edge, BufferConfig, EdgeSender, MemoryBudget};
use profpipe::component::{ComponentError, SinkConfig, SinkContext};
use profpipe::event::{Event, LabelSet, Labels, Profile, Stack, Watermark, Window};
use profpipe::sinks::http::HttpSinkConfig;
use profpipe::telemetry::{ComponentMetrics, Telemetry};

/// What `profpipe fold` prints for `file`, as sorted `(stack, count)`.
fn fold_cli(file: &Path) -> Vec<(String, u64)> {
    let out = profpipe().arg("fold").arg(file).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut v: Vec<(String, u64)> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let (s, c) = l.rsplit_once(' ').unwrap();
            (s.to_string(), c.parse().unwrap())
        })
        .collect();
    v.sort();
    v
}

fn sorted(mut v: Vec<(String, u64)>) -> Vec<(String, u64)> {
    v.sort();
    v
}

/// A perf-capture pipeline: `files` → fold (periods, as `profpipe fold` counts) →
/// the http sink configured by `sink` (TOML lines).
fn perf_pipeline(dir: &Path, sink: &str) -> String {
    format!(
        r#"
[agent]
state_dir = {state:?}

[sources.capture]
type = "file"
paths = [{glob:?}]
format = "perf_script"

[transforms.fold]
type = "fold"
inputs = ["capture"]
count = "period"

[sinks.out]
type = "http"
inputs = ["fold"]
{sink}
"#,
        state = dir.join("state"),
        glob = dir.join("*.perf"),
    )
}

async fn run_pipeline(text: &str, telemetry: &Telemetry) {
    let config =
        profpipe::config::load_str("test.toml".as_ref(), text, &profpipe::registry::registry())
            .unwrap_or_else(|e| panic!("{e}"));
    let running = run::start(&config, telemetry);
    run::to_end(running).await;
}

fn sink_metrics(t: &Telemetry) -> ComponentMetrics {
    t.component("out", "sink", "http")
}

/// Each window's stacks, as `profpipe fold` prints them, arrive once.
async fn round_trip(
    personality: Personality,
    credential: Option<&str>,
    sink: impl Fn(&str) -> String,
) -> Arc<Receiver> {
    let dir = tempfile::tempdir().unwrap();
    let files = common::split_capture(dir.path(), 4);
    let r = Receiver::start(personality, credential).await;
    let t = Telemetry::new();
    run_pipeline(&perf_pipeline(dir.path(), &sink(&r.url())), &t).await;
    let mut expected: Vec<Vec<(String, u64)>> = files.iter().map(|f| fold_cli(f)).collect();
    expected.sort();
    let mut got: Vec<Vec<(String, u64)>> =
        r.accepted().into_iter().map(|a| sorted(a.stacks)).collect();
    got.sort();
    assert_eq!(got.len(), 4, "one request per window");
    assert_eq!(got, expected);
    let m = sink_metrics(&t);
    assert_eq!(m.sent_events(), m.received_events());
    assert_eq!(m.discarded_events(), 0);
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pyroscope_receives_every_window_as_profpipe_fold_folds_it() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "tok-123\n").unwrap();
    let token = token.display().to_string();
    let r = round_trip(Personality::Pyroscope, Some("Bearer tok-123"), |url| {
        format!(
            "target = \"pyroscope\"\nendpoint = {url:?}\napp_name = \"shop\"\nsample_rate = 199\nauth = {{ strategy = \"bearer\", token = {{ file = {token:?} }} }}"
        )
    })
    .await;
    for a in r.accepted() {
        assert!(
            a.query["name"].starts_with("shop.cpu{"),
            "{}",
            a.query["name"]
        );
        assert!(a.query["name"].contains("hostname=test-host"));
        assert_eq!(a.query["sampleRate"], "199");
        assert!(a.query["until"] > a.query["from"]);
        assert!(!a.scanner_stopped);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn performance_studio_receives_every_window_and_keeps_one_gpid() {
    std::env::set_var("PROFPIPE_TEST_PS_KEY", "ps-key");
    let r = round_trip(Personality::Studio, Some("ps-key"), |url| {
        format!(
            "target = \"gprofiler\"\nendpoint = {url:?}\nservice_name = \"shop\"\napi_key = {{ env = \"PROFPIPE_TEST_PS_KEY\" }}\nrequest = {{ concurrency = 1 }}"
        )
    })
    .await;
    let accepted = r.accepted();
    // One request at a time: the first asks for a gpid, the rest send it back.
    assert_eq!(accepted[0].gpid, serde_json::json!(""));
    for a in &accepted[1..] {
        assert_eq!(a.gpid, serde_json::json!(1000));
    }
    for a in &accepted {
        assert_eq!(a.headers["gprofiler-service-name"], "shop");
        assert_eq!(a.headers["content-encoding"], "gzip");
        assert!(a.headers.contains_key("content-length"));
        assert_eq!(a.header["hostname"], "test-host");
        assert_eq!(a.query["service"], "shop");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generic_collapsed_gzip_arrives_whole() {
    std::env::set_var("PROFPIPE_TEST_BASIC_PW", "pw");
    let r = round_trip(Personality::Generic, Some("Basic dTpwdw=="), |url| {
        format!(
            "target = \"generic\"\nendpoint = \"{url}/profiles\"\nencoding = \"collapsed\"\ncompression = \"gzip\"\nhealthcheck_url = \"{url}/health\"\nauth = {{ strategy = \"basic\", user = \"u\", password = {{ env = \"PROFPIPE_TEST_BASIC_PW\" }} }}"
        )
    })
    .await;
    for a in r.accepted() {
        assert_eq!(a.path, "/profiles");
        assert_eq!(a.headers["x-profpipe-part"], "0/1");
        assert!(a.header["metadata"]["hostname"] == "test-host");
    }
}

/// A sink fed by hand: profiles of source `src` on host `h`.
struct Harness {
    tx: EdgeSender,
    task: tokio::task::JoinHandle<Result<(), ComponentError>>,
    metrics: ComponentMetrics,
}

impl Harness {
    fn start(toml_text: &str) -> Harness {
        let config: HttpSinkConfig = toml::from_str(toml_text).unwrap();
        assert!(config.validate().is_empty(), "{:?}", config.validate());
        let t = Telemetry::new();
        let cx = common::context::standalone("out", "sink", "http", &t, None, &["src"]);
        let metrics = cx.metrics.clone();
        let (tx, input) = edge(
            BufferConfig::default(),
            MemoryBudget::new(1 << 30),
            metrics.clone(),
        );
        let task = tokio::spawn(config.build(SinkContext { cx, input }).unwrap());
        Harness { tx, task, metrics }
    }

    /// One window ending now + `i` ms, holding `stacks`, closed by its watermark.
    async fn window(&self, i: u64, stacks: Vec<Stack>) {
        self.window_ending(profpipe::window_clock::now_ms() + i, stacks)
            .await
    }

    async fn window_ending(&self, end: u64, stacks: Vec<Stack>) {
        let profile = Profile {
            finalizers: Default::default(),
            window: Window::new(end - 1000, end),
            labels: Labels {
                host: "h".into(),
                source: "src".into(),
                profiler: "perf".into(),
                extra: LabelSet::default().with("service", "shop").unwrap(),
            },
            stacks: stacks.into(),
        };
        self.tx.send(Event::Profile(profile)).await.unwrap();
        let w = Watermark {
            source: "src".into(),
            complete_until_ms: end,
        };
        self.tx.send(Event::Watermark(w)).await.unwrap();
    }

    async fn finish(self) -> ComponentMetrics {
        drop(self.tx);
        tokio::time::timeout(Duration::from_secs(60), self.task)
            .await
            .expect("the sink did not stop")
            .unwrap()
            .unwrap();
        self.metrics
    }
}

fn stacks(n: usize, prefix: &str) -> Vec<Stack> {
    (0..n)
        .map(|i| Stack::new(format!("comm;{prefix}_{i:06}"), i as u64 % 7 + 1))
        .collect()
}

fn fast_retries() -> &'static str {
    "request = { concurrency = 1, retry_initial_backoff = \"100ms\", retry_max_backoff = \"1s\" }"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gpid_survives_failed_uploads() {
    std::env::set_var("PROFPIPE_TEST_PS_KEY2", "k2");
    let r = Receiver::start(Personality::Studio, Some("k2")).await;
    let h = Harness::start(&format!(
        "target = \"gprofiler\"\nendpoint = {:?}\napi_key = {{ env = \"PROFPIPE_TEST_PS_KEY2\" }}\n{}",
        r.url(),
        fast_retries()
    ));
    h.window(0, stacks(10, "a")).await;
    until_async("first upload", Duration::from_secs(30), || {
        r.accepted().len() == 1
    })
    .await;
    r.fail_next(2, 500);
    h.window(1, stacks(10, "b")).await;
    let m = h.finish().await;
    let accepted = r.accepted();
    assert_eq!(r.answered(500), 2);
    assert_eq!(accepted.len(), 2);
    assert_eq!(accepted[0].gpid, serde_json::json!(""));
    assert_eq!(
        accepted[1].gpid,
        serde_json::json!(1000),
        "gProfiler would send \"\" again"
    );
    assert_eq!(m.retried_count("http_500"), 2);
    // The service name defaults to the `service` label.
    assert_eq!(accepted[1].headers["gprofiler-service-name"], "shop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pyroscope_windows_over_16000_stacks_are_split() {
    let r = Receiver::start(Personality::Pyroscope, None).await;
    let h = Harness::start(&format!("target = \"pyroscope\"\nendpoint = {:?}", r.url()));
    let all = stacks(40_000, "f");
    let total: u64 = all.iter().map(|s| s.count).sum();
    h.window(0, all).await;
    let m = h.finish().await;
    let accepted = r.accepted();
    assert_eq!(r.answered(400), 0);
    let sizes: Vec<usize> = accepted.iter().map(|a| a.stacks.len()).collect();
    assert_eq!(sizes.iter().sum::<usize>(), 40_000);
    assert!(sizes.iter().all(|n| *n <= 16_000), "{sizes:?}");
    assert_eq!(accepted.len(), 3);
    let got: u64 = accepted
        .iter()
        .flat_map(|a| a.stacks.iter().map(|s| s.1))
        .sum();
    assert_eq!(got, total);
    assert_eq!(m.sent_events(), 1, "the window's event is counted once");
    assert!(
        accepted.iter().all(|a| a.query == accepted[0].query),
        "one name and time"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stack_over_64k_is_cut_at_the_leaf_not_lost() {
    let r = Receiver::start(Personality::Pyroscope, None).await;
    let h = Harness::start(&format!("target = \"pyroscope\"\nendpoint = {:?}", r.url()));
    let deep: Vec<String> = (0..8000).map(|i| format!("fn_{i:05}")).collect();
    let long = Stack::new(format!("comm;{}", deep.join(";")), 5);
    // Sorted after the long one, so a server that stopped reading would lose it.
    let after = Stack::new("comm;zz_after", 2);
    h.window(0, vec![long, after]).await;
    let m = h.finish().await;
    let a = &r.accepted()[0];
    assert!(!a.scanner_stopped, "the server would have stopped reading");
    assert_eq!(a.stacks.len(), 2);
    let (cut, count) = &a.stacks[0];
    assert_eq!(*count, 5);
    assert!(
        cut.starts_with("comm;fn_00000;fn_00001;"),
        "the root end is kept"
    );
    assert!(cut.len() < 64 * 1024);
    let marker = cut.rsplit(';').next().unwrap();
    assert!(
        marker.starts_with("[truncated ") && marker.ends_with(" frames]"),
        "{marker}"
    );
    assert_eq!(a.stacks[1], ("comm;zz_after".to_string(), 2));
    assert_eq!(m.dropped_stack_count("truncated"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_4xx_is_not_retried_and_is_counted() {
    let r = Receiver::start(Personality::Generic, None).await;
    let h = Harness::start(&format!(
        "target = \"generic\"\nendpoint = {:?}\n{}",
        r.url(),
        fast_retries()
    ));
    r.fail_next(1, 422);
    h.window(0, stacks(5, "a")).await;
    h.window(1, stacks(5, "b")).await;
    let m = h.finish().await;
    assert_eq!(r.answered(422), 1);
    assert_eq!(r.accepted().len(), 1, "the second window is delivered");
    assert_eq!(m.rejected_count("http_422"), 1);
    assert_eq!(m.retried_count("http_422"), 0);
    assert_eq!(m.sent_events(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_on_429_is_honoured_then_delivered() {
    let r = Receiver::start(Personality::Pyroscope, None).await;
    let h = Harness::start(&format!(
        "target = \"pyroscope\"\nendpoint = {:?}\n{}",
        r.url(),
        fast_retries()
    ));
    r.fail_for(Duration::from_secs(2), 429, Some(1));
    let started = std::time::Instant::now();
    h.window(0, stacks(5, "a")).await;
    let m = h.finish().await;
    assert_eq!(r.accepted().len(), 1);
    assert!(r.answered(429) >= 1);
    assert_eq!(m.retried_count("http_429"), r.answered(429));
    // Each retry waited the 1 s asked, so at most two fit in the 2 s outage.
    assert!(
        r.answered(429) <= 3,
        "{} retries: Retry-After ignored",
        r.answered(429)
    );
    assert!(started.elapsed() >= Duration::from_secs(2));
}

/// `n` collapsed files, each one event of 2,000 distinct stacks (one window each).
fn collapsed_files(dir: &Path, n: usize) -> Vec<Vec<(String, u64)>> {
    (0..n)
        .map(|f| {
            let lines: Vec<(String, u64)> = (0..2000)
                .map(|i| {
                    (
                        format!("comm;file_{f:02};frame_{i:05}_padding_to_make_it_longer"),
                        (i % 5 + 1) as u64,
                    )
                })
                .collect();
            let text: String = lines.iter().map(|(s, c)| format!("{s} {c}\n")).collect();
            std::fs::write(dir.join(format!("w-{f:02}.folded")), text).unwrap();
            sorted(lines)
        })
        .collect()
}

fn outage_pipeline(dir: &Path, url: &str, when_full: &str) -> String {
    format!(
        r#"
[agent]
state_dir = {state:?}
shutdown_timeout = "60s"

[sources.capture]
type = "file"
paths = [{glob:?}]
format = "collapsed"

[sinks.out]
type = "http"
inputs = ["capture"]
target = "generic"
endpoint = "{url}/ingest"
encoding = "collapsed"
buffer = {{ max_bytes = "256KiB", when_full = "{when_full}" }}
request = {{ concurrency = 1, retry_initial_backoff = "200ms", retry_max_backoff = "2s" }}
"#,
        state = dir.join("state"),
        glob = dir.join("*.folded"),
    )
}

const WINDOWS: usize = 20;
const OUTAGE: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_30s_outage_with_block_loses_nothing_and_throttles_the_source() {
    let dir = tempfile::tempdir().unwrap();
    let expected = collapsed_files(dir.path(), WINDOWS);
    let r = Receiver::start(Personality::Generic, None).await;
    r.fail_for(OUTAGE, 503, Some(1));
    let t = Telemetry::new();
    let text = outage_pipeline(dir.path(), &r.url(), "block");
    let run = tokio::spawn({
        let t = t.clone();
        async move { run_pipeline(&text, &t).await }
    });
    let sink = sink_metrics(&t);
    let source = t.component("capture", "source", "file");
    until_async("the sink's buffer fills", Duration::from_secs(20), || {
        sink.buffer_peak_bytes() >= sink.buffer_max_bytes() / 2
    })
    .await;
    assert!(!r.outage_over(), "the outage is still on");
    assert!(
        source.sent_events() < WINDOWS as u64,
        "the source was not held back: {} of {WINDOWS} sent while nothing could be delivered",
        source.sent_events()
    );
    assert!(r.accepted().is_empty());
    tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .unwrap()
        .unwrap();
    assert!(r.answered(503) > 0);
    let mut got: Vec<Vec<(String, u64)>> =
        r.accepted().into_iter().map(|a| sorted(a.stacks)).collect();
    got.sort();
    assert_eq!(got, expected, "every window once, whole");
    assert_eq!(sink.discarded_events(), 0);
    assert_eq!(sink.sent_events(), WINDOWS as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_30s_outage_with_drop_newest_accounts_for_every_window() {
    let dir = tempfile::tempdir().unwrap();
    let expected = collapsed_files(dir.path(), WINDOWS);
    let r = Receiver::start(Personality::Generic, None).await;
    r.fail_for(OUTAGE, 503, Some(1));
    let t = Telemetry::new();
    run_pipeline(&outage_pipeline(dir.path(), &r.url(), "drop_newest"), &t).await;
    let sink = sink_metrics(&t);
    let accepted = r.accepted();
    assert!(
        sink.discarded_events() > 0,
        "nothing was dropped: the test proves nothing"
    );
    assert_eq!(sink.received_events(), WINDOWS as u64);
    assert_eq!(accepted.len() as u64, sink.sent_events());
    assert_eq!(
        sink.received_events(),
        sink.sent_events() + sink.discarded_events()
    );
    // What arrived is whole windows, each once.
    let mut seen = std::collections::HashSet::new();
    for a in accepted {
        let s = sorted(a.stacks);
        assert!(expected.contains(&s), "a window arrived altered");
        assert!(seen.insert(s), "a window arrived twice");
    }
}

/// Runs `profpipe run` on `text` (blocking, off the runtime) and returns its exit
/// code and stderr.
async fn run_binary(dir: &Path, text: &str) -> (Option<i32>, String) {
    let path = run::write_config(dir, "agent.toml", text);
    tokio::task::spawn_blocking(move || {
        let out = profpipe()
            .args(["--log", "warn", "run", "--config"])
            .arg(&path)
            .env("PROFPIPE_TEST_BAD_KEY", "wrong")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_credential_stops_the_agent_at_start() {
    let dir = tempfile::tempdir().unwrap();
    common::split_capture(dir.path(), 1);
    let studio = Receiver::start(Personality::Studio, Some("right")).await;
    let text = perf_pipeline(
        dir.path(),
        &format!("target = \"gprofiler\"\nendpoint = {:?}\napi_key = {{ env = \"PROFPIPE_TEST_BAD_KEY\" }}", studio.url()),
    );
    let (code, stderr) = run_binary(dir.path(), &text).await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("healthcheck failed") && stderr.contains("400"),
        "{stderr}"
    );
    assert!(!stderr.contains("wrong"), "the secret was logged: {stderr}");
    assert!(studio.accepted().is_empty());

    let pyro = Receiver::start(Personality::Pyroscope, Some("Bearer right")).await;
    let text = perf_pipeline(
        dir.path(),
        &format!("target = \"pyroscope\"\nendpoint = {:?}\nauth = {{ strategy = \"bearer\", token = \"${{PROFPIPE_TEST_BAD_KEY}}\" }}", pyro.url()),
    );
    let (code, stderr) = run_binary(dir.path(), &text).await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("refused our credentials"), "{stderr}");
    assert!(!stderr.contains("wrong"), "the secret was logged: {stderr}");
    assert_eq!(pyro.answered(401), 1, "one check, no retry loop");
}

/// A CA, and a certificate for `localhost` and 127.0.0.1 signed by it.
fn test_ca() -> (String, tokio_rustls::TlsAcceptor) {
    use tokio_rustls::rustls;
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let params =
        rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    let der = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], der)
        .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    (
        ca_cert.pem(),
        tokio_rustls::TlsAcceptor::from(Arc::new(config)),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_custom_ca() {
    let dir = tempfile::tempdir().unwrap();
    let (ca_pem, acceptor) = test_ca();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, ca_pem).unwrap();
    let r = Receiver::start_with(Personality::Generic, None, Some(acceptor)).await;
    let url = format!("https://localhost:{}", r.addr.port());
    let base = format!(
        "target = \"generic\"\nendpoint = \"{url}/in\"\nhealthcheck_url = \"{url}/health\"\n"
    );

    // Without the CA the server is not trusted: the healthcheck says so.
    let untrusted: HttpSinkConfig = toml::from_str(&base).unwrap();
    let e = untrusted.healthcheck().unwrap().await.unwrap_err();
    assert!(e.message.starts_with("connect"), "{e}");

    let trusted = format!(
        "{base}tls = {{ ca_file = {:?} }}\n{}",
        ca.display().to_string(),
        fast_retries()
    );
    let config: HttpSinkConfig = toml::from_str(&trusted).unwrap();
    config.healthcheck().unwrap().await.unwrap();
    let h = Harness::start(&trusted);
    h.window(0, stacks(3, "tls")).await;
    let m = h.finish().await;
    assert_eq!(m.sent_events(), 1);
    let got = &r.accepted()[0];
    assert_eq!(got.stacks.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_older_than_the_ingestion_window_is_dropped_and_counted() {
    let r = Receiver::start(Personality::Pyroscope, None).await;
    let h = Harness::start(&format!(
        "target = \"pyroscope\"\nendpoint = {:?}\ningestion_window = \"1h\"",
        r.url()
    ));
    let two_hours_ago = profpipe::window_clock::now_ms() - 2 * 3600 * 1000;
    h.window_ending(two_hours_ago, stacks(3, "old")).await;
    h.window(0, stacks(3, "new")).await;
    let m = h.finish().await;
    assert_eq!(r.answered(400), 0, "the old window was not sent");
    assert_eq!(r.accepted().len(), 1);
    assert!(r.accepted()[0].stacks[0].0.contains("new_"));
    assert_eq!(m.discarded_count("too_old"), 1);
    assert_eq!(m.sent_events(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gprofiler_uploads_are_split_under_the_compressed_limit() {
    std::env::set_var("PROFPIPE_TEST_PS_KEY3", "k3");
    let r = Receiver::start(Personality::Studio, Some("k3")).await;
    let limit = 256 * 1024;
    let h = Harness::start(&format!(
        "target = \"gprofiler\"\nendpoint = {:?}\napi_key = {{ env = \"PROFPIPE_TEST_PS_KEY3\" }}\nmax_request_bytes = \"256KiB\"\n{}",
        r.url(),
        fast_retries()
    ));
    // Random frames, so gzip cannot shrink the window under the limit.
    let mut rng = fastrand::Rng::with_seed(9);
    let all: Vec<Stack> = (0..30_000)
        .map(|i| {
            let f: String = (0..40).map(|_| rng.alphanumeric()).collect();
            Stack::new(format!("comm;{i:06}_{f}"), 1)
        })
        .collect();
    h.window(0, all.clone()).await;
    let m = h.finish().await;
    let accepted = r.accepted();
    assert!(accepted.len() > 1, "not split");
    assert!(accepted.iter().all(|a| a.wire_bytes <= limit));
    let mut got: Vec<(String, u64)> = accepted.into_iter().flat_map(|a| a.stacks).collect();
    got.sort();
    let want = sorted(
        all.into_iter()
            .map(|s| (s.frames.to_string(), s.count))
            .collect(),
    );
    assert_eq!(got, want);
    assert_eq!(m.sent_events(), 1);
    assert_eq!(r.answered(413), 0);
}

/// Sends raw HTTP/1.1 `head` (and `body`) and returns the answer's status.
async fn raw_status(addr: std::net::SocketAddr, head: &str, body: &[u8]) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    let mut buf = vec![0u8; 256];
    let n = s.read(&mut buf).await.unwrap();
    let line = String::from_utf8_lossy(&buf[..n]).to_string();
    line.split(' ').nth(1).unwrap().parse().unwrap()
}

/// The receiver refuses what the real servers refuse, so the tests above prove
/// the sink avoids it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_receiver_is_as_strict_as_the_servers() {
    let studio = Receiver::start(Personality::Studio, Some("key")).await;
    let ok_headers =
        "GPROFILER-API-KEY: key\r\nGPROFILER-SERVICE-NAME: s\r\nContent-Encoding: gzip\r\n";
    let chunked = format!("POST /api/v2/profiles HTTP/1.1\r\nHost: x\r\n{ok_headers}Transfer-Encoding: chunked\r\n\r\n");
    assert_eq!(raw_status(studio.addr, &chunked, b"0\r\n\r\n").await, 411);
    let big = format!(
        "POST /api/v2/profiles HTTP/1.1\r\nHost: x\r\n{ok_headers}Content-Length: {}\r\n\r\n",
        5 << 20
    );
    assert_eq!(raw_status(studio.addr, &big, b"").await, 413);
    let post = |doc: serde_json::Value, key: &'static str| {
        let body = profpipe::sinks::encoding::gzip(doc.to_string().as_bytes());
        let head = format!(
            "POST /api/v2/profiles HTTP/1.1\r\nHost: x\r\nGPROFILER-API-KEY: {key}\r\nGPROFILER-SERVICE-NAME: s\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        (head, body)
    };
    let good = serde_json::json!({"start_time": "t", "profile": "# {}\n0;;a;b 1\n", "gpid": ""});
    let (h, b) = post(good.clone(), "key");
    assert_eq!(raw_status(studio.addr, &h, &b).await, 200);
    let (h, b) = post(good.clone(), "bad");
    assert_eq!(
        raw_status(studio.addr, &h, &b).await,
        400,
        "a bad key is 400, not 401"
    );
    let (h, b) = post(
        serde_json::json!({"start_time": "t", "profile": "# {}\n"}),
        "key",
    );
    assert_eq!(raw_status(studio.addr, &h, &b).await, 422, "a missing gpid");
    let (h, b) = post(
        serde_json::json!({"start_time": "t", "profile": "a;b 1\n", "gpid": ""}),
        "key",
    );
    assert_eq!(
        raw_status(studio.addr, &h, &b).await,
        400,
        "no metadata line"
    );

    let pyro = Receiver::start(Personality::Pyroscope, None).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let ingest = |name: &str, from: u64, body: &'static str| {
        (
            format!(
                "POST /ingest?name={name}&from={from}&until={} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
                from + 10,
                body.len()
            ),
            body,
        )
    };
    let (h, b) = ingest("app.cpu%7Benv%3Dprod%7D", now, "a;b 1\n");
    assert_eq!(raw_status(pyro.addr, &h, b.as_bytes()).await, 200);
    let (h, b) = ingest("my.service", now, "a;b 1\n");
    assert_eq!(
        raw_status(pyro.addr, &h, b.as_bytes()).await,
        400,
        "unknown profile type"
    );
    let (h, b) = ingest("app.cpu", now, "a;b x\n");
    assert_eq!(
        raw_status(pyro.addr, &h, b.as_bytes()).await,
        422,
        "bad count"
    );
    let (h, b) = ingest("app.cpu", now - 7200, "a;b 1\n");
    assert_eq!(
        raw_status(pyro.addr, &h, b.as_bytes()).await,
        400,
        "not in the ingestion window"
    );
    assert_eq!(pyro.accepted().len(), 1);
    assert_eq!(pyro.accepted()[0].query["name"], "app.cpu{env=prod}");
}

/// `target = "otlp"`: every window arrives as one `ExportProfilesServiceRequest`
/// that OpenTelemetry's own classes decode (`scripts/check-otlp.py`) to the stacks
/// `profpipe fold` prints; a 503 is retried; a partial success is delivered and
/// counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_receives_every_window_as_opentelemetry_decodes_it() {
    let dir = tempfile::tempdir().unwrap();
    let files = common::split_capture(dir.path(), 4);
    let r = Receiver::start(Personality::Otlp, None).await;
    r.fail_next(1, 503);
    r.partial_next(1, "one profile is\n  too old");
    let t = Telemetry::new();
    let sink = format!(
        "target = \"otlp\"\nendpoint = {:?}\ncompression = \"gzip\"\nrequest = {{ concurrency = 1 }}",
        r.url()
    );
    run_pipeline(&perf_pipeline(dir.path(), &sink), &t).await;

    let accepted = r.accepted();
    assert_eq!(accepted.len(), 4, "one request per window");
    let bodies: Vec<std::path::PathBuf> = accepted
        .iter()
        .enumerate()
        .map(|(i, a)| {
            assert_eq!(a.path, "/v1development/profiles");
            assert_eq!(a.headers["content-type"], "application/x-protobuf");
            assert_eq!(a.headers["content-encoding"], "gzip");
            let p = dir.path().join(format!("req{i}.otlp.pb"));
            std::fs::write(&p, &a.body).unwrap();
            p
        })
        .collect();
    let mut got: Vec<Vec<(String, u64)>> = common::otlp::check_all(&bodies)
        .into_iter()
        .map(|v| {
            let stacks = v["stacks"].as_object().unwrap();
            sorted(
                stacks
                    .iter()
                    .map(|(k, n)| (k.clone(), n.as_u64().unwrap()))
                    .collect(),
            )
        })
        .collect();
    got.sort();
    let mut expected: Vec<Vec<(String, u64)>> = files.iter().map(|f| fold_cli(f)).collect();
    expected.sort();
    assert_eq!(got, expected);

    let m = sink_metrics(&t);
    assert_eq!(r.answered(503), 1);
    assert_eq!(m.retried_count("http_503"), 1);
    assert_eq!(m.error_count("otlp_partial_success"), 1);
    assert_eq!(
        m.sent_events(),
        m.received_events(),
        "a partial success is delivered"
    );
    assert_eq!(m.discarded_events(), 0);
}

/// OTLP/HTTP: a 400 is refused for good, not retried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_refuses_a_bad_request_for_good() {
    let dir = tempfile::tempdir().unwrap();
    common::split_capture(dir.path(), 2);
    let r = Receiver::start(Personality::Otlp, None).await;
    r.fail_next(1, 400);
    let t = Telemetry::new();
    let sink = format!(
        "target = \"otlp\"\nendpoint = {:?}\nrequest = {{ concurrency = 1 }}",
        r.url()
    );
    run_pipeline(&perf_pipeline(dir.path(), &sink), &t).await;
    assert_eq!(r.answered(400), 1);
    assert_eq!(r.accepted().len(), 1, "the other window arrives");
    let m = sink_metrics(&t);
    assert_eq!(m.retried_count("http_400"), 0);
    assert!(m.rejected_count("http_400") > 0);
}
