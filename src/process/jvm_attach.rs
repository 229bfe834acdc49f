//! HotSpot's dynamic attach protocol, spoken in-process (what `jcmd` does, without
//! starting a JVM of its own: seconds of CPU and 100+ MB per call).
//!
//! ```text
//! socket /tmp/.java_pid<nspid> exists?  (inside the target's mount namespace, reached
//!   │                                    through /proc/PID/root)
//!   no ─► create .attach_pid<nspid> in its /tmp (else its cwd), chown to its uid/gid
//!         ─► SIGQUIT (through a pidfd checked against the process's start time)
//!         ─► wait ≤ deadline for the socket ─► remove the trigger file
//!   connect ─► "1\0jcmd\0Compiler.perfmap\0\0\0" ─► read "<code>\n<output>" to EOF
//! ```
//!
//! Safety: only the commands of [`JvmCommand`] can be sent (an allow-list: one that
//! writes the perf map, two read-only queries). SIGQUIT is sent only to a process
//! that catches it (`SigCgt` in its status): a JVM started with `-Xrs`, or one not
//! yet initialised, would die of it, and one never seen answering is never sent it
//! again by the caller. The socket must belong to the target's user (or root), so a
//! socket planted by another user is not talked to. Every step shares one deadline.
//! Everything here is blocking: call it from a blocking thread.

use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// What a JVM may be asked: the allow-list of this module.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JvmCommand {
    /// `Compiler.perfmap`: write `/tmp/perf-<nspid>.map` (JDK 17+).
    PerfMap,
    /// `VM.version` (read-only).
    Version,
    /// `VM.flags` (read-only).
    Flags,
}

impl JvmCommand {
    pub fn as_jcmd(self) -> &'static str {
        match self {
            JvmCommand::PerfMap => "Compiler.perfmap",
            JvmCommand::Version => "VM.version",
            JvmCommand::Flags => "VM.flags",
        }
    }

    /// The request bytes: protocol version, the `jcmd` operation and its three
    /// arguments (the diagnostic command, then two empty ones), each NUL-terminated.
    fn request(self) -> Vec<u8> {
        let mut r = b"1\0jcmd\0".to_vec();
        r.extend_from_slice(self.as_jcmd().as_bytes());
        r.extend_from_slice(b"\0\0\0");
        r
    }
}

/// Most bytes of a reply that are read (`VM.flags` is a few KB).
const MAX_REPLY_BYTES: u64 = 256 * 1024;
/// How often the socket is looked for after SIGQUIT.
const SOCKET_POLL: Duration = Duration::from_millis(20);

/// A JVM to attach to, as the host sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JvmTarget {
    /// Its pid on the host.
    pub pid: u32,
    /// Its pid inside its own PID namespace (the last `NSpid` of its status): the
    /// number in its socket, trigger and perf map names.
    pub ns_pid: u32,
    /// Effective uid and gid (as the host sees them): owner of the trigger file.
    pub uid: u32,
    pub gid: u32,
    /// Whether it catches SIGQUIT (HotSpot's signal handler is installed).
    pub catches_sigquit: bool,
    /// Start time in clock ticks since boot (field 22 of `stat`): with the pid, the
    /// process's identity.
    pub start_ticks: u64,
}

/// A JVM's answer: its result code and its output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub code: i32,
    pub output: String,
}

#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error("the process no longer exists")]
    Gone,
    /// The JVM does not take attaches from us: the caller should stop asking.
    #[error("attach refused: {0}")]
    Refused(String),
    #[error("attach timed out while {0}")]
    TimedOut(&'static str),
    /// The JVM answered, with an error (e.g. a JDK older than 17 has no
    /// `Compiler.perfmap`).
    #[error("the JVM answered {code}: {message}")]
    Failed { code: i32, message: String },
    #[error("attach failed while {step}: {source}")]
    Io {
        step: &'static str,
        #[source]
        source: io::Error,
    },
}

