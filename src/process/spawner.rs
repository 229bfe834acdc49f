//! The spawner thread: the one thread that forks every child of the agent.
//!
//! Why a dedicated thread: children are started with `PR_SET_PDEATHSIG(SIGKILL)` so
//! they die with the agent even when the agent is SIGKILLed. The kernel sends that
//! signal when the *thread* that forked the child exits, not the process. A child
//! forked from a tokio blocking-pool thread would be killed when that thread is
//! retired after 10 s idle; one forked from a worker thread depends on how the
//! runtime was built and dies at runtime shutdown even if the process lives on. So
//! every fork happens on this thread, which lives as long as any child it started
//! (each child's slot holds a reference to the supervisor that owns the thread's
//! channel) and ends only when the supervisor and all its children are gone. It is
//! started on the first spawn, so an agent that never profiles has no such thread.
//!
//! In the child, between fork and exec (async-signal-safe calls only): own process
//! group, parent-death signal, empty signal mask and default dispositions, core
//! dumps off unless allowed (gProfiler's hosts lost 100 GB/day to profiler cores).

use std::fs::OpenOptions;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::raw_child::RawChild;
use super::reap::{pidfd_open, ChildProc};
use super::slot::LiveSlot;
use super::spawn_error::SpawnError;
use super::spec::{Spec, Stdout};

/// Options that come from the supervisor's config rather than the spec.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SpawnOptions {
    pub(crate) grace: Duration,
    pub(crate) core_dumps: bool,
}

struct Request {
    spec: Spec,
    slot: LiveSlot,
    opts: SpawnOptions,
    reply: oneshot::Sender<Result<RawChild, SpawnError>>,
}

/// Handle to the spawner thread, started on first use.
#[derive(Default)]
pub(crate) struct Spawner {
    tx: Mutex<Option<mpsc::Sender<Request>>>,
}

impl Spawner {
    /// Forks `spec` on the spawner thread. `slot` is the child's place under the
    /// concurrency cap; it stays with the child until the child is reaped.
    pub(crate) async fn spawn(
        &self,
        spec: Spec,
        slot: LiveSlot,
        opts: SpawnOptions,
    ) -> Result<RawChild, SpawnError> {
        let program = spec.program.to_string_lossy().into_owned();
        let (reply, rx) = oneshot::channel();
        self.send(Request {
            spec,
            slot,
            opts,
            reply,
        })
        .map_err(|source| SpawnError::Io {
            program: program.clone(),
            source,
        })?;
        // If this future is dropped now, the reply is dropped with the RawChild in
        // it, which terminates and reaps the child.
        rx.await.unwrap_or_else(|_| {
            Err(SpawnError::Io {
                program,
                source: io::Error::other("the spawner thread stopped"),
            })
        })
    }

    fn send(&self, req: Request) -> io::Result<()> {
        let mut tx = self.tx.lock().unwrap_or_else(|e| e.into_inner());
        let req = match tx.as_ref() {
            Some(t) => match t.send(req) {
                Ok(()) => return Ok(()),
                Err(mpsc::SendError(req)) => req, // the thread died: start another
            },
            None => req,
        };
        let (new_tx, rx) = mpsc::channel::<Request>();
        std::thread::Builder::new()
            .name("profpipe-spawn".into())
            .spawn(move || {
                for req in rx {
                    let result = spawn_now(req.spec, req.slot, req.opts);
                    // A dropped receiver hands the child back: it is terminated.
                    let _ = req.reply.send(result);
                }
            })?;
        new_tx
            .send(req)
            .map_err(|_| io::Error::other("the spawner thread stopped"))?;
        *tx = Some(new_tx);
        Ok(())
    }
}

fn spawn_now(spec: Spec, slot: LiveSlot, opts: SpawnOptions) -> Result<RawChild, SpawnError> {
    let program = spec.program.to_string_lossy().into_owned();
    let mut cmd = Command::new(&spec.program);
    cmd.args(&spec.args);
    if spec.env_clear {
        cmd.env_clear();
    }
    for (key, value) in &spec.env {
        match value {
            Some(v) => cmd.env(key, v),
            None => cmd.env_remove(key),
        };
    }
    if let Some(dir) = &spec.cwd {
        if !dir.is_dir() {
            return Err(SpawnError::Io {
                program,
                source: io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("working directory {} does not exist", dir.display()),
                ),
            });
        }
        cmd.current_dir(dir);
    }
    cmd.stdin(if spec.stdin_piped {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    cmd.stderr(Stdio::piped());
    cmd.stdout(match &spec.stdout {
        Stdout::Null => Stdio::null(),
        Stdout::Piped => Stdio::piped(),
        Stdout::File(path) | Stdout::Append(path) => {
            let append = matches!(spec.stdout, Stdout::Append(_));
            let file = OpenOptions::new()
                .write(true)
                .create(true)
                .append(append)
                .truncate(!append)
                .open(path)
                .map_err(|source| SpawnError::Stdout {
                    program: program.clone(),
                    path: path.clone(),
                    source,
                })?;
            Stdio::from(file)
        }
    });
    let parent = std::process::id() as libc::pid_t;
    let core_dumps = opts.core_dumps;
    // SAFETY: the closure runs in the forked child and calls only async-signal-safe
    // functions; it allocates nothing (io::Error from an errno does not allocate).
    unsafe {
        cmd.pre_exec(move || prepare_child(parent, core_dumps));
    }
    let mut child = cmd.spawn().map_err(|e| SpawnError::from_io(program, e))?;
    let started = Instant::now();
    let pid = child.id();
    let stdin = child.stdin.take().map(OwnedFd::from);
    let stdout = child.stdout.take().map(OwnedFd::from);
    let stderr = child.stderr.take().map(OwnedFd::from);
    // std's Child neither kills nor waits on drop: from here ChildProc owns the PID.
    drop(child);
    Ok(RawChild {
        proc: Arc::new(ChildProc::new(pid)),
        // The child is unreaped, so its PID cannot have been reused yet.
        pidfd: pidfd_open(pid),
        stdin,
        stdout,
        stderr,
        started,
        grace: opts.grace,
        slot: Some(slot),
    })
}

/// Runs in the child between fork and exec.
fn prepare_child(parent: libc::pid_t, core_dumps: bool) -> io::Result<()> {
    // SAFETY: plain syscalls on our own (child) process, all async-signal-safe.
    unsafe {
        // Own process group: a deadline or shutdown signals the whole group, so
        // helpers the profiler starts die with it.
        if libc::setpgid(0, 0) != 0 {
            return Err(io::Error::last_os_error());
        }
        if libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        ) != 0
        {
            return Err(io::Error::last_os_error());
        }
        // The agent may have died between fork and prctl; then no signal would come.
        if libc::getppid() != parent {
            return Err(io::Error::from_raw_os_error(libc::ESRCH));
        }
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        if libc::pthread_sigmask(libc::SIG_SETMASK, &set, std::ptr::null_mut()) != 0 {
            return Err(io::Error::last_os_error());
        }
        // Ignored signals stay ignored across exec: give the profiler defaults.
        for sig in 1..32 {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                libc::signal(sig, libc::SIG_DFL);
            }
        }
        if !core_dumps {
            let mut lim: libc::rlimit = std::mem::zeroed();
            if libc::getrlimit(libc::RLIMIT_CORE, &mut lim) == 0 {
                lim.rlim_cur = 0;
                libc::setrlimit(libc::RLIMIT_CORE, &lim);
            }
        }
    }
    Ok(())
}
