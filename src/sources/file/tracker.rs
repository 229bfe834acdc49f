//! Follow mode: which files match, and how far each has been read.
//!
//! Files are identified by (device, inode), not by name, so a file renamed by a
//! rotation keeps its read offset and is not read twice, and a new file created under
//! the old name is read from its start. A file that shrank was truncated and is read
//! again from its start. No file stays open between polls.
//!
//! The table of offsets is bounded by `max_tracked`: past it, entries of files that no
//! longer match are forgotten first, then the least recently seen.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::SystemTime;

use super::chunker::{Chunker, Unit};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
}

pub struct Tracked {
    pub offset: u64,
    pub chunker: Chunker,
    last_seen_poll: u64,
}

/// A file that matched in this poll, with its identity and size.
pub struct Match {
    pub path: PathBuf,
    pub id: FileId,
    pub size: u64,
    modified: SystemTime,
}

pub struct Tracker {
    files: HashMap<FileId, Tracked>,
    max_tracked: usize,
    unit: Unit,
    max_carry: usize,
    poll: u64,
    /// Number of entries forgotten because the table was full.
    pub evicted: u64,
}

impl Tracker {
    pub fn new(unit: Unit, max_carry: usize, max_tracked: usize) -> Self {
        Tracker {
            files: HashMap::new(),
            max_tracked: max_tracked.max(1),
            unit,
            max_carry,
            poll: 0,
            evicted: 0,
        }
    }

    /// Expands the patterns to matching regular files, oldest first (by modification
    /// time, then name), so rotated files are read before the file being written.
    pub fn scan(&mut self, patterns: &[String]) -> Vec<Match> {
        self.poll += 1;
        let mut out = Vec::new();
        for p in patterns {
            let Ok(paths) = glob::glob(p) else { continue };
            for path in paths.flatten() {
                let Ok(md) = std::fs::metadata(&path) else {
                    continue;
                };
                if !md.is_file() {
                    continue;
                }
                out.push(Match {
                    id: FileId {
                        dev: md.dev(),
                        ino: md.ino(),
                    },
                    size: md.len(),
                    modified: md.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                    path,
                });
            }
        }
        out.sort_by(|a, b| {
            a.modified
                .cmp(&b.modified)
                .then_with(|| a.path.cmp(&b.path))
        });
        out.dedup_by_key(|m| m.id);
        out
    }

    /// The state of a matched file; new files start at `resume` (a checkpoint of an
    /// earlier run, if the file has not shrunk below it), else at 0 (or at their end
    /// when `skip_existing`); truncated files start again at 0.
    pub fn state(&mut self, m: &Match, skip_existing: bool, resume: Option<u64>) -> &mut Tracked {
        if !self.files.contains_key(&m.id) && self.files.len() >= self.max_tracked {
            self.evict_one();
        }
        let poll = self.poll;
        let (unit, max_carry) = (self.unit, self.max_carry);
        let t = self.files.entry(m.id).or_insert_with(|| Tracked {
            offset: match resume {
                Some(o) if o <= m.size => o,
                _ if skip_existing => m.size,
                _ => 0,
            },
            chunker: Chunker::new(unit, max_carry),
            last_seen_poll: poll,
        });
        t.last_seen_poll = poll;
        if m.size < t.offset {
            t.offset = 0;
            t.chunker = Chunker::new(unit, max_carry);
        }
        t
    }

    fn evict_one(&mut self) {
        if let Some((&id, _)) = self.files.iter().min_by_key(|(_, t)| t.last_seen_poll) {
            self.files.remove(&id);
            self.evicted += 1;
        }
    }

    /// Forgets files that did not match in the last poll (deleted after rotation).
    /// Their unfinished tails are returned so nothing read is lost.
    pub fn is_tracked(&self, id: FileId) -> bool {
        self.files.contains_key(&id)
    }

    pub fn forget_unseen(&mut self) -> Vec<bytes::Bytes> {
        let poll = self.poll;
        let gone: Vec<FileId> = self
            .files
            .iter()
            .filter(|(_, t)| t.last_seen_poll != poll)
            .map(|(id, _)| *id)
            .collect();
        gone.into_iter()
            .filter_map(|id| self.files.remove(&id).and_then(|mut t| t.chunker.finish()))
            .collect()
    }
}
