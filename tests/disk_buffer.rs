//! The disk buffer through a real outage: a client pushes profiles to the
//! `http_server` gateway, whose sink (Kafka on tansu, S3 on s3s-fs) has a disk
//! buffer; the back end goes down; the agent is `kill -9`ed and restarted during
//! the outage; the back end comes back. Every push the client got a 2xx for must
//! arrive; duplicates are counted and bounded; RSS stays within the memory cap plus
//! 10 MB; the buffer's directory never passes `max_bytes`.

mod common;

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::run::{profpipe, write_config};
use common::s3::{self, S3Server};
use common::tansu::{self, Tansu};
use common::wait;

/// Pushes in one run, and how fast they come; `scripts/measure-disk-buffer.sh`
/// sets more and slower (`PROFPIPE_OUTAGE_PUSHES`, `PROFPIPE_OUTAGE_RATE`) for a
/// two-minute outage. The outage lasts from a quarter to three quarters of them.
fn pushes() -> u64 {
    env_or("PROFPIPE_OUTAGE_PUSHES", 1200)
}

fn per_second() -> u64 {
    env_or("PROFPIPE_OUTAGE_RATE", 60)
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

const MEMORY_LIMIT_MIB: u64 = 32;
const DISK_MAX_BYTES: u64 = 16 * 1024 * 1024;

fn free_address() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// The agent binary with a config; `kill -9`ed when dropped.
struct Agent {
    child: Child,
    config: PathBuf,
    log: PathBuf,
    address: SocketAddr,
}

impl Agent {
    fn start(config: PathBuf, log: PathBuf, address: SocketAddr) -> Agent {
        let child = Self::spawn(&config, &log);
        let mut a = Agent {
            child,
            config,
            log,
            address,
        };
        a.wait_listening();
        a
    }

    fn spawn(config: &Path, log: &Path) -> Child {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        // The measurement script runs the release agent under the debug test.
        let mut cmd = match std::env::var_os("PROFPIPE_BIN") {
            Some(bin) => std::process::Command::new(bin),
            None => profpipe(),
        };
        cmd.args(["--log", "info", "run", "--config"])
            .arg(config)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap()
    }

    /// Waits (bounded) until the gateway accepts connections; the healthcheck of a
    /// back end that is down takes up to 10 s first.
    fn wait_listening(&mut self) {
        let (child, log, address) = (&mut self.child, &self.log, self.address);
        wait::until("the agent listening", Duration::from_secs(60), || {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("the agent exited ({status}):\n{}", log_text(log));
            }
            TcpStream::connect(address).is_ok()
        });
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn kill9_and_restart(&mut self) {
        self.child.kill().unwrap(); // SIGKILL
        self.child.wait().unwrap();
        self.child = Self::spawn(&self.config, &self.log);
        self.wait_listening();
    }

    /// SIGTERM, and the exit status once it has drained.
    fn stop(mut self) -> std::process::ExitStatus {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        let child = &mut self.child;
        wait::until_some("the agent stopping", Duration::from_secs(60), || {
            child.try_wait().unwrap()
        })
    }
}

fn log_text(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The stack pushed as push `i`.
fn stack(i: u64) -> String {
    format!("push_{i};main")
}

/// Pushes `pushes()` profiles at `per_second()`, each in a window of its own, each
/// retried until answered 2xx (as a pushing agent would); counts the 2xx.
async fn push_all(url: String, acked: Arc<AtomicU64>) {
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let base = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 2 * pushes() * 10;
    let started = tokio::time::Instant::now();
    for i in 0..pushes() {
        tokio::time::sleep_until(started + Duration::from_millis(i * 1000 / per_second())).await;
        let from = base + i * 10;
        let q = format!(
            "name=app.cpu%7Bhostname%3Dclient%7D&from={from}&until={}&spyName=pyspy&sampleRate=100",
            from + 10
        );
        let give_up = tokio::time::Instant::now() + Duration::from_secs(300);
        loop {
            let r = client
                .post(format!("{url}/ingest?{q}"))
                .body(format!("{} 1\n", stack(i)))
                .send()
                .await;
            if r.is_ok_and(|r| r.status().is_success()) {
                acked.fetch_add(1, Ordering::SeqCst);
                break;
            }
            assert!(
                tokio::time::Instant::now() < give_up,
                "push {i} never accepted"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Highest RSS of `pid` and highest size of `dir`, sampled every 100 ms until
/// `stop` (the agent's pid is read afresh: it changes at the restart).
fn watch(
    pid: Arc<AtomicU64>,
    dir: PathBuf,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<(u64, u64)> {
    std::thread::spawn(move || {
        let (mut rss, mut disk) = (0, 0);
        while !stop.load(Ordering::SeqCst) {
            let status =
                std::fs::read_to_string(format!("/proc/{}/status", pid.load(Ordering::SeqCst)));
            if let Some(kb) = status.ok().and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            }) {
                rss = rss.max(kb * 1024);
            }
            let size: u64 = std::fs::read_dir(&dir)
                .map(|d| {
                    d.flatten()
                        .filter_map(|e| e.metadata().ok())
                        .map(|m| m.len())
                        .sum()
                })
                .unwrap_or(0);
            disk = disk.max(size);
            std::thread::sleep(Duration::from_millis(100));
        }
        (rss, disk)
    })
}

async fn wait_acked(acked: &AtomicU64, n: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while acked.load(Ordering::SeqCst) < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} pushes acknowledged",
            acked.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn config_text(dir: &Path, address: SocketAddr, metrics: SocketAddr, sink: &str) -> String {
    format!(
        r#"
[agent]
hostname = "gateway"
state_dir = {state:?}
memory_limit = "{MEMORY_LIMIT_MIB}MiB"

[telemetry]
listen = "{metrics}"

[sources.push]
type = "http_server"
address = "{address}"

[sinks.out]
inputs = ["push"]
buffer = {{ type = "disk", max_bytes = "{DISK_MAX_BYTES}" }}
request = {{ retry_initial_backoff = "200ms", retry_max_backoff = "2s" }}
{sink}
"#,
        state = dir.join("state"),
    )
}

/// What an outage run saw.
struct Outcome {
    counts: BTreeMap<String, u64>,
    peak_rss: u64,
    peak_disk: u64,
    /// Records the restarted agent read back from the killed one's buffer.
    replayed: u64,
}

/// Runs the scenario; `down` and `up` stop and restart the back end.
async fn outage(
    dir: &Path,
    sink: &str,
    mut down: impl FnMut(),
    mut up: impl FnMut(),
    read: impl FnOnce() -> BTreeMap<String, u64>,
) -> Outcome {
    let (address, metrics) = (free_address(), free_address());
    let config = write_config(dir, "agent.toml", &config_text(dir, address, metrics, sink));
    let mut agent = Agent::start(config, dir.join("agent.log"), address);
    let pid = Arc::new(AtomicU64::new(agent.pid().into()));
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = watch(pid.clone(), dir.join("state/buffers/out"), stop.clone());
    let acked = Arc::new(AtomicU64::new(0));
    let pusher = tokio::spawn(push_all(format!("http://{address}"), acked.clone()));

    wait_acked(&acked, pushes() / 4).await;
    down();
    // The gateway keeps answering 2xx: the disk buffer has the pushes.
    wait_acked(&acked, pushes() / 2).await;
    tokio::task::block_in_place(|| agent.kill9_and_restart());
    pid.store(agent.pid().into(), Ordering::SeqCst);
    wait_acked(&acked, 3 * pushes() / 4).await;
    up();
    pusher.await.unwrap();
    let counts = tokio::task::block_in_place(read);
    let replayed = metric(metrics, "profpipe_buffer_disk_records_replayed_total").await;
    let status = tokio::task::block_in_place(|| agent.stop());
    stop.store(true, Ordering::SeqCst);
    let (peak_rss, peak_disk) = watcher.join().unwrap();
    assert!(status.success(), "the agent exited with {status}");
    Outcome {
        counts,
        peak_rss,
        peak_disk,
        replayed,
    }
}

/// A metric's value from the agent's `/metrics`.
async fn metric(addr: SocketAddr, name: &str) -> u64 {
    let text = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics:\n{text}"))
}

/// Every push arrived; returns how many arrived twice.
fn check(o: &Outcome, what: &str) -> u64 {
    for i in 0..pushes() {
        assert!(
            o.counts.contains_key(&stack(i)),
            "{what}: push {i} was acknowledged but never arrived"
        );
    }
    let n = pushes();
    assert_eq!(o.counts.len() as u64, n, "{what}: stacks nobody pushed");
    let duplicates = o.counts.values().sum::<u64>() - n;
    eprintln!(
        "{what}: {n} pushes delivered, {duplicates} twice, {} replayed after the kill; peak RSS {:.1} MiB, peak disk {:.1} MiB",
        o.replayed,
        o.peak_rss as f64 / 1048576.0,
        o.peak_disk as f64 / 1048576.0
    );
    assert!(
        o.peak_rss <= (MEMORY_LIMIT_MIB + 10) * 1024 * 1024,
        "{what}: RSS {} passed the memory cap plus 10 MB",
        o.peak_rss
    );
    assert!(
        o.peak_disk <= DISK_MAX_BYTES,
        "{what}: the buffer used {} bytes",
        o.peak_disk
    );
    assert!(
        o.replayed > 0,
        "{what}: the killed agent left nothing to replay: no outage?"
    );
    duplicates
}

fn json_counts(doc: &[u8], into: &mut BTreeMap<String, u64>) {
    let v: serde_json::Value = serde_json::from_slice(doc).unwrap();
    for (frames, n) in common::events::json_stacks(&v) {
        *into.entry(frames).or_default() += n;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_through_an_outage_and_a_kill_9_loses_no_acknowledged_push() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Arc::new(Tansu::start());
    broker.create_topic("profiles", 1);
    let sink = format!(
        "type = \"kafka\"\nbrokers = [\"{}\"]\ntopic = \"profiles\"\nencoding = \"json\"\n",
        broker.broker()
    );
    let (b1, b2, b3) = (broker.clone(), broker.clone(), broker.clone());
    let o = outage(
        dir.path(),
        &sink,
        move || b1.freeze(),
        move || b2.thaw(),
        move || {
            let mut counts = BTreeMap::new();
            for r in tansu::consume_all(&b3.broker(), "profiles", pushes() as usize) {
                json_counts(&r.payload, &mut counts);
            }
            counts
        },
    )
    .await;
    let duplicates = check(&o, "kafka");
    // At most what was out with the broker when the agent was killed.
    assert!(duplicates <= pushes() / 4, "{duplicates} duplicates");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_through_an_outage_and_a_kill_9_loses_no_acknowledged_push() {
    let dir = tempfile::tempdir().unwrap();
    let server = Arc::new(std::sync::Mutex::new(S3Server::start("profiles")));
    let sink = {
        let s = server.lock().unwrap();
        format!(
            "type = \"s3\"\nbucket = \"profiles\"\nendpoint = \"{}\"\nregion = \"us-east-1\"\nforce_path_style = true\naccess_key_id = \"{}\"\nsecret_access_key = \"{}\"\nencoding = \"json\"\ncompression = \"none\"\n",
            s.endpoint(),
            s3::ACCESS_KEY,
            s3::SECRET_KEY
        )
    };
    let (s1, s2, s3c) = (server.clone(), server.clone(), server.clone());
    let o = outage(
        dir.path(),
        &sink,
        move || s1.lock().unwrap().stop(),
        move || s2.lock().unwrap().resume(),
        move || {
            let client = s3c.lock().unwrap().client("profiles");
            let rt = tokio::runtime::Handle::current();
            // Wait (bounded) until every push is there, then read them all.
            let deadline = Instant::now() + Duration::from_secs(120);
            loop {
                let mut counts = BTreeMap::new();
                for (_, body) in rt.block_on(s3::objects(&client)) {
                    json_counts(&body, &mut counts);
                }
                if counts.len() as u64 >= pushes() || Instant::now() > deadline {
                    return counts;
                }
                std::thread::sleep(Duration::from_millis(500));
            }
        },
    )
    .await;
    // An object's key names its window: a window delivered twice is written over,
    // so S3 shows no duplicates whatever the agent sent.
    check(&o, "s3");
}
