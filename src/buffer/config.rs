//! `buffer = { type = "memory" | "disk", max_bytes = "...", when_full = "block" | "drop_newest" }`
//! and, for disk buffers, `sync = "always" | "interval"` and `sync_interval`.

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
        }
    }
}
