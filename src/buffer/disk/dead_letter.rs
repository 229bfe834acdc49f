//! The dead-letter file: where a disk buffer puts a record the sink keeps failing,
//! so that one record never holds the buffer's read position.
//!
//! A record is moved here when its delivery ended `Errored` `max_attempts` times
//! (or once more after it is `max_record_age` old) *and* the sink delivered some
//! other record since it was first handed out: during an outage, when nothing gets
//! through, records are kept however long it lasts, which is what the buffer is
//! for. It is written here and synced before it is acknowledged in the ledger, so
//! a crash in between delivers it again (and may dead-letter it twice), never
//! loses it.
//!
//! # Format
//!
//! `<buffer dir>/dead_letter` (mode 0600): the magic `PPDBDLQ\x01` (its last byte
//! is the version), then records framed as in the segments ([`super::record`]):
//! payload length (u32 LE), the record's sequence number in the buffer (u64), its
//! write time in Unix ms (u64), CRC-32C of the payload, CRC-32C of those 24 header
//! bytes, then the payload exactly as the buffer held it ([`super::codec`]).
//! Append-only; a torn last record (power failure) is truncated when the buffer
//! opens. `profpipe dead-letter replay` writes the records back into the buffer
//! and removes the file.
//!
//! # Bound
//!
//! The file never passes `dead_letter.max_bytes` (on top of the buffer's own
//! `max_bytes`). A record due for it that does not fit is dropped, counted in
//! `buffer_disk_dead_letter_dropped_records_total` and logged.

use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, Read, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::queue::{now_ms, AppendError as QueueAppend, OpenError, Queue};
use super::record::{frame, Header, HEADER_LEN};
use crate::telemetry::DiskBufferMetrics;

/// The file's name in the buffer's directory.
pub const FILE: &str = "dead_letter";

/// First bytes of the file; the last one is the format version.
pub const MAGIC: &[u8; 8] = b"PPDBDLQ\x01";
const MAGIC_LEN: u64 = MAGIC.len() as u64;

/// Why a record was not appended.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    #[error("the dead-letter file {path} is full ({max_bytes} bytes)")]
    Full { path: String, max_bytes: u64 },
    #[error("writing {path}: {source}")]
    Io { path: String, source: io::Error },
}

/// The dead-letter file of one buffer, open for appending once it exists.
#[derive(Debug)]
pub struct DeadLetter {
    path: PathBuf,
    max_bytes: u64,
    /// Bytes of the file (0: it does not exist).
    len: u64,
    file: Option<File>,
    scratch: Vec<u8>,
}

impl DeadLetter {
    /// The file in `dir`, if any: a torn last record is truncated.
    pub fn open(dir: &Path, max_bytes: u64) -> io::Result<DeadLetter> {
        let path = dir.join(FILE);
        let mut dl = DeadLetter {
            path,
            max_bytes,
            len: 0,
            file: None,
            scratch: Vec::new(),
        };
        let file = match OpenOptions::new().append(true).read(true).open(&dl.path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(dl),
            Err(e) => return Err(e),
        };
        let len = file.metadata()?.len();
        if len == 0 {
            // Created by a run that died before writing its magic.
            return Ok(dl);
        }
        let Some(valid) = valid_prefix(&file, len)? else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{} is not a dead-letter file (wrong magic); move it away",
                    dl.path.display()
                ),
            ));
        };
        if valid != len {
            file.set_len(valid)?;
            file.sync_all()?;
            tracing::warn!(file = %dl.path.display(), offset = valid, "disk buffer: a torn last record of the dead-letter file was truncated");
        }
        dl.len = valid;
        dl.file = Some(file);
        Ok(dl)
    }

    /// Bytes of the file (0 when it does not exist).
    pub fn bytes(&self) -> u64 {
        self.len
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn set_max_bytes(&mut self, max_bytes: u64) {
        self.max_bytes = max_bytes;
    }

    /// Appends one record and syncs it. Creates the file (0600) with its magic on
    /// first use.
    pub fn append(&mut self, seq: u64, written_ms: u64, payload: &[u8]) -> Result<(), AppendError> {
        let io = |path: &Path| {
            let path = path.display().to_string();
            move |source| AppendError::Io { path, source }
        };
        let magic = if self.file.is_none() { MAGIC_LEN } else { 0 };
        let rec = HEADER_LEN as u64 + payload.len() as u64;
        if self.len + magic + rec > self.max_bytes {
            return Err(AppendError::Full {
                path: self.path.display().to_string(),
                max_bytes: self.max_bytes,
            });
        }
        self.scratch.clear();
        if self.file.is_none() {
            // Append mode (so a failed write cut back never leaves a hole); an empty
            // file left by a run that died before its magic is emptied.
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .read(true)
                .mode(0o600)
                .open(&self.path)
                .and_then(|f| f.set_len(0).map(|()| f))
                .map_err(io(&self.path))?;
            self.file = Some(f);
            self.len = 0;
            self.scratch.extend_from_slice(MAGIC);
        }
        frame(seq, written_ms, payload, &mut self.scratch);
        let file = self.file.as_ref().unwrap();
        let written = (&mut &*file)
            .write_all(&self.scratch)
            .and_then(|()| file.sync_data());
        if let Err(e) = written {
            // Leave no partial record behind.
            let _ = file.set_len(self.len);
            return Err(io(&self.path)(e));
        }
        self.len += self.scratch.len() as u64;
        Ok(())
    }
}

