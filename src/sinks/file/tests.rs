use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::buffer::EdgeSender;
use crate::component::SinkConfig;
use crate::component::{parse_sink, ComponentError};
use crate::event::{Event, Labels, Profile, Stack, Watermark, Window};
use crate::formats::collapsed::Layout;
use crate::sinks::test_context::sink_context;

const MIN: u64 = 60_000;
/// 2023-12-03T16:30:00Z
const T0: u64 = 1_701_621_000_000;

fn config(dir: &Path) -> FileSinkConfig {
    let sink = FileSink {
        path: dir.to_path_buf(),
        formats: vec![
            FileFormat::Folded,
            FileFormat::Collapsed,
            FileFormat::Flamegraph,
        ],
        sample_rate: 11,
        title: Some("test graph".into()),
        retain_files: 100,
        retain_bytes: ByteSize(1 << 30),
    };
    FileSinkConfig {
        sink,
        pending: crate::sinks::pending::PendingConfig {
            max_pending_stacks: 1000,
            max_pending_bytes: ByteSize::mib(8),
        },
    }
}

/// [`config`] writing only the folded format.
fn folded_only(dir: &Path) -> FileSinkConfig {
    let mut c = config(dir);
    c.formats = vec![FileFormat::Folded];
    c
}

struct Harness {
    tx: EdgeSender,
    task: tokio::task::JoinHandle<Result<(), ComponentError>>,
    metrics: ComponentMetrics,
}

impl Harness {
    fn start(config: &FileSinkConfig, upstream: &[&str]) -> Harness {
        let (tx, cx, metrics) = sink_context("file", "archive", "host-1", upstream);
        assert!(config.validate().is_empty(), "{:?}", config.validate());
        let task = tokio::spawn(config.build(cx).unwrap());
        Harness { tx, task, metrics }
    }

    async fn send(&self, e: Event) {
        self.tx.send(e).await.unwrap();
    }

    /// Windows 1 to `n` minutes after `T0` from source `perf`, window `i` holding
    /// one stack `a;b` counted `i`, each closed by its watermark.
    async fn send_minutes(&self, n: u64) {
        for i in 1..=n {
            let end = T0 + i * MIN;
            self.send(profile("perf", end, &[("a;b", None, i)])).await;
            self.send(watermark("perf", end)).await;
        }
    }

    async fn finish(self) -> ComponentMetrics {
        drop(self.tx);
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("sink did not stop when its input closed")
            .unwrap()
            .unwrap();
        self.metrics
    }
}

fn profile(source: &str, end: u64, stacks: &[(&str, Option<&str>, u64)]) -> Event {
    Event::Profile(Profile {
        finalizers: Default::default(),
        window: Window::new(end - MIN, end),
        labels: Labels {
            extra: Default::default(),
            host: "host-1".into(),
            source: source.into(),
            profiler: "perf".into(),
        },
        stacks: stacks
            .iter()
            .map(|(f, c, n)| {
                let mut s = Stack::new(*f, *n);
                s.container = c.map(Arc::from);
                s.pid = 7;
                s
            })
            .collect(),
    })
}

/// `event` carrying a token of a new batch, and the batch's receiver.
fn tracked(mut event: Event) -> (Event, crate::event::BatchReceiver) {
    let (batch, rx) = crate::event::Batch::new();
    if let Some(f) = event.finalizers_mut() {
        f.merge(batch.finalizers());
    }
    (event, rx)
}

