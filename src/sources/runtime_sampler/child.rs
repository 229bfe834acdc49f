//! The sampler child's main loop (`profpipe sampler python|ruby`): control lines in
//! from stdin, batches out on stdout, sampling in between.
//!
//! Three threads: the sampling loop (this one, which owns the libraries' state:
//! py-spy's `PythonSpy` is not `Send`), a stdin reader that parses control lines,
//! and a stdout writer behind a queue of [`OUT_QUEUE`] batches. A batch that finds
//! the queue full (the agent is not reading) is dropped and its samples are counted
//! in the next batch's `dropped`: sampling never waits for the pipe. When stdin
//! closes (the agent stopped or died) the child exits; `PR_SET_PDEATHSIG` from the
//! supervisor covers an agent killed outright.

use std::io::{self, BufRead, Read, Write};
use std::path::PathBuf;
use std::sync::mpsc::{self, RecvTimeoutError, TrySendError};
use std::time::{Duration, Instant};

use super::protocol::{Batch, Control, TargetBatch, TargetId};
use super::stacks::MAX_STACKS_PER_TARGET;

/// Batches waiting to be written to the pipe.
pub const OUT_QUEUE: usize = 2;
/// Control lines longer than this are refused (a targets message of thousands of
/// processes is a few hundred kB).
const MAX_CONTROL_LINE: usize = 4 << 20;

/// Which runtime a child samples.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Python,
    Ruby,
}

impl Kind {
    /// The word on the child's command line.
    pub fn arg(self) -> &'static str {
        match self {
            Kind::Python => "python",
            Kind::Ruby => "ruby",
        }
    }
}

/// How a child samples, from its command line.
#[derive(Clone, Debug)]
pub struct Options {
    /// Samples per second per target.
    pub rate: u32,
    /// Python: keep samples of idle threads (`--idle`).
    pub idle: bool,
    /// Python: only the thread holding the GIL (`--gil`).
    pub gil: bool,
    /// Python: full paths instead of short file names (`--full-filenames`).
    pub full_filenames: bool,
    /// Ruby: only samples taken while the process is on a CPU (`--on-cpu`).
    pub on_cpu: bool,
    /// Targets sampled at once; further ones get an attach error saying so.
    pub max_targets: usize,
    /// Distinct stacks kept per target between two flushes.
    pub max_stacks: usize,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            rate: 11,
            idle: false,
            gil: false,
            full_filenames: false,
            on_cpu: false,
            max_targets: 256,
            max_stacks: MAX_STACKS_PER_TARGET,
        }
    }
}

impl Options {
    /// The command-line arguments after `sampler <kind>` that give these options.
    pub fn to_args(&self) -> Vec<String> {
        let mut a = vec![
            "--rate".to_string(),
            self.rate.to_string(),
            "--max-targets".into(),
            self.max_targets.to_string(),
            "--max-stacks".into(),
            self.max_stacks.to_string(),
        ];
        for (on, flag) in [
            (self.idle, "--idle"),
            (self.gil, "--gil"),
            (self.full_filenames, "--full-filenames"),
            (self.on_cpu, "--on-cpu"),
        ] {
            if on {
                a.push(flag.into());
            }
        }
        a
    }
}

/// A runtime's sampling, driven by [`run`].
pub trait Engine {
    /// From now on sample exactly `targets` (at most `max_targets` of them).
    fn set_targets(&mut self, targets: &[TargetId]);
    /// Samples what is due; returns when to call again.
    fn step(&mut self) -> Instant;
    /// Everything since the last flush, one entry per target with something to say.
    fn flush(&mut self) -> Vec<TargetBatch>;
}

