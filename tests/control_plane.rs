//! The control plane against a heartbeat server written here (real HTTP on
//! loopback, answering as Performance Studio does) and the real agent binary, which
//! is `kill -9`ed and restarted between commands. The server sends start, stop and
//! ad-hoc commands, then garbage JSON, 500s, a reply that never ends, a 50 MB body,
//! too deep a reply, an unknown command type and a replayed command id. Checked:
//! nothing crashes, no command runs twice, completion comes after the work, every
//! failure is counted and logged once per streak, the agent is idle (no child)
//! until a command, and a stop leaves no child within 10 s.
//!
//! Commands profile with the real `perf` (root needed; skipped with a message
//! otherwise) at 49 Hz for 2 s windows, into a `file` sink.

mod common;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};

use common::{proc, wait};

const TOKEN: &str = "test-token-5f1c";
const LONG: Duration = Duration::from_secs(30);
/// An ad-hoc perf command's window. perf's event probe (about 1-2 s, more on a
/// loaded machine) comes out of the source's first window, so a 2 s window can
/// end before perf records anything and yield no profile.
const AD_HOC_SECS: u64 = 5;

fn can_profile() -> bool {
    let root = unsafe { libc::geteuid() } == 0;
    let perf = Command::new("perf")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !(root && perf) {
        eprintln!("skipping: needs root and perf (root: {root}, perf: {perf})");
    }
    root && perf
}

/// What the server answers to the next heartbeats.
#[derive(Clone, Debug)]
enum Reply {
    /// `{"success": true, "profiling_command": null, "command_id": null}`
    Idle,
    Json(Value),
    /// A new `stop` command, `stop-N`, on every heartbeat.
    NewStopEachTime,
    Garbage,
    Status(u16),
    /// Headers and one chunk, then nothing, forever.
    Endless,
    /// 50 MB, chunked (no Content-Length: the cap is found while reading).
    Huge,
    /// 10,000 nested arrays.
    Deep,
}

#[derive(Clone, Debug)]
struct Recorded {
    at: Instant,
    body: Value,
    auth: Option<String>,
    /// Completions: whether the sink had written profiles when it arrived.
    profiles_written: bool,
}

/// When an upload arrived, its headers, its decoded body.
type Upload = (Instant, std::collections::HashMap<String, String>, Value);

struct Shared {
    /// Profile uploads (`POST /api/v2/profiles`): headers and the decoded body.
    uploads: Mutex<Vec<Upload>>,
    reply: Mutex<Reply>,
    sent: std::sync::atomic::AtomicU64,
    heartbeats: Mutex<Vec<Recorded>>,
    completions: Mutex<Vec<Recorded>>,
    profiles: PathBuf,
}

/// A heartbeat server on 127.0.0.1, on its own runtime (the test body blocks).
struct Studio {
    addr: SocketAddr,
    shared: Arc<Shared>,
    _rt: tokio::runtime::Runtime,
}

impl Studio {
    fn start(profiles: &Path) -> Studio {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let shared = Arc::new(Shared {
            uploads: Mutex::default(),
            reply: Mutex::new(Reply::Idle),
            sent: Default::default(),
            heartbeats: Mutex::default(),
            completions: Mutex::default(),
            profiles: profiles.to_path_buf(),
        });
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let s = shared.clone();
        rt.spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let s = s.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let s = s.clone();
                        async move { Ok::<_, std::convert::Infallible>(answer(&s, req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), service)
                        .await;
                });
            }
        });
        Studio {
            addr,
            shared,
            _rt: rt,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn set(&self, r: Reply) {
        *self.shared.reply.lock().unwrap() = r;
    }

    fn heartbeats(&self) -> Vec<Recorded> {
        self.shared.heartbeats.lock().unwrap().clone()
    }

    fn completions(&self, id: &str) -> Vec<Recorded> {
        let all = self.shared.completions.lock().unwrap().clone();
        all.into_iter()
            .filter(|c| c.body["command_id"] == id)
            .collect()
    }

    /// Waits for `n` more heartbeats than now.
    fn wait_heartbeats(&self, n: usize) {
        let start = self.heartbeats().len();
        wait::until(&format!("{n} more heartbeats"), LONG, || {
            self.heartbeats().len() >= start + n
        });
    }

    fn wait_completion(&self, id: &str) -> Recorded {
        wait::until_some(&format!("completion of {id}"), LONG, || {
            self.completions(id).into_iter().next()
        })
    }
}