fn watermark(source: &str, until: u64) -> Event {
    Event::Watermark(Watermark {
        source: source.into(),
        complete_until_ms: until,
    })
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

fn profiles_with_ext(dir: &Path, ext: &str) -> Vec<String> {
    names(dir)
        .into_iter()
        .filter(|n| n.starts_with("profile_") && n.ends_with(&format!(".{ext}")))
        .collect()
}

/// Waits (real time, bounded) until `name` exists in `dir`.
async fn wait_for(dir: &Path, name: &str) {
    for _ in 0..500 {
        if dir.join(name).exists() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!(
        "{name} did not appear in {}: {:?}",
        dir.display(),
        names(dir)
    );
}

fn stamp(end: u64) -> String {
    crate::formats::timestamp::file_stamp(end)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_one_file_per_window_and_format() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("out");
    let h = Harness::start(&config(&dir), &["perf", "py"]);
    let meta = fs::metadata(&dir).unwrap();
    assert!(meta.is_dir());
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777,
        0o700
    );

    let w1 = T0 + MIN;
    let w2 = T0 + 2 * MIN;
    // Window 1 arrives as three profiles from two sources and label sets.
    h.send(profile(
        "perf",
        w1,
        &[
            ("bash;main", None, 2),
            ("nginx;epoll_wait_[k]", Some("web"), 5),
        ],
    ))
    .await;
    let (py, mut py_written) = tracked(profile("py", w1, &[("python3;f_[p]", Some("web"), 3)]));
    h.send(py).await;
    h.send(profile("perf", w1, &[("bash;main", None, 1)])).await;
    h.send(profile("perf", w2, &[("bash;other", None, 4)]))
        .await;
    h.send(watermark("perf", w2)).await;
    // Not complete until the second source has spoken.
    assert_eq!(py_written.try_status(), None);
    assert!(
        profiles_with_ext(&dir, "col").is_empty(),
        "{:?}",
        names(&dir)
    );
    h.send(watermark("py", w1)).await;

    // The window's tokens resolve once its files are written.
    assert_eq!(
        py_written.wait().await,
        crate::event::EventStatus::Delivered
    );
    let col1 = format!("profile_{}.col", stamp(w1));
    assert!(dir.join(&col1).exists(), "{:?}", names(&dir));
    assert_eq!(col1, "profile_20231203T163100.000Z.col");
    // The formats of a window are written one after another: wait for each.
    wait_for(&dir, &format!("profile_{}.folded", stamp(w1))).await;
    wait_for(&dir, &format!("profile_{}.svg", stamp(w1))).await;
    assert!(!dir.join(format!("profile_{}.col", stamp(w2))).exists());
    assert_eq!(
        fs::read_to_string(dir.join(format!("profile_{}.folded", stamp(w1)))).unwrap(),
        "bash;main 3\nnginx;epoll_wait_[k] 5\npython3;f_[p] 3\n"
    );
    let col = crate::formats::collapsed::read(&fs::read(dir.join(&col1)).unwrap()[..]).unwrap();
    assert_eq!(col.layout, Layout::V2);
    assert_eq!(col.stacks.iter().map(|s| s.count).sum::<u64>(), 11);
    let meta = col.metadata.unwrap();
    assert_eq!(meta["metadata"]["hostname"], "host-1");
    assert_eq!(meta["containers"], serde_json::json!(["web"]));
    assert_eq!(
        fs::read_link(dir.join("last_profile.col")).unwrap(),
        Path::new(&col1)
    );

    // Closing the input flushes window 2.
    let metrics = h.finish().await;
    let col2 = format!("profile_{}.col", stamp(w2));
    assert!(dir.join(&col2).exists());
    for ext in ["col", "folded", "svg"] {
        let link = fs::read_link(dir.join(format!("last_profile.{ext}"))).unwrap();
        assert_eq!(link, Path::new(&format!("profile_{}.{ext}", stamp(w2))));
    }
    let svg = fs::read_to_string(dir.join("last_profile.svg")).unwrap();
    assert!(svg.starts_with("<?xml"));
    assert!(svg.contains("<svg"));
    assert!(svg.contains("test graph"));
    assert_eq!(metrics.sent_events(), 4);
    // No temporary files are left behind.
    assert!(
        names(&dir).iter().all(|n| !n.starts_with('.')),
        "{:?}",
        names(&dir)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_pprof_with_the_stacks_of_the_collapsed_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let mut cfg = config(&dir);
    cfg.formats = vec![FileFormat::Collapsed, FileFormat::Pprof];
    cfg.sample_rate = 100;
    cfg.retain_files = 2;
    let h = Harness::start(&cfg, &["perf"]);
    let w1 = T0 + MIN;
    let (p, written) = tracked(profile(
        "perf",
        w1,
        &[
            ("bash;main;read", None, 2),
            ("nginx;epoll_wait_[k]", Some("web"), 5),
            ("bash;main", None, 1),
        ],
    ));
    h.send(p).await;
    h.send(watermark("perf", w1)).await;
    assert_eq!(written.wait().await, crate::event::EventStatus::Delivered);
    let name = format!("profile_{}.pb.gz", stamp(w1));
    wait_for(&dir, &name).await;
    assert_eq!(
        fs::read_link(dir.join("last_profile.pb.gz")).unwrap(),
        Path::new(&name)
    );
    let p = pprof::decode(&fs::read(dir.join(&name)).unwrap()).unwrap();
    let s = |i: i64| p.string_table[i as usize].as_str();
    // bash, main, read, nginx, epoll_wait_[k]
    assert_eq!(p.function.len(), 5);
    assert_eq!(p.sample.len(), 3);
    assert_eq!(p.period, 10_000_000);
    assert_eq!(p.time_nanos, (w1 - MIN) as i64 * 1_000_000);
    assert_eq!(p.duration_nanos, MIN as i64 * 1_000_000);
    assert!(p.comment.iter().any(|&i| s(i) == "host=host-1"));
    let col = crate::formats::collapsed::read(
        &fs::read(dir.join(format!("profile_{}.col", stamp(w1)))).unwrap()[..],
    )
    .unwrap();
    // Sorted stacks, the same order in both files.
    assert_eq!(col.stacks.len(), p.sample.len());
    for (c, sample) in col.stacks.iter().zip(&p.sample) {
        let frames: Vec<&str> = sample
            .location_id
            .iter()
            .rev()
            .map(|&id| s(p.function[id as usize - 1].name))
            .collect();
        assert_eq!(frames.join(";"), &*c.frames);
        assert_eq!(sample.value, vec![c.count as i64]);
        let container = sample
            .label
            .iter()
            .find(|l| s(l.key) == "container")
            .map(|l| s(l.str));
        assert_eq!(container, c.container.as_deref());
    }
    // Retention counts `.pb.gz` files as a format of their own.
    h.send_minutes(4).await;
    h.finish().await;
    assert_eq!(profiles_with_ext(&dir, "pb.gz").len(), 2);
    assert_eq!(profiles_with_ext(&dir, "col").len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_bounds_file_count() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    // Files of others in the same directory are never touched.
    fs::write(dir.join("notes.txt"), "keep me").unwrap();
    fs::write(dir.join("profile_other.html"), "keep me").unwrap();
    let mut cfg = config(&dir);
    cfg.retain_files = 3;
    let h = Harness::start(&cfg, &["perf"]);
    h.send_minutes(6).await;
    h.finish().await;
    for ext in ["col", "folded", "svg"] {
        let files = profiles_with_ext(&dir, ext);
        let want: Vec<String> = (4..=6)
            .map(|i| format!("profile_{}.{ext}", stamp(T0 + i * MIN)))
            .collect();
        assert_eq!(files, want);
    }
    assert!(dir.join("notes.txt").exists());
    assert!(dir.join("profile_other.html").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_bounds_bytes_but_keeps_the_newest() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let mut cfg = config(&dir);
    cfg.formats = vec![FileFormat::Folded, FileFormat::Collapsed];
    // Each folded file is 6 bytes ("a;b N\n"); collapsed files are larger.
    cfg.retain_bytes = ByteSize(1);
    let h = Harness::start(&cfg, &["perf"]);
    h.send_minutes(4).await;
    h.finish().await;
    let newest = stamp(T0 + 4 * MIN);
    assert_eq!(
        profiles_with_ext(&dir, "folded"),
        vec![format!("profile_{newest}.folded")]
    );
    assert_eq!(
        profiles_with_ext(&dir, "col"),
        vec![format!("profile_{newest}.col")]
    );

    // A budget that holds a few files keeps the newest ones within it.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let mut cfg = folded_only(&dir);
    cfg.retain_bytes = ByteSize(13);
    let h = Harness::start(&cfg, &["perf"]);
    h.send_minutes(5).await;
    h.finish().await;
    let files = profiles_with_ext(&dir, "folded");
    assert_eq!(
        files,
        vec![
            format!("profile_{}.folded", stamp(T0 + 4 * MIN)),
            format!("profile_{}.folded", stamp(T0 + 5 * MIN)),
        ]
    );
    let total: u64 = files
        .iter()
        .map(|f| fs::metadata(dir.join(f)).unwrap().len())
        .sum();
    assert!(total <= 13);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overflow_merges_new_stacks_and_keeps_totals() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let mut cfg = folded_only(&dir);
    cfg.pending.max_pending_stacks = 2;
    let h = Harness::start(&cfg, &["perf"]);
    let end = T0 + MIN;
    h.send(profile(
        "perf",
        end,
        &[
            ("a", None, 1),
            ("b", None, 2),
            ("c", None, 3),
            ("d", None, 4),
        ],
    ))
    .await;
    let metrics = h.finish().await;
    assert_eq!(metrics.dropped_stack_count("overflow"), 2);
    let text = fs::read_to_string(dir.join("last_profile.folded")).unwrap();
    assert_eq!(text, "[overflow] 7\na 1\nb 2\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_profiles_do_not_overwrite_written_windows() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let cfg = folded_only(&dir);
    let h = Harness::start(&cfg, &["perf"]);
    let (w1, w2) = (T0 + MIN, T0 + 2 * MIN);
    h.send(profile("perf", w1, &[("a", None, 1)])).await;
    h.send(profile("perf", w2, &[("b", None, 1)])).await;
    h.send(watermark("perf", w2)).await;
    h.send(profile("perf", w1, &[("late", None, 1)])).await;
    let metrics = h.finish().await;
    assert_eq!(metrics.late_count(), 1);
    assert_eq!(
        profiles_with_ext(&dir, "folded"),
        vec![
            format!("profile_{}.folded", stamp(w1)),
            format!("profile_{}~1.folded", stamp(w1)),
            format!("profile_{}.folded", stamp(w2)),
        ]
    );
    // The link stays on the newest window.
    assert_eq!(
        fs::read_link(dir.join("last_profile.folded")).unwrap(),
        Path::new(&format!("profile_{}.folded", stamp(w2)))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_of_pushing_hosts_with_the_same_end_do_not_collide() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let h = Harness::start(&folded_only(&dir), &["gw"]);
    let end = T0 + MIN;
    let on = |host: &str, frames: &'static str| {
        let mut e = profile("gw", end, &[(frames, None, 1)]);
        if let Event::Profile(p) = &mut e {
            p.labels.host = host.into();
        }
        e
    };
    h.send(on("host-1", "own")).await;
    h.send(on("web 2/a", "other")).await;
    h.send(watermark("gw", end)).await;
    h.finish().await;
    let own = format!("profile_{}.folded", stamp(end));
    let other = format!("profile_{}_web_2_a.folded", stamp(end));
    assert_eq!(
        profiles_with_ext(&dir, "folded"),
        vec![own.clone(), other.clone()]
    );
    assert_eq!(fs::read_to_string(dir.join(own)).unwrap(), "own 1\n");
    assert_eq!(fs::read_to_string(dir.join(other)).unwrap(), "other 1\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_failures_are_counted_and_do_not_stop_the_sink() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("gone");
    let mut cfg = config(&dir);
    cfg.formats = vec![FileFormat::Folded, FileFormat::Flamegraph];
    let h = Harness::start(&cfg, &["perf"]);
    fs::remove_dir(&dir).unwrap();
    let (lost, not_written) = tracked(profile("perf", T0 + MIN, &[("a", None, 1)]));
    h.send(lost).await;
    h.send(watermark("perf", T0 + MIN)).await;
    h.send(Event::PerfScript(crate::event::PerfScriptChunk {
        process_labels: Default::default(),
        finalizers: Default::default(),
        window: Window::default(),
        labels: Labels::default(),
        data: Default::default(),
    }))
    .await;
    // A window that could not be written is not delivered.
    assert_eq!(not_written.wait().await, crate::event::EventStatus::Errored);
    // The directory comes back: later windows are written again.
    fs::create_dir(&dir).unwrap();
    h.send(profile("perf", T0 + 2 * MIN, &[("b", None, 1)]))
        .await;
    let metrics = h.finish().await;
    assert_eq!(metrics.error_count("write_failed"), 2);
    assert_eq!(metrics.error_count("unexpected_event"), 1);
    assert_eq!(metrics.sent_events(), 1);
    assert_eq!(profiles_with_ext(&dir, "folded").len(), 1);
}

#[test]
fn config_defaults_and_validation() {
    let table: toml::Value = toml::from_str(r#"path = "/tmp/x""#).unwrap();
    let cfg = parse_sink::<FileSinkConfig>(table).unwrap();
    let text = format!("{cfg:?}");
    assert!(text.contains("formats: [Collapsed, Flamegraph]"), "{text}");
    assert!(text.contains("retain_files: 100"), "{text}");
    assert!(
        text.contains("retain_bytes: ByteSize(1073741824)"),
        "{text}"
    );
    assert!(text.contains("max_pending_stacks: 1000000"), "{text}");
    assert!(text.contains("sample_rate: 11,"), "{text}");
    assert!(cfg.validate().is_empty());

    let table: toml::Value =
        toml::from_str("path = \"/tmp/x\"\nformats = [\"svg\"]\nbogus = 1").unwrap();
    assert!(parse_sink::<FileSinkConfig>(table).is_err());

    let mut cfg = config(Path::new("/tmp/x"));
    cfg.formats = vec![];
    cfg.retain_files = 0;
    cfg.sample_rate = 10_001;
    let paths: Vec<Vec<String>> = cfg.validate().into_iter().map(|e| e.path).collect();
    assert_eq!(
        paths,
        vec![
            vec!["formats".to_string()],
            vec!["sample_rate".to_string()],
            vec!["retain_files".to_string()]
        ]
    );
    cfg.sample_rate = 0;
    cfg.formats = vec![
        FileFormat::Folded,
        FileFormat::Collapsed,
        FileFormat::Folded,
    ];
    cfg.retain_files = 1;
    let errs = cfg.validate();
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].path, vec!["formats".to_string(), "2".to_string()]);
    assert!(errs[0].message.contains("twice"));
}

#[test]
fn build_fails_when_path_is_a_file() {
    let tmp = tempfile::NamedTempFile::new().unwrap();
    let cfg = config(tmp.path());
    let (_tx, cx, _) = sink_context("file", "archive", "h", &[]);
    let err = cfg.build(cx).err().expect("build must fail");
    assert!(err.0.contains("not a directory"), "{err}");
}
