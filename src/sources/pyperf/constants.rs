//! The fixed numbers and names of the pyperf source.

use std::time::Duration;

/// The highest sampling frequency PyPerf is run at (gProfiler's `MAX_FREQUENCY`).
pub const MAX_FREQUENCY: u32 = 1000;
/// Most stacks in one emitted event.
pub const EMIT_BATCH: usize = 10_000;
/// At most one INFO/WARN line per kind of PyPerf trouble per interval.
pub const LOG_INTERVAL: Duration = Duration::from_secs(60);
/// The name of PyPerf's live output file in the scratch directory.
pub(super) const OUTPUT_NAME: &str = "pyperf.col";
/// The `profiler` label of everything this source emits.
pub(super) const PROFILER: &str = "pyperf";