type Body = http_body_util::combinators::BoxBody<Bytes, std::convert::Infallible>;

async fn answer(s: &Shared, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_string();
    let headers: std::collections::HashMap<String, String> = req
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let auth = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let bytes = req.into_body().collect().await.unwrap().to_bytes();
    let body: Value = if path == "/api/v2/profiles" {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or(Value::Null)
    };
    let mut rec = Recorded {
        at: Instant::now(),
        body,
        auth,
        profiles_written: false,
    };
    let full = |code: u16, text: String| {
        Response::builder()
            .status(code)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(text)).boxed())
            .unwrap()
    };
    match path.as_str() {
        "/api/v1/health_check" => full(200, json!({"message": "ok"}).to_string()),
        "/api/v2/profiles" => {
            let mut text = Vec::new();
            flate2::read::GzDecoder::new(&bytes[..])
                .read_to_end(&mut text)
                .unwrap();
            let body: Value = serde_json::from_slice(&text).unwrap();
            s.uploads
                .lock()
                .unwrap()
                .push((Instant::now(), headers, body));
            full(200, json!({"message": "ok", "gpid": 7}).to_string())
        }
        "/api/metrics/command_completion" => {
            rec.profiles_written = common::walk(&s.profiles)
                .iter()
                .any(|p| p.to_string_lossy().ends_with(".col"));
            s.completions.lock().unwrap().push(rec);
            full(200, json!({"success": true, "message": "ok"}).to_string())
        }
        "/api/metrics/heartbeat" => {
            s.heartbeats.lock().unwrap().push(rec);
            let reply = s.reply.lock().unwrap().clone();
            match reply {
                Reply::Idle => full(
                    200,
                    json!({"success": true, "message": "no command",
                        "profiling_command": null, "command_id": null})
                    .to_string(),
                ),
                Reply::Json(v) => full(200, v.to_string()),
                Reply::NewStopEachTime => {
                    let n = s.sent.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let v = json!({"success": true, "message": "stop",
                        "profiling_command": {"command_type": "stop", "combined_config": {}},
                        "command_id": format!("stop-{n}")});
                    full(200, v.to_string())
                }
                Reply::Garbage => full(200, "<html>502 Bad Gateway</html>{{{".into()),
                Reply::Status(code) => full(code, "{\"detail\": \"boom\"}".into()),
                Reply::Deep => full(200, "[".repeat(10_000)),
                Reply::Endless => {
                    let first = futures_util::stream::once(async {
                        Ok::<_, std::convert::Infallible>(Frame::data(Bytes::from_static(
                            b"{\"success\": ",
                        )))
                    });
                    let stream =
                        futures_util::StreamExt::chain(first, futures_util::stream::pending());
                    Response::new(StreamBody::new(stream).boxed())
                }
                Reply::Huge => {
                    let chunk = Bytes::from(vec![b' '; 1 << 20]);
                    let stream = futures_util::stream::iter((0..50).map(move |_| {
                        Ok::<_, std::convert::Infallible>(Frame::data(chunk.clone()))
                    }));
                    Response::new(StreamBody::new(stream).boxed())
                }
            }
        }
        _ => full(404, "{}".into()),
    }
}

fn start_command(id: &str, config: Value) -> Reply {
    Reply::Json(json!({"success": true, "message": "command",
        "profiling_command": {"command_type": "start", "combined_config": config},
        "command_id": id}))
}

fn perf_only(duration: u64, continuous: bool) -> Value {
    json!({"duration": duration, "frequency": 49, "continuous": continuous,
        "pids": "", "profiling_mode": "cpu",
        "profiler_configs": {"perf": {"mode": "enabled_restricted", "events": []},
            "pyspy": "disabled", "rbspy": "disabled", "pyperf": "disabled"}})
}

