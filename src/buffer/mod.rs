//! Buffers: what sits in front of every transform and sink.
//!
//! A buffer has a writing side, cloned by every upstream component
//! ([`EdgeSender`]), and a reading side, the component's [`Input`]. Both are
//! interfaces ([`BufferWriter`], [`BufferReader`]) so that the component reading a
//! buffer cannot tell which kind it is: the byte-budgeted in-memory edge
//! ([`memory`]) or a sink's disk buffer ([`disk`]). Every event in a memory buffer
//! holds its bytes against the buffer's `max_bytes` and the agent-wide
//! [`MemoryBudget`]; a disk buffer holds its events on disk within `max_bytes` and
//! charges the budget a fixed amount for what it keeps in memory.
//!
//! At the limit a buffer does what `when_full` says: `block` makes the writer wait
//! (backpressure reaches the source); `drop_newest` discards the event, counts it and
//! resolves its delivery tokens `Rejected` (dropped by policy, never retried).

mod budget;
mod config;
pub mod disk;
mod ends;
mod fanout;
pub mod memory;
mod output;
mod relay;

pub use budget::{MemoryBudget, MemoryGauges, Permit, WindowCharge};
pub use config::{BufferConfig, BufferKind, DeadLetterConfig, SyncPolicy, WhenFull};
pub use ends::{BoxFuture, BufferReader, BufferWriter, Closed, EdgeSender, Input};
pub use fanout::Fanout;
pub use memory::edge;
pub use output::{Output, OutputClosed};
pub use relay::Relay;
