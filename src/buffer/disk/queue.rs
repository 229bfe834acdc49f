//! The disk buffer's storage, without any async: segments, where reading stands,
//! which records are out with the sink, and the limits. The buffer's two ends
//! (`ends.rs`) call it under one mutex; the model test drives it directly.
//!
//! Sequence numbers order everything. The *pointer* is the lowest sequence number
//! not yet acknowledged: every record below it was delivered, rejected, or lost
//! (counted). A segment is deleted once the next segment starts at or below the
//! pointer. Records acknowledged above the pointer (out of order) are kept in a
//! set, bounded with the records out ([`MAX_TRACKED`]), and written to the
//! ledger, so a restart replays exactly what was not acknowledged.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::dead_letter::{self, DeadLetter};
use super::ledger::{self, Ledger};
use super::record::{frame, Header, HEADER_LEN, SEQ_LIMIT};
use super::segment::{self, Segment, MAGIC, MAGIC_LEN};
use crate::buffer::DeadLetterConfig;
use crate::event::EventStatus;
use crate::state_dir::{self, DirLock, LockError};
use crate::telemetry::{DiskBufferMetrics, RateLimited};

/// Most records tracked at once: out with the sink, or acknowledged above the
/// pointer. Past it the reader waits for acknowledgements. Bounds the buffer's
/// memory and the ledger's size.
pub const MAX_TRACKED: usize = 8192;

/// The most bytes the ledger can take: the entries of one full tracking set and
/// as many appended before it is rewritten. Kept free within `max_bytes`.
pub const LEDGER_MAX: u64 = ledger::size_with(2 * MAX_TRACKED);

/// A segment is closed once it holds this share of `max_bytes`, within bounds.
const SEGMENT_SHARE: u64 = 8;
const MIN_SEGMENT: u64 = 64 * 1024;
const MAX_SEGMENT: u64 = 128 * 1024 * 1024;

/// A record the sink reported `Errored` is handed out again after this, doubling
/// with each attempt up to [`RETRY_MAX`]. (The sink's driver has already retried
/// it for `retry_max_elapsed`.)
const RETRY_BASE: Duration = Duration::from_secs(10);
const RETRY_MAX: Duration = Duration::from_secs(300);

/// How long opening waits for the buffer's lock to be let go (see
/// [`DirLock::acquire`]).
const LOCK_PATIENCE: Duration = Duration::from_secs(5);

/// How often the same kind of trouble is logged.
const LOG_EVERY: Duration = Duration::from_secs(60);

/// The segment size for a buffer of `max_bytes`.
pub fn segment_size(max_bytes: u64) -> u64 {
    (max_bytes / SEGMENT_SHARE).clamp(MIN_SEGMENT, MAX_SEGMENT)
}

/// Why the buffer could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot {what} {path}: {source}")]
    Io {
        what: &'static str,
        path: String,
        source: io::Error,
    },
    #[error("the disk buffer {0} is in use: {1}")]
    Locked(String, LockError),
}

/// Why a record was not written.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    #[error("the buffer is full")]
    Full,
    #[error("a record of {0} bytes can never fit in the buffer")]
    TooLarge(u64),
    #[error("writing {path}: {source}")]
    Io { path: String, source: io::Error },
}

/// A record handed to the sink.
#[derive(Debug)]
pub struct Record {
    pub seq: u64,
    pub payload: Vec<u8>,
}

/// A record out with the sink.
#[derive(Debug)]
struct Flight {
    segment: u64,
    offset: u64,
    written_ms: u64,
    attempts: u32,
    retry_at: Option<Instant>,
    /// When this run first handed it out.
    first_out: Instant,
    /// [`Queue::delivered`] then: a record the sink fails while this grows is the
    /// trouble, not the destination.
    delivered_mark: u64,
}

/// See the module documentation.
pub struct Queue {
    dir: PathBuf,
    _lock: DirLock,
    max_bytes: u64,
    segment_size: u64,
    segments: VecDeque<Segment>,
    /// The newest segment, the one written to.
    file: Arc<File>,
    /// Files with writes not yet synced.
    unsynced: Vec<Arc<File>>,
    segment_bytes: u64,
    next_seq: u64,
    ledger: Ledger,
    /// Pointer last written in the ledger's header.
    persisted: u64,

