//! The disk buffer against a model, and against damage.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use proptest::prelude::*;
use tokio::time::Instant;

use super::dead_letter;
use super::queue::{now_ms, AppendError, Queue, LEDGER_MAX};
use super::record::HEADER_LEN;
use super::segment::{self, MAGIC_LEN};
use crate::buffer::DeadLetterConfig;
use crate::event::EventStatus;
use crate::telemetry::{DiskBufferMetrics, Telemetry};
use crate::units::{ByteSize, DurationStr};

fn metrics() -> DiskBufferMetrics {
    Telemetry::new()
        .component("out", "sink", "test")
        .disk_buffer()
}

fn open(dir: &Path, max_bytes: u64) -> Queue {
    Queue::open(dir, max_bytes, metrics()).unwrap()
}

/// The buffer as the model test opens it: few attempts before the dead-letter
/// file, so that records do go there.
fn open_for_model(dir: &Path, max_bytes: u64, max_attempts: u32) -> Queue {
    let mut q = open(dir, max_bytes);
    q.set_dead_letter(DeadLetterConfig {
        max_attempts,
        ..DeadLetterConfig::default()
    });
    q
}

fn payload(seq_hint: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (seq_hint as usize * 31 + i) as u8)
        .collect()
}

#[derive(Clone, Debug)]
enum Op {
    Write(usize),
    Read,
    /// Resolve the n-th record out (modulo how many are out).
    Resolve(usize, EventStatus),
    /// Hand out an errored record again.
    Retry,
    Tick,
    /// Drop without the final ledger write (as `kill -9` leaves it).
    Crash,
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0usize..3000).prop_map(Op::Write),
        4 => Just(Op::Read),
        4 => (any::<usize>(), prop_oneof![
            3 => Just(EventStatus::Delivered),
            1 => Just(EventStatus::Rejected),
            1 => Just(EventStatus::Errored),
        ]).prop_map(|(i, s)| Op::Resolve(i, s)),
        1 => Just(Op::Retry),
        1 => Just(Op::Tick),
        1 => Just(Op::Crash),
        1 => Just(Op::Restart),
    ]
}

/// What the buffer must hold: every record written and not acknowledged; and what
/// its dead-letter file must hold.
#[derive(Default)]
struct Model {
    written: BTreeMap<u64, Vec<u8>>,
    /// Records moved to the dead-letter file, in the order they were moved.
    dead: Vec<(u64, Vec<u8>)>,
    /// Records delivered in this run.
    delivered: u64,
    /// Per record out or errored in this run: `delivered` when it was first
    /// handed out, and its errored outcomes.
    marks: BTreeMap<u64, (u64, u32)>,
    /// Handed out in this run, waiting for an outcome.
    out: BTreeSet<u64>,
    /// Reported errored in this run, waiting to be handed out again.
    errored: BTreeSet<u64>,
    /// The last sequence number read in this run.
    read: Option<u64>,
}

impl Model {
    fn restart(&mut self) {
        self.delivered = 0;
        self.marks.clear();
        self.out.clear();
        self.errored.clear();
        self.read = None;
    }

    /// The next record a reader must get: the oldest not acknowledged, after what
    /// this run has read.
    fn next(&self) -> Option<u64> {
        let from = self.read.map_or(0, |r| r + 1);
        self.written.range(from..).next().map(|(s, _)| *s)
    }
}

