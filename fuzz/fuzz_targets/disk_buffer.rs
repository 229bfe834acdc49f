//! The disk buffer's recovery from whatever bytes are on disk: segments and a
//! ledger, damaged in any way. It opens, hands out every readable record once,
//! numbers new records above what it read, reads them back intact, and after a
//! clean close replays exactly what was not acknowledged (see
//! `src/buffer/disk/fuzzing.rs`).
//!
//! Input: files, each `kind: u8` (0 ledger, else a segment), for a segment its
//! first sequence number (`u64` LE), `len: u16` LE, then `len` bytes; what is left
//! becomes records appended after recovery, cut at `0xff` bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use profpipe::buffer::disk::fuzzing::{recover, DiskFile};

fn take<'a>(d: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    let (a, b) = (d.get(..n)?, d.get(n..)?);
    *d = b;
    Some(a)
}

fn files(mut data: &[u8]) -> (Vec<DiskFile<'_>>, &[u8]) {
    let mut out = Vec::new();
    while out.len() < 8 {
        let rest = data;
        let Some(&[kind]) = take(&mut data, 1) else {
            break;
        };
        let first = if kind == 0 {
            None
        } else {
            match take(&mut data, 8) {
                Some(b) => Some(u64::from_le_bytes(b.try_into().unwrap())),
                None => {
                    data = rest;
                    break;
                }
            }
        };
        let Some(len) = take(&mut data, 2) else {
            data = rest;
            break;
        };
        let len = usize::from(u16::from_le_bytes(len.try_into().unwrap()));
        let Some(bytes) = take(&mut data, len) else {
            data = rest;
            break;
        };
        out.push(match first {
            None => DiskFile::Ledger(bytes),
            Some(first) => DiskFile::Segment(first, bytes),
        });
    }
    (out, data)
}

fuzz_target!(|data: &[u8]| {
    let (files, rest) = files(data);
    // Two files named alike: the second would replace the first.
    let mut names: Vec<Option<u64>> = files
        .iter()
        .map(|f| match f {
            DiskFile::Ledger(_) => None,
            DiskFile::Segment(s, _) => Some(*s),
        })
        .collect();
    names.sort();
    if names.windows(2).any(|w| w[0] == w[1]) {
        return;
    }
    let appends: Vec<&[u8]> = rest.split(|&b| b == 0xff).take(64).collect();
    // tmpfs when there is one: recovery syncs files, which costs a disk.
    let dir = tempfile::Builder::new()
        .prefix("profpipe-fuzz")
        .tempdir_in(if std::path::Path::new("/dev/shm").is_dir() {
            "/dev/shm"
        } else {
            "/tmp"
        })
        .expect("a scratch directory");
    if let Err(e) = recover(dir.path(), &files, &appends) {
        panic!("{e}");
    }
});
