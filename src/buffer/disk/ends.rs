//! The disk buffer's two ends, as components see any buffer: the writing side
//! (every upstream component's [`EdgeSender`]) and the reading side (the sink's
//! [`Input`]), over one [`Queue`] behind a mutex, plus a task that syncs and
//! keeps the ledger every `sync_interval`.
//!
//! Watermarks are not written to disk: they say how far a source has got *now*,
//! which a restart re-learns from the sources themselves. They wait in memory
//! behind the records written before them (a bounded, coalescing queue) and never
//! wait for disk room, so windows keep closing while the disk is full.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::codec;
use super::queue::{now_ms, AppendError, OpenError, Queue};
use crate::buffer::budget::{MemoryBudget, Permit};
use crate::buffer::config::{BufferConfig, SyncPolicy, WhenFull};
use crate::buffer::ends::{BoxFuture, BufferReader, BufferWriter, Closed, EdgeSender, Input};
use crate::event::{Batch, Event, EventStatus, Watermark};
use crate::telemetry::{ComponentMetrics, RateLimited};

/// Most watermarks waiting behind unread records. Past it the oldest one that a
/// later watermark of the same source supersedes is let go (windows then close a
/// little later, never earlier).
const MAX_WATERMARKS: usize = 1024;

/// How often the ledger and gauges are kept with `sync = "always"` (which syncs
/// records as they are written).
const TICK_WITH_SYNC_ALWAYS: Duration = Duration::from_millis(500);

struct State {
    queue: Queue,
    /// Watermarks and the sequence number written just before them.
    watermarks: VecDeque<(u64, Watermark)>,
    /// Every writer is gone.
    closed: bool,
}

struct Shared {
    state: Mutex<State>,
    /// Outcomes reported by the sink, waiting to be applied. Only ever locked on
    /// its own, so a token resolved anywhere can never deadlock with the state.
    acks: Mutex<Vec<(u64, EventStatus)>>,
    /// Writers waiting for room.
    space: Notify,
    /// The reader waiting for records, outcomes, or the writers' end.
    wake: Notify,
    reader_gone: AtomicBool,
    when_full: WhenFull,
    sync: SyncPolicy,
    metrics: ComponentMetrics,
    log: Mutex<RateLimited<&'static str>>,
    /// The buffer's fixed share of `[agent] memory_limit` (see [`memory_reserve`]).
    _memory: Option<Permit>,
}

/// Memory a disk buffer holds whatever its backlog: for each record tracked (out
/// with the sink or acknowledged out of order), its place, its token and its
/// outcome (about 200 bytes), and the I/O scratch of one record. Charged to the
/// agent's budget when the buffer opens.
pub const fn memory_reserve() -> u64 {
    (super::queue::MAX_TRACKED as u64) * 200 + 256 * 1024
}

/// Opens the disk buffer in `dir` in front of the component whose metrics are
/// `metrics`. Must be called inside a tokio runtime (it starts the sync task).
pub fn open(
    dir: &Path,
    config: BufferConfig,
    budget: &MemoryBudget,
    metrics: ComponentMetrics,
) -> Result<(EdgeSender, Input), OpenError> {
    let mut queue = Queue::open(dir, config.max_bytes.get(), metrics.disk_buffer())?;
    queue.set_dead_letter(config.dead_letter);
    metrics.set_buffer_max_bytes(config.max_bytes.get());
    metrics.set_buffer_bytes(queue.disk_bytes());
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            queue,
            watermarks: VecDeque::new(),
            closed: false,
        }),
        acks: Mutex::new(Vec::new()),
        space: Notify::new(),
        wake: Notify::new(),
        reader_gone: AtomicBool::new(false),
        when_full: config.when_full,
        sync: config.sync,
        metrics,
        log: Mutex::new(RateLimited::new(Duration::from_secs(60))),
        _memory: budget.try_acquire(memory_reserve() as usize),
    });
    let tick = match config.sync {
        SyncPolicy::Interval => config.sync_interval.get(),
        SyncPolicy::Always => TICK_WITH_SYNC_ALWAYS,
    };
    tokio::spawn(upkeep(Arc::downgrade(&shared), tick));
    Ok((
        EdgeSender::new(DiskWriter(shared.clone())),
        Input::new(DiskReader(shared)),
    ))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    fn trouble(&self, key: &'static str, message: std::fmt::Arguments<'_>) {
        if let Some(suppressed) = lock(&self.log).allow(key) {
            tracing::warn!(
                component = self.metrics.id(),
                suppressed,
                "disk buffer: {message}"
            );
        }
    }

    /// Applies the outcomes the sink has reported; wakes writers if room may have
    /// been freed.
    fn apply_acks(&self, state: &mut State) {
        let acks = std::mem::take(&mut *lock(&self.acks));
        if acks.is_empty() {
            return;
        }
        let now = Instant::now();
        for (seq, status) in acks {
            if let Err(e) = state.queue.resolve(seq, status, now) {
                self.metrics.errors("disk_ledger", 1);
                self.trouble("ledger", format_args!("keeping the ledger failed: {e}"));
            }
        }
        self.metrics.set_buffer_bytes(state.queue.disk_bytes());
        self.space.notify_waiters();
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // Outcomes that came in after the reader stopped: record them before the
        // queue writes its ledger for the last time.
        let state = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        let acks = std::mem::take(self.acks.get_mut().unwrap_or_else(|e| e.into_inner()));
        let now = Instant::now();
        for (seq, status) in acks {
            let _ = state.queue.resolve(seq, status, now);
        }
    }
}