    // Reading.
    read_idx: usize,
    /// Offset in the segment being read; 0 until its magic is checked.
    read_off: u64,
    /// The sequence number the next record should have.
    expect: u64,
    /// Records below this were acknowledged before this run started.
    skip_below: u64,
    /// Records below this were written by an earlier run.
    replay_below: u64,
    /// The rest of a segment was given up: a gap after it is `unreadable`.
    abandoned: bool,
    /// Sequence number of a torn record truncated at start (counted as `torn`).
    torn_seq: Option<u64>,

    in_flight: BTreeMap<u64, Flight>,
    retries: BTreeSet<(Instant, u64)>,
    /// Records reported `Delivered` in this run.
    delivered: u64,
    dead_letter: DeadLetter,
    dead_letter_policy: DeadLetterConfig,
    /// Acknowledged at or above the pointer.
    acked: BTreeSet<u64>,

    /// No writer is left: errored records stay for the next start.
    closed: bool,
    /// Set by [`Queue::crash`]: drop without the final ledger write.
    crashed: bool,
    metrics: DiskBufferMetrics,
    log: RateLimited<&'static str>,
    scratch: Vec<u8>,
    /// The segment last read from, kept open.
    read_cache: RefCell<Option<(u64, Arc<File>)>>,
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> OpenError {
    let path = path.display().to_string();
    move |source| OpenError::Io { what, path, source }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Queue {
    /// Opens (or creates) the buffer in `dir`: takes its lock, reads the ledger,
    /// truncates a torn last record, and positions the reader at the oldest record
    /// not acknowledged.
    pub fn open(
        dir: &Path,
        max_bytes: u64,
        metrics: DiskBufferMetrics,
    ) -> Result<Queue, OpenError> {
        state_dir::create(dir).map_err(io_err("create the directory", dir))?;
        let lock = DirLock::acquire(dir, "lock", LOCK_PATIENCE)
            .map_err(|e| OpenError::Locked(dir.display().to_string(), e))?;
        let (ledger, recovered) =
            Ledger::open(dir, 4 * LEDGER_MAX).map_err(io_err("read the ledger in", dir))?;
        if recovered.damaged {
            tracing::warn!(dir = %dir.display(), "disk buffer ledger unreadable: every record on disk will be delivered again");
        }
        let (segments, out_of_range) = segment::list(dir).map_err(io_err("list", dir))?;
        for path in out_of_range {
            tracing::warn!(file = %path.display(), "disk buffer: a segment's name is out of range (no writer gives such a number): left alone, not read");
        }
        let mut segments: VecDeque<Segment> = segments.into();

        // A segment shorter than its magic was being created when the agent died.
        while segments.back().is_some_and(|s| s.len < MAGIC_LEN) {
            let s = segments.pop_back().unwrap();
            std::fs::remove_file(&s.path).map_err(io_err("remove", &s.path))?;
        }
        let mut torn_seq = None;
        let mut last_seq = None;
        let mut writable = false;
        if let Some(last) = segments.back_mut() {
            let (valid, seq, torn) = scan(last).map_err(io_err("read", &last.path))?;
            if let Some(valid) = valid {
                writable = true;
                last_seq = seq;
                if torn {
                    let f = segment::open_append(&last.path).map_err(io_err("open", &last.path))?;
                    f.set_len(valid).map_err(io_err("truncate", &last.path))?;
                    f.sync_all().map_err(io_err("sync", &last.path))?;
                    tracing::warn!(segment = %last.path.display(), offset = valid, "disk buffer: a torn last record was truncated");
                    metrics.corrupted("torn", 1);
                    last.len = valid;
                    torn_seq = Some(seq.map_or(last.first_seq, |s| s + 1));
                }
            }
        }
        let room = segments
            .back()
            .is_some_and(|s| s.len < segment_size(max_bytes));
        // Every `+ 1` here is on a number below `SEQ_LIMIT` (the record, ledger and
        // segment readers refuse others), so none can overflow.
        let next_seq = [
            last_seq.map_or(0, |s| s + 1),
            // A last segment that is not appended to (not ours, or full) or holds
            // records keeps its name: the next one is named past it, even if its
            // records (damaged) say less.
            segments.back().map_or(0, |s| {
                s.first_seq + u64::from(!(writable && room) || s.len > MAGIC_LEN)
            }),
            recovered.next_seq,
            recovered.acked_through,
            recovered.acked.last().map_or(0, |s| s + 1),
        ]
        .into_iter()
        .max()
        .unwrap_or(0);
        let file = if writable && room {
            let path = &segments.back().unwrap().path;
            segment::open_append(path).map_err(io_err("open", path))?
        } else {
            let (s, f) =
                segment::create(dir, next_seq).map_err(io_err("create a segment in", dir))?;
            segments.push_back(s);
            f
        };
        let _ = std::fs::remove_file(dir.join(super::ledger::TMP));
        let dead_letter_policy = DeadLetterConfig::default();
        let dead_letter = DeadLetter::open(dir, dead_letter_policy.max_bytes.get())
            .map_err(io_err("read the dead-letter file in", dir))?;
        metrics.set_dead_letter_bytes(dead_letter.bytes());
        let segment_bytes = segments.iter().map(|s| s.len).sum();
        let queue = Queue {
            dir: dir.to_path_buf(),
            _lock: lock,
            max_bytes,
            segment_size: segment_size(max_bytes),
            segments,
            file: Arc::new(file),
            unsynced: Vec::new(),
            segment_bytes,
            next_seq,
            ledger,
            persisted: recovered.acked_through,
            read_idx: 0,
            read_off: 0,
            expect: recovered.acked_through,
            skip_below: recovered.acked_through,
            replay_below: next_seq,
            abandoned: false,
            torn_seq,
            in_flight: BTreeMap::new(),
            retries: BTreeSet::new(),
            delivered: 0,
            dead_letter,
            dead_letter_policy,
            acked: recovered.acked,
            closed: false,
            crashed: false,
            metrics,
            log: RateLimited::new(LOG_EVERY),
            scratch: Vec::new(),
            read_cache: RefCell::new(None),
        };
        queue.publish();
        Ok(queue)
    }

    /// When a record the sink keeps failing goes to the dead-letter file (the
    /// defaults until this is called).
    pub fn set_dead_letter(&mut self, policy: DeadLetterConfig) {
        self.dead_letter.set_max_bytes(policy.max_bytes.get());
        self.dead_letter_policy = policy;
    }

    /// Bytes on disk: segments and ledger (the dead-letter file is bounded on its
    /// own).
    pub fn disk_bytes(&self) -> u64 {
        self.segment_bytes + self.ledger.len()
    }

    /// The sequence number the next record written will get.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The lowest sequence number not yet acknowledged.
    pub fn pointer(&self) -> u64 {
        // Records out were read, so they are all below `expect`.
        self.in_flight.keys().next().copied().unwrap_or(self.expect)
    }

    /// Records below this have all been handed out (or skipped).
    pub fn read_through(&self) -> u64 {
        self.expect
    }

    /// Nothing is left to read (every record written has been handed out).
    pub fn caught_up(&self) -> bool {
        self.read_idx + 1 >= self.segments.len()
            && self
                .segments
                .get(self.read_idx)
                .is_none_or(|s| self.read_off >= s.len)
    }

    /// As many records are tracked as may be: no more are read until some are
    /// acknowledged.
    pub fn at_cap(&self) -> bool {
        self.in_flight.len() + self.acked.len() >= MAX_TRACKED
    }

    /// Writes one record. Full and too-large records are refused, not written.
    pub fn append(&mut self, payload: &[u8], written_ms: u64) -> Result<u64, AppendError> {
        let rec = (HEADER_LEN + payload.len()) as u64;
        let room = self.max_bytes.saturating_sub(LEDGER_MAX);
        // The header holds the length in 32 bits.
        if rec + MAGIC_LEN > room || u32::try_from(payload.len()).is_err() {
            return Err(AppendError::TooLarge(rec));
        }
        if self.next_seq >= SEQ_LIMIT {
            // Only a damaged buffer gets here (see `SEQ_LIMIT`): refused, never wrapped.
            return Err(AppendError::Io {
                path: self.dir.display().to_string(),
                source: io::Error::other("no sequence numbers are left below 2^63"),
            });
        }
        let last = self
            .segments
            .back()
            .expect("there is always a segment to write");
        let rotate = last.len > MAGIC_LEN && last.len + rec > self.segment_size;
        let extra = if rotate { MAGIC_LEN } else { 0 };
        if self.segment_bytes + extra + rec > room {
            return Err(AppendError::Full);
        }
        if rotate {
            self.rotate().map_err(|source| AppendError::Io {
                path: self.dir.display().to_string(),
                source,
            })?;
        }
        let seq = self.next_seq;
        self.scratch.clear();
        frame(seq, written_ms, payload, &mut self.scratch);
        let last = self.segments.back_mut().unwrap();
        if let Err(source) = write_all(&self.file, &self.scratch) {
            // Leave no partial record behind (a full disk, an I/O error).
            let _ = self.file.set_len(last.len);
            return Err(AppendError::Io {
                path: last.path.display().to_string(),
                source,
            });
        }
        last.len += rec;
        self.segment_bytes += rec;
        self.next_seq += 1;
        if !self.unsynced.iter().any(|f| Arc::ptr_eq(f, &self.file)) {
            self.unsynced.push(self.file.clone());
        }
        self.metrics.written();
        Ok(seq)
    }

    fn rotate(&mut self) -> io::Result<()> {
        let (s, f) = segment::create(&self.dir, self.next_seq)?;
        self.segment_bytes += s.len;
        self.segments.push_back(s);
        self.file = Arc::new(f);
        Ok(())
    }

    /// The next record to hand to the sink, registered as out; `None` when caught
    /// up or at the tracking cap. Damaged records are counted and skipped.
    pub fn next_record(&mut self) -> Option<Record> {
        loop {
            if self.at_cap() {
                return None;
            }
            let seg = self.segments.get(self.read_idx)?;
            let (seg_first, seg_len) = (seg.first_seq, seg.len);
            if self.read_off == 0 {
                if self.read_magic_ok() {
                    self.read_off = MAGIC_LEN;
                } else {
                    self.trouble(
                        "segment",
                        "a segment does not start with the buffer's magic: skipped whole",
                    );
                    self.abandon();
                }
                continue;
            }
            if self.read_off >= seg_len {
                if self.read_idx + 1 >= self.segments.len() {
                    return None;
                }
                self.read_idx += 1;
                self.read_off = 0;
                continue;
            }
            let offset = self.read_off;
            let header = match self.read_header(offset) {
                Some(h) if offset + h.record_len() <= seg_len => h,
                _ => {
                    self.metrics.corrupted("header", 1);
                    self.trouble(
                        "header",
                        "a record header is damaged: the rest of its segment is skipped",
                    );
                    tracing::debug!(segment = seg_first, offset, "damaged record header");
                    self.abandon();
                    continue;
                }
            };
            self.read_off += header.record_len();
            let seq = header.seq;
            if seq < self.expect {
                if seq >= self.skip_below {
                    self.metrics.corrupted("sequence", 1);
                    self.trouble("sequence", "a record is out of sequence: skipped");
                }
                continue;
            }
            self.count_gap(seq);
            self.expect = seq + 1;
            if self.acked.contains(&seq) {
                continue;
            }
            let payload = match self.read_payload(seg_first, offset, &header) {
                Ok(p) => p,
                Err(why) => {
                    self.metrics.corrupted(why, 1);
                    tracing::warn!(
                        segment = %self.dir.join(segment::file_name(seg_first)).display(),
                        offset,
                        seq,
                        "disk buffer: a record fails its checksum and is skipped"
                    );
                    continue;
                }
            };
            self.in_flight.insert(
                seq,
                Flight {
                    segment: seg_first,
                    offset,
                    written_ms: header.written_ms,
                    attempts: 0,
                    retry_at: None,
                    first_out: Instant::now(),
                    delivered_mark: self.delivered,
                },
            );
            if seq < self.replay_below {
                self.metrics.replayed();
            }
            return Some(Record { seq, payload });
        }
    }

    /// Records missing between what was expected and `seq`: in a deleted segment,
    /// after a damaged header, or a torn record.
    fn count_gap(&mut self, seq: u64) {
        if seq <= self.expect {
            self.abandoned = false;
            return;
        }
        let mut lost = seq - self.expect - self.acked.range(self.expect..seq).count() as u64;
        if let Some(t) = self.torn_seq.take() {
            if (self.expect..seq).contains(&t) {
                lost = lost.saturating_sub(1); // counted as `torn` at start
            }
        }
        if lost > 0 {
            let reason = if self.abandoned {
                "unreadable"
            } else {
                "missing"
            };
            self.metrics.corrupted(reason, lost);
            if reason == "missing" {
                self.trouble(
                    "missing",
                    "records are missing from the disk buffer (a segment was deleted?)",
                );
            }
        }
        self.abandoned = false;
    }

    fn abandon(&mut self) {
        self.read_off = self.segments[self.read_idx].len.max(MAGIC_LEN);
        self.abandoned = true;
    }

    fn trouble(&mut self, key: &'static str, message: &str) {
        if let Some(suppressed) = self.log.allow(key) {
            tracing::warn!(dir = %self.dir.display(), suppressed, "disk buffer: {message}");
        }
    }

    fn segment_file(&self, first_seq: u64) -> io::Result<Arc<File>> {
        let mut cache = self.read_cache.borrow_mut();
        if let Some((first, f)) = &*cache {
            if *first == first_seq {
                return Ok(f.clone());
            }
        }
        let f = Arc::new(File::open(self.dir.join(segment::file_name(first_seq)))?);
        *cache = Some((first_seq, f.clone()));
        Ok(f)
    }

    fn read_magic_ok(&self) -> bool {
        let seg = &self.segments[self.read_idx];
        let mut m = [0u8; MAGIC.len()];
        seg.len >= MAGIC_LEN
            && self
                .segment_file(seg.first_seq)
                .and_then(|f| f.read_exact_at(&mut m, 0))
                .is_ok()
            && &m == MAGIC
    }

    fn read_header(&self, offset: u64) -> Option<Header> {
        let seg = &self.segments[self.read_idx];
        let mut b = [0u8; HEADER_LEN];
        self.segment_file(seg.first_seq)
            .and_then(|f| f.read_exact_at(&mut b, offset))
            .ok()?;
        Header::decode(&b)
    }

    fn read_payload(&self, segment: u64, offset: u64, h: &Header) -> Result<Vec<u8>, &'static str> {
        let mut payload = vec![0u8; h.len as usize];
        self.segment_file(segment)
            .and_then(|f| f.read_exact_at(&mut payload, offset + HEADER_LEN as u64))
            .map_err(|_| "read_error")?;
        if h.payload_ok(&payload) {
            Ok(payload)
        } else {
            Err("checksum")
        }
    }

    /// A record handed out before, read again from disk.
    fn read_again(&self, segment: u64, offset: u64) -> Result<Vec<u8>, &'static str> {
        self.segment_file(segment)
            .and_then(|file| {
                let mut b = [0u8; HEADER_LEN];
                file.read_exact_at(&mut b, offset)?;
                Header::decode(&b).ok_or_else(|| io::Error::other("damaged header"))
            })
            .map_err(|_| "read_error")
            .and_then(|h| self.read_payload(segment, offset, &h))
    }