fn run(ops: Vec<Op>, max_bytes: u64, max_attempts: u32) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let mut q = Some(open_for_model(dir.path(), max_bytes, max_attempts));
    let mut m = Model::default();
    let far = Instant::now() + Duration::from_secs(86_400);
    for op in ops {
        let queue = q.as_mut().unwrap();
        match op {
            Op::Write(n) => {
                let p = payload(queue.next_seq(), n);
                match queue.append(&p, now_ms()) {
                    Ok(seq) => {
                        prop_assert!(
                            m.written.keys().all(|s| *s < seq),
                            "sequence numbers increase"
                        );
                        m.written.insert(seq, p);
                    }
                    Err(AppendError::Full) => {
                        let need = (HEADER_LEN + n) as u64 + MAGIC_LEN;
                        prop_assert!(
                            queue.disk_bytes() + need + LEDGER_MAX > max_bytes,
                            "refused only when full"
                        );
                    }
                    Err(e) => return Err(TestCaseError::fail(format!("{e}"))),
                }
            }
            Op::Read => {
                let got = queue.next_record();
                prop_assert_eq!(
                    got.as_ref().map(|r| r.seq),
                    m.next(),
                    "read in order, nothing lost or repeated"
                );
                if let Some(r) = got {
                    prop_assert_eq!(&r.payload, &m.written[&r.seq]);
                    m.read = Some(r.seq);
                    m.out.insert(r.seq);
                    m.marks.insert(r.seq, (m.delivered, 0));
                }
            }
            Op::Resolve(i, status) => {
                let Some(&seq) = m.out.iter().nth(i % m.out.len().max(1)) else {
                    continue;
                };
                queue.resolve(seq, status, Instant::now()).unwrap();
                m.out.remove(&seq);
                let mark = m.marks.get_mut(&seq).unwrap();
                mark.1 += u32::from(status == EventStatus::Errored);
                // Failed enough while others were delivered: dead-lettered.
                let dead = mark.1 >= max_attempts && m.delivered > mark.0;
                if status == EventStatus::Errored && !dead {
                    m.errored.insert(seq);
                } else {
                    let p = m.written.remove(&seq).unwrap();
                    m.marks.remove(&seq);
                    m.delivered += u64::from(status == EventStatus::Delivered);
                    if status == EventStatus::Errored {
                        m.dead.push((seq, p));
                    }
                }
            }
            Op::Retry => {
                let got = queue.due_retry(far);
                match got {
                    Some(r) => {
                        prop_assert!(m.errored.remove(&r.seq), "only errored records come again");
                        prop_assert_eq!(&r.payload, &m.written[&r.seq]);
                        m.out.insert(r.seq);
                    }
                    None => prop_assert!(m.errored.is_empty()),
                }
            }
            Op::Tick => queue.tick().unwrap(),
            Op::Crash => {
                q.take().unwrap().crash();
                q = Some(open_for_model(dir.path(), max_bytes, max_attempts));
                m.restart();
            }
            Op::Restart => {
                drop(q.take());
                q = Some(open_for_model(dir.path(), max_bytes, max_attempts));
                m.restart();
            }
        }
        let queue = q.as_ref().unwrap();
        prop_assert!(
            queue.disk_bytes() <= max_bytes,
            "{} > {max_bytes}",
            queue.disk_bytes()
        );
        prop_assert!(disk_usage(dir.path()) <= max_bytes);
    }
    // Whatever happened, a crash and a full read give back exactly what was not
    // acknowledged, in order.
    q.take().unwrap().crash();
    let mut queue = open(dir.path(), max_bytes);
    let mut replayed = Vec::new();
    while let Some(r) = queue.next_record() {
        prop_assert_eq!(&r.payload, &m.written[&r.seq]);
        replayed.push(r.seq);
    }
    prop_assert_eq!(replayed, m.written.keys().copied().collect::<Vec<_>>());
    // And the dead-letter file holds exactly the records that went there.
    let (dead, damage) = dead_letter::read_all(dir.path()).unwrap();
    prop_assert_eq!(damage, dead_letter::Damage::default());
    let dead: Vec<(u64, Vec<u8>)> = dead.into_iter().map(|e| (e.seq, e.payload)).collect();
    prop_assert_eq!(dead, m.dead);
    Ok(())
}

/// Bytes of the buffer's files in `dir`, as `du --apparent-size` counts them (the
/// dead-letter file has its own bound).
fn disk_usage(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name() != dead_letter::FILE)
        .map(|e| e.metadata().unwrap().len())
        .sum()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn the_buffer_behaves_like_its_model(
        ops in prop::collection::vec(op(), 1..160),
        max_attempts in 1u32..=2,
    ) {
        // Small enough that segments rotate, get deleted, and the buffer fills.
        run(ops, 1024 * 1024, max_attempts)?;
    }
}

/// Writes `n` records of `len` bytes and closes the buffer; returns their payloads.
fn fill(dir: &Path, n: u64, len: usize) -> Vec<Vec<u8>> {
    let mut q = open(dir, 64 * 1024 * 1024);
    (0..n)
        .map(|i| {
            let p = payload(i, len);
            q.append(&p, 0).unwrap();
            p
        })
        .collect()
}

fn read_all(q: &mut Queue) -> Vec<u64> {
    std::iter::from_fn(|| q.next_record().map(|r| r.seq)).collect()
}

fn only_segment(dir: &Path) -> std::path::PathBuf {
    let segs = segment::list(dir).unwrap().0;
    assert_eq!(segs.len(), 1);
    segs[0].path.clone()
}

#[test]
fn a_torn_last_record_is_truncated_and_counted_at_every_cut() {
    let src = tempfile::tempdir().unwrap();
    fill(src.path(), 5, 40);
    let seg = only_segment(src.path());
    let full = std::fs::metadata(&seg).unwrap().len();
    let record = (HEADER_LEN + 40) as u64;
    for cut in (full - record + 1)..full {
        let dir = tempfile::tempdir().unwrap();
        for e in std::fs::read_dir(src.path()).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), dir.path().join(e.file_name())).unwrap();
        }
        let seg = only_segment(dir.path());
        std::fs::OpenOptions::new()
            .write(true)
            .open(&seg)
            .unwrap()
            .set_len(cut)
            .unwrap();
        let m = metrics();
        let mut q = Queue::open(dir.path(), 64 * 1024 * 1024, m.clone()).unwrap();
        assert_eq!(m.corrupted_count("torn"), 1, "cut at {cut}");
        assert_eq!(std::fs::metadata(&seg).unwrap().len(), full - record);
        // New records follow the survivors and read back after them.
        let seq = q.append(b"after", 0).unwrap();
        assert_eq!(read_all(&mut q), [0, 1, 2, 3, seq], "cut at {cut}");
        assert_eq!(
            m.corrupted_count("missing"),
            0,
            "the torn record is counted once"
        );
    }
}