impl JvmTarget {
    /// Reads the target's identity from `/proc/PID/status` and `/proc/PID/stat`.
    pub fn read(pid: u32) -> Result<JvmTarget, AttachError> {
        let gone = |e: io::Error| match e.kind() {
            io::ErrorKind::NotFound => AttachError::Gone,
            _ => AttachError::Io {
                step: "reading /proc",
                source: e,
            },
        };
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(gone)?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).map_err(gone)?;
        let mut t = parse_status(pid, &status).ok_or_else(|| AttachError::Io {
            step: "reading /proc",
            source: io::Error::new(io::ErrorKind::InvalidData, "unexpected status file"),
        })?;
        t.start_ticks = start_ticks(&stat).unwrap_or(0);
        Ok(t)
    }

    /// `/proc/PID/root`: the target's file system, mount namespace included.
    fn root(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root", self.pid))
    }

    /// The attach socket, seen from the host.
    pub fn socket_path(&self) -> PathBuf {
        self.root().join(format!("tmp/.java_pid{}", self.ns_pid))
    }

    /// The perf map the JVM writes, seen from the host.
    pub fn perf_map_path(&self) -> PathBuf {
        self.root().join(format!("tmp/perf-{}.map", self.ns_pid))
    }
}

/// Sends `command` to the JVM and returns its answer, within `timeout` in all.
pub fn execute(
    target: &JvmTarget,
    command: JvmCommand,
    timeout: Duration,
) -> Result<Reply, AttachError> {
    let deadline = Instant::now() + timeout;
    let socket = target.socket_path();
    if !socket_ready(&socket, target)? {
        start_listener(target, &socket, deadline)?;
    }
    let mut stream = connect(&socket, deadline)?;
    let io = |step: &'static str| {
        move |e: io::Error| match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => AttachError::TimedOut(step),
            _ => AttachError::Io { step, source: e },
        }
    };
    stream
        .set_write_timeout(Some(remaining(deadline, "sending the command")?))
        .map_err(io("sending the command"))?;
    stream
        .write_all(&command.request())
        .map_err(io("sending the command"))?;
    stream
        .set_read_timeout(Some(remaining(deadline, "reading the answer")?))
        .map_err(io("reading the answer"))?;
    let mut raw = Vec::new();
    // One read may wait its whole timeout; the loop re-arms it with what is left.
    let mut limited = (&mut stream).take(MAX_REPLY_BYTES);
    let mut buf = [0u8; 8192];
    loop {
        let n = limited.read(&mut buf).map_err(io("reading the answer"))?;
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
        limited
            .get_ref()
            .set_read_timeout(Some(remaining(deadline, "reading the answer")?))
            .map_err(io("reading the answer"))?;
    }
    parse_reply(&raw)
}

/// Whether the attach socket exists, is a socket, and belongs to the target's user
/// or root (a socket planted by someone else is refused).
fn socket_ready(socket: &Path, target: &JvmTarget) -> Result<bool, AttachError> {
    match std::fs::symlink_metadata(socket) {
        Ok(m) if m.file_type().is_socket() && (m.uid() == target.uid || m.uid() == 0) => Ok(true),
        Ok(_) => Err(AttachError::Refused(format!(
            "{} is not the JVM's socket",
            socket.display()
        ))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            // Its /proc entry gone too: the process exited.
            if std::fs::metadata(format!("/proc/{}", target.pid)).is_err() {
                return Err(AttachError::Gone);
            }
            Ok(false)
        }
        Err(e) => Err(AttachError::Io {
            step: "looking for the attach socket",
            source: e,
        }),
    }
}

/// Asks the JVM to start its attach listener: trigger file, SIGQUIT, wait for the
/// socket. The trigger file is removed whatever happens.
fn start_listener(target: &JvmTarget, socket: &Path, deadline: Instant) -> Result<(), AttachError> {
    if !target.catches_sigquit {
        // Without HotSpot's handler SIGQUIT kills the process (-Xrs, or a JVM
        // still starting): never send it.
        return Err(AttachError::Refused(
            "the JVM does not handle SIGQUIT (started with -Xrs?)".into(),
        ));
    }
    let trigger = create_trigger(target)?;
    let r = signal_and_wait(target, socket, deadline);
    let _ = std::fs::remove_file(&trigger);
    r
}

fn signal_and_wait(
    target: &JvmTarget,
    socket: &Path,
    deadline: Instant,
) -> Result<(), AttachError> {
    sigquit(target)?;
    loop {
        if socket_ready(socket, target)? {
            return Ok(());
        }
        if Instant::now() + SOCKET_POLL > deadline {
            // The JVM saw the trigger and did not start its listener:
            // -XX:+DisableAttachMechanism (or a JVM too busy to answer in time).
            return Err(AttachError::Refused(
                "no attach socket appeared after SIGQUIT (-XX:+DisableAttachMechanism?)".into(),
            ));
        }
        std::thread::sleep(SOCKET_POLL);
    }
}

