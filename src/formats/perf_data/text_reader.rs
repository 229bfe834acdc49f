//! A perf.data input read as `perf script` text: the conversion runs on its own
//! thread and hands over whole-record pieces through a small bounded channel, so
//! the text is never all in memory and the folder's threads work alongside.

use std::io::{self, Read, Seek};
use std::sync::mpsc;
use std::thread;

use super::{ConvertStats, Converter, PerfDataError};

/// Pieces in flight between the converter and the reader.
const IN_FLIGHT: usize = 4;

/// Reads the text of one perf.data input; [`TextReader::finish`] gives the
/// converter back with what it saw.
pub struct TextReader {
    rx: mpsc::Receiver<Vec<u8>>,
    piece: Vec<u8>,
    pos: usize,
    worker: Option<thread::JoinHandle<(Converter, Result<ConvertStats, PerfDataError>)>>,
}

impl TextReader {
    pub fn new<R: Read + Seek + Send + 'static>(mut converter: Converter, input: R) -> Self {
        let (tx, rx) = mpsc::sync_channel::<Vec<u8>>(IN_FLIGHT);
        let worker = thread::Builder::new()
            .name("perf-data".into())
            .spawn(move || {
                let r = converter.convert(input, &mut |piece| tx.send(piece.to_vec()).is_ok());
                (converter, r)
            })
            .expect("spawn the perf.data reader thread");
        TextReader {
            rx,
            piece: Vec::new(),
            pos: 0,
            worker: Some(worker),
        }
    }

    /// Waits for the conversion to end (drop the reader's remaining text first).
    pub fn finish(mut self) -> (Converter, Result<ConvertStats, PerfDataError>) {
        // Unblock a converter still sending.
        let (_, rx) = mpsc::sync_channel(0);
        drop(std::mem::replace(&mut self.rx, rx));
        let worker = self.worker.take().expect("finish once");
        match worker.join() {
            Ok(r) => r,
            Err(p) => std::panic::resume_unwind(p),
        }
    }
}

impl Read for TextReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.piece.len() {
            match self.rx.recv() {
                Ok(p) => {
                    self.piece = p;
                    self.pos = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.piece.len() - self.pos);
        buf[..n].copy_from_slice(&self.piece[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}
