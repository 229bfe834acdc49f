//! Processes of the host, read from /proc, and children that cannot outlive a test.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::wait;

/// (state, ppid, comm) of a process, from /proc/PID/stat.
pub fn stat(pid: u32) -> Option<(char, u32, String)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text[open + 1..close].to_string();
    let mut rest = text[close + 2..].split_whitespace();
    let state = rest.next()?.chars().next()?;
    let ppid = rest.next()?.parse().ok()?;
    Some((state, ppid, comm))
}

/// The command line of `pid`, NUL separators kept.
pub fn cmdline(pid: u32) -> String {
    String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default())
        .into_owned()
}

fn all_pids() -> impl Iterator<Item = u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
}

/// Live (not zombie) children of `parent`.
pub fn children_of(parent: u32) -> Vec<u32> {
    all_pids()
        .filter(|&pid| matches!(stat(pid), Some((s, ppid, _)) if ppid == parent && s != 'Z'))
        .collect()
}

/// Children of `parent` whose comm is `comm`.
pub fn children_named(parent: u32, comm: &str) -> Vec<u32> {
    all_pids()
        .filter(|&pid| matches!(stat(pid), Some((_, ppid, c)) if ppid == parent && c == comm))
        .collect()
}

/// Zombie children of `parent`.
pub fn zombies_of(parent: u32) -> Vec<u32> {
    all_pids()
        .filter(|&pid| matches!(stat(pid), Some(('Z', ppid, _)) if ppid == parent))
        .collect()
}

/// Zombie children of this test process.
pub fn our_zombies() -> Vec<u32> {
    zombies_of(std::process::id())
}

/// Open descriptors of `pid`.
pub fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// Whether the process `pid` that was running `comm` is gone (or a zombie, i.e. dead
/// and waiting for its new parent to reap it). A different comm means the PID was
/// reused, except for `sh`: a background job is `sh` until it execs its command.
pub fn is_dead(pid: u32, comm: &str) -> bool {
    match stat(pid) {
        None => true,
        Some((state, _, c)) => state == 'Z' || state == 'X' || (c != comm && c != "sh"),
    }
}