#[test]
fn a_flipped_payload_byte_costs_that_record_only() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), 5, 40);
    let seg = only_segment(dir.path());
    let mut bytes = std::fs::read(&seg).unwrap();
    let third = MAGIC_LEN as usize + 2 * (HEADER_LEN + 40);
    bytes[third + HEADER_LEN + 7] ^= 0x10;
    std::fs::write(&seg, bytes).unwrap();
    let m = metrics();
    let mut q = Queue::open(dir.path(), 64 * 1024 * 1024, m.clone()).unwrap();
    assert_eq!(read_all(&mut q), [0, 1, 3, 4]);
    assert_eq!(m.corrupted_count("checksum"), 1);
    assert_eq!(m.replayed_count(), 4);
}

#[test]
fn a_flipped_header_byte_costs_the_rest_of_its_segment_and_reading_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    // 1 MiB buffer: 128 KiB segments; 100 records of 4 KiB fill several.
    let mut q = open(dir.path(), 1024 * 1024);
    for i in 0..100 {
        if matches!(q.append(&payload(i, 4000), 0), Err(AppendError::Full)) {
            break;
        }
    }
    let written = q.next_seq();
    drop(q);
    let segs = segment::list(dir.path()).unwrap().0;
    assert!(segs.len() >= 3, "{} segments", segs.len());
    let victim = &segs[1];
    let per_segment = segs[2].first_seq - segs[1].first_seq;
    let mut bytes = std::fs::read(&victim.path).unwrap();
    // The header of the segment's second record.
    bytes[MAGIC_LEN as usize + HEADER_LEN + 4000 + 5] ^= 0x01;
    std::fs::write(&victim.path, bytes).unwrap();
    let m = metrics();
    let mut q = Queue::open(dir.path(), 1024 * 1024, m.clone()).unwrap();
    let got = read_all(&mut q);
    assert_eq!(got.len() as u64, written - (per_segment - 1));
    assert_eq!(m.corrupted_count("header"), 1);
    assert_eq!(m.corrupted_count("unreadable"), per_segment - 1);
    assert!(got.windows(2).all(|w| w[0] < w[1]));
}

#[test]
fn a_deleted_segment_is_counted_missing_and_the_rest_replays() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = open(dir.path(), 1024 * 1024);
    for i in 0..120 {
        q.append(&payload(i, 4000), 0).unwrap();
    }
    drop(q);
    let segs = segment::list(dir.path()).unwrap().0;
    let lost = segs[2].first_seq - segs[1].first_seq;
    std::fs::remove_file(&segs[1].path).unwrap();
    let m = metrics();
    let mut q = Queue::open(dir.path(), 1024 * 1024, m.clone()).unwrap();
    assert_eq!(read_all(&mut q).len() as u64, 120 - lost);
    assert_eq!(m.corrupted_count("missing"), lost);
}

#[test]
fn acknowledged_records_are_not_replayed_even_out_of_order_and_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = open(dir.path(), 64 * 1024 * 1024);
    for i in 0..10 {
        q.append(&payload(i, 10), now_ms()).unwrap();
    }
    assert_eq!(read_all(&mut q).len(), 10);
    let now = Instant::now();
    for seq in [7, 2, 9, 0, 1] {
        q.resolve(seq, EventStatus::Delivered, now).unwrap();
    }
    q.resolve(3, EventStatus::Rejected, now).unwrap();
    q.resolve(4, EventStatus::Errored, now).unwrap();
    q.crash();
    let mut q = open(dir.path(), 64 * 1024 * 1024);
    assert_eq!(read_all(&mut q), [4, 5, 6, 8]);
}

#[test]
fn a_drained_buffer_gives_its_disk_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = open(dir.path(), 64 * 1024 * 1024);
    for i in 0..50 {
        q.append(&payload(i, 4000), 0).unwrap();
    }
    let now = Instant::now();
    for seq in read_all(&mut q) {
        q.resolve(seq, EventStatus::Delivered, now).unwrap();
    }
    q.tick().unwrap();
    let segments = segment::list(dir.path()).unwrap().0;
    assert_eq!(segments.len(), 1);
    assert_eq!(segments[0].len, MAGIC_LEN, "only an empty segment is left");
    // And the buffer goes on as before.
    let seq = q.append(b"next", 0).unwrap();
    assert_eq!(read_all(&mut q), [seq]);
}

#[test]
fn a_second_agent_is_refused_the_buffer() {
    let dir = tempfile::tempdir().unwrap();
    let _q = open(dir.path(), 1024 * 1024);
    let err = Queue::open(dir.path(), 1024 * 1024, metrics())
        .err()
        .unwrap();
    assert!(
        err.to_string()
            .contains("another profpipe process holds it"),
        "{err}"
    );
}