    /// When the next errored record is due again.
    pub fn next_retry_at(&self) -> Option<Instant> {
        self.retries.first().map(|(at, _)| *at)
    }

    /// An errored record whose wait is over, read again from disk.
    pub fn due_retry(&mut self, now: Instant) -> Option<Record> {
        while let Some(&(at, seq)) = self.retries.first() {
            if at > now {
                return None;
            }
            self.retries.pop_first();
            let Some(f) = self.in_flight.get_mut(&seq) else {
                continue;
            };
            f.retry_at = None;
            let (segment, offset) = (f.segment, f.offset);
            match self.read_again(segment, offset) {
                Ok(payload) => {
                    self.metrics.redelivered();
                    return Some(Record { seq, payload });
                }
                Err(why) => {
                    // It was readable when first handed out: count it and let go.
                    self.metrics.corrupted(why, 1);
                    self.in_flight.remove(&seq);
                }
            }
        }
        None
    }

    /// What the sink said about record `seq`. `Delivered` and `Rejected` let it
    /// go; `Errored` keeps it and hands it out again later (or, once no writer is
    /// left, at the next start), unless it is due for the dead-letter file.
    pub fn resolve(&mut self, seq: u64, status: EventStatus, now: Instant) -> io::Result<()> {
        let Some(f) = self.in_flight.get_mut(&seq) else {
            return Ok(());
        };
        if status == EventStatus::Errored {
            if !self.closed {
                f.attempts += 1;
                if self.give_up(seq, now) && self.move_to_dead_letter(seq, now) {
                    return self.acknowledge(seq);
                }
                let f = self.in_flight.get_mut(&seq).unwrap();
                let delay = RETRY_BASE
                    .saturating_mul(1 << (f.attempts - 1).min(16))
                    .min(RETRY_MAX);
                let at = now + delay;
                f.retry_at = Some(at);
                self.retries.insert((at, seq));
            }
            return Ok(());
        }
        if status == EventStatus::Delivered {
            self.delivered += 1;
        }
        self.acknowledge(seq)
    }