/// Waits until `pid` runs `comm` (a forked job has exec'd its command). False after
/// a generous 10 s.
pub async fn wait_exec(pid: u32, comm: &str) -> bool {
    let end = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::Instant::now() < end {
        if matches!(stat(pid), Some((_, _, c)) if c == comm) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    false
}

/// A handle on a process that is not our child, taken while it is known to run
/// `comm`: later questions are about that process, never about a reused PID.
pub struct PidFd(libc::c_int);

impl PidFd {
    pub fn open(pid: u32) -> std::io::Result<PidFd> {
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(PidFd(fd as libc::c_int))
    }

    /// Blocks until the process has exited (it is then at most a zombie), for up to
    /// `within`. The kernel signals the exit: no polling of /proc.
    pub fn wait_exit(&self, within: Duration) -> bool {
        let mut pfd = libc::pollfd {
            fd: self.0,
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = within.as_millis().min(i32::MAX as u128) as libc::c_int;
        loop {
            let n = unsafe { libc::poll(&mut pfd, 1, ms) };
            if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return n == 1;
        }
    }

    /// Whether the process has exited, now.
    pub fn exited(&self) -> bool {
        self.wait_exit(Duration::ZERO)
    }
}

impl Drop for PidFd {
    fn drop(&mut self) {
        unsafe { libc::close(self.0) };
    }
}

/// Blocks until our child `child` has exited, without reaping it: it is a zombie
/// when this returns.
pub fn wait_zombie(child: &Child) {
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    let r = unsafe {
        libc::waitid(
            libc::P_PID,
            child.id() as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOWAIT,
        )
    };
    assert_eq!(r, 0, "waitid: {}", std::io::Error::last_os_error());
}

/// A child process killed and reaped when dropped, however the test ends.
pub struct Proc(pub Child);

impl Proc {
    /// Starts `cmd` with stdin, stdout and stderr on /dev/null.
    pub fn start(cmd: &mut Command) -> Proc {
        Proc(
            cmd.stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        )
    }

    pub fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A process started detached from the test (its parent shell exits at once, so it
/// is re-parented to init, as workloads on a real host are), SIGKILLed when dropped.
pub struct Detached {
    pub pid: u32,
    _ready_dir: Option<tempfile::TempDir>,
}

impl Detached {
    /// Starts one of the `tests/programs` workloads (`busy.py`, `busy.rb`) and returns
    /// once it says (through `PROFPIPE_READY_FILE`) that its hot functions run.
    pub fn start_ready(program: &str, args: &[&str]) -> Detached {
        let dir = tempfile::tempdir().unwrap();
        let ready = dir.path().join("ready");
        let mut w = Detached::spawn(program, args, Some(dir.path()));
        wait_file(&ready);
        w._ready_dir = Some(dir);
        w
    }

    /// Tells a `busy.py` started by `start_ready` to end one second from now.
    pub fn end_soon(&self) {
        let dir = self._ready_dir.as_ref().expect("started by start_ready");
        std::fs::write(dir.path().join("exit"), "").unwrap();
    }

    fn spawn(program: &str, args: &[&str], ready_dir: Option<&std::path::Path>) -> Detached {
        let mut cmd = format!("exec {program}");
        for a in args {
            cmd.push(' ');
            cmd.push_str(a);
        }
        let mut sh = Command::new("sh");
        sh.args(["-c", &format!("{cmd} >/dev/null 2>&1 </dev/null & echo $!")]);
        if let Some(dir) = ready_dir {
            sh.env("PROFPIPE_READY_FILE", dir.join("ready"));
            sh.env("PROFPIPE_EXIT_FILE", dir.join("exit"));
        }
        let out = sh.output().unwrap();
        let pid = String::from_utf8(out.stdout)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        Detached {
            pid,
            _ready_dir: None,
        }
    }

    pub fn comm(&self) -> String {
        std::fs::read_to_string(format!("/proc/{}/comm", self.pid))
            .unwrap()
            .trim()
            .to_string()
    }
}

impl Drop for Detached {
    fn drop(&mut self) {
        unsafe { libc::kill(self.pid as libc::pid_t, libc::SIGKILL) };
    }
}

/// Waits until `path` exists (a workload wrote its ready file), for up to 10 s.
pub fn wait_file(path: &std::path::Path) {
    wait::until(
        &format!("{} exists", path.display()),
        Duration::from_secs(10),
        || path.exists(),
    );
}

/// The real Python interpreter (not a pyenv shim script) and its prefix
/// (`sys.executable`, `sys.base_prefix`).
pub fn python() -> (PathBuf, PathBuf) {
    let out = Command::new("python3")
        .args([
            "-c",
            "import sys; print(sys.executable); print(sys.base_prefix)",
        ])
        .output()
        .expect("python3 runs");
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines();
    let exe = PathBuf::from(lines.next().unwrap());
    (exe, PathBuf::from(lines.next().unwrap()))
}

/// How long ago `pid` started, from its start time in /proc (what discovery's
/// `min_age` looks at).
pub fn age(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(") ")?;
    // Field 22 of stat is the start time; `rest` begins at field 3.
    let start_ticks: u64 = rest.split_whitespace().nth(19)?.parse().ok()?;
    let uptime: f64 = std::fs::read_to_string("/proc/uptime")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some(Duration::from_secs_f64(
        (uptime - start_ticks as f64 / hz).max(0.0),
    ))
}

/// Compiles `tests/programs/hot.c` (frame pointers kept) into `dir`; returns the binary.
pub fn build_hot(dir: &std::path::Path) -> PathBuf {
    let bin = dir.join("hot");
    let st = Command::new("cc")
        .args(["-O1", "-fno-omit-frame-pointer", "-o"])
        .arg(&bin)
        .arg(super::programs().join("hot.c"))
        .status()
        .expect("cc");
    assert!(st.success(), "cc failed");
    bin
}
