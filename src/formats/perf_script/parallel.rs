//! The CLI path: fold a whole input, on several threads, and write sorted output.
//!
//! The main thread reads the input in chunks and cuts it at record boundaries: just
//! after an empty line (`\n\n`), where a folder's per-record state is fresh. Complete
//! records go through a bounded channel (2 chunks per worker) to `threads - 1` scoped
//! worker threads, each with its own folder; so memory stays bounded by the chunk
//! size, not the input size. When the channel is full the main thread folds the chunk
//! itself, so `threads` threads are busy, never more.
//!
//! Two things are always handled on the main thread, in order, with its own folder:
//! - everything up to the first record that names an event, since that event becomes
//!   the filter for all later records (workers are started with it);
//! - a stretch of input with no record boundary for a long time (pathological input),
//!   which is fed sequentially until a boundary shows up again.
//!
//! Results are the same as folding the whole input sequentially, whatever the chunk
//! size or thread count.

use std::io::{self, BufWriter, Read, Write};
use std::sync::{mpsc, Mutex};
use std::thread;

use memchr::memmem;

use super::folder::PerfFolder;
use super::options::FoldOptions;
use super::output::FoldStats;

/// Input is read and handed to workers in chunks of about this many bytes.
pub const DEFAULT_CHUNK_BYTES: usize = 1 << 20;

/// The CLI path: read all input, fold with `threads` workers (split on record boundaries, i.e. blank lines),
/// write sorted "stack count\n" lines exactly like inferno-collapse-perf. Returns stats.
///
/// The pid of [`FoldOptions::key_by_pid`] is not written: equal stacks of different
/// pids are summed.
pub fn fold_to_writer<R: Read, W: Write>(
    input: R,
    opts: &FoldOptions,
    threads: usize,
    out: W,
) -> io::Result<FoldStats> {
    fold_to_writer_chunked(input, opts, threads, DEFAULT_CHUNK_BYTES, out)
}

/// [`fold_to_writer`] with an explicit chunk size (for tuning and for tests that
/// exercise chunk boundaries on small inputs). The output does not depend on it.
pub fn fold_to_writer_chunked<R: Read, W: Write>(
    mut input: R,
    opts: &FoldOptions,
    threads: usize,
    chunk_bytes: usize,
    out: W,
) -> io::Result<FoldStats> {
    let chunk_bytes = chunk_bytes.max(1);
    let mut main = PerfFolder::new(opts.clone());
    let mut workers = if threads <= 1 {
        let mut buf = Vec::with_capacity(chunk_bytes);
        while read_more(&mut input, &mut buf, chunk_bytes)? > 0 {
            main.feed(&buf);
            buf.clear();
        }
        main.finish();
        Vec::new()
    } else {
        fold_parallel(&mut input, &mut main, threads, chunk_bytes)?
    };
    let mut stats = main.stats().clone();
    for w in &workers {
        stats.merge(w.stats());
    }
    write_sorted(std::iter::once(&mut main).chain(workers.iter_mut()), out)?;
    Ok(stats)
}

