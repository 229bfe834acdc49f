//! `buffer = { type = "memory" | "disk", max_bytes = "...", when_full = "block" | "drop_newest" }`
//! and, for disk buffers, `sync = "always" | "interval"`, `sync_interval` and
//! `dead_letter = { max_attempts = 10, max_record_age = "1h", max_bytes = "64MiB" }`.

use std::time::Duration;

use serde::Deserialize;

use crate::units::{ByteSize, DurationStr};

/// What an edge does when an event does not fit in its byte budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum WhenFull {
    /// Wait for room: backpressure reaches the source, which stops reading.
    #[default]
    Block,
    /// Discard the new event and count it in `component_discarded_events_total`.
    DropNewest,
}

/// Where a buffer keeps its events.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum BufferKind {
    /// In memory, charged to `[agent] memory_limit`; lost with the process.
    #[default]
    Memory,
    /// On disk under `<state_dir>/buffers/<sink id>`: survives outages and restarts
    /// (see [`super::disk`]). Sinks only.
    Disk,
}

/// When a disk buffer forces what it wrote to stable storage.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SyncPolicy {
    /// `fdatasync` after every record, before its writer is acknowledged.
    Always,
    /// `fdatasync` every `sync_interval`: a power failure can lose that much; a
    /// crash of the agent alone loses nothing (written bytes are in the page cache).
    #[default]
    Interval,
}

/// The input buffer of a component.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct BufferConfig {
    /// `memory` (default) or `disk`.
    #[serde(rename = "type")]
    pub kind: BufferKind,
    /// Most bytes of events waiting in this buffer (for a disk buffer: on disk).
    pub max_bytes: ByteSize,
    /// Behaviour at the limit.
    pub when_full: WhenFull,
    /// Disk buffers: when written records are synced.
    pub sync: SyncPolicy,
    /// Disk buffers with `sync = "interval"`: how often.
    pub sync_interval: DurationStr,
    /// Disk buffers: when a record the sink keeps failing is given up to the
    /// dead-letter file.
    pub dead_letter: DeadLetterConfig,
}

/// `dead_letter = { ... }` of a disk buffer: a record whose delivery keeps ending
/// `Errored` while the sink delivers others is moved to `<buffer dir>/dead_letter`
/// and acknowledged, so it never holds the buffer's read position (see
/// [`super::disk::dead_letter`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct DeadLetterConfig {
    /// Outcomes `Errored` after which the record is moved (each one already the
    /// end of the sink's own retries).
    pub max_attempts: u32,
    /// Age (since it was written) past which one more `Errored` moves the record.
    pub max_record_age: DurationStr,
    /// Most bytes of the dead-letter file; a record that does not fit is dropped
    /// and counted.
    pub max_bytes: ByteSize,
}

impl DeadLetterConfig {
    pub const DEFAULT_MAX_ATTEMPTS: u32 = 10;
    pub const DEFAULT_MAX_RECORD_AGE: Duration = Duration::from_secs(3600);
    pub const DEFAULT_MAX_BYTES: ByteSize = ByteSize::mib(64);
    /// The smallest file: a few records of a typical window.
    pub const MIN_BYTES: ByteSize = ByteSize(64 * 1024);
}

impl Default for DeadLetterConfig {
    fn default() -> Self {
        DeadLetterConfig {
            max_attempts: Self::DEFAULT_MAX_ATTEMPTS,
            max_record_age: DurationStr(Self::DEFAULT_MAX_RECORD_AGE),
            max_bytes: Self::DEFAULT_MAX_BYTES,
        }
    }
}

impl BufferConfig {
    /// Default budget of an edge that has no `buffer` table.
    pub const DEFAULT_MAX_BYTES: ByteSize = ByteSize::mib(8);
    /// Default `sync_interval`, the documented loss window on power failure.
    pub const DEFAULT_SYNC_INTERVAL: Duration = Duration::from_millis(500);
    /// The smallest disk buffer: a few segments of the smallest size.
    pub const MIN_DISK_BYTES: ByteSize = ByteSize::mib(1);
}

impl Default for BufferConfig {
    fn default() -> Self {
        BufferConfig {
            kind: BufferKind::Memory,
            max_bytes: Self::DEFAULT_MAX_BYTES,
            when_full: WhenFull::Block,
            sync: SyncPolicy::Interval,
            sync_interval: DurationStr(Self::DEFAULT_SYNC_INTERVAL),
            dead_letter: DeadLetterConfig::default(),
        }
    }
}
