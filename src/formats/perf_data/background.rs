//! Converting one perf.data file on a blocking thread, its text coming back in
//! pieces: what the perf source and the file source both do with a file.

use std::path::PathBuf;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{ConvertStats, Converter, PerfDataError};

/// The converter and its outcome, once the file is read (or the receiver dropped).
pub type Finished = (Converter, Result<ConvertStats, PerfDataError>);

/// Starts reading `path` with `converter` on a blocking thread. Pieces of text
/// arrive on the receiver (at most 4 wait); dropping the receiver stops the reader
/// at its next piece. The handle gives the converter back with its caches.
pub fn convert_file(
    mut converter: Converter,
    path: PathBuf,
) -> (mpsc::Receiver<Bytes>, JoinHandle<Finished>) {
    let (tx, rx) = mpsc::channel::<Bytes>(4);
    let reader = tokio::task::spawn_blocking(move || {
        let r = std::fs::File::open(&path)
            .map_err(Into::into)
            .and_then(|f| {
                converter.convert(std::io::BufReader::new(f), &mut |piece| {
                    tx.blocking_send(Bytes::copy_from_slice(piece)).is_ok()
                })
            });
        (converter, r)
    });
    (rx, reader)
}
