//! The disk buffer: `buffer = { type = "disk", max_bytes = "1GiB" }` in front of a
//! sink, so an outage of its destination, or a `kill -9` of the agent, loses no
//! profile.
//!
//! # On disk
//!
//! One directory per sink, `<state_dir>/buffers/<sink id>/` (mode 0700, files
//! 0600), locked (`lock`, an exclusive `flock`) so two agents never share it:
//! - segment files `<first sequence number>.seg` ([`segment`]): append-only; each
//!   record is a 28-byte header (length, sequence number, write time, CRC-32C of
//!   the payload, CRC-32C of the header) and the event's payload ([`record`],
//!   [`codec`]);
//! - `ledger` ([`ledger`]): where reading stands (every record below
//!   `acked_through` acknowledged) and the writer's next sequence number, plus one
//!   entry per record acknowledged out of order since.
//!
//! # Guarantees
//!
//! - A writer (the upstream component) is acknowledged once its event is written:
//!   in the page cache, which a crash of the agent does not lose; synced too with
//!   `sync = "always"`. With `sync = "interval"` (default, every 500 ms) a power
//!   failure can lose what was written in the last interval.
//! - Records leave only when the sink reports them `Delivered` or `Rejected`;
//!   `Errored` keeps them and hands them out again (after 10 s, doubling to 5
//!   min), or at the next start; one that keeps failing while others are
//!   delivered goes to the dead-letter file and is acknowledged, so it never holds
//!   the read position. Segments are deleted whole once every record in them is
//!   acknowledged.
//! - On start the buffer replays, in order, every record not acknowledged. A torn
//!   last record is truncated and counted; a record failing its checksum is
//!   skipped, counted and logged with its segment and offset; a damaged header
//!   costs the rest of its segment, counted; reading goes on.
//! - `max_bytes` bounds segments and ledger together and is never passed; at the
//!   limit `when_full` applies (`block` holds the producer, `drop_newest` drops and
//!   counts). A write that fails (full disk, read-only or vanished directory) is a
//!   counted error and `Errored` for the producer, never a panic or a silent drop.
//! - Memory is bounded whatever the backlog: records are read one at a time, at
//!   most [`queue::MAX_TRACKED`] are tracked at once, and the buffer charges
//!   [`memory_reserve`] to `[agent] memory_limit`.

pub mod codec;
pub mod dead_letter;
mod ends;
#[cfg(any(test, fuzzing))]
#[doc(hidden)]
pub mod fuzzing;
mod ledger;
pub mod queue;
mod record;
mod segment;

#[cfg(test)]
mod tests;

pub use ends::{memory_reserve, open};
pub use queue::OpenError;