/// Runs a sampler child until its stdin closes.
pub fn run(kind: Kind, opts: Options) -> io::Result<()> {
    let mut engine: Box<dyn Engine> = match kind {
        Kind::Python => Box::new(super::python::PythonEngine::new(&opts)),
        Kind::Ruby => Box::new(super::ruby::RubyEngine::new(&opts)),
    };
    let (ctl_tx, ctl_rx) = mpsc::sync_channel::<Control>(64);
    std::thread::Builder::new()
        .name("sampler-stdin".into())
        .spawn(move || read_control(io::stdin().lock(), ctl_tx))?;
    let mut out = protocol_out()?;
    let (out_tx, out_rx) = mpsc::sync_channel::<Vec<u8>>(OUT_QUEUE);
    std::thread::Builder::new()
        .name("sampler-stdout".into())
        .spawn(move || {
            for buf in out_rx {
                if out.write_all(&buf).and_then(|()| out.flush()).is_err() {
                    // The agent closed the pipe: nobody to sample for.
                    std::process::exit(0);
                }
            }
        })?;
    let mut dropped = 0u64;
    let mut due = Instant::now();
    loop {
        let wait = due.saturating_duration_since(Instant::now());
        match ctl_rx.recv_timeout(wait) {
            Ok(Control::Targets(t)) => engine.set_targets(&t),
            Ok(Control::Flush(n)) => {
                let batch = Batch {
                    batch: n,
                    dropped,
                    targets: engine.flush(),
                };
                let samples = batch.samples();
                let mut line = serde_json::to_vec(&batch).map_err(io::Error::other)?;
                line.push(b'\n');
                match out_tx.try_send(line) {
                    Ok(()) => dropped = 0,
                    Err(TrySendError::Full(_)) => dropped += samples,
                    Err(TrySendError::Disconnected(_)) => return Ok(()),
                }
            }
            Err(RecvTimeoutError::Timeout) => due = engine.step(),
            Err(RecvTimeoutError::Disconnected) => return Ok(()),
        }
    }
}

/// The pipe to the agent, moved off fd 1, which then points at stderr: a library
/// that prints to stdout can then not corrupt the protocol.
fn protocol_out() -> io::Result<std::fs::File> {
    use std::os::fd::FromRawFd;
    // SAFETY: dup/dup2 on our own descriptors; the new fd is owned by the File.
    unsafe {
        let fd = libc::dup(1);
        if fd < 0 || libc::dup2(2, 1) < 0 {
            return Err(io::Error::last_os_error());
        }
        libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
        Ok(std::fs::File::from_raw_fd(fd))
    }
}

/// Parses control lines until EOF; a bad line is reported on stderr (the agent keeps
/// its tail) and skipped.
fn read_control(mut input: impl BufRead, tx: mpsc::SyncSender<Control>) {
    let mut line = Vec::new();
    loop {
        line.clear();
        match input
            .by_ref()
            .take(MAX_CONTROL_LINE as u64 + 1)
            .read_until(b'\n', &mut line)
        {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if line.len() > MAX_CONTROL_LINE {
            eprintln!("sampler: control line longer than {MAX_CONTROL_LINE} bytes; stopping");
            return;
        }
        match serde_json::from_slice::<Control>(&line) {
            Ok(c) => {
                if tx.send(c).is_err() {
                    return;
                }
            }
            Err(e) => eprintln!("sampler: bad control line: {e}"),
        }
    }
}

/// Whether `id` is still that process: `/proc/PID` is there, is not a zombie, and
/// started when the target did.
pub fn alive(id: TargetId) -> bool {
    procfs::process::Process::new(id.pid as i32)
        .and_then(|p| p.stat())
        .is_ok_and(|s| !matches!(s.state, 'Z' | 'X' | 'x') && s.starttime == id.start_ticks)
}

/// The target's executable now: when it changes the process exec'd, and the runtime
/// must be found again.
pub fn exe(pid: u32) -> Option<PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/exe")).ok()
}

/// The time between two samples at `rate` per second.
pub fn interval(rate: u32) -> Duration {
    Duration::from_secs(1) / rate.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_lines_are_parsed_and_bad_ones_skipped() {
        let input = b"{\"flush\":1}\nnot json\n{\"targets\":[]}\n";
        let (tx, rx) = mpsc::sync_channel(8);
        read_control(&input[..], tx);
        let got: Vec<Control> = rx.try_iter().collect();
        assert_eq!(got, vec![Control::Flush(1), Control::Targets(vec![])]);
    }

    #[test]
    fn options_round_trip_through_args() {
        let o = Options {
            idle: true,
            on_cpu: true,
            ..Options::default()
        };
        assert_eq!(
            o.to_args().join(" "),
            "--rate 11 --max-targets 256 --max-stacks 4096 --idle --on-cpu"
        );
    }

    #[test]
    fn a_process_is_alive_only_with_its_start_time() {
        let me = std::process::id();
        let start = procfs::process::Process::myself()
            .unwrap()
            .stat()
            .unwrap()
            .starttime;
        assert!(alive(TargetId {
            pid: me,
            start_ticks: start
        }));
        assert!(!alive(TargetId {
            pid: me,
            start_ticks: start + 1
        }));
    }
}
