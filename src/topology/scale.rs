//! How memory buffers are sized against `[agent] memory_limit`.

use crate::buffer::{disk, BufferConfig, BufferKind, MemoryBudget};
use crate::config::Config;
use crate::event::ComponentId;
use crate::units::ByteSize;

/// What a buffer holds in memory at most: a memory buffer its `max_bytes`, a disk
/// buffer its fixed reserve.
fn memory_bytes(b: &BufferConfig) -> u64 {
    match b.kind {
        BufferKind::Memory => b.max_bytes.get(),
        BufferKind::Disk => disk::memory_reserve(),
    }
}

/// How buffers are sized so that together they fit the edges' share of
/// `[agent] memory_limit` ([`MemoryBudget::edge_share`]): then a buffer only ever
/// waits for its own consumer, never for room another buffer holds, and no wiring
/// can deadlock on memory. Buffers whose `max_bytes` add up to more are scaled down
/// in proportion, said once at start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct EdgeScale {
    share: u64,
    total: u64,
}

impl EdgeScale {
    pub fn apply(&self, max_bytes: u64) -> u64 {
        if self.total <= self.share {
            max_bytes
        } else {
            ((max_bytes as u128 * self.share as u128 / self.total as u128) as u64).max(1)
        }
    }

    /// Whether buffers are sized the same under both.
    pub fn same_sizes(&self, other: &EdgeScale) -> bool {
        self == other || (self.total <= self.share && other.total <= other.share)
    }

    pub fn say(&self) {
        if self.total > self.share {
            tracing::info!(
                buffers = %ByteSize(self.total),
                share = %ByteSize(self.share),
                "buffers together exceed their half of memory_limit; each is scaled down in proportion"
            );
        }
    }
}

/// How `config`'s buffers are sized.
pub(super) fn edge_scale(config: &Config) -> EdgeScale {
    let budget = MemoryBudget::new(config.agent.memory_limit.get());
    EdgeScale {
        share: budget.edge_share(),
        total: consumers(config).map(|(_, _, b)| memory_bytes(&b)).sum(),
    }
}

/// Every transform and sink, with its inputs and buffer.
pub(super) fn consumers(
    config: &Config,
) -> impl Iterator<Item = (&ComponentId, &Vec<ComponentId>, BufferConfig)> {
    config
        .transforms
        .iter()
        .map(|t| (&t.id, &t.inputs, t.buffer))
        .chain(config.sinks.iter().map(|s| (&s.id, &s.inputs, s.buffer)))
}