    /// Whether errored record `seq` (out) has failed long enough, while the sink
    /// delivered others, to go to the dead-letter file.
    fn give_up(&self, seq: u64, now: Instant) -> bool {
        let (Some(f), policy) = (self.in_flight.get(&seq), &self.dead_letter_policy) else {
            return false;
        };
        let age = now
            .saturating_duration_since(f.first_out)
            .max(Duration::from_millis(now_ms().saturating_sub(f.written_ms)));
        let failed_enough = f.attempts >= policy.max_attempts || age >= policy.max_record_age.get();
        failed_enough && self.delivered > f.delivered_mark
    }

    /// Writes errored record `seq` to the dead-letter file (or drops it, counted,
    /// when the file is full). Returns whether it may be acknowledged: false when
    /// the file cannot be written, and the record stays.
    fn move_to_dead_letter(&mut self, seq: u64, now: Instant) -> bool {
        let f = &self.in_flight[&seq];
        let (segment, offset, written_ms, attempts) =
            (f.segment, f.offset, f.written_ms, f.attempts);
        let age = now.saturating_duration_since(f.first_out);
        let payload = match self.read_again(segment, offset) {
            Ok(p) => p,
            Err(why) => {
                // It was readable when first handed out: count it and let go.
                self.metrics.corrupted(why, 1);
                return true;
            }
        };
        let last_error = self
            .metrics
            .last_delivery_error()
            .unwrap_or_else(|| "none reported".into());
        match self.dead_letter.append(seq, written_ms, &payload) {
            Ok(()) => {
                self.metrics.dead_lettered();
                self.metrics.set_dead_letter_bytes(self.dead_letter.bytes());
                if let Some(suppressed) = self.log.allow("dead_letter") {
                    tracing::warn!(
                        file = %self.dead_letter.path().display(),
                        seq,
                        attempts,
                        suppressed,
                        "disk buffer: a record failed {attempts} times over {} while others were delivered; moved to the dead-letter file (`profpipe dead-letter list`); last error: {last_error}",
                        humantime::format_duration(Duration::from_secs(age.as_secs()))
                    );
                }
                true
            }
            Err(e @ dead_letter::AppendError::Full { .. }) => {
                self.metrics.dead_letter_dropped();
                if let Some(suppressed) = self.log.allow("dead_letter_full") {
                    tracing::warn!(
                        seq,
                        suppressed,
                        "disk buffer: a record failed {attempts} times while others were delivered, and {e}: dropped; last error: {last_error}"
                    );
                }
                true
            }
            Err(e) => {
                let message = format!("{e}; the record stays in the buffer");
                self.trouble("dead_letter_write", &message);
                false
            }
        }
    }

