//! perf.data read in this process: the sampler stays upstream `perf record`, the
//! `perf script` step does not.
//!
//! [`Converter`] reads a perf.data file (the file layout `PERFILE2` with a 104-byte
//! header, or the pipe layout `perf record -o -` writes, with a 16-byte one),
//! rebuilds perf's view of processes from its records ([`process`]), symbolizes the
//! samples' frames with caches that outlive the file ([`symbols`]) and writes the
//! text `perf script -F +pid --no-inline` prints, so the one folder
//! ([`crate::formats::perf_script`]) folds both paths with the same rules.
//!
//! What it cannot reproduce exactly is listed in the README ("Known differences from
//! `perf script`").

mod background;
mod convert;
pub mod process;
pub mod symbols;
mod text_reader;

pub use background::convert_file;
pub use convert::{ConvertStats, Converter, PIECE_BYTES};
pub use symbols::{CacheStats, Symbolizer, SymbolizerLimits};
pub use text_reader::TextReader;

/// The magic both layouts start with (`PERFILE2`, little-endian).
pub const MAGIC: &[u8; 8] = b"PERFILE2";

/// The two perf.data layouts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// A seekable file with sections (`perf record -o FILE`).
    File,
    /// A stream (`perf record -o -`): header, then attributes and records inline.
    Pipe,
}

/// Which layout `head` (the first 16 bytes or more) starts, if any: the magic, then
/// the header size, 16 for a pipe and larger for a file.
pub fn detect(head: &[u8]) -> Option<Layout> {
    if head.len() < 16 || &head[..8] != MAGIC {
        return None;
    }
    let size = u64::from_le_bytes(head[8..16].try_into().expect("8 bytes"));
    Some(if size == 16 {
        Layout::Pipe
    } else {
        Layout::File
    })
}

