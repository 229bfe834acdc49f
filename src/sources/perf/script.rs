//! One `perf script` run over a rotated data file, read as whole-record pieces
//! (`call_graph = "dwarf"` only; frame-pointer data is read in-process).
//!
//! ```text
//! perf script -F +pid --no-inline -i <scratch>/perf.data.2026112615313890
//! ```
//!
//! `--no-inline` always: with it perf does not run addr2line for every frame (more
//! than five minutes for 3,000 DWARF samples on the build machines, 3 s with it).
//! Output is streamed: the caller sends each piece on before the next is read, so a
//! full pipeline slows `perf script` down instead of growing memory.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::AsyncReadExt;

use crate::process::{Child, ExitReport, SpawnError, Spec, Stdout, Supervisor};
use crate::sources::file::chunker::{Chunker, Unit};
use crate::sources::file::MAX_RECORD_CARRY;

/// Bytes read from perf script's stdout at a time (and the largest piece sent on).
const READ_SIZE: usize = 256 * 1024;

pub struct Script {
    child: Child,
    chunker: Chunker,
    buf: Vec<u8>,
    eof: bool,
    /// Bytes of text read so far.
    pub bytes: u64,
}

impl Script {
    pub async fn start(
        supervisor: &Supervisor,
        binary: &str,
        file: &Path,
        timeout: Duration,
    ) -> Result<Script, SpawnError> {
        let spec = Spec::new(binary)
            .args(["script", "-F", "+pid", "--no-inline", "-i"])
            .arg(file)
            .deadline(timeout)
            .stdout(Stdout::Piped)
            .label("perf");
        let child = supervisor.spawn(spec).await?;
        Ok(Script {
            child,
            chunker: Chunker::new(Unit::Record, MAX_RECORD_CARRY),
            buf: vec![0u8; READ_SIZE],
            eof: false,
            bytes: 0,
        })
    }

    /// The next piece of whole records; None at the end of the output (or when the
    /// pipe fails, which the exit report then explains).
    pub async fn next(&mut self) -> Option<Bytes> {
        while !self.eof {
            let n = match self.child.stdout() {
                Some(out) => out.read(&mut self.buf).await.unwrap_or(0),
                None => 0,
            };
            if n == 0 {
                self.eof = true;
                break;
            }
            self.bytes += n as u64;
            if let Some(piece) = self.chunker.push(&self.buf[..n]) {
                return Some(piece);
            }
        }
        self.chunker.finish()
    }

    /// Waits for perf script to end and be reaped.
    pub async fn finish(self) -> ExitReport {
        self.child.wait().await
    }
}
