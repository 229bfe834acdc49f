//! For the fuzz targets (`fuzz/`) and tests: the buffer recovering from whatever
//! bytes are on disk. Compiled only for them (`cfg(fuzzing)` or tests).
//!
//! [`recover`] puts the given files in an empty directory, opens the buffer there
//! and checks what a damaged buffer must still do: open, hand out every readable
//! record once and then be caught up, number new records above everything it
//! read, read them back intact, and after a clean close replay exactly the ones
//! not acknowledged.

use std::path::Path;
use std::time::Duration;

use tokio::time::Instant;

use super::codec;
use super::queue::Queue;
use super::segment;
use crate::event::EventStatus;
use crate::telemetry::{DiskBufferMetrics, Telemetry};

/// A file put in the buffer's directory before it opens.
#[derive(Debug)]
pub enum DiskFile<'a> {
    Ledger(&'a [u8]),
    /// A segment named after this first sequence number.
    Segment(u64, &'a [u8]),
}

/// Small enough that segments rotate (64 KiB each).
const MAX_BYTES: u64 = 1024 * 1024;

fn metrics() -> DiskBufferMetrics {
    Telemetry::new()
        .component("fuzz", "sink", "fuzz")
        .disk_buffer()
}

/// See the module documentation. `Err` says which promise was broken.
pub fn recover(dir: &Path, files: &[DiskFile<'_>], appends: &[&[u8]]) -> Result<(), String> {
    for f in files {
        let (name, bytes) = match f {
            DiskFile::Ledger(b) => ("ledger".to_string(), b),
            DiskFile::Segment(first, b) => (segment::file_name(*first), b),
        };
        std::fs::write(dir.join(name), bytes).map_err(|e| format!("setup: {e}"))?;
    }
    let mut q = Queue::open(dir, MAX_BYTES, metrics())
        .map_err(|e| format!("a damaged buffer does not open: {e}"))?;

    // Read everything out as the sink would; the first record errs once and comes
    // back through the retry path.
    let mut highest = None;
    let mut first = true;
    while let Some(r) = q.next_record() {
        if highest.is_some_and(|h| r.seq <= h) {
            return Err(format!("record {} handed out after {highest:?}", r.seq));
        }
        highest = Some(r.seq);
        let _ = codec::decode(&r.payload);
        if first {
            first = false;
            q.resolve(r.seq, EventStatus::Errored, Instant::now())
                .map_err(|e| e.to_string())?;
            let later = Instant::now() + Duration::from_secs(3600);
            if let Some(again) = q.due_retry(later) {
                if again.seq != r.seq || again.payload != r.payload {
                    return Err(format!("record {} came back different", r.seq));
                }
            }
        }
        q.resolve(r.seq, EventStatus::Delivered, Instant::now())
            .map_err(|e| e.to_string())?;
    }
    if !q.caught_up() {
        return Err("reading stopped before the end with nothing out".into());
    }
    q.tick().map_err(|e| e.to_string())?;

    // New records are numbered above everything read, and read back intact.
    let mut written = Vec::new();
    for p in appends {
        match q.append(p, 0) {
            Ok(seq) => {
                if highest.is_some_and(|h| seq <= h) {
                    return Err(format!("new record {seq} is not above {highest:?}"));
                }
                written.push((seq, p.to_vec()));
            }
            // Full, or no sequence number left below the limit: refused, not lost.
            Err(_) => break,
        }
    }
    let mut read = Vec::new();
    while let Some(r) = q.next_record() {
        read.push((r.seq, r.payload));
    }
    if read != written {
        return Err(format!(
            "wrote {:?}, read back {:?}",
            written.iter().map(|w| w.0).collect::<Vec<_>>(),
            read.iter().map(|r| r.0).collect::<Vec<_>>()
        ));
    }
    // Every other one acknowledged; a clean close; the rest comes back, alone.
    let mut left = Vec::new();
    for (i, (seq, payload)) in read.into_iter().enumerate() {
        if i % 2 == 0 {
            q.resolve(seq, EventStatus::Delivered, Instant::now())
                .map_err(|e| e.to_string())?;
        } else {
            left.push((seq, payload));
        }
    }
    drop(q);
    let m = metrics();
    let mut q = Queue::open(dir, MAX_BYTES, m.clone())
        .map_err(|e| format!("the buffer does not open again: {e}"))?;
    let mut again = Vec::new();
    while let Some(r) = q.next_record() {
        again.push((r.seq, r.payload));
    }
    if again != left {
        return Err(format!(
            "after a clean close, {:?} came back instead of {:?}",
            again.iter().map(|w| w.0).collect::<Vec<_>>(),
            left.iter().map(|r| r.0).collect::<Vec<_>>()
        ));
    }
    Ok(())
}