/// Syncs written records (`sync = "interval"`), keeps the ledger and the gauges,
/// until the buffer is gone.
async fn upkeep(shared: Weak<Shared>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        // Held only while this tick's bookkeeping runs, never across an await: the
        // buffer (and its lock) goes as soon as its ends and tokens are gone.
        let files = {
            let Some(shared) = shared.upgrade() else {
                return;
            };
            let mut state = lock(&shared.state);
            shared.apply_acks(&mut state);
            if let Err(e) = state.queue.tick() {
                shared.metrics.errors("disk_ledger", 1);
                shared.trouble("ledger", format_args!("keeping the ledger failed: {e}"));
            }
            state.queue.take_unsynced()
        };
        if files.is_empty() {
            continue;
        }
        let synced =
            tokio::task::spawn_blocking(move || files.iter().try_for_each(|f| f.sync_data())).await;
        if let (Ok(Err(e)), Some(shared)) = (synced, shared.upgrade()) {
            shared.metrics.errors("disk_sync", 1);
            shared.trouble("sync", format_args!("fdatasync failed: {e}"));
        }
    }
}

struct DiskWriter(Arc<Shared>);

impl BufferWriter for DiskWriter {
    fn send(&self, event: Event) -> BoxFuture<'_, Result<(), Closed>> {
        Box::pin(self.send_event(event))
    }
}

impl Drop for DiskWriter {
    /// The last upstream sender is gone (the writer is shared by all of them).
    fn drop(&mut self) {
        let mut state = lock(&self.0.state);
        state.closed = true;
        state.queue.close();
        drop(state);
        self.0.wake.notify_one();
    }
}

impl DiskWriter {
    /// Writes the event to disk, then acknowledges its producer (`Delivered`: the
    /// buffer has it now). With `sync = "always"` the acknowledgement waits for
    /// `fdatasync`. At the limit `when_full` applies; a write that fails (a full
    /// or read-only disk) is `Errored` for the producer, which keeps its data.
    async fn send_event(&self, mut event: Event) -> Result<(), Closed> {
        let s = &*self.0;
        if s.reader_gone.load(Ordering::Acquire) {
            return Err(Closed);
        }
        if let Event::Watermark(w) = event {
            {
                let mut state = lock(&s.state);
                let seq = state.queue.next_seq();
                if !push_watermark(&mut state.watermarks, seq, w) {
                    s.metrics.errors("watermark_limit", 1);
                }
            }
            s.wake.notify_one();
            return Ok(());
        }
        let bytes = event.size_bytes();
        s.metrics.received(bytes);
        let mut payload = Vec::with_capacity(bytes);
        codec::encode(&event, &mut payload);
        let file = loop {
            let space = s.space.notified();
            tokio::pin!(space);
            space.as_mut().enable();
            let appended = {
                let mut state = lock(&s.state);
                let r = state.queue.append(&payload, now_ms());
                s.metrics.set_buffer_bytes(state.queue.disk_bytes());
                r.map(|_| state.queue.current_file())
            };
            match appended {
                Ok(file) => break file,
                Err(AppendError::Full) if s.when_full == WhenFull::Block => {
                    space.await;
                    if s.reader_gone.load(Ordering::Acquire) {
                        return Err(Closed);
                    }
                }
                Err(AppendError::Full) => {
                    s.metrics.discarded("buffer_full", bytes);
                    event.take_finalizers().resolve(EventStatus::Rejected);
                    return Ok(());
                }
                Err(AppendError::TooLarge(n)) => {
                    s.metrics.discarded("too_large", bytes);
                    s.trouble(
                        "too_large",
                        format_args!("a record of {n} bytes can never fit in max_bytes; dropped"),
                    );
                    event.take_finalizers().resolve(EventStatus::Rejected);
                    return Ok(());
                }
                Err(e @ AppendError::Io { .. }) => {
                    s.metrics.errors("disk_write", 1);
                    s.trouble("write", format_args!("{e}; the producer keeps the data"));
                    event.take_finalizers().resolve(EventStatus::Errored);
                    return Ok(());
                }
            }
        };
        s.wake.notify_one();
        let mut status = EventStatus::Delivered;
        if s.sync == SyncPolicy::Always {
            let synced = tokio::task::spawn_blocking(move || file.sync_data()).await;
            if !matches!(synced, Ok(Ok(()))) {
                s.metrics.errors("disk_sync", 1);
                s.trouble(
                    "sync",
                    format_args!("fdatasync failed; the producer keeps the data"),
                );
                status = EventStatus::Errored;
            }
        }
        event.take_finalizers().resolve(status);
        Ok(())
    }
}

