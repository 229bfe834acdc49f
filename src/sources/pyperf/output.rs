//! PyPerf's output files in the scratch directory, and reading them into stacks.
//!
//! ```text
//! <scratch>/pyperf.col                     the file PyPerf is writing now
//! <scratch>/pyperf.col.2024010100000000    renamed on SIGUSR2 (names sort in time order)
//! ```

use std::io::{self, BufReader};
use std::path::{Path, PathBuf};

use rustc_hash::FxHashMap;

use super::constants::OUTPUT_NAME;
use crate::event::Stack;
use crate::formats::line;
use crate::formats::pyperf::PyPerfReader;

/// gProfiler's `_is_elf_symbol_error`: PyPerf hit a target that maps a deleted library.
pub fn is_deleted_library_error(stderr: &str) -> bool {
    stderr.contains("Failed to iterate over ELF symbols") && stderr.contains("(deleted)")
}

/// PyPerf's output files in `dir`, oldest first: the rotated `pyperf.col.<stamp>`
/// ones, plus the live `pyperf.col` when `with_live`.
pub(super) fn outputs(dir: &Path, with_live: bool) -> io::Result<Vec<PathBuf>> {
    let rotated_prefix = format!("{OUTPUT_NAME}.");
    let mut files = Vec::new();
    let mut live = None;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.starts_with(&rotated_prefix) {
            files.push(entry.path());
        } else if with_live && name == OUTPUT_NAME {
            live = Some(entry.path());
        }
    }
    files.sort();
    files.extend(live);
    Ok(files)
}

/// Deletes every PyPerf output in `dir`.
pub(super) fn remove_outputs(dir: &Path) {
    for f in outputs(dir, true).unwrap_or_default() {
        if let Err(e) = std::fs::remove_file(&f) {
            tracing::debug!(file = %f.display(), error = %e, "cannot remove PyPerf output");
        }
    }
}

/// Opens each file, unlinks it at once, and folds its lines: identical (pid, frames)
/// are summed (PyPerf writes one line per sample). Stacks come out sorted.
pub(super) fn read_outputs(
    files: &[PathBuf],
    mut reader: PyPerfReader,
) -> (Vec<Stack>, PyPerfReader) {
    let mut folded: FxHashMap<(u32, Box<str>), u64> = FxHashMap::default();
    for path in files {
        let file = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) => {
                tracing::debug!(file = %path.display(), error = %e, "cannot open PyPerf output");
                continue;
            }
        };
        if let Err(e) = std::fs::remove_file(path) {
            tracing::debug!(file = %path.display(), error = %e, "cannot remove PyPerf output");
        }
        let result = line::read_stacks(BufReader::new(file), &mut reader, |s| {
            *folded.entry((s.pid, s.frames)).or_insert(0) += s.count;
        });
        if let Err(e) = result {
            tracing::debug!(file = %path.display(), error = %e, "error reading PyPerf output");
        }
    }
    let mut stacks: Vec<Stack> = folded
        .into_iter()
        .map(|((pid, frames), count)| Stack {
            pid,
            container: None,
            frames,
            count,
        })
        .collect();
    stacks.sort_by(|a, b| a.pid.cmp(&b.pid).then_with(|| a.frames.cmp(&b.frames)));
    (stacks, reader)
}
