//! A real Kafka-protocol broker for tests: tansu (installed by
//! `scripts/setup-test-env.sh`) on a free loopback port, with memory storage, killed
//! on drop; and a consumer that reads back everything a topic holds.
//!
//! With memory storage a restart loses every topic, so an outage is simulated by
//! freezing the broker (SIGSTOP) and thawing it (SIGCONT): its sockets stay open
//! and unanswered, which is what a hung or partitioned broker looks like to a
//! producer.

use std::collections::BTreeMap;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

/// The tansu binary: on `PATH` or in `~/.cache/profpipe-tools/bin`. Panics with
/// how to install it when missing (tests never skip silently).
pub fn binary() -> PathBuf {
    let home = std::env::var("HOME").unwrap_or_default();
    let cached = PathBuf::from(home).join(".cache/profpipe-tools/bin/tansu");
    if cached.is_file() {
        return cached;
    }
    for dir in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()) {
        let p = dir.join("tansu");
        if p.is_file() {
            return p;
        }
    }
    panic!(
        "tansu (the Kafka-protocol broker these tests run against) is not installed: \
         run scripts/setup-test-env.sh (it installs tansu into ~/.cache/profpipe-tools/bin)"
    );
}

/// A port nothing listens on now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running broker; killed when dropped.
pub struct Tansu {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
    log: PathBuf,
}

impl Tansu {
    /// Starts a broker and waits (up to 60 s) until it accepts connections.
    pub fn start() -> Tansu {
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("tansu.log");
        let url = format!("tcp://127.0.0.1:{port}");
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(binary())
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "memory://tansu/"])
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("starting tansu");
        let mut t = Tansu {
            child,
            port,
            _dir: dir,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = t.child.try_wait().unwrap() {
                panic!(
                    "tansu exited ({status}) before listening:\n{}",
                    t.log_text()
                );
            }
            assert!(
                Instant::now() < deadline,
                "tansu did not listen on {port} within 60 s:\n{}",
                t.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        t
    }

    /// `127.0.0.1:PORT`, for `brokers`.
    pub fn broker(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Creates `topic` with `partitions` partitions.
    pub fn create_topic(&self, topic: &str, partitions: u32) {
        let out = Command::new(binary())
            .args(["topic", "create", topic, "--partitions"])
            .arg(partitions.to_string())
            .args(["--broker", &format!("tcp://127.0.0.1:{}", self.port)])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "tansu topic create {topic}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Freezes the broker: connections stay open, nothing is answered.
    pub fn freeze(&self) {
        kill(Pid::from_raw(self.child.id() as i32), Signal::SIGSTOP).unwrap();
    }

    pub fn thaw(&self) {
        kill(Pid::from_raw(self.child.id() as i32), Signal::SIGCONT).unwrap();
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGCONT);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One consumed message.
#[derive(Clone, Debug)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    /// The record's timestamp, Unix ms.
    pub timestamp: i64,
    pub key: Option<String>,
    pub payload: Vec<u8>,
    pub headers: BTreeMap<String, String>,
}

impl Record {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("message without header {name}: {:?}", self.headers))
    }
}

/// Everything `topic` holds, every partition from its start: reads until at least
/// `expected` messages arrived (within 60 s), then until none came for 3 s, so a
/// message too many (a duplicate) is seen too. (tansu 0.6's watermarks count record
/// batches, not records, so they cannot say how many messages a topic holds.)
pub fn consume_all(broker: &str, topic: &str, expected: usize) -> Vec<Record> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker)
        .set("group.id", format!("profpipe-test-{}", fastrand::u64(..)))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("creating the test consumer");
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(20))
        .expect("topic metadata");
    let mut tpl = TopicPartitionList::new();
    for p in md.topics()[0].partitions() {
        tpl.add_partition_offset(topic, p.id(), Offset::Beginning)
            .unwrap();
    }
    assert!(tpl.count() > 0, "topic {topic} has no partitions");
    consumer.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = Instant::now();
    while out.len() < expected || last.elapsed() < Duration::from_secs(3) {
        assert!(
            out.len() >= expected || Instant::now() < deadline,
            "read {} of the {expected} messages expected in {topic} within 60 s",
            out.len()
        );
        let Some(m) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let m = m.expect("consuming");
        last = Instant::now();
        let mut headers = BTreeMap::new();
        if let Some(h) = m.headers() {
            for h in h.iter() {
                let v = h.value.map(|v| String::from_utf8_lossy(v).into_owned());
                headers.insert(h.key.to_string(), v.unwrap_or_default());
            }
        }
        out.push(Record {
            partition: m.partition(),
            offset: m.offset(),
            timestamp: m.timestamp().to_millis().unwrap_or(-1),
            key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
            payload: m.payload().unwrap_or_default().to_vec(),
            headers,
        });
    }
    out
}

/// The messages of `records` grouped into profiles by `profile_id`, each sorted by
/// part and checked complete (parts 0..parts, each once). Panics on a duplicate or
/// missing part.
pub fn profiles(records: &[Record]) -> BTreeMap<String, Vec<Record>> {
    let mut by_id: BTreeMap<String, Vec<Record>> = BTreeMap::new();
    for r in records {
        by_id
            .entry(r.header("profile_id").to_string())
            .or_default()
            .push(r.clone());
    }
    for (id, parts) in &mut by_id {
        parts.sort_by_key(|r| r.header("part").parse::<usize>().unwrap());
        let count: usize = parts[0].header("parts").parse().unwrap();
        let indexes: Vec<usize> = parts
            .iter()
            .map(|r| r.header("part").parse().unwrap())
            .collect();
        assert_eq!(
            indexes,
            (0..count).collect::<Vec<_>>(),
            "profile {id}: parts received {indexes:?} of {count}"
        );
    }
    by_id
}
