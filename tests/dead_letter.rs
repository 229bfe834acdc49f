//! A disk buffer in front of a sink that fails one record forever: the agent binary
//! folds a followed file into windows and POSTs them to a receiver (real HTTP on
//! 127.0.0.1) that answers 503 to any body holding `poison_frame` and 200 to the
//! rest. Every other window is delivered, the poisoned one goes to the buffer's
//! dead-letter file (counted, one WARN with the sink's last error), `profpipe
//! dead-letter list` shows it, `replay` refuses while the agent holds the buffer,
//! re-injects it once stopped, and the next run delivers it once the receiver
//! accepts it.

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Output, Stdio};
use std::time::Duration;

use common::receiver::{Personality, Receiver};
use common::run::{profpipe, write_config};
use common::wait::{until_async, until_some};

fn free_address() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// The agent binary; killed when dropped.
struct Agent(Child);

impl Agent {
    fn start(config: &Path, log: &Path) -> Agent {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let child = profpipe()
            .args(["--log", "info", "run", "--config"])
            .arg(config)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        Agent(child)
    }

    /// SIGTERM, and the exit status once it has drained.
    fn stop(mut self) -> ExitStatus {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.0.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        let child = &mut self.0;
        until_some("the agent stopping", Duration::from_secs(60), || {
            child.try_wait().unwrap()
        })
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn append(path: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

fn delivered_stacks(r: &Receiver) -> Vec<String> {
    r.accepted()
        .into_iter()
        .flat_map(|a| a.stacks.into_iter().map(|(s, _)| s))
        .collect()
}

async fn scrape(metrics: SocketAddr) -> String {
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    match client.get(format!("http://{metrics}/metrics")).send().await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

fn dead_letter_cli(args: &[&str], config: &Path) -> Output {
    profpipe()
        .arg("dead-letter")
        .arg(args[0])
        .arg("--config")
        .arg(config)
        .args(&args[1..])
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_failing_forever_is_dead_lettered_and_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.folded");
    std::fs::write(&input, "").unwrap();
    let receiver = Receiver::start(Personality::Generic, None).await;
    receiver.refuse_containing("poison_frame", 503);
    let metrics = free_address();
    let state: PathBuf = dir.path().join("state");
    let config = write_config(
        dir.path(),
        "agent.toml",
        &format!(
            r#"
[agent]
state_dir = {state:?}

[telemetry]
listen = "{metrics}"

[sources.capture]
type = "file"
paths = [{input:?}]
format = "collapsed"
follow = true
window = "1s"
poll_interval = "100ms"

[sinks.out]
type = "http"
inputs = ["capture"]
target = "generic"
endpoint = "{url}/ingest"
encoding = "collapsed"
buffer = {{ type = "disk", max_bytes = "4MiB", dead_letter = {{ max_attempts = 1 }} }}
request = {{ concurrency = 1, retry_initial_backoff = "100ms", retry_max_backoff = "200ms", retry_max_elapsed = "1s" }}
"#,
            url = receiver.url(),
        ),
    );
    let log = dir.path().join("agent.log");
    let agent = Agent::start(&config, &log);

    // The poisoned window first: it holds the buffer's read position while it fails.
    append(&input, "app;main;poison_frame 1\n");
    until_async("the receiver refusing it", Duration::from_secs(60), || {
        receiver.answered(503) > 0
    })
    .await;
    // Then windows the receiver takes.
    for i in 0..5 {
        append(&input, &format!("app;main;good_{i} 1\n"));
        tokio::time::sleep(Duration::from_millis(600)).await;
    }
    until_async(
        "every good window delivered",
        Duration::from_secs(60),
        || {
            let got = delivered_stacks(&receiver);
            (0..5).all(|i| got.contains(&format!("app;main;good_{i}")))
        },
    )
    .await;
    let dead_letter = state.join("buffers/out/dead_letter");
    let counted = r#"profpipe_buffer_disk_dead_lettered_records_total{component_id="out",component_kind="sink",component_type="http"} 1"#;
    let end = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let body = scrape(metrics).await;
        if body.contains(counted) {
            assert!(
                body.contains("profpipe_buffer_disk_dead_letter_bytes{"),
                "{body}"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < end,
            "the dead-lettered record is never counted:\n{body}\nlog:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(dead_letter.exists());
    assert!(
        !delivered_stacks(&receiver)
            .iter()
            .any(|s| s.contains("poison")),
        "the receiver never took it"
    );
    let agent_log = std::fs::read_to_string(&log).unwrap();
    let warns: Vec<&str> = agent_log
        .lines()
        .filter(|l| l.contains("moved to the dead-letter file"))
        .collect();
    assert_eq!(warns.len(), 1, "{agent_log}");
    assert!(
        warns[0].contains("WARN") && warns[0].contains("503"),
        "the WARN quotes the last error: {}",
        warns[0]
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&dead_letter)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    // `list` reads beside the running agent.
    let listed = dead_letter_cli(&["list"], &config);
    assert!(listed.status.success(), "{}", text(&listed));
    let listed = text(&listed);
    assert!(
        listed.contains("sink `out`")
            && listed.contains("1 record(s)")
            && listed.contains("1 stacks"),
        "{listed}"
    );
    // `replay` needs the buffer's lock, which the running agent holds.
    let refused = dead_letter_cli(&["replay", "out"], &config);
    assert!(!refused.status.success());
    assert!(
        text(&refused).contains("stop it, replay"),
        "{}",
        text(&refused)
    );
    assert!(dead_letter.exists(), "a refused replay changes nothing");

    assert!(agent.stop().success());
    let replayed = dead_letter_cli(&["replay", "out"], &config);
    assert!(replayed.status.success(), "{}", text(&replayed));
    assert!(
        text(&replayed).contains("1 record(s) written back"),
        "{}",
        text(&replayed)
    );
    assert!(!dead_letter.exists());

    // The receiver takes it now; the next run delivers it.
    receiver.stop_refusing();
    let agent = Agent::start(&config, &log);
    until_async(
        "the replayed window delivered",
        Duration::from_secs(60),
        || {
            delivered_stacks(&receiver)
                .iter()
                .any(|s| s == "app;main;poison_frame")
        },
    )
    .await;
    assert!(agent.stop().success());
    let after = dead_letter_cli(&["list", "out"], &config);
    assert!(
        text(&after).contains("no dead-lettered records"),
        "{}",
        text(&after)
    );
}