/// Creates `.attach_pid<nspid>` in the target's /tmp, else in its working directory
/// (a read-only /tmp), owned by the target's user (HotSpot checks the owner).
fn create_trigger(target: &JvmTarget) -> Result<PathBuf, AttachError> {
    let name = format!(".attach_pid{}", target.ns_pid);
    let candidates = [
        target.root().join("tmp").join(&name),
        PathBuf::from(format!("/proc/{}/cwd", target.pid)).join(&name),
    ];
    let mut last = None;
    for path in candidates {
        match std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
        {
            Ok(_) => {
                // Root-owned also passes HotSpot's check; chown is for JVMs that
                // check the owner strictly (and is best effort in read-only dirs).
                let _ = std::os::unix::fs::chown(&path, Some(target.uid), Some(target.gid));
                return Ok(path);
            }
            Err(e) => last = Some(e),
        }
    }
    let e = last.expect("two candidates");
    if std::fs::metadata(format!("/proc/{}", target.pid)).is_err() {
        return Err(AttachError::Gone);
    }
    Err(AttachError::Refused(format!(
        "cannot create the attach trigger file in the JVM's /tmp or working directory: {e}"
    )))
}

/// SIGQUIT through a pidfd opened before the process's start time is checked, so a
/// pid reused in between can never get the signal.
fn sigquit(target: &JvmTarget) -> Result<(), AttachError> {
    let Some(pidfd) = super::reap::pidfd_open(target.pid) else {
        return Err(AttachError::Gone);
    };
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", target.pid))
        .map_err(|_| AttachError::Gone)?;
    if start_ticks(&stat) != Some(target.start_ticks) {
        return Err(AttachError::Gone);
    }
    // SAFETY: a plain syscall on a descriptor we own; no siginfo.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            libc::SIGQUIT,
            std::ptr::null::<libc::siginfo_t>(),
            0u32,
        )
    };
    if rc < 0 {
        let e = io::Error::last_os_error();
        return Err(match e.raw_os_error() {
            Some(libc::ESRCH) => AttachError::Gone,
            _ => AttachError::Io {
                step: "sending SIGQUIT",
                source: e,
            },
        });
    }
    Ok(())
}

fn connect(socket: &Path, deadline: Instant) -> Result<UnixStream, AttachError> {
    loop {
        match UnixStream::connect(socket) {
            Ok(s) => return Ok(s),
            // The listener's backlog is full (another client): try again shortly.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if Instant::now() + SOCKET_POLL > deadline {
                    return Err(AttachError::TimedOut("connecting"));
                }
                std::thread::sleep(SOCKET_POLL);
            }
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                return Err(AttachError::Refused(
                    "the attach socket refused the connection (a stale socket?)".into(),
                ))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(AttachError::Gone),
            Err(e) => {
                return Err(AttachError::Io {
                    step: "connecting",
                    source: e,
                })
            }
        }
    }
}

fn remaining(deadline: Instant, step: &'static str) -> Result<Duration, AttachError> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        Err(AttachError::TimedOut(step))
    } else {
        Ok(left)
    }
}

/// `<code>\n<output>`. An empty answer: the JVM closed the connection, which it does
/// for a peer it does not trust (another user namespace).
///
/// ```text
/// 0
/// -XX:CICompilerCount=2 ... -XX:+PreserveFramePointer ...
/// ```
fn parse_reply(raw: &[u8]) -> Result<Reply, AttachError> {
    let text = String::from_utf8_lossy(raw);
    if text.trim().is_empty() {
        return Err(AttachError::Refused(
            "the JVM closed the connection without answering (not trusted: another user namespace?)"
                .into(),
        ));
    }
    let (first, output) = text.split_once('\n').unwrap_or((&text, ""));
    let code: i32 = first.trim().parse().map_err(|_| AttachError::Failed {
        code: -1,
        message: format!("unexpected answer {:?}", first.trim()),
    })?;
    // A JDK without the command answers 0 and says so in the text.
    if code != 0
        || output.contains("Unknown diagnostic command")
        || output.starts_with("java.lang.IllegalArgumentException")
    {
        return Err(AttachError::Failed {
            code,
            message: output.lines().next().unwrap_or("").trim().to_string(),
        });
    }
    Ok(Reply {
        code,
        output: output.to_string(),
    })
}

