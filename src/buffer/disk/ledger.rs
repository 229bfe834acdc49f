//! The ledger: where reading stands, so a restart replays only what was not
//! acknowledged.
//!
//! ```text
//! header, 32 bytes:
//!      0     8  magic "PPDBLED\x01" (the last byte is the format version)
//!      8     8  acked_through, u64 LE: every record with a lower sequence number
//!               is acknowledged (delivered or rejected); at most 2^63
//!               (`record::SEQ_LIMIT`), as next_seq, else the header is damaged
//!     16     8  next_seq, u64 LE: the writer's next sequence number at that time
//!     24     4  CRC-32C of bytes 0..24, u32 LE
//!     28     4  zero
//! then entries, 12 bytes each, appended as acknowledgements come in:
//!      0     8  sequence number of one acknowledged record, u64 LE
//!      8     4  CRC-32C of those 8 bytes, u32 LE
//! ```
//!
//! Records are acknowledged out of order (windows close at different times), so
//! the header alone would replay everything acknowledged past the oldest record
//! still out; the entries say exactly which were. Appending an entry is one
//! `write`: a `kill -9` loses none (the page cache keeps it), a power failure at
//! most the entries since the last sync, which are then delivered twice, never
//! lost. The file is rewritten whole (temporary file, fsync, rename, fsync of the
//! directory) when the entries pile up or the buffer syncs, keeping only entries
//! above the new `acked_through`.

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use super::record::{crc32c, SEQ_LIMIT};

const MAGIC: &[u8; 8] = b"PPDBLED\x01";
const HEADER_LEN: usize = 32;
const ENTRY_LEN: usize = 12;
const FILE: &str = "ledger";
/// What a rewrite cut by a crash leaves ([`crate::state_dir::write_atomic`]'s temporary).
pub(super) const TMP: &str = "ledger.tmp";

/// What the ledger said at start.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Recovered {
    pub acked_through: u64,
    pub next_seq: u64,
    /// Acknowledged records at or above `acked_through`.
    pub acked: BTreeSet<u64>,
    /// The header was unreadable: everything on disk is replayed (duplicates,
    /// never loss).
    pub damaged: bool,
}

/// The open ledger.
#[derive(Debug)]
pub struct Ledger {
    dir: PathBuf,
    file: File,
    len: u64,
    /// Entries appended since the last rewrite.
    appended: usize,
    /// Entries appended since the last sync.
    unsynced: bool,
}

/// Bytes of a ledger holding `entries` entries.
pub const fn size_with(entries: usize) -> u64 {
    (HEADER_LEN + entries * ENTRY_LEN) as u64
}