/// Why a perf.data input could not be read at all (damage after the header only
/// ends the input early, see [`ConvertStats::truncated`]).
#[derive(Debug, thiserror::Error)]
pub enum PerfDataError {
    #[error("not a perf.data file (no PERFILE2 magic)")]
    NotPerfData,
    #[error("cannot read the perf.data header: {0}")]
    Header(String),
    #[error("cannot read the perf.data input: {0}")]
    Io(#[from] std::io::Error),
}

/// Checks that the sections a file-layout header names lie within the file, so the
/// parser never allocates or seeks by a damaged size.
///
/// ```text
/// 0   magic "PERFILE2"     8   header size        16  attr size
/// 24  attrs {offset,size}  40  data {offset,size} 56  event types {offset,size}
/// 72  feature bits (256)   — the feature table (16 bytes per set bit) follows the data
/// ```
pub(crate) fn check_file_header<R: std::io::Read + std::io::Seek>(
    input: &mut R,
) -> Result<(), PerfDataError> {
    use std::io::SeekFrom;
    let damaged = |what: &str| PerfDataError::Header(format!("damaged header: {what}"));
    let len = input.seek(SeekFrom::End(0))?;
    input.seek(SeekFrom::Start(0))?;
    let mut h = [0u8; 104];
    input
        .read_exact(&mut h)
        .map_err(|_| damaged("shorter than its header"))?;
    let word = |at: usize| u64::from_le_bytes(h[at..at + 8].try_into().expect("8 bytes"));
    let within = |offset: u64, size: u64| offset.checked_add(size).is_some_and(|end| end <= len);
    for (name, at) in [("attributes", 24), ("data", 40), ("event types", 56)] {
        if !within(word(at), word(at + 8)) {
            return Err(damaged(&format!(
                "the {name} section lies beyond the end of the file"
            )));
        }
    }
    let features: u64 = h[72..104].iter().map(|b| u64::from(b.count_ones())).sum();
    let table = word(40) + word(48);
    if !within(table, features * 16) {
        return Err(damaged("the feature table lies beyond the end of the file"));
    }
    input.seek(SeekFrom::Start(table))?;
    for _ in 0..features {
        let mut e = [0u8; 16];
        input.read_exact(&mut e)?;
        let offset = u64::from_le_bytes(e[..8].try_into().expect("8 bytes"));
        let size = u64::from_le_bytes(e[8..].try_into().expect("8 bytes"));
        if !within(offset, size) {
            return Err(damaged("a feature section lies beyond the end of the file"));
        }
    }
    Ok(())
}

/// The whole file with its header fixed up when `perf record` was stopped before it
/// wrote the data size (0) and its feature sections: the data then runs to the end
/// of the file, and no feature is claimed. None for a finished file. The file is a
/// window's (bounded by the perf source's `max_data_bytes`).
pub(crate) fn unfinished_file<R: std::io::Read + std::io::Seek>(
    input: &mut R,
) -> Result<Option<Vec<u8>>, PerfDataError> {
    use std::io::SeekFrom;
    let len = input.seek(SeekFrom::End(0))?;
    input.seek(SeekFrom::Start(0))?;
    let mut h = [0u8; 104];
    if input.read_exact(&mut h).is_err() {
        return Ok(None);
    }
    let word = |at: usize| u64::from_le_bytes(h[at..at + 8].try_into().expect("8 bytes"));
    let (data_offset, data_size) = (word(40), word(48));
    if data_size != 0 || data_offset == 0 || data_offset >= len {
        return Ok(None);
    }
    let mut all = Vec::with_capacity(len as usize);
    input.seek(SeekFrom::Start(0))?;
    input.read_to_end(&mut all)?;
    all[48..56].copy_from_slice(&(len - data_offset).to_le_bytes());
    all[72..104].fill(0);
    Ok(Some(all))
}

/// The number of sample records in a perf.data file (no symbols read), e.g. to
/// check that an event works.
pub fn count_samples(path: &std::path::Path) -> Result<u64, PerfDataError> {
    use std::io::{Read, Seek};
    let mut f = std::io::BufReader::new(std::fs::File::open(path)?);
    let mut head = [0u8; 16];
    f.read_exact(&mut head)
        .map_err(|_| PerfDataError::NotPerfData)?;
    let layout = detect(&head).ok_or(PerfDataError::NotPerfData)?;
    let fixed = match layout {
        Layout::File => unfinished_file(&mut f)?,
        Layout::Pipe => None,
    };
    if fixed.is_none() && layout == Layout::File {
        check_file_header(&mut f)?;
    }
    f.seek(std::io::SeekFrom::Start(0))?;
    let reader = match (layout, fixed) {
        (Layout::File, Some(all)) => {
            return count_records(linux_perf_data::PerfFileReader::parse_file(
                std::io::Cursor::new(all),
            ));
        }
        (Layout::File, None) => linux_perf_data::PerfFileReader::parse_file(f),
        (Layout::Pipe, _) => linux_perf_data::PerfFileReader::parse_pipe(f),
    };
    count_records(reader)
}

fn count_records<R: std::io::Read>(
    reader: Result<linux_perf_data::PerfFileReader<R>, linux_perf_data::Error>,
) -> Result<u64, PerfDataError> {
    let reader = reader.map_err(|e| PerfDataError::Header(e.to_string()))?;
    let linux_perf_data::PerfFileReader {
        mut perf_file,
        mut record_iter,
    } = reader;
    let mut n = 0;
    while let Ok(Some(r)) = record_iter.next_record(&mut perf_file) {
        if let linux_perf_data::PerfFileRecord::EventRecord { record, .. } = r {
            if record.record_type == linux_perf_data::linux_perf_event_reader::RecordType::SAMPLE {
                n += 1;
            }
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_both_layouts() {
        let mut h = b"PERFILE2".to_vec();
        h.extend_from_slice(&16u64.to_le_bytes());
        assert_eq!(detect(&h), Some(Layout::Pipe));
        h[8..16].copy_from_slice(&104u64.to_le_bytes());
        assert_eq!(detect(&h), Some(Layout::File));
        assert_eq!(detect(b"PERFILE2"), None);
        assert_eq!(detect(b"perf 1/1 1.0: 1 cpu-clock:\n"), None);
    }

    #[test]
    fn garbage_is_not_perf_data() {
        let mut c = Converter::new(Symbolizer::default());
        let r = c.convert(
            std::io::Cursor::new(b"hello world, not perf data".to_vec()),
            &mut |_| true,
        );
        assert!(matches!(r, Err(PerfDataError::NotPerfData)));
        let mut bad = b"PERFILE2".to_vec();
        bad.extend_from_slice(&104u64.to_le_bytes());
        bad.extend_from_slice(&[0xff; 40]);
        let r = c.convert(std::io::Cursor::new(bad), &mut |_| true);
        assert!(r.is_err());
    }
}