#[test]
fn a_directory_that_cannot_be_made_is_a_clear_error() {
    let file = tempfile::NamedTempFile::new().unwrap();
    let err = Queue::open(&file.path().join("buf"), 1024 * 1024, metrics())
        .err()
        .unwrap();
    let msg = err.to_string();
    assert!(
        msg.contains("cannot create the directory") && msg.contains("buf"),
        "{msg}"
    );
}

#[test]
fn files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let buf = dir.path().join("b");
    let mut q = open(&buf, 1024 * 1024);
    q.append(b"x", 0).unwrap();
    drop(q);
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&buf), 0o700);
    for e in std::fs::read_dir(&buf).unwrap() {
        let p = e.unwrap().path();
        assert_eq!(mode(&p), 0o600, "{}", p.display());
    }
}

fn dead_letter_policy(max_attempts: u32, max_bytes: u64) -> DeadLetterConfig {
    DeadLetterConfig {
        max_attempts,
        max_record_age: DurationStr::from_secs(3600),
        max_bytes: ByteSize(max_bytes),
    }
}

/// Hands out every record, then reports `outcomes` for them in order.
fn hand_out_and_resolve(q: &mut Queue, outcomes: &[(u64, EventStatus)], now: Instant) {
    for &(seq, status) in outcomes {
        q.resolve(seq, status, now).unwrap();
    }
}

#[test]
fn a_record_failing_while_others_are_delivered_is_dead_lettered_and_the_rest_flows() {
    let dir = tempfile::tempdir().unwrap();
    let m = metrics();
    let mut q = Queue::open(dir.path(), 1024 * 1024, m.clone()).unwrap();
    q.set_dead_letter(dead_letter_policy(2, 1 << 20));
    let poison = payload(0, 300);
    q.append(&poison, now_ms()).unwrap();
    for i in 1..4 {
        q.append(&payload(i, 300), now_ms()).unwrap();
    }
    assert_eq!(read_all(&mut q), [0, 1, 2, 3]);
    let now = Instant::now();
    // One failure: kept, handed out again later.
    hand_out_and_resolve(
        &mut q,
        &[(0, EventStatus::Errored), (1, EventStatus::Delivered)],
        now,
    );
    let again = q.due_retry(now + Duration::from_secs(10)).unwrap();
    assert_eq!((again.seq, &again.payload), (0, &poison));
    // The second, while others were delivered: moved out, acknowledged.
    hand_out_and_resolve(
        &mut q,
        &[
            (2, EventStatus::Delivered),
            (0, EventStatus::Errored),
            (3, EventStatus::Delivered),
        ],
        now,
    );
    assert_eq!(q.pointer(), 4, "nothing holds the read position");
    assert!(q.due_retry(now + Duration::from_secs(86_400)).is_none());
    assert_eq!(m.dead_lettered_count(), 1);
    let file = dir.path().join(dead_letter::FILE);
    assert_eq!(
        m.dead_letter_bytes(),
        std::fs::metadata(&file).unwrap().len()
    );
    let (dead, _) = dead_letter::read_all(dir.path()).unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(
        (dead[0].seq, &dead[0].payload),
        (0, &poison),
        "the payload exactly"
    );
    // It survives a crash and is not replayed from the buffer.
    q.crash();
    let mut q = open(dir.path(), 1024 * 1024);
    assert!(read_all(&mut q).is_empty());
    assert_eq!(dead_letter::read_all(dir.path()).unwrap().0, dead);
}

#[test]
fn an_outage_never_dead_letters() {
    let dir = tempfile::tempdir().unwrap();
    let m = metrics();
    let mut q = Queue::open(dir.path(), 1024 * 1024, m.clone()).unwrap();
    q.set_dead_letter(dead_letter_policy(1, 1 << 20));
    for i in 0..3 {
        q.append(&payload(i, 100), now_ms()).unwrap();
    }
    assert_eq!(read_all(&mut q), [0, 1, 2]);
    // Hours of failures of every record, nothing delivered: all of them stay.
    let mut now = Instant::now();
    for _ in 0..10 {
        for seq in 0..3 {
            q.resolve(seq, EventStatus::Errored, now).unwrap();
        }
        now += Duration::from_secs(3600);
        let back: Vec<u64> = std::iter::from_fn(|| q.due_retry(now).map(|r| r.seq)).collect();
        assert_eq!(back, [0, 1, 2]);
    }
    assert_eq!(m.dead_lettered_count(), 0);
    assert!(!dir.path().join(dead_letter::FILE).exists());
}