/// Length of the file's readable prefix: its magic and whole records (by their
/// headers). `None` when the magic is wrong: not ours to truncate.
fn valid_prefix(file: &File, len: u64) -> io::Result<Option<u64>> {
    let mut m = [0u8; MAGIC.len()];
    if len < MAGIC_LEN || file.read_exact_at(&mut m, 0).is_err() || &m != MAGIC {
        return Ok(None);
    }
    let mut off = MAGIC_LEN;
    let mut b = [0u8; HEADER_LEN];
    while len - off >= HEADER_LEN as u64 {
        file.read_exact_at(&mut b, off)?;
        match Header::decode(&b) {
            Some(h) if off + h.record_len() <= len => off += h.record_len(),
            _ => break,
        }
    }
    Ok(Some(off))
}

/// One dead-lettered record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Its sequence number in the buffer it came from.
    pub seq: u64,
    /// When it was first written to the buffer, Unix ms.
    pub written_ms: u64,
    /// The event, exactly as the buffer held it.
    pub payload: Vec<u8>,
}

/// What reading the file met besides good records.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Damage {
    /// Records whose payload fails its checksum (skipped).
    pub checksum: u64,
    /// Bytes after a damaged header (or a wrong magic), which cannot be read.
    pub unreadable_bytes: u64,
}

/// Reads a dead-letter file one record at a time (memory: one record).
pub struct Reader {
    /// `None` when the file is not readable as one (wrong magic).
    input: Option<BufReader<File>>,
    left: u64,
    pub damage: Damage,
}

impl Reader {
    /// `None` when `dir` has no dead-letter file.
    pub fn open(dir: &Path) -> io::Result<Option<Reader>> {
        let file = match File::open(dir.join(FILE)) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let len = file.metadata()?.len();
        let mut input = BufReader::new(file);
        let mut m = [0u8; MAGIC.len()];
        let ok = len >= MAGIC_LEN && input.read_exact(&mut m).is_ok() && &m == MAGIC;
        Ok(Some(Reader {
            input: ok.then_some(input),
            left: if ok { len - MAGIC_LEN } else { 0 },
            damage: Damage {
                checksum: 0,
                unreadable_bytes: if ok { 0 } else { len },
            },
        }))
    }

    /// The next good record; `None` at the end (or at a damaged header, counted).
    pub fn next_entry(&mut self) -> io::Result<Option<Entry>> {
        loop {
            let Some(input) = self.input.as_mut() else {
                return Ok(None);
            };
            if self.left < HEADER_LEN as u64 {
                // A torn tail being written right now, or nothing.
                return Ok(None);
            }
            let mut b = [0u8; HEADER_LEN];
            input.read_exact(&mut b)?;
            let header = match Header::decode(&b) {
                Some(h) if h.record_len() <= self.left => h,
                _ => {
                    self.damage.unreadable_bytes += self.left;
                    self.left = 0;
                    return Ok(None);
                }
            };
            self.left -= header.record_len();
            let mut payload = vec![0u8; header.len as usize];
            input.read_exact(&mut payload)?;
            if !header.payload_ok(&payload) {
                self.damage.checksum += 1;
                continue;
            }
            return Ok(Some(Entry {
                seq: header.seq,
                written_ms: header.written_ms,
                payload,
            }));
        }
    }
}

/// Every good record of the dead-letter file in `dir` (empty when there is none),
/// and the damage met.
pub fn read_all(dir: &Path) -> io::Result<(Vec<Entry>, Damage)> {
    let Some(mut r) = Reader::open(dir)? else {
        return Ok((Vec::new(), Damage::default()));
    };
    let mut out = Vec::new();
    while let Some(e) = r.next_entry()? {
        out.push(e);
    }
    Ok((out, r.damage))
}

/// Replaces the dead-letter file in `dir` with `entries` (atomically), or removes
/// it when there are none.
pub fn rewrite(dir: &Path, entries: &[Entry]) -> io::Result<()> {
    let path = dir.join(FILE);
    if entries.is_empty() {
        return match std::fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => File::open(dir)?.sync_all(),
        };
    }
    let mut bytes = MAGIC.to_vec();
    for e in entries {
        frame(e.seq, e.written_ms, &e.payload, &mut bytes);
    }
    crate::state_dir::write_atomic(&path, &bytes)
}

/// What [`replay`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Replayed {
    /// Records written back into the buffer (removed from the dead-letter file).
    pub records: u64,
    /// Records left in the dead-letter file: the buffer had no room for them.
    pub left: u64,
    pub damage: Damage,
}

