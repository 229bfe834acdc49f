//! Byte-budgeted edges between components.
//!
//! Every component's input is one bounded channel (an *edge*) whose capacity is a
//! number of bytes of events in flight. Upstream components hold clones of its
//! sender. Each event takes permits equal to its size from the edge's budget and from
//! the agent-wide [`MemoryBudget`], and gives them back when the consumer takes it, so
//! the bytes buffered on an edge never exceed `max_bytes` and the bytes buffered on all
//! edges never exceed `[agent] memory_limit`.

mod budget;
mod config;
mod edge;
mod output;

pub use budget::MemoryBudget;
pub use config::{BufferConfig, WhenFull};
pub use edge::{edge, EdgeSender, Input};
pub use output::{Output, OutputClosed};