#[test]
fn past_max_record_age_one_more_failure_dead_letters() {
    let dir = tempfile::tempdir().unwrap();
    let m = metrics();
    let mut q = Queue::open(dir.path(), 1024 * 1024, m.clone()).unwrap();
    q.set_dead_letter(dead_letter_policy(100, 1 << 20));
    for i in 0..2 {
        q.append(&payload(i, 100), now_ms()).unwrap();
    }
    read_all(&mut q);
    let now = Instant::now();
    q.resolve(1, EventStatus::Delivered, now).unwrap();
    q.resolve(0, EventStatus::Errored, now + Duration::from_secs(1800))
        .unwrap();
    assert_eq!(m.dead_lettered_count(), 0, "younger than max_record_age");
    let r = q.due_retry(now + Duration::from_secs(3600)).unwrap();
    q.resolve(r.seq, EventStatus::Errored, now + Duration::from_secs(3601))
        .unwrap();
    assert_eq!(m.dead_lettered_count(), 1);
}

#[test]
fn at_its_bound_the_dead_letter_file_drops_and_counts() {
    let dir = tempfile::tempdir().unwrap();
    let m = metrics();
    let mut q = Queue::open(dir.path(), 1024 * 1024, m.clone()).unwrap();
    let bound = DeadLetterConfig::MIN_BYTES.get();
    q.set_dead_letter(dead_letter_policy(1, bound));
    for i in 0..3 {
        q.append(&payload(i, 40_000), now_ms()).unwrap();
    }
    read_all(&mut q);
    let now = Instant::now();
    hand_out_and_resolve(
        &mut q,
        &[
            (2, EventStatus::Delivered),
            (0, EventStatus::Errored),
            (1, EventStatus::Errored),
        ],
        now,
    );
    assert_eq!(m.dead_lettered_count(), 1);
    assert_eq!(m.dead_letter_dropped_count(), 1);
    assert_eq!(q.pointer(), 3, "both let go: the buffer never stalls");
    assert!(
        std::fs::metadata(dir.path().join(dead_letter::FILE))
            .unwrap()
            .len()
            <= bound
    );
}

#[test]
fn replay_puts_dead_letters_back_and_waits_for_the_buffers_lock() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = open(dir.path(), 1024 * 1024);
    q.set_dead_letter(dead_letter_policy(1, 1 << 20));
    let poison = payload(0, 500);
    q.append(&poison, now_ms()).unwrap();
    q.append(&payload(1, 500), now_ms()).unwrap();
    read_all(&mut q);
    let now = Instant::now();
    hand_out_and_resolve(
        &mut q,
        &[(1, EventStatus::Delivered), (0, EventStatus::Errored)],
        now,
    );
    // While the agent holds the buffer, replay is refused (after the lock's
    // patience) and changes nothing.
    let err = dead_letter::replay(dir.path(), 1024 * 1024, metrics()).unwrap_err();
    assert!(
        err.to_string()
            .contains("another profpipe process holds it"),
        "{err}"
    );
    assert_eq!(dead_letter::read_all(dir.path()).unwrap().0.len(), 1);
    drop(q);
    let done = dead_letter::replay(dir.path(), 1024 * 1024, metrics()).unwrap();
    assert_eq!((done.records, done.left), (1, 0));
    assert!(!dir.path().join(dead_letter::FILE).exists());
    // The next run hands it out again, as a new record with its payload intact.
    let mut q = open(dir.path(), 1024 * 1024);
    let r = q.next_record().unwrap();
    assert!(r.seq >= 2);
    assert_eq!(r.payload, poison);
    assert!(q.next_record().is_none());
}

mod ends {
    use std::path::Path;

    use super::super::open;
    use crate::buffer::{
        BufferConfig, BufferKind, EdgeSender, Input, MemoryBudget, SyncPolicy, WhenFull,
    };
    use crate::event::{
        Batch, BatchReceiver, Event, EventStatus, Labels, Profile, Stack, Watermark, Window,
    };
    use crate::telemetry::{ComponentMetrics, Telemetry};
    use crate::units::ByteSize;

    fn config(max_bytes: u64, when_full: WhenFull) -> BufferConfig {
        BufferConfig {
            kind: BufferKind::Disk,
            max_bytes: ByteSize(max_bytes),
            when_full,
            sync: SyncPolicy::Always,
            ..Default::default()
        }
    }

    fn buffer(dir: &Path, c: BufferConfig) -> (EdgeSender, Input, ComponentMetrics) {
        let m = Telemetry::new().component("out", "sink", "test");
        let (tx, rx) = open(dir, c, &MemoryBudget::new(64 << 20), m.clone()).unwrap();
        (tx, rx, m)
    }

    fn profile(i: u64, frame_bytes: usize) -> (Event, BatchReceiver) {
        let (batch, rx) = Batch::new();
        let mut p = Profile::new(
            Window::new(i * 1000, i * 1000 + 1000),
            Labels::default(),
            vec![Stack::new(
                format!("{i};{}", "f".repeat(frame_bytes)),
                i + 1,
            )],
        );
        p.finalizers = batch.finalizers();
        (Event::Profile(p), rx)
    }