    /// Lets record `seq` go: the pointer moves, the ledger learns it.
    fn acknowledge(&mut self, seq: u64) -> io::Result<()> {
        let Some(f) = self.in_flight.get(&seq) else {
            return Ok(());
        };
        if let Some(at) = f.retry_at {
            self.retries.remove(&(at, seq));
        }
        self.in_flight.remove(&seq);
        let pointer = self.pointer();
        if seq >= pointer {
            self.acked.insert(seq);
        }
        self.acked = self.acked.split_off(&pointer);
        self.ledger.append(seq)?;
        if self.ledger.appended() >= MAX_TRACKED {
            self.persist()?;
        }
        self.delete_acknowledged()
    }

    /// Deletes segments whose every record is acknowledged (never the one written
    /// to, nor one not yet read through). The ledger is written first, so a crash
    /// never finds a segment gone that it thinks holds records.
    fn delete_acknowledged(&mut self) -> io::Result<()> {
        let pointer = self.pointer();
        let deletable = |q: &Queue| {
            q.read_idx > 0
                && q.segments
                    .get(1)
                    .is_some_and(|next| next.first_seq <= pointer)
        };
        if !deletable(self) {
            return Ok(());
        }
        self.persist()?;
        while deletable(self) {
            let s = self.segments.pop_front().unwrap();
            // An open handle would keep the deleted file's blocks in use.
            self.read_cache
                .get_mut()
                .take_if(|(first, _)| *first == s.first_seq);
            std::fs::remove_file(&s.path)?;
            self.segment_bytes -= s.len;
            self.read_idx -= 1;
        }
        Ok(())
    }

