//! `buffer = { max_bytes = "...", when_full = "block" | "drop_newest" }`

use serde::Deserialize;

use crate::units::ByteSize;

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

/// The input buffer of a component.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct BufferConfig {
    /// Most bytes of events waiting in this buffer.
    pub max_bytes: ByteSize,
    /// Behaviour at the limit.
    pub when_full: WhenFull,
}

impl BufferConfig {
    /// Default budget of an edge that has no `buffer` table.
    pub const DEFAULT_MAX_BYTES: ByteSize = ByteSize::mib(8);
}

impl Default for BufferConfig {
    fn default() -> Self {
        BufferConfig {
            max_bytes: Self::DEFAULT_MAX_BYTES,
            when_full: WhenFull::Block,
        }
    }
}
