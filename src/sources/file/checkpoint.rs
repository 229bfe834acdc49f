//! Follow mode: read positions that survive a restart, advanced only past bytes
//! whose events have all been delivered.
//!
//! Every piece of a file that the source sends on is one delivery [`Batch`]; its
//! receiver waits here with the offset the piece ends at. Outcomes are taken in
//! order per file: `Delivered` or `Rejected` (refused for good, counted by whoever
//! refused it) move the file's committed offset to the end of the piece; `Errored`
//! (not delivered, a token lost at shutdown) holds it there for the rest of the run,
//! so the next start reads those bytes again. Committed offsets are written to
//! `<state_dir>/<id>/checkpoints` (mode 0600) atomically, at most once per poll.
//!
//! On restart a file is found again by (device, inode) and read from its committed
//! offset: at-least-once. What is read twice after a `kill -9` is what had been read
//! but not yet delivered: at most the pieces still waiting here, bounded by
//! [`MAX_PENDING_PIECES`] × `read_size`, and in practice by what the pipeline holds
//! (its edges and window stores, within `[agent] memory_limit`, plus the window not
//! yet complete).
//!
//! File format, one line per file: `<dev> <ino> <offset>`.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::path::PathBuf;

use crate::event::{BatchReceiver, EventStatus};

use super::tracker::FileId;

/// Most pieces waiting for their outcome, over all files; past it the source stops
/// reading until outcomes come back.
pub const MAX_PENDING_PIECES: usize = 4096;

struct FileAcks {
    committed: u64,
    pending: VecDeque<(u64, BatchReceiver)>,
    /// An outcome was `Errored`: the offset stays where it is until the next start.
    held: bool,
}

pub struct Checkpoints {
    file: PathBuf,
    files: HashMap<FileId, FileAcks>,
    pending: usize,
    dirty: bool,
}

/// What one [`Checkpoints::poll`] saw.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Polled {
    pub delivered: u64,
    pub errored: u64,
}

impl Checkpoints {
    /// Loads `file` if it exists. A damaged line is skipped (those bytes are read
    /// again from the start: duplicates, not loss).
    pub fn load(file: PathBuf) -> io::Result<Checkpoints> {
        let mut files = HashMap::new();
        match std::fs::read_to_string(&file) {
            Ok(text) => {
                for line in text.lines() {
                    let mut it = line.split_ascii_whitespace().map(str::parse::<u64>);
                    if let (Some(Ok(dev)), Some(Ok(ino)), Some(Ok(offset)), None) =
                        (it.next(), it.next(), it.next(), it.next())
                    {
                        files.insert(
                            FileId { dev, ino },
                            FileAcks {
                                committed: offset,
                                pending: VecDeque::new(),
                                held: false,
                            },
                        );
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        Ok(Checkpoints {
            file,
            files,
            pending: 0,
            dirty: false,
        })
    }

    /// Where to start reading a file seen for the first time in this run.
    pub fn resume_offset(&self, id: FileId) -> Option<u64> {
        self.files.get(&id).map(|f| f.committed)
    }

    /// Pieces waiting for their outcome.
    pub fn pending(&self) -> usize {
        self.pending
    }

    /// A piece of `id` ending at `end` was sent; `rx` learns its outcome.
    pub fn track(&mut self, id: FileId, start: u64, end: u64, rx: BatchReceiver) {
        let f = self.files.entry(id).or_insert_with(|| FileAcks {
            committed: start,
            pending: VecDeque::new(),
            held: false,
        });
        f.pending.push_back((end, rx));
        self.pending += 1;
    }

    /// Takes the outcomes that are known, in order per file.
    pub fn poll(&mut self) -> Polled {
        let mut seen = Polled::default();
        for f in self.files.values_mut() {
            while let Some((end, rx)) = f.pending.front_mut() {
                let Some(status) = rx.try_status() else { break };
                let end = *end;
                f.pending.pop_front();
                self.pending -= 1;
                match status {
                    EventStatus::Errored => {
                        seen.errored += 1;
                        f.held = true;
                    }
                    EventStatus::Delivered | EventStatus::Rejected => {
                        seen.delivered += 1;
                        if !f.held && end > f.committed {
                            f.committed = end;
                            self.dirty = true;
                        }
                    }
                }
            }
        }
        seen
    }

    /// Waits until the oldest outcome still out (of some file) is known.
    pub async fn wait_oldest(&mut self) {
        if let Some(f) = self.files.values_mut().find(|f| !f.pending.is_empty()) {
            if let Some((_, rx)) = f.pending.front_mut() {
                rx.ready().await;
            }
        }
    }

    /// A file was truncated or replaced under its identity: start it again.
    pub fn reset(&mut self, id: FileId) {
        if let Some(f) = self.files.get_mut(&id) {
            f.committed = 0;
            f.held = false;
            self.dirty = true;
        }
    }

    /// Forgets files no longer tracked once nothing of theirs is waiting.
    pub fn retain(&mut self, mut keep: impl FnMut(FileId) -> bool) {
        let before = self.files.len();
        self.files
            .retain(|id, f| !f.pending.is_empty() || keep(*id));
        self.dirty |= self.files.len() != before;
    }

    /// Writes the committed offsets if they changed, atomically (a crash leaves the
    /// old file or the new one).
    pub fn save(&mut self) -> io::Result<()> {
        if !self.dirty {
            return Ok(());
        }
        let mut text = String::new();
        for (id, f) in &self.files {
            text.push_str(&format!("{} {} {}\n", id.dev, id.ino, f.committed));
        }
        crate::state_dir::write_atomic(&self.file, text.as_bytes())?;
        self.dirty = false;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Batch;

    #[test]
    fn offsets_advance_in_order_and_only_past_delivered_pieces() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("checkpoints");
        let mut c = Checkpoints::load(path.clone()).unwrap();
        let (a, b) = (FileId { dev: 1, ino: 2 }, FileId { dev: 1, ino: 3 });
        let mut batches = Vec::new();
        for (id, start, end) in [(a, 0, 10), (a, 10, 20), (a, 20, 30), (b, 5, 7)] {
            let (batch, rx) = Batch::new();
            c.track(id, start, end, rx);
            batches.push(batch);
        }
        assert_eq!(c.resume_offset(b), Some(5));
        // The second piece is delivered first: nothing moves until the first is.
        let mut tokens: Vec<_> = batches.iter().map(|b| b.token()).collect();
        drop(batches);
        let t_b = tokens.pop().unwrap();
        let t3 = tokens.pop().unwrap();
        let t2 = tokens.pop().unwrap();
        let t1 = tokens.pop().unwrap();
        t2.resolve(EventStatus::Delivered);
        assert_eq!(c.poll(), Polled::default());
        assert_eq!(c.resume_offset(a), Some(0));
        t1.resolve(EventStatus::Rejected);
        assert_eq!(c.poll().delivered, 2);
        assert_eq!(c.resume_offset(a), Some(20));
        drop(t3); // lost without an outcome: held
        t_b.resolve(EventStatus::Delivered);
        assert_eq!(
            c.poll(),
            Polled {
                delivered: 1,
                errored: 1
            }
        );
        assert_eq!(c.resume_offset(a), Some(20));
        assert_eq!(c.pending(), 0);
        c.save().unwrap();
        let again = Checkpoints::load(path).unwrap();
        assert_eq!(
            (again.resume_offset(a), again.resume_offset(b)),
            (Some(20), Some(7))
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("checkpoints"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