    /// Writes the pointer and the acknowledged set to the ledger (rewriting it).
    pub fn persist(&mut self) -> io::Result<()> {
        let pointer = self.pointer();
        self.ledger.rewrite(pointer, self.next_seq, &self.acked)?;
        self.persisted = pointer;
        Ok(())
    }

    /// Takes the files with unsynced writes, to sync outside the lock.
    pub fn take_unsynced(&mut self) -> Vec<Arc<File>> {
        std::mem::take(&mut self.unsynced)
    }

    /// The current segment, to sync after a write (`sync = "always"`).
    pub fn current_file(&self) -> Arc<File> {
        self.file.clone()
    }

    /// Periodic upkeep: the ledger's header follows the pointer, appended entries
    /// are synced, the gauges are set.
    pub fn tick(&mut self) -> io::Result<()> {
        if self.pointer() != self.persisted {
            self.persist()?;
        } else {
            self.ledger.sync()?;
        }
        self.retire_drained_segment()?;
        self.delete_acknowledged()?;
        self.publish();
        Ok(())
    }

    /// Once everything written is acknowledged, the segment being written to is
    /// closed (a fresh one takes its place), so a drained buffer gives its disk
    /// back instead of keeping up to a segment of delivered records.
    fn retire_drained_segment(&mut self) -> io::Result<()> {
        let drained = self.pointer() == self.next_seq && self.caught_up();
        if !drained || self.segments.back().is_none_or(|s| s.len <= MAGIC_LEN) {
            return Ok(());
        }
        self.rotate()?;
        self.read_idx = self.segments.len() - 1;
        self.read_off = 0;
        Ok(())
    }