/// Why [`replay`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(transparent)]
    Open(#[from] OpenError),
    #[error("{what}: {source}")]
    Io { what: String, source: io::Error },
}

/// Writes the records of the dead-letter file in `dir` back into the disk buffer
/// there (of `max_bytes`), as new records written now, so that the buffer's next
/// run hands them to the sink again; then removes them from the dead-letter file.
/// Takes the buffer's lock: fails with [`OpenError::Locked`] while an agent runs
/// with it. The buffer's segments are synced before the dead-letter file lets go
/// of the records: a crash in between leaves them in both (delivered twice),
/// never in neither. Records that do not fit in the buffer stay in the file.
pub fn replay(
    dir: &Path,
    max_bytes: u64,
    metrics: DiskBufferMetrics,
) -> Result<Replayed, ReplayError> {
    let io = |what: &str| {
        let what = format!("{what} {}", dir.display());
        move |source| ReplayError::Io { what, source }
    };
    let mut queue = Queue::open(dir, max_bytes, metrics)?;
    let (entries, damage) = read_all(dir).map_err(io("reading the dead-letter file in"))?;
    let mut left = Vec::new();
    let mut records = 0;
    for e in entries {
        if !left.is_empty() {
            left.push(e);
            continue;
        }
        match queue.append(&e.payload, now_ms()) {
            Ok(_) => records += 1,
            Err(QueueAppend::Full | QueueAppend::TooLarge(_)) => left.push(e),
            Err(QueueAppend::Io { path, source }) => {
                return Err(ReplayError::Io {
                    what: format!("writing {path}"),
                    source,
                })
            }
        }
    }
    for f in queue.take_unsynced() {
        f.sync_data().map_err(io("syncing the buffer in"))?;
    }
    queue.persist().map_err(io("writing the ledger in"))?;
    rewrite(dir, &left).map_err(io("rewriting the dead-letter file in"))?;
    Ok(Replayed {
        records,
        left: left.len() as u64,
        damage,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_read_back_exactly_and_the_bound_holds() {
        let dir = tempfile::tempdir().unwrap();
        let mut dl = DeadLetter::open(dir.path(), 200).unwrap();
        assert_eq!(dl.bytes(), 0);
        assert!(!dir.path().join(FILE).exists(), "created on first use only");
        dl.append(7, 1_000, b"first payload").unwrap();
        dl.append(9, 2_000, &[0u8, 255, 1]).unwrap();
        let too_big = vec![1u8; 120];
        assert!(matches!(
            dl.append(10, 3_000, &too_big),
            Err(AppendError::Full { .. })
        ));
        assert!(dl.bytes() <= 200);
        assert_eq!(
            std::fs::metadata(dir.path().join(FILE)).unwrap().len(),
            dl.bytes()
        );
        let (entries, damage) = read_all(dir.path()).unwrap();
        assert_eq!(damage, Damage::default());
        assert_eq!(
            entries,
            [
                Entry {
                    seq: 7,
                    written_ms: 1_000,
                    payload: b"first payload".to_vec()
                },
                Entry {
                    seq: 9,
                    written_ms: 2_000,
                    payload: vec![0, 255, 1]
                },
            ]
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        // Survives a reopen (a restart), appending after what is there.
        let mut dl = DeadLetter::open(dir.path(), 1 << 20).unwrap();
        dl.append(11, 4_000, b"third").unwrap();
        assert_eq!(read_all(dir.path()).unwrap().0.len(), 3);
        rewrite(dir.path(), &entries[1..]).unwrap();
        assert_eq!(read_all(dir.path()).unwrap().0, entries[1..]);
        rewrite(dir.path(), &[]).unwrap();
        assert!(!dir.path().join(FILE).exists());
    }

    #[test]
    fn a_torn_tail_is_truncated_and_a_flipped_byte_costs_one_record() {
        let dir = tempfile::tempdir().unwrap();
        let mut dl = DeadLetter::open(dir.path(), 1 << 20).unwrap();
        for seq in 0..3 {
            dl.append(seq, seq, &[seq as u8; 10]).unwrap();
        }
        let path = dir.path().join(FILE);
        let whole = std::fs::read(&path).unwrap();
        // A torn last record: the reader stops before it, opening truncates it.
        std::fs::write(&path, &whole[..whole.len() - 4]).unwrap();
        assert_eq!(read_all(dir.path()).unwrap().0.len(), 2);
        let dl = DeadLetter::open(dir.path(), 1 << 20).unwrap();
        let rec = HEADER_LEN as u64 + 10;
        assert_eq!(dl.bytes(), MAGIC_LEN + 2 * rec);
        // A flipped payload byte: that record is skipped and counted.
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[MAGIC_LEN as usize + HEADER_LEN + 1] ^= 0x40;
        std::fs::write(&path, &bytes).unwrap();
        let (entries, damage) = read_all(dir.path()).unwrap();
        assert_eq!(entries.iter().map(|e| e.seq).collect::<Vec<_>>(), [1]);
        assert_eq!(damage.checksum, 1);
    }
}