    /// Sends `n` profiles of 20 KB one after the other, each waiting for its
    /// outcome; how many came back `status`.
    async fn send_all(tx: &EdgeSender, n: u64, status: EventStatus) -> usize {
        let mut matching = 0;
        for i in 0..n {
            let (e, r) = profile(i, 20_000);
            tx.send(e).await.unwrap();
            matching += usize::from(r.wait().await == status);
        }
        matching
    }

    fn watermark(until: u64) -> Event {
        Event::Watermark(Watermark {
            source: "src".into(),
            complete_until_ms: until,
        })
    }

    fn count_of(e: &Event) -> u64 {
        match e {
            Event::Profile(p) => p.stacks[0].count,
            other => panic!("expected a profile, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn writers_are_acknowledged_when_written_and_the_sink_frees_records() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, mut rx, m) = buffer(dir.path(), config(1 << 20, WhenFull::Block));
        let (a, a_rx) = profile(0, 10);
        let (b, b_rx) = profile(1, 10);
        tx.send(a).await.unwrap();
        tx.send(watermark(1000)).await.unwrap();
        tx.send(b).await.unwrap();
        // Written (and synced): the producer may forget.
        assert_eq!(a_rx.wait().await, EventStatus::Delivered);
        assert_eq!(b_rx.wait().await, EventStatus::Delivered);
        let mut first = rx.recv().await.unwrap();
        assert_eq!(count_of(&first), 1);
        assert!(
            rx.recv().await.unwrap().is_watermark(),
            "the watermark stays behind a"
        );
        let second = rx.recv().await.unwrap();
        assert_eq!(count_of(&second), 2);
        first.take_finalizers().resolve(EventStatus::Delivered);
        drop((tx, rx, second)); // b's token dropped unresolved: errored, kept
        assert_eq!(m.disk_buffer().written_count(), 2);

        let (tx, mut rx, m) = buffer(dir.path(), config(1 << 20, WhenFull::Block));
        drop(tx);
        let mut replayed = rx.recv().await.expect("b comes back");
        assert_eq!(count_of(&replayed), 2);
        assert_eq!(m.disk_buffer().replayed_count(), 1);
        replayed.take_finalizers().resolve(EventStatus::Delivered);
        assert!(rx.recv().await.is_none(), "a is not replayed");
    }

    #[tokio::test]
    async fn drop_newest_at_the_limit_rejects_and_counts() {
        let dir = tempfile::tempdir().unwrap();
        let max = BufferConfig::MIN_DISK_BYTES.get() * 4;
        let (tx, _rx, m) = buffer(dir.path(), config(max, WhenFull::DropNewest));
        let rejected = send_all(&tx, 200, EventStatus::Rejected).await;
        assert!(rejected > 0 && rejected < 200, "{rejected} rejected");
        assert_eq!(m.discarded_count("buffer_full"), rejected as u64);
        assert_eq!(m.disk_buffer().written_count(), 200 - rejected as u64);
        assert!(m.disk_buffer().disk_bytes() <= max);
    }

    #[tokio::test]
    async fn block_holds_the_writer_until_the_sink_frees_room() {
        let dir = tempfile::tempdir().unwrap();
        let max = BufferConfig::MIN_DISK_BYTES.get() * 4;
        let (tx, mut rx, m) = buffer(dir.path(), config(max, WhenFull::Block));
        let n = 300u64; // about 6 MB through a 1 MiB buffer
        let writer = tokio::spawn(async move {
            for i in 0..n {
                let (e, r) = profile(i, 20_000);
                tx.send(e).await.unwrap();
                assert_eq!(r.wait().await, EventStatus::Delivered);
            }
        });
        let mut got = Vec::new();
        while let Some(mut e) = rx.recv().await {
            got.push(count_of(&e));
            e.take_finalizers().resolve(EventStatus::Delivered);
            assert!(m.disk_buffer().disk_bytes() <= max);
        }
        writer.await.unwrap();
        assert_eq!(got, (1..=n).collect::<Vec<_>>(), "all of them, in order");
        assert_eq!(m.discarded_events(), 0);
    }

    #[test]
    fn waiting_watermarks_coalesce_and_stay_bounded() {
        use super::super::ends::push_watermark as push;
        let mut q = std::collections::VecDeque::new();
        let w = |src: &str, t| Watermark {
            source: src.into(),
            complete_until_ms: t,
        };
        // Behind the same record, a source's later watermark replaces its earlier.
        assert!(push(&mut q, 5, w("a", 1)) && push(&mut q, 5, w("a", 2)));
        assert_eq!(q.len(), 1);
        assert_eq!(q[0].1.complete_until_ms, 2);
        // Past the bound the oldest superseded one goes: nothing is lost.
        for seq in 6..2000 {
            assert!(push(
                &mut q,
                seq,
                w(if seq % 2 == 0 { "a" } else { "b" }, seq)
            ));
        }
        assert_eq!(q.len(), 1024);
        assert_eq!(q.back().unwrap().1.complete_until_ms, 1999);
    }

    #[tokio::test(start_paused = true)]
    async fn an_errored_record_is_handed_out_again() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, mut rx, m) = buffer(dir.path(), config(1 << 20, WhenFull::Block));
        let (e, _) = profile(7, 10);
        tx.send(e).await.unwrap();
        let mut first = rx.recv().await.unwrap();
        first.take_finalizers().resolve(EventStatus::Errored);
        let started = tokio::time::Instant::now();
        let mut again = rx.recv().await.unwrap();
        assert_eq!(count_of(&again), 8);
        assert!(started.elapsed() >= std::time::Duration::from_secs(10));
        assert_eq!(m.disk_buffer().redelivered_count(), 1);
        again.take_finalizers().resolve(EventStatus::Delivered);
        drop(tx);
        assert!(rx.recv().await.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_record_the_sink_keeps_failing_goes_to_the_dead_letter_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = config(1 << 20, WhenFull::Block);
        c.dead_letter.max_attempts = 2;
        let (tx, mut rx, m) = buffer(dir.path(), c);
        for i in 0..3 {
            tx.send(profile(i, 10).0).await.unwrap();
        }
        let mut poison = rx.recv().await.unwrap();
        assert_eq!(count_of(&poison), 1);
        m.note_delivery_error("http_503: 503 Service Unavailable");
        poison.take_finalizers().resolve(EventStatus::Errored);
        for want in [2, 3] {
            let mut e = rx.recv().await.unwrap();
            assert_eq!(count_of(&e), want);
            e.take_finalizers().resolve(EventStatus::Delivered);
        }
        let started = tokio::time::Instant::now();
        let mut poison = rx.recv().await.unwrap();
        assert_eq!(count_of(&poison), 1);
        assert!(started.elapsed() >= std::time::Duration::from_secs(10));
        poison.take_finalizers().resolve(EventStatus::Errored);
        let later = tokio::time::timeout(std::time::Duration::from_secs(600), rx.recv()).await;
        assert!(later.is_err(), "it is not handed out again");
        drop(tx);
        assert!(rx.recv().await.is_none());
        assert_eq!(m.disk_buffer().dead_lettered_count(), 1);
        drop(rx);
        let (dead, _) = super::dead_letter::read_all(dir.path()).unwrap();
        assert_eq!(dead.len(), 1);
        let event = crate::buffer::disk::codec::decode(&dead[0].payload).unwrap();
        assert_eq!(count_of(&event), 1);
    }

    /// A tmpfs of `size` mounted on a new directory; unmounted when dropped.
    struct Tmpfs(tempfile::TempDir);

    /// Runs `mount ARGS DIR`; whether it worked.
    fn mount(args: &[&str], dir: &Path) -> bool {
        std::process::Command::new("mount")
            .args(args)
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success())
    }

