//! Windows waiting for their watermarks: one store ([`store::WindowStore`]) for
//! every stateful component, charged to the agent's memory budget, and the bounded
//! stack map ([`stacks::StackCounts`]) that most of them keep in it.

pub mod emit;
pub mod stacks;
pub mod store;

pub use emit::{attach_finalizers, profile_batches, push_batches, send_all, send_each, EMIT_BATCH};
pub use stacks::{StackCounts, OVERFLOW_FRAME};
pub use store::{Done, Room, Scope, StoreLimits, WindowState, WindowStore};

/// Default `max_bytes` of a component's window store. With the default edge size
/// (8 MiB) the default pipeline (three stores, four edges) fits the default
/// `memory_limit` (64 MiB); see the README's "Memory" section.
pub const DEFAULT_STORE_BYTES: u64 = 8 << 20;

/// Default `max_memory` of `fold`, twice the others': its folders hold interned
/// frames rather than stack text, and one window of a busy host (or a 100 MB
/// capture read as one window) needs about 8.5 MB of them. The default pipeline's
/// stores (16 + 8 + 8 MiB) still fit their half of the default `memory_limit`.
pub const DEFAULT_FOLD_BYTES: u64 = 2 * DEFAULT_STORE_BYTES;

/// Default most windows one store holds. Windows only pile up when watermarks stop
/// coming (a stuck source); past this the oldest is flushed early.
pub const DEFAULT_MAX_WINDOWS: usize = 64;