    /// Sets the gauges.
    pub fn publish(&self) {
        let unacked = self
            .next_seq
            .saturating_sub(self.pointer())
            .saturating_sub(self.acked.len() as u64);
        let oldest = self
            .in_flight
            .values()
            .next()
            .map(|f| f.written_ms)
            .or_else(|| self.peek_written_ms());
        let age = oldest.map_or(0, |ms| now_ms().saturating_sub(ms) / 1000);
        self.metrics.set_disk(self.disk_bytes(), unacked, age);
    }

    /// When the next unread record was written.
    fn peek_written_ms(&self) -> Option<u64> {
        let seg = self.segments.get(self.read_idx)?;
        let off = self.read_off.max(MAGIC_LEN);
        if off >= seg.len {
            return None;
        }
        let mut b = [0u8; HEADER_LEN];
        self.segment_file(seg.first_seq)
            .and_then(|f| f.read_exact_at(&mut b, off))
            .ok()?;
        Header::decode(&b).map(|h| h.written_ms)
    }

    /// No writer is left.
    pub fn close(&mut self) {
        self.closed = true;
    }

    /// Drops the queue as a crash would: no final ledger write, no sync (what was
    /// written stays in the page cache, as after a `kill -9`).
    pub fn crash(mut self) {
        self.crashed = true;
    }
}

impl Drop for Queue {
    fn drop(&mut self) {
        if self.crashed {
            return;
        }
        for f in self.take_unsynced() {
            let _ = f.sync_data();
        }
        if let Err(e) = self.persist() {
            tracing::warn!(dir = %self.dir.display(), "disk buffer: writing the ledger at close failed ({e}); acknowledged records may be delivered again");
        }
        self.publish();
    }
}

fn write_all(file: &File, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let mut f: &File = file;
    f.write_all(bytes)
}

/// Scans a segment's records by their headers. Returns the length of its valid
/// prefix (`None` when the magic is wrong: not ours to truncate), the last valid
/// sequence number, and whether anything followed the valid prefix (a torn record).
fn scan(seg: &Segment) -> io::Result<(Option<u64>, Option<u64>, bool)> {
    let f = File::open(&seg.path)?;
    let mut m = [0u8; MAGIC.len()];
    f.read_exact_at(&mut m, 0)?;
    if &m != MAGIC {
        return Ok((None, None, false));
    }
    let mut off = MAGIC_LEN;
    let mut last = None;
    let mut b = [0u8; HEADER_LEN];
    while off < seg.len {
        if seg.len - off < HEADER_LEN as u64 || f.read_exact_at(&mut b, off).is_err() {
            break;
        }
        match Header::decode(&b) {
            Some(h) if off + h.record_len() <= seg.len => {
                last = Some(h.seq);
                off += h.record_len();
            }
            _ => break,
        }
    }
    Ok((Some(off), last, off < seg.len))
}