    impl Tmpfs {
        fn mount(size: &str) -> Option<Tmpfs> {
            let dir = tempfile::tempdir().unwrap();
            let size = format!("size={size}");
            mount(&["-t", "tmpfs", "-o", &size, "tmpfs"], dir.path()).then_some(Tmpfs(dir))
        }

        fn remount_read_only(&self) {
            assert!(mount(&["-o", "remount,ro"], self.0.path()));
        }
    }

    impl Drop for Tmpfs {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount")
                .arg(self.0.path())
                .status();
        }
    }

    #[tokio::test]
    async fn a_full_disk_is_an_error_for_the_producer_never_a_panic() {
        let Some(fs) = Tmpfs::mount("512k") else {
            panic!("mounting a tmpfs needs root, as the test suite runs");
        };
        // The buffer may use more than the disk has: the disk fills first.
        let (tx, mut rx, m) = buffer(&fs.0.path().join("buf"), config(64 << 20, WhenFull::Block));
        let errored = send_all(&tx, 100, EventStatus::Errored).await;
        assert!(errored > 0, "the disk filled");
        assert_eq!(m.error_count("disk_write"), errored as u64);
        // What was written reads back whole: no partial record was left behind.
        drop(tx);
        let mut n = 0;
        while let Some(mut e) = rx.recv().await {
            e.take_finalizers().resolve(EventStatus::Delivered);
            n += 1;
        }
        assert_eq!(n, 100 - errored);
        assert_eq!(m.disk_buffer().corrupted_count("checksum"), 0);
    }

    #[tokio::test]
    async fn a_read_only_directory_is_a_clear_error_at_open() {
        let Some(fs) = Tmpfs::mount("1m") else {
            panic!("mounting a tmpfs needs root, as the test suite runs");
        };
        fs.remount_read_only();
        let m = Telemetry::new().component("out", "sink", "test");
        let err = open(
            &fs.0.path().join("buf"),
            config(1 << 20, WhenFull::Block),
            &MemoryBudget::new(1 << 26),
            m,
        )
        .err()
        .unwrap()
        .to_string();
        assert!(
            err.contains("Read-only file system") && err.contains("buf"),
            "{err}"
        );
    }
}