/// A test's directory: config, token, state, profiles, log.
struct Setup {
    dir: tempfile::TempDir,
    metrics_port: u16,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), format!("{TOKEN}\n")).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Setup {
            dir,
            metrics_port: port,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write_config(&self, server: &str, profiles: &str) {
        self.write_config_every(server, profiles, "200ms");
    }

    fn write_config_every(&self, server: &str, profiles: &str, interval: &str) {
        self.write_config_with(server, profiles, interval, "");
    }

    /// `extra` is appended (e.g. `[control.sources.py_spy]` tables).
    fn write_config_with(&self, server: &str, profiles: &str, interval: &str, extra: &str) {
        let d = self.dir.path().display();
        let text = format!(
            r#"
[control]
server = "{server}"
token = {{ file = "{d}/token" }}
service = "checkout"
interval = "{interval}"
timeout = "1s"

[agent]
state_dir = "{d}/state"
shutdown_timeout = "5s"

[telemetry]
listen = "127.0.0.1:{port}"

[sinks.local]
type = "file"
path = "{d}/{profiles}"
formats = ["collapsed"]
{extra}
"#,
            port = self.metrics_port
        );
        std::fs::write(self.path("config.toml"), text).unwrap();
    }

    fn start(&self) -> Agent {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path("agent.log"))
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_profpipe"))
            .args(["run", "--config"])
            .arg(self.path("config.toml"))
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        Agent { child }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.path("agent.log")).unwrap_or_default()
    }

    /// Lines of the log containing every one of `parts`.
    fn log_lines(&self, parts: &[&str]) -> usize {
        self.log()
            .lines()
            .filter(|l| parts.iter().all(|p| l.contains(p)))
            .count()
    }

    /// A sample of `/metrics` (name with its labels, exactly), 0 when absent.
    fn metric(&self, sample: &str) -> f64 {
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.metrics_port)) else {
            return 0.0;
        };
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let mut text = String::new();
        let _ = s.read_to_string(&mut text);
        text.lines()
            .find_map(|l| {
                let (name, value) = l.rsplit_once(' ')?;
                (name == sample).then(|| value.parse().ok())?
            })
            .unwrap_or(0.0)
    }
}

struct Agent {
    child: Child,
}

impl Agent {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM; the exit status within `within`.
    fn term(mut self, within: Duration) -> std::process::ExitStatus {
        unsafe { libc::kill(self.pid() as i32, libc::SIGTERM) };
        wait::until_some("the agent to exit after SIGTERM", within, || {
            self.child.try_wait().unwrap()
        })
    }

    fn signal(&self, sig: i32) {
        unsafe { libc::kill(self.pid() as i32, sig) };
    }

    fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// perf processes the agent runs now.
    fn perf_children(&self) -> Vec<u32> {
        proc::children_named(self.pid(), "perf")
    }