/// The identity fields of `/proc/PID/status`.
///
/// ```text
/// Uid: 1000 1000 1000 1000      <- real, effective, saved, fs
/// Gid: 1000 1000 1000 1000
/// NSpid: 17013 1                   <- host pid, then one per nested namespace
/// SigCgt: 0000000181005ccf            <- bit 2 (SIGQUIT = 3)
/// ```
fn parse_status(pid: u32, status: &str) -> Option<JvmTarget> {
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .map(str::split_whitespace)
    };
    let uid = field("Uid")?.nth(1)?.parse().ok()?;
    let gid = field("Gid")?.nth(1)?.parse().ok()?;
    // Kernels before 4.1 have no NSpid: no namespaces to care about.
    let ns_pid = field("NSpid")
        .and_then(|f| f.last())
        .and_then(|s| s.parse().ok())
        .unwrap_or(pid);
    let sigcgt = u64::from_str_radix(field("SigCgt")?.next()?, 16).ok()?;
    Some(JvmTarget {
        pid,
        ns_pid,
        uid,
        gid,
        catches_sigquit: sigcgt & (1 << (libc::SIGQUIT - 1)) != 0,
        start_ticks: 0,
    })
}

/// Field 22 of `/proc/PID/stat` (after the parenthesised comm, which may hold spaces).
fn start_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_the_allow_list_only() {
        assert_eq!(
            JvmCommand::PerfMap.request(),
            b"1\0jcmd\0Compiler.perfmap\0\0\0"
        );
        assert_eq!(JvmCommand::Flags.request(), b"1\0jcmd\0VM.flags\0\0\0");
        assert_eq!(JvmCommand::Version.as_jcmd(), "VM.version");
    }

    #[test]
    fn replies() {
        let r = parse_reply(b"0\n-XX:+PreserveFramePointer\n").unwrap();
        assert_eq!(r.code, 0);
        assert!(r.output.contains("PreserveFramePointer"));
        assert_eq!(parse_reply(b"0\n").unwrap().output, "");
        assert!(matches!(
            parse_reply(b"0\njava.lang.IllegalArgumentException: Unknown diagnostic command\n"),
            Err(AttachError::Failed { code: 0, .. })
        ));
        assert!(matches!(
            parse_reply(b"-1\nboom\n"),
            Err(AttachError::Failed { code: -1, .. })
        ));
        assert!(matches!(parse_reply(b""), Err(AttachError::Refused(_))));
        assert!(matches!(
            parse_reply(b"garbage"),
            Err(AttachError::Failed { .. })
        ));
    }

    #[test]
    fn status_of_a_containerised_jvm() {
        let status = "Name:\tjava\nUid:\t0\t1000\t1000\t1000\nGid:\t0\t1001\t1001\t1001\n\
                      NSpid:\t17013\t1\nSigCgt:\t0000000181005ccf\n";
        let t = parse_status(17013, status).unwrap();
        assert_eq!((t.ns_pid, t.uid, t.gid), (1, 1000, 1001));
        assert!(t.catches_sigquit);
        assert_eq!(
            t.socket_path(),
            Path::new("/proc/17013/root/tmp/.java_pid1")
        );
        let no_quit = status.replace("0000000181005ccf", "0000000181005cca");
        assert!(!parse_status(17013, &no_quit).unwrap().catches_sigquit);
        let no_ns = "Uid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\nSigCgt:\t4\n";
        assert_eq!(parse_status(5, no_ns).unwrap().ns_pid, 5);
        assert!(parse_status(5, "Name:\tx\n").is_none());
    }

    #[test]
    fn start_ticks_after_a_comm_with_spaces() {
        let stat = "42 (C2 Compiler) S 1 42 42 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 987654 0 0";
        assert_eq!(start_ticks(stat), Some(987654));
        assert_eq!(start_ticks("garbage"), None);
    }

    #[test]
    fn a_process_that_is_not_a_jvm_is_refused_without_a_signal() {
        // This test process catches no SIGQUIT: it must be refused, not signalled.
        let mut me = JvmTarget::read(std::process::id()).unwrap();
        assert!(!me.catches_sigquit);
        me.ns_pid = u32::MAX; // no socket of that name anywhere
        let e = execute(&me, JvmCommand::Version, Duration::from_millis(200)).unwrap_err();
        assert!(matches!(e, AttachError::Refused(_)), "{e}");
    }
}
