//! Segment files: `<first sequence number, 20 digits>.seg`, each an 8-byte magic
//! ([`MAGIC`], whose last byte is the format version) followed by records
//! (see [`super::record`]). Appended to by the writer until they reach the
//! segment size, then closed for good; deleted whole once every record in them is
//! acknowledged.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// First bytes of every segment; the last one is the format version.
pub const MAGIC: &[u8; 8] = b"PPDBSEG\x01";

/// Bytes of [`MAGIC`].
pub const MAGIC_LEN: u64 = MAGIC.len() as u64;

/// A segment on disk.
#[derive(Debug)]
pub struct Segment {
    /// Sequence number of its first record (records before it are in older
    /// segments); also its name.
    pub first_seq: u64,
    pub path: PathBuf,
    /// Bytes written, magic included.
    pub len: u64,
}

pub fn file_name(first_seq: u64) -> String {
    format!("{first_seq:020}.seg")
}

fn parse_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".seg")?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// The segments in `dir`, oldest first. Other files are not ours to judge.
pub fn list(dir: &Path) -> io::Result<Vec<Segment>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let Some(first_seq) = entry.file_name().to_str().and_then(parse_name) else {
            continue;
        };
        out.push(Segment {
            first_seq,
            path: entry.path(),
            len: entry.metadata()?.len(),
        });
    }
    out.sort_by_key(|s| s.first_seq);
    Ok(out)
}

/// Creates a new segment (mode 0600) with its magic written; returns it open for
/// appending.
pub fn create(dir: &Path, first_seq: u64) -> io::Result<(Segment, File)> {
    let path = dir.join(file_name(first_seq));
    let mut file = OpenOptions::new()
        .create_new(true)
        .append(true)
        .read(true)
        .mode(0o600)
        .open(&path)?;
    if let Err(e) = file.write_all(MAGIC) {
        let _ = std::fs::remove_file(&path);
        return Err(e);
    }
    let segment = Segment {
        first_seq,
        path,
        len: MAGIC_LEN,
    };
    Ok((segment, file))
}

/// Opens an existing segment for appending (and reading).
pub fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().append(true).read(true).open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_as_numbers_and_other_files_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        for seq in [10u64, 9, 100] {
            create(dir.path(), seq).unwrap();
        }
        std::fs::write(dir.path().join("ledger"), b"x").unwrap();
        std::fs::write(dir.path().join("12.seg"), b"x").unwrap();
        let seqs: Vec<u64> = list(dir.path())
            .unwrap()
            .iter()
            .map(|s| s.first_seq)
            .collect();
        assert_eq!(seqs, [9, 10, 100]);
        assert!(list(dir.path()).unwrap().iter().all(|s| s.len == MAGIC_LEN));
        assert!(create(dir.path(), 9).is_err(), "never overwrites a segment");
    }
}