/// Found by fuzzing the recovery: sequence numbers near `u64::MAX` under valid
/// checksums (a header, a segment's name, the ledger) made `seq + 1` overflow at
/// start and while reading. They are damage, counted, and the buffer goes on.
#[test]
fn sequence_numbers_near_the_limit_are_damage_not_overflow() {
    use super::record::{frame, SEQ_LIMIT};
    let segment_with = |dir: &Path, first: u64, seqs: &[u64]| {
        let mut bytes = super::segment::MAGIC.to_vec();
        for &seq in seqs {
            frame(seq, 0, b"payload", &mut bytes);
        }
        std::fs::write(dir.join(segment::file_name(first)), bytes).unwrap();
    };

    // The last segment ends with a record numbered u64::MAX: a damaged header at
    // its end, truncated as torn; the record before it reads back.
    let dir = tempfile::tempdir().unwrap();
    segment_with(dir.path(), 0, &[0, u64::MAX]);
    let m = metrics();
    let mut q = Queue::open(dir.path(), 64 * 1024 * 1024, m.clone()).unwrap();
    assert_eq!(m.corrupted_count("torn"), 1);
    let seq = q.append(b"after", 0).unwrap();
    assert_eq!(read_all(&mut q), [0, seq]);
    drop(q);

    // In an older segment the same record costs the rest of that segment.
    let dir = tempfile::tempdir().unwrap();
    segment_with(dir.path(), 0, &[0, u64::MAX, 1]);
    segment_with(dir.path(), 2, &[2]);
    let m = metrics();
    let mut q = Queue::open(dir.path(), 64 * 1024 * 1024, m.clone()).unwrap();
    assert_eq!(read_all(&mut q), [0, 2]);
    assert_eq!(m.corrupted_count("header"), 1);
    assert_eq!(m.corrupted_count("unreadable"), 1);
    drop(q);

    // The highest number in range reads back; the writer, with no number left,
    // refuses (an error, never a wrapped number).
    let dir = tempfile::tempdir().unwrap();
    segment_with(dir.path(), SEQ_LIMIT - 1, &[SEQ_LIMIT - 1]);
    let mut q = open(dir.path(), 64 * 1024 * 1024);
    assert_eq!(q.next_seq(), SEQ_LIMIT);
    assert!(matches!(q.append(b"x", 0), Err(AppendError::Io { .. })));
    assert_eq!(read_all(&mut q), [SEQ_LIMIT - 1]);
    drop(q);

    // A segment named past the limit is left alone and not read.
    let dir = tempfile::tempdir().unwrap();
    segment_with(dir.path(), 0, &[0]);
    let stray = dir.path().join("18446744073709551615.seg");
    std::fs::write(&stray, b"x").unwrap();
    let mut q = open(dir.path(), 64 * 1024 * 1024);
    assert_eq!(q.next_seq(), 1);
    assert_eq!(read_all(&mut q), [0]);
    assert!(stray.exists());
}

/// The fuzz target's checks (`fuzz/fuzz_targets/disk_buffer.rs`) on a few damaged
/// directories, so a broken promise shows up in `cargo test` too.
#[test]
fn recovery_keeps_its_promises_on_damaged_directories() {
    use super::fuzzing::{recover, DiskFile};
    use super::record::{frame, SEQ_LIMIT};
    let seg = |seqs: &[u64]| {
        let mut bytes = super::segment::MAGIC.to_vec();
        for &seq in seqs {
            frame(seq, 0, b"payload", &mut bytes);
        }
        bytes
    };
    let (a, b, c) = (seg(&[0, 1, 2]), seg(&[3, u64::MAX]), seg(&[5, 6]));
    let highest = seg(&[SEQ_LIMIT - 2]);
    let below_its_name = seg(&[0]);
    // Records numbered below the full segment's name: the new segment must not
    // take that name (it did: the buffer failed to open, "File exists").
    let mut full = seg(&[]);
    while full.len() < 64 * 1024 {
        frame(1, 0, &[0; 1000], &mut full);
    }
    let cases: Vec<Vec<DiskFile>> = vec![
        vec![],
        vec![DiskFile::Segment(0, &a)],
        vec![
            DiskFile::Segment(0, &a),
            DiskFile::Segment(3, &b),
            DiskFile::Segment(5, &c),
        ],
        vec![DiskFile::Segment(0, b"PPDBSEG\x02garbage")],
        vec![
            DiskFile::Ledger(b"PPDBLED\x01 short"),
            DiskFile::Segment(0, &a),
        ],
        vec![DiskFile::Segment(SEQ_LIMIT - 2, &highest)],
        vec![DiskFile::Segment(100, &full)],
        // Found by fuzzing: a segment named above its only record; once drained, the
        // fresh segment took the same name ("File exists" at every tick).
        vec![DiskFile::Segment(1, &below_its_name)],
    ];
    for (i, files) in cases.iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        recover(dir.path(), files, &[b"one", b"two", b"three"])
            .unwrap_or_else(|e| panic!("case {i}: {e}"));
    }
}