/// Queues a watermark behind record `seq - 1`, coalescing and bounded. Returns
/// false when the bound made it let go of a source's only waiting watermark (that
/// source's windows then close at its next one).
pub(super) fn push_watermark(q: &mut VecDeque<(u64, Watermark)>, seq: u64, w: Watermark) -> bool {
    if let Some(i) = q
        .iter()
        .rposition(|(s, old)| *s == seq && old.source == w.source)
    {
        let old = &mut q[i].1;
        old.complete_until_ms = old.complete_until_ms.max(w.complete_until_ms);
        return true;
    }
    q.push_back((seq, w));
    if q.len() > MAX_WATERMARKS {
        let superseded =
            (0..q.len()).find(|&i| q.iter().skip(i + 1).any(|(_, l)| l.source == q[i].1.source));
        q.remove(superseded.unwrap_or(0));
        return superseded.is_some();
    }
    true
}

struct DiskReader(Arc<Shared>);

impl BufferReader for DiskReader {
    fn recv(&mut self) -> BoxFuture<'_, Option<Event>> {
        Box::pin(self.recv_event())
    }
}

impl Drop for DiskReader {
    fn drop(&mut self) {
        self.0.reader_gone.store(true, Ordering::Release);
        self.0.space.notify_waiters();
    }
}

/// What the reader does next.
enum Next {
    Record(u64, Vec<u8>),
    Watermark(Watermark),
    End,
    Wait(Option<Instant>),
}

impl DiskReader {
    async fn recv_event(&mut self) -> Option<Event> {
        loop {
            match self.next() {
                Next::Record(seq, payload) => {
                    if let Some(event) = self.decode(seq, &payload) {
                        return Some(event);
                    }
                }
                Next::Watermark(w) => return Some(Event::Watermark(w)),
                Next::End => return None,
                Next::Wait(until) => {
                    let woken = self.0.wake.notified();
                    match until {
                        Some(at) => {
                            let _ = tokio::time::timeout_at(at, woken).await;
                        }
                        None => woken.await,
                    }
                }
            }
        }
    }

    fn next(&self) -> Next {
        let s = &*self.0;
        let mut state = lock(&s.state);
        s.apply_acks(&mut state);
        let state = &mut *state;
        if let Some(r) = state.queue.due_retry(Instant::now()) {
            return Next::Record(r.seq, r.payload);
        }
        let due = state
            .watermarks
            .front()
            .is_some_and(|(seq, _)| *seq <= state.queue.read_through() || state.queue.caught_up());
        if due {
            return Next::Watermark(state.watermarks.pop_front().unwrap().1);
        }
        if let Some(r) = state.queue.next_record() {
            state.queue.publish();
            return Next::Record(r.seq, r.payload);
        }
        if state.queue.at_cap() {
            // The sink holds as many records as we track, waiting for windows to
            // close: let a watermark through early rather than wait for ever.
            // Records of its windows not yet read arrive late and are written on
            // their own; nothing is lost.
            if let Some((_, w)) = state.watermarks.pop_front() {
                return Next::Watermark(w);
            }
            if state.closed {
                return Next::End;
            }
        } else if state.closed && state.queue.caught_up() && state.watermarks.is_empty() {
            // Records the sink reports errored from now on stay for the next start.
            return Next::End;
        }
        Next::Wait(state.queue.next_retry_at())
    }

    /// The record as an event with a token of its own: the sink's outcome comes
    /// back to the queue. A record that does not decode is counted and let go.
    fn decode(&self, seq: u64, payload: &[u8]) -> Option<Event> {
        let s = &self.0;
        match codec::decode(payload) {
            Ok(mut event) => {
                // A strong handle: the sink's driver may resolve the token after
                // the reader is gone (its flush at shutdown), and that outcome must
                // still reach the ledger, or the record is delivered again.
                let shared = s.clone();
                let batch = Batch::with_callback(move |status| {
                    lock(&shared.acks).push((seq, status));
                    shared.wake.notify_one();
                });
                if let Some(f) = event.finalizers_mut() {
                    *f = batch.finalizers();
                }
                Some(event)
            }
            Err(e) => {
                s.metrics.disk_buffer().corrupted("decode", 1);
                s.trouble(
                    "decode",
                    format_args!("record {seq} does not decode ({e}); skipped"),
                );
                lock(&s.acks).push((seq, EventStatus::Rejected));
                None
            }
        }
    }
}