/// Reads until `want` more bytes are appended to `buf` or the input ends; returns how
/// many were appended (0 at end of input).
fn read_more<R: Read>(input: &mut R, buf: &mut Vec<u8>, want: usize) -> io::Result<usize> {
    buf.reserve(want);
    let old = buf.len();
    // `read_to_end` reads into the spare capacity without zero-filling it first.
    let mut limited = input.take(want as u64);
    loop {
        match limited.read_to_end(buf) {
            Ok(_) => return Ok(buf.len() - old),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Folds `input` with `threads` workers; `main` takes the parts that must be folded
/// in order. Returns the workers' folders.
fn fold_parallel<R: Read>(
    input: &mut R,
    main: &mut PerfFolder,
    threads: usize,
    chunk_bytes: usize,
) -> io::Result<Vec<PerfFolder>> {
    // Without a record boundary for this long, fold sequentially on the main thread.
    let max_pending = chunk_bytes.saturating_mul(8);
    let workers = threads - 1;
    let (work_tx, work_rx) = mpsc::sync_channel::<Vec<u8>>(2 * workers);
    let work_rx = Mutex::new(work_rx);
    let (spare_tx, spare_rx) = mpsc::channel::<Vec<u8>>();
    let opts = main.options().clone();

    thread::scope(|scope| {
        let mut handles = Vec::new();
        let mut dispatch = || -> io::Result<()> {
            let mut pending: Vec<u8> = Vec::with_capacity(2 * chunk_bytes);
            // Whether `main` has stopped at a record boundary with the event filter
            // known, so that what follows can go to the workers.
            let mut at_boundary = false;
            loop {
                let eof = read_more(input, &mut pending, chunk_bytes)? == 0;
                if !at_boundary {
                    let cut = if main.event_filter().is_none() {
                        None
                    } else {
                        memmem::find(&pending, b"\n\n").map(|i| i + 2)
                    };
                    match cut {
                        Some(cut) => {
                            main.feed(&pending[..cut]);
                            pending.drain(..cut);
                            at_boundary = true;
                        }
                        None => {
                            main.feed(&pending);
                            pending.clear();
                        }
                    }
                }
                if at_boundary && handles.is_empty() {
                    let filter: Option<Box<str>> = main.event_filter().map(Into::into);
                    for _ in 0..workers {
                        let (opts, filter) = (opts.clone(), filter.clone());
                        let (work_rx, spare_tx) = (&work_rx, spare_tx.clone());
                        handles.push(scope.spawn(move || {
                            let mut folder = PerfFolder::with_event_filter(opts, filter);
                            loop {
                                let chunk = match work_rx.lock() {
                                    Ok(rx) => rx.recv(),
                                    Err(_) => break,
                                };
                                let Ok(mut chunk) = chunk else { break };
                                folder.feed(&chunk);
                                folder.finish();
                                chunk.clear();
                                let _ = spare_tx.send(chunk);
                            }
                            folder
                        }));
                    }
                }
                if eof {
                    if at_boundary && !pending.is_empty() {
                        main.feed(&pending);
                    }
                    return Ok(());
                }
                if !at_boundary || pending.len() < chunk_bytes {
                    continue;
                }
                match memmem::rfind(&pending, b"\n\n") {
                    Some(i) => {
                        let mut rest = spare_rx
                            .try_recv()
                            .unwrap_or_else(|_| Vec::with_capacity(2 * chunk_bytes));
                        rest.extend_from_slice(&pending[i + 2..]);
                        pending.truncate(i + 2);
                        let chunk = std::mem::replace(&mut pending, rest);
                        match work_tx.try_send(chunk) {
                            Ok(()) => {}
                            // The workers are busy: this thread folds the chunk.
                            Err(mpsc::TrySendError::Full(mut chunk)) => {
                                main.feed(&chunk);
                                chunk.clear();
                                spare_tx.send(chunk).ok();
                            }
                            Err(mpsc::TrySendError::Disconnected(_)) => {
                                return Err(io::Error::other("fold worker threads stopped early"));
                            }
                        }
                    }
                    None if pending.len() >= max_pending => {
                        main.feed(&pending);
                        pending.clear();
                        at_boundary = false;
                    }
                    None => {}
                }
            }
        };
        let dispatched = dispatch();
        drop(work_tx);
        main.finish();
        let mut folders = Vec::with_capacity(handles.len());
        for h in handles {
            match h.join() {
                Ok(folder) => folders.push(folder),
                Err(_) => return Err(io::Error::other("a fold worker thread panicked")),
            }
        }
        dispatched.map(|()| folders)
    })
}

/// Drains the folders and writes `stack count\n` lines sorted by stack (byte order),
/// summing equal stacks.
fn write_sorted<'a, W: Write>(
    folders: impl Iterator<Item = &'a mut PerfFolder>,
    out: W,
) -> io::Result<()> {
    // All stacks go into one arena; entries are (start, end, count).
    let mut arena: Vec<u8> = Vec::new();
    let mut entries: Vec<(usize, usize, u64)> = Vec::new();
    for folder in folders {
        entries.reserve(folder.len());
        folder.drain_into(|names, ids, count| {
            let start = arena.len();
            names.append_joined(ids, &mut arena);
            entries.push((start, arena.len(), count));
        });
    }
    entries.sort_unstable_by(|a, b| arena[a.0..a.1].cmp(&arena[b.0..b.1]));

    let mut w = BufWriter::with_capacity(256 * 1024, out);
    let mut digits = [0u8; 20];
    let mut i = 0;
    while i < entries.len() {
        let (start, end, mut count) = entries[i];
        let stack = &arena[start..end];
        i += 1;
        while i < entries.len() && &arena[entries[i].0..entries[i].1] == stack {
            count = count.saturating_add(entries[i].2);
            i += 1;
        }
        w.write_all(stack)?;
        w.write_all(b" ")?;
        w.write_all(format_u64(count, &mut digits))?;
        w.write_all(b"\n")?;
    }
    w.flush()
}

fn format_u64(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[i..];
        }
    }
}