impl Ledger {
    /// Reads the ledger in `dir` (none yet: a new buffer) and opens it for appending.
    pub fn open(dir: &Path, read_at_most: u64) -> io::Result<(Ledger, Recovered)> {
        let path = dir.join(FILE);
        let recovered = match File::open(&path) {
            Ok(f) => {
                let mut bytes = Vec::new();
                f.take(read_at_most).read_to_end(&mut bytes)?;
                parse(&bytes)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Recovered::default(),
            Err(e) => return Err(e),
        };
        let mut ledger = Ledger {
            dir: dir.to_path_buf(),
            file: File::open("/dev/null")?,
            len: 0,
            appended: 0,
            unsynced: false,
        };
        // Start from a clean file: a torn last entry or a damaged header is not
        // carried on.
        ledger.rewrite(
            recovered.acked_through,
            recovered.next_seq,
            &recovered.acked,
        )?;
        Ok((ledger, recovered))
    }

    /// Records that `seq` is acknowledged.
    pub fn append(&mut self, seq: u64) -> io::Result<()> {
        let mut e = [0u8; ENTRY_LEN];
        e[0..8].copy_from_slice(&seq.to_le_bytes());
        let crc = crc32c(&e[0..8]);
        e[8..12].copy_from_slice(&crc.to_le_bytes());
        self.file.write_all(&e)?;
        self.len += ENTRY_LEN as u64;
        self.appended += 1;
        self.unsynced = true;
        Ok(())
    }

    /// Entries appended since the last rewrite.
    pub fn appended(&self) -> usize {
        self.appended
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    /// Replaces the ledger with a header and one entry per `acked` record.
    pub fn rewrite(
        &mut self,
        acked_through: u64,
        next_seq: u64,
        acked: &BTreeSet<u64>,
    ) -> io::Result<()> {
        let mut bytes = Vec::with_capacity(HEADER_LEN + acked.len() * ENTRY_LEN);
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&acked_through.to_le_bytes());
        bytes.extend_from_slice(&next_seq.to_le_bytes());
        let crc = crc32c(&bytes[0..24]);
        bytes.extend_from_slice(&crc.to_le_bytes());
        bytes.extend_from_slice(&[0; 4]);
        for seq in acked.range(acked_through..) {
            bytes.extend_from_slice(&seq.to_le_bytes());
            let crc = crc32c(&seq.to_le_bytes());
            bytes.extend_from_slice(&crc.to_le_bytes());
        }
        crate::state_dir::write_atomic(&self.dir.join(FILE), &bytes)?;
        self.file = OpenOptions::new().append(true).open(self.dir.join(FILE))?;
        self.len = bytes.len() as u64;
        self.appended = 0;
        self.unsynced = false;
        Ok(())
    }

    /// Forces appended entries to stable storage (nothing to do when none were).
    pub fn sync(&mut self) -> io::Result<()> {
        if self.unsynced {
            self.file.sync_data()?;
            self.unsynced = false;
        }
        Ok(())
    }
}

fn parse(bytes: &[u8]) -> Recovered {
    let header_ok = bytes.len() >= HEADER_LEN
        && &bytes[0..8] == MAGIC
        && crc32c(&bytes[0..24]) == u32::from_le_bytes(bytes[24..28].try_into().unwrap());
    if !header_ok {
        return Recovered {
            damaged: !bytes.is_empty(),
            ..Recovered::default()
        };
    }
    let acked_through = u64::from_le_bytes(bytes[8..16].try_into().unwrap());
    let next_seq = u64::from_le_bytes(bytes[16..24].try_into().unwrap());
    // Both are "one past" a sequence number, so at most `SEQ_LIMIT`.
    if acked_through > SEQ_LIMIT || next_seq > SEQ_LIMIT {
        // A checksum that matches numbers no writer gives: damaged all the same.
        return Recovered {
            damaged: true,
            ..Recovered::default()
        };
    }
    let mut acked = BTreeSet::new();
    // Entries stop at the first one that does not check out: a torn last append.
    for e in bytes[HEADER_LEN..].chunks_exact(ENTRY_LEN) {
        let seq = &e[0..8];
        if crc32c(seq) != u32::from_le_bytes(e[8..12].try_into().unwrap()) {
            break;
        }
        let seq = u64::from_le_bytes(seq.try_into().unwrap());
        if seq >= SEQ_LIMIT {
            break;
        }
        if seq >= acked_through {
            acked.insert(seq);
        }
    }
    Recovered {
        acked_through,
        next_seq,
        acked,
        damaged: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_and_entries_read_back_and_a_torn_entry_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let (mut l, r) = Ledger::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(r, Recovered::default());
        l.rewrite(5, 9, &BTreeSet::from([3, 7])).unwrap();
        l.append(6).unwrap();
        l.append(8).unwrap();
        drop(l);
        // A torn third append.
        let path = dir.path().join(FILE);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&[1, 2, 3]).unwrap();
        let (_, r) = Ledger::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(r.acked_through, 5);
        assert_eq!(r.next_seq, 9);
        assert_eq!(
            r.acked,
            BTreeSet::from([6, 7, 8]),
            "3 is below acked_through"
        );
        assert!(!r.damaged);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), size_with(3));
    }

    /// Found by fuzzing the recovery: numbers near `u64::MAX` under a valid
    /// checksum made the queue's `+ 1`s overflow. They are damage.
    #[test]
    fn numbers_out_of_range_are_damage() {
        let dir = tempfile::tempdir().unwrap();
        let (mut l, _) = Ledger::open(dir.path(), 1 << 20).unwrap();
        for (through, next) in [(u64::MAX, 3), (3, u64::MAX), (SEQ_LIMIT + 1, 3)] {
            l.rewrite(through, next, &BTreeSet::new()).unwrap();
            let bytes = std::fs::read(dir.path().join(FILE)).unwrap();
            let r = parse(&bytes);
            assert!(r.damaged, "{through} {next}");
            assert_eq!((r.acked_through, r.next_seq), (0, 0));
        }
        l.rewrite(3, 9, &BTreeSet::from([5])).unwrap();
        l.append(u64::MAX).unwrap();
        l.append(7).unwrap();
        let r = parse(&std::fs::read(dir.path().join(FILE)).unwrap());
        assert!(!r.damaged);
        assert_eq!(
            r.acked,
            BTreeSet::from([5]),
            "entries stop at one out of range"
        );
        // A buffer that used the last number closes with both at the limit.
        l.rewrite(SEQ_LIMIT, SEQ_LIMIT, &BTreeSet::new()).unwrap();
        let r = parse(&std::fs::read(dir.path().join(FILE)).unwrap());
        assert!(!r.damaged);
        assert_eq!((r.acked_through, r.next_seq), (SEQ_LIMIT, SEQ_LIMIT));
    }

    #[test]
    fn a_damaged_header_replays_everything() {
        let dir = tempfile::tempdir().unwrap();
        let (mut l, _) = Ledger::open(dir.path(), 1 << 20).unwrap();
        l.rewrite(100, 120, &BTreeSet::new()).unwrap();
        let path = dir.path().join(FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[9] ^= 0xff;
        std::fs::write(&path, bytes).unwrap();
        let (_, r) = Ledger::open(dir.path(), 1 << 20).unwrap();
        assert!(r.damaged);
        assert_eq!(r.acked_through, 0);
    }
}
