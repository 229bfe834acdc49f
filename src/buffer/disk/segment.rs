//! Segment files: `<first sequence number, 20 digits>.seg`, each an 8-byte magic
//! ([`MAGIC`], whose last byte is the format version) followed by records
//! (see [`super::record`]). Appended to by the writer until they reach the
//! segment size, then closed for good; deleted whole once every record in them is
//! acknowledged.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::record::SEQ_LIMIT;

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

/// What a file name says: not a segment, a segment, or a segment's name with a
/// sequence number out of range (never written by this buffer: damage).
#[derive(Debug, PartialEq, Eq)]
enum Name {
    Other,
    Segment(u64),
    OutOfRange,
}

fn parse_name(name: &str) -> Name {
    let Some(digits) = name.strip_suffix(".seg") else {
        return Name::Other;
    };
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Name::Other;
    }
    match digits.parse::<u64>() {
        Ok(seq) if seq < SEQ_LIMIT => Name::Segment(seq),
        _ => Name::OutOfRange,
    }
}

/// The segments in `dir`, oldest first, and the paths of files named as segments
/// whose number is out of range ([`SEQ_LIMIT`]), which are left alone. Other files
/// are not ours to judge.
pub fn list(dir: &Path) -> io::Result<(Vec<Segment>, Vec<PathBuf>)> {
    let mut out = Vec::new();
    let mut out_of_range = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let first_seq = match entry.file_name().to_str().map_or(Name::Other, parse_name) {
            Name::Other => continue,
            Name::OutOfRange => {
                out_of_range.push(entry.path());
                continue;
            }
            Name::Segment(seq) => seq,
        };
        out.push(Segment {
            first_seq,
            path: entry.path(),
            len: entry.metadata()?.len(),
        });
    }
    out.sort_by_key(|s| s.first_seq);
    Ok((out, out_of_range))
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
            .0
            .iter()
            .map(|s| s.first_seq)
            .collect();
        assert_eq!(seqs, [9, 10, 100]);
        assert!(list(dir.path())
            .unwrap()
            .0
            .iter()
            .all(|s| s.len == MAGIC_LEN));
        assert!(create(dir.path(), 9).is_err(), "never overwrites a segment");
    }

    #[test]
    fn a_name_out_of_range_is_told_apart() {
        assert_eq!(parse_name("00000000000000000042.seg"), Name::Segment(42));
        assert_eq!(
            parse_name(&file_name(SEQ_LIMIT - 1)),
            Name::Segment(SEQ_LIMIT - 1)
        );
        assert_eq!(parse_name(&file_name(SEQ_LIMIT)), Name::OutOfRange);
        assert_eq!(parse_name("18446744073709551615.seg"), Name::OutOfRange);
        assert_eq!(parse_name("99999999999999999999.seg"), Name::OutOfRange);
        assert_eq!(parse_name("42.seg"), Name::Other);
    }
}
