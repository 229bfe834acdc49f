//! Folding `perf script` output into folded stacks (`frame;frame;frame COUNT`).
//!
//! This behaves as inferno's collapse-perf does (and so as FlameGraph's
//! `stackcollapse-perf.pl`): same frame names, annotations, event filtering, period
//! weighting and output order. It is the agent's hottest path, so it is a small state
//! machine over bytes:
//!
//! ```text
//! perf 1234/1234 [001] 501.661597:    2004008 cpu-clock:    <- event line: comm, pid/tid, period, event
//!     ffffffff81b7b44b chacha_block+0xab ([kernel.kallsyms])   <- stack lines, leaf first
//!                f82ad read+0xd (/usr/lib/x86_64-linux-gnu/libc.so.6)
//!                                                           <- empty line: the record ends
//! ```
//!
//! folds to `perf;read;chacha_block 2004008`.
//!
//! How it stays fast: lines are borrowed slices of the input (no per-line `String`);
//! each distinct stack line is named once and cached as frame ids; a sample is counted
//! by its sequence of frame ids, and strings are only built when results are taken.
//! [`fold_to_writer`] also splits the input on record boundaries across threads.
//!
//! Bad input never panics: malformed lines, invalid UTF-8, over-long lines and
//! truncated input are counted in [`FoldStats`] and skipped.

mod folder;
mod frame;
mod lines;
mod options;
mod output;
mod parallel;
#[cfg(test)]
mod tests;

pub use folder::{PerfFolder, LINE_CACHE_LIMIT_BYTES};
pub use frame::{is_jit_module, JIT_SUFFIX};
pub use options::{FoldOptions, MAX_LINE_BYTES, MAX_STACK_FRAMES};
pub use output::{FoldStats, Folded};
pub use parallel::{fold_to_writer, fold_to_writer_chunked, DEFAULT_CHUNK_BYTES};