    /// The long-running `perf record` (not the half-second trial recordings that
    /// pick the event, `-- sleep 0.5`).
    fn perf_recorder(&self) -> Option<u32> {
        self.perf_children().into_iter().find(|p| {
            let c = proc::cmdline(*p);
            c.contains("record") && !c.contains("sleep")
        })
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ids(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn commands_run_once_across_kill_9_and_hostile_replies_change_nothing() {
    if !can_profile() {
        return;
    }
    let setup = Setup::new();
    let studio = Studio::start(&setup.path("profiles"));
    setup.write_config(&studio.url(), "profiles");

    // Idle: heartbeats with the protocol's fields, and no child at all.
    let agent = setup.start();
    studio.wait_heartbeats(3);
    let hb = studio.heartbeats().last().cloned().unwrap();
    assert_eq!(hb.auth.as_deref(), Some(&*format!("Bearer {TOKEN}")));
    for field in [
        "ip_address",
        "hostname",
        "service_name",
        "status",
        "timestamp",
        "received_command_ids",
        "executed_command_ids",
        "perf_supported_events",
        "agent_version",
    ] {
        assert!(
            !hb.body[field].is_null(),
            "heartbeat lacks {field}: {}",
            hb.body
        );
    }
    assert_eq!(hb.body["service_name"], "checkout");
    assert_eq!(hb.body["status"], "active");
    assert!(ids(&hb.body["perf_supported_events"]).contains(&"cpu-clock".to_string()));
    assert!(
        proc::children_of(agent.pid()).is_empty(),
        "an idle agent runs no child"
    );
    assert!(!setup.log().contains(TOKEN), "the token is never logged");

    // An ad-hoc command: runs once, its completion comes after the work (and after
    // the sink wrote the profile).
    studio.set(start_command("adhoc-1", perf_only(AD_HOC_SECS, false)));
    let sent = Instant::now();
    wait::until("perf to start", LONG, || !agent.perf_children().is_empty());
    let done = studio.wait_completion("adhoc-1");
    assert_eq!(done.body["status"], "completed", "{}", done.body);
    assert!(
        done.at.duration_since(sent) >= Duration::from_secs(AD_HOC_SECS - 1),
        "reported before the work"
    );
    assert!(
        done.profiles_written,
        "completion before the profile was written: {}",
        setup.log()
    );
    assert_eq!(done.body["hostname"], hb.body["hostname"]);
    wait::until("perf to exit", LONG, || agent.perf_children().is_empty());

    // The server keeps sending it; after a kill -9 and a restart it still never
    // runs again, and the restarted agent says it executed it.
    studio.wait_heartbeats(3);
    agent.kill9();
    let agent = setup.start();
    studio.wait_heartbeats(5);
    assert!(
        agent.perf_children().is_empty(),
        "a replayed ad-hoc command ran again"
    );
    assert_eq!(studio.completions("adhoc-1").len(), 1);
    let hb = studio.heartbeats().last().cloned().unwrap();
    assert!(ids(&hb.body["executed_command_ids"]).contains(&"adhoc-1".to_string()));

    // A continuous command: desired state, resumed after kill -9 without a report.
    studio.set(start_command("cont-1", perf_only(2, true)));
    let first = wait::until_some("continuous perf", LONG, || {
        agent.perf_children().first().copied()
    });
    agent.kill9();
    assert!(
        proc::PidFd::open(first).map_or(true, |fd| fd.wait_exit(Duration::from_secs(5))),
        "perf outlived the killed agent"
    );
    let agent = setup.start();
    let resumed = wait::until_some("resumed perf", LONG, || {
        agent.perf_children().first().copied()
    });
    assert_ne!(resumed, first);
    studio.wait_heartbeats(3);
    assert!(
        studio.completions("cont-1").is_empty(),
        "continuous reported while running"
    );

    // An unknown command type is refused and reported failed, once.
    studio.set(Reply::Json(json!({"success": true, "message": "x",
        "profiling_command": {"command_type": "reboot", "combined_config": {}},
        "command_id": "weird-1"})));
    let weird = studio.wait_completion("weird-1");
    assert_eq!(weird.body["status"], "failed");
    assert!(weird.body["error_message"]
        .as_str()
        .unwrap()
        .contains("unknown command type"));
    assert!(
        !agent.perf_children().is_empty(),
        "an unknown command stopped profiling"
    );

    // Hostile replies: each counted by class, logged once per streak, the agent
    // carries on (the continuous pipeline keeps running).
    for (reply, class, beats) in [
        (Reply::Garbage, "bad_json", 3),
        (Reply::Status(500), "http_5xx", 3),
        (Reply::Deep, "too_deep", 3),
        (Reply::Huge, "too_large", 3),
        (Reply::Endless, "timeout", 2),
    ] {
        let sample = format!(
            "profpipe_control_request_failures_total{{request=\"heartbeat\",reason=\"{class}\"}}"
        );
        studio.set(reply);
        wait::until(&format!("{beats} failures of class {class}"), LONG, || {
            setup.metric(&sample) >= beats as f64
        });
        assert_eq!(
            setup.log_lines(&["control request failed", &format!("reason=\"{class}\"")]),
            1,
            "a streak of {class} is logged once:\n{}",
            setup.log()
        );
    }
    studio.set(Reply::Idle);
    wait::until("heartbeats to succeed again", LONG, || {
        setup.log_lines(&["the control server answers again"]) >= 1
    });
    let mut agent = agent;
    assert!(agent.alive(), "the agent died:\n{}", setup.log());
    assert!(!agent.perf_children().is_empty());

    // stop: the continuous command is reported completed, the stop too, and every
    // child is gone within 10 s.
    studio.set(Reply::Json(json!({"success": true, "message": "stop",
        "profiling_command": {"command_type": "stop", "combined_config": {}},
        "command_id": "stop-1"})));
    let stop_sent = Instant::now();
    let stopped = studio.wait_completion("stop-1");
    assert!(
        proc::children_of(agent.pid()).is_empty(),
        "children left after stop"
    );
    assert!(stopped.at.duration_since(stop_sent) < Duration::from_secs(10));
    assert_eq!(studio.completions("cont-1")[0].body["status"], "completed");
    // A report the server took but the agent had not yet recorded as sent would be
    // sent again after a kill -9 (at-least-once); wait until it is recorded.
    wait::until("the outbox to be empty", LONG, || {
        setup.metric("profpipe_control_completion_outbox_size") == 0.0
    });

    // A stopped continuous command is not resumed after a restart.
    agent.kill9();
    let agent = setup.start();
    studio.wait_heartbeats(5);
    assert!(agent.perf_children().is_empty());

    // Every command reported exactly once, across all the restarts.
    for id in ["adhoc-1", "cont-1", "weird-1", "stop-1"] {
        assert_eq!(
            studio.completions(id).len(),
            1,
            "{id} reported more than once"
        );
    }
    let status = agent.term(Duration::from_secs(15));
    assert!(status.success(), "SIGTERM: {status:?}\n{}", setup.log());
    assert!(!setup.log().contains("panicked"), "{}", setup.log());
    assert!(!setup.log().contains(TOKEN), "the token is never logged");
    if std::env::var_os("CONTROL_TEST_LOG").is_some() {
        eprintln!("{}", setup.log());
    }
}

#[test]
fn a_second_agent_on_the_same_state_directory_exits_at_once() {
    let setup = Setup::new();
    let studio = Studio::start(&setup.path("profiles"));
    setup.write_config(&studio.url(), "profiles");
    let first = setup.start();
    studio.wait_heartbeats(1);
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_profpipe"))
        .args(["run", "--config"])
        .arg(setup.path("config.toml"))
        .output()
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("another profpipe agent already runs"),
        "{stderr}"
    );
    assert!(first.term(Duration::from_secs(10)).success());
}

#[test]
fn sighup_refuses_a_broken_config_and_a_new_sink_keeps_the_profiler() {
    if !can_profile() {
        return;
    }
    let setup = Setup::new();
    let studio = Studio::start(&setup.path("profiles"));
    setup.write_config(&studio.url(), "profiles");
    let agent = setup.start();
    studio.set(start_command("cont-h", perf_only(2, true)));
    let perf = wait::until_some("perf", LONG, || agent.perf_recorder());
    wait::until("profiles in the first sink's directory", LONG, || {
        !common::walk(&setup.path("profiles")).is_empty()
    });

    let good = std::fs::read_to_string(setup.path("config.toml")).unwrap();
    std::fs::write(
        setup.path("config.toml"),
        good.replace("type = \"file\"", "type = \"flie\""),
    )
    .unwrap();
    agent.signal(libc::SIGHUP);
    wait::until("the reload to be refused", LONG, || {
        setup.log_lines(&["reload refused"]) == 1
    });
    assert!(setup.log().contains("flie"), "the error names the problem");
    assert_eq!(
        agent.perf_recorder(),
        Some(perf),
        "a refused reload touched the pipeline"
    );
    assert_eq!(
        setup.metric("profpipe_control_reloads_total{outcome=\"rejected\"}"),
        1.0
    );

    // A changed sink: only the delivery half is rebuilt; the same perf keeps
    // recording, and the next windows land in the new directory.
    setup.write_config(&studio.url(), "profiles-2");
    agent.signal(libc::SIGHUP);
    wait::until("the reload to be applied", LONG, || {
        setup.log_lines(&["configuration reloaded"]) == 1
    });
    assert_eq!(
        setup.log_lines(&["configuration reloaded", "in_place=1"]),
        1,
        "{}",
        setup.log()
    );
    wait::until("profiles in the new sink's directory", LONG, || {
        common::walk(&setup.path("profiles-2"))
            .iter()
            .any(|p| p.to_string_lossy().ends_with(".col"))
    });
    assert_eq!(
        agent.perf_recorder(),
        Some(perf),
        "perf was restarted by a sink change"
    );

    // A changed source setting (through [control.sources]): perf is rebuilt (in
    // place, with what is downstream of it).
    setup.write_config_with(
        &studio.url(),
        "profiles-2",
        "200ms",
        "[control.sources.perf]\nrestart_after = \"300s\"\n",
    );
    agent.signal(libc::SIGHUP);
    wait::until("the second reload", LONG, || {
        setup.log_lines(&["configuration reloaded", "in_place=1"]) == 2
    });
    wait::until("a new perf", LONG, || {
        agent.perf_recorder().is_some_and(|p| p != perf)
    });
    assert!(studio.completions("cont-h").is_empty());
    assert!(agent.term(Duration::from_secs(15)).success());
}

/// `profpipe run --config` without `[control]`: SIGHUP validates the file first; a
/// broken one is refused and the pipeline keeps running; a changed sink is
/// replaced while the source runs on; a changed source is rebuilt in place; a
/// changed `[agent]` restarts the pipeline.
#[test]
fn plain_run_sighup_refuses_a_broken_config_and_applies_a_good_one() {
    let setup = Setup::new();
    let d = setup.dir.path().display();
    std::fs::write(setup.path("in.txt"), "main;work 3\n").unwrap();
    let config = |out: &str, ty: &str| {
        format!(
            r#"
[agent]
state_dir = "{d}/state"
shutdown_timeout = "2s"

[sources.lines]
type = "file"
paths = ["{d}/in.txt"]
format = "collapsed"
follow = true

[sinks.out]
type = "{ty}"
inputs = ["lines"]
path = "{d}/{out}"
"#
        )
    };
    std::fs::write(setup.path("config.toml"), config("out-1", "file")).unwrap();
    let mut agent = setup.start();
    wait::until("the pipeline to run", LONG, || {
        setup.log_lines(&["pipeline running"]) == 1
    });
    std::fs::write(setup.path("config.toml"), config("out-1", "flie")).unwrap();
    agent.signal(libc::SIGHUP);
    wait::until("the reload to be refused", LONG, || {
        setup.log_lines(&["reload refused"]) == 1
    });
    assert!(agent.alive());
    assert_eq!(
        setup.log_lines(&["pipeline running"]),
        1,
        "a refused reload rebuilt"
    );

    // Only the sink changed: it is replaced in place, the source keeps running.
    std::fs::write(setup.path("config.toml"), config("out-2", "file")).unwrap();
    agent.signal(libc::SIGHUP);
    wait::until("the reload to be applied", LONG, || {
        setup.log_lines(&["configuration reloaded in place", "rebuilt=0 replaced=1"]) == 1
    });
    // A changed source is rebuilt, with the sink it feeds, in place too.
    let changed =
        config("out-2", "file").replace("follow = true", "follow = true\nwindow = \"30s\"");
    std::fs::write(setup.path("config.toml"), &changed).unwrap();
    agent.signal(libc::SIGHUP);
    wait::until("the source to be rebuilt", LONG, || {
        setup.log_lines(&["configuration reloaded in place", "rebuilt=1 replaced=1"]) == 1
    });
    assert_eq!(
        setup.log_lines(&["pipeline running"]),
        1,
        "an in-place reload restarted the pipeline"
    );
    // A changed [agent] restarts the pipeline.
    let agent_changed = changed.replace("shutdown_timeout = \"2s\"", "shutdown_timeout = \"3s\"");
    std::fs::write(setup.path("config.toml"), agent_changed).unwrap();
    agent.signal(libc::SIGHUP);
    wait::until("the pipeline to restart", LONG, || {
        setup.log_lines(&["configuration reloaded: the pipeline restarted"]) == 1
    });
    assert_eq!(setup.log_lines(&["pipeline running"]), 2);
    assert!(agent.alive());
    let status = agent.term(Duration::from_secs(15));
    assert!(status.success(), "{status:?}\n{}", setup.log());
    let written: String = common::walk(&setup.path("out-2"))
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .collect();
    assert!(
        written.contains("main;work 3"),
        "the new sink got no profile: {written}\n{}",
        setup.log()
    );
    if std::env::var_os("CONTROL_TEST_LOG").is_some() {
        eprintln!("{}", setup.log());
    }
}

/// The command history stays at the newest 1,000 ids, in order, however many
/// commands arrive (1,100 here; `CONTROL_HISTORY_COMMANDS=5000` for the figure in
/// BENCHMARKS.md).
#[test]
fn the_command_history_keeps_the_newest_thousand() {
    let n: usize = std::env::var("CONTROL_HISTORY_COMMANDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1100);
    let setup = Setup::new();
    let studio = Studio::start(&setup.path("profiles"));
    setup.write_config_every(&studio.url(), "profiles", "10ms");
    let agent = setup.start();
    studio.set(Reply::NewStopEachTime);
    let started = Instant::now();
    wait::until(
        &format!("{n} commands reported"),
        Duration::from_secs(600),
        || studio.shared.completions.lock().unwrap().len() >= n,
    );
    studio.set(Reply::Idle);
    studio.wait_heartbeats(2);
    let history = setup.metric("profpipe_control_command_history_size");
    let state: Value =
        serde_json::from_slice(&std::fs::read(setup.path("state/control.json")).unwrap()).unwrap();
    let executed = ids(&state["executed"]);
    let last_sent = studio.shared.sent.load(std::sync::atomic::Ordering::SeqCst) - 1;
    assert_eq!(history, 1000.0);
    assert_eq!(executed.len(), 1000);
    assert_eq!(executed.last().unwrap(), &format!("stop-{last_sent}"));
    let numbers: Vec<u64> = executed.iter().map(|i| i[5..].parse().unwrap()).collect();
    assert!(numbers.windows(2).all(|w| w[0] < w[1]), "not in order");
    let hb = studio.heartbeats().last().cloned().unwrap();
    assert_eq!(ids(&hb.body["executed_command_ids"]).len(), 1000);
    let rss = std::fs::read_to_string(format!("/proc/{}/status", agent.pid())).unwrap();
    let rss = rss
        .lines()
        .find(|l| l.starts_with("VmRSS"))
        .unwrap()
        .to_string();
    eprintln!(
        "{} commands in {:?}: history {history}, agent {rss}",
        studio.shared.completions.lock().unwrap().len(),
        started.elapsed()
    );
    assert!(agent.term(Duration::from_secs(15)).success());
}

fn py_spy_only(duration: u64) -> Value {
    json!({"duration": duration, "frequency": 49, "continuous": false,
        "profiler_configs": {"perf": {"mode": "disabled"}, "pyspy": "enabled", "rbspy": "disabled"}})
}

/// Continuous perf and ad-hoc py-spy run side by side; an ad-hoc perf command
/// pauses the continuous one and it resumes after; `stop` ends both, every child
/// gone within 10 s.
#[test]
fn continuous_and_ad_hoc_side_by_side_and_stop_ends_both() {
    if !can_profile() {
        return;
    }
    let (python, _) = proc::python();
    let py_spy = Path::new(&python).with_file_name("py-spy");
    let py_spy = if py_spy.exists() {
        py_spy.display().to_string()
    } else {
        "py-spy".to_string()
    };
    let marker = format!("side-by-side-{}", std::process::id());
    let _busy = proc::Detached::start_ready(
        python.to_str().unwrap(),
        &[
            common::programs().join("busy.py").to_str().unwrap(),
            "120",
            &marker,
        ],
    );
    let setup = Setup::new();
    let studio = Studio::start(&setup.path("profiles"));
    let extra = format!(
        "[control.sources.py_spy]\nbinary = \"{py_spy}\"\nmode = \"per_window\"\n\
         discovery = {{ min_age = \"0s\", allow_cmdline = [\"{marker}\"] }}\n"
    );
    setup.write_config_with(&studio.url(), "profiles", "200ms", &extra);
    let agent = setup.start();

    studio.set(start_command("cont-s", perf_only(2, true)));
    let perf = wait::until_some("continuous perf", LONG, || agent.perf_recorder());

    // Different profilers: side by side; the continuous perf is untouched.
    studio.set(start_command("adhoc-py", py_spy_only(2)));
    wait::until("py-spy to run", LONG, || {
        !proc::children_named(agent.pid(), "py-spy").is_empty()
    });
    assert!(
        agent.perf_recorder() == Some(perf),
        "continuous perf stopped: {:?} {:?}\n{}",
        agent.perf_recorder(),
        agent
            .perf_children()
            .iter()
            .map(|p| proc::cmdline(*p))
            .collect::<Vec<_>>(),
        setup.log()
    );
    let done = studio.wait_completion("adhoc-py");
    assert_eq!(done.body["status"], "completed", "{}", done.body);
    assert!(
        agent.perf_recorder() == Some(perf),
        "continuous perf stopped"
    );

    // The same profiler: the continuous pipeline pauses, then resumes.
    studio.set(start_command("adhoc-perf", perf_only(2, false)));
    wait::until("continuous perf paused", LONG, || {
        agent.perf_recorder() != Some(perf)
    });
    let done = studio.wait_completion("adhoc-perf");
    assert_eq!(done.body["status"], "completed", "{}", done.body);
    wait::until("continuous perf resumed", LONG, || {
        agent.perf_recorder().is_some_and(|p| p != perf)
    });
    assert!(studio.completions("cont-s").is_empty());

    // A long ad-hoc py-spy beside the continuous perf, then stop.
    studio.set(start_command("adhoc-long", py_spy_only(60)));
    wait::until("py-spy to run", LONG, || {
        !proc::children_named(agent.pid(), "py-spy").is_empty()
    });
    studio.set(Reply::Json(json!({"success": true, "message": "stop",
        "profiling_command": {"command_type": "stop", "combined_config": {}},
        "command_id": "stop-s"})));
    let sent = Instant::now();
    wait::until("every child gone", Duration::from_secs(10), || {
        proc::children_of(agent.pid()).is_empty()
    });
    eprintln!(
        "stop: every child gone {:?} after the stop was served",
        sent.elapsed()
    );
    let stop = studio.wait_completion("stop-s");
    assert_eq!(stop.body["status"], "completed");
    let long = studio.completions("adhoc-long");
    assert_eq!(long[0].body["status"], "failed");
    assert!(long[0].body["error_message"]
        .as_str()
        .unwrap()
        .contains("stopped by command stop-s"));
    assert_eq!(studio.completions("cont-s")[0].body["status"], "completed");
    assert!(agent.term(Duration::from_secs(15)).success());
}

/// Without `[sinks]`, a command's profiles go to the control server's own
/// `/api/v2/profiles` (gzip JSON, the token as API key), delivered before the
/// command is reported completed.
#[test]
fn without_sinks_profiles_go_to_the_control_server() {
    if !can_profile() {
        return;
    }
    let setup = Setup::new();
    let studio = Studio::start(&setup.path("profiles"));
    setup.write_config(&studio.url(), "profiles");
    let text = std::fs::read_to_string(setup.path("config.toml")).unwrap();
    let no_sinks = text.split("[sinks.local]").next().unwrap().to_string();
    std::fs::write(setup.path("config.toml"), no_sinks).unwrap();
    let agent = setup.start();
    studio.set(start_command("adhoc-up", perf_only(AD_HOC_SECS, false)));
    let done = studio.wait_completion("adhoc-up");
    assert_eq!(
        done.body["status"],
        "completed",
        "{}\n{}",
        done.body,
        setup.log()
    );
    let uploads = studio.shared.uploads.lock().unwrap().clone();
    assert!(!uploads.is_empty(), "no upload:\n{}", setup.log());
    let (at, headers, body) = &uploads[0];
    assert!(*at <= done.at, "completed before the upload");
    assert_eq!(headers["gprofiler-api-key"], TOKEN);
    assert_eq!(headers["gprofiler-service-name"], "checkout");
    assert!(
        body["profile"].as_str().unwrap().starts_with("# {"),
        "{body}"
    );
    assert!(body["start_time"].is_string());
    assert!(agent.term(Duration::from_secs(15)).success());
}
