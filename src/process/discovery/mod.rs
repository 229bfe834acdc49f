//! Process discovery: which processes run Python or Ruby, read from `/proc`.
//!
//! ```toml
//! [discovery]
//! min_age = "10s"             # skip younger processes, for every runtime
//! max_processes = 50          # per runtime and window, busiest first
//! allow_comm = []             # regexes; when non-empty, comm must match one
//! deny_comm = []
//! allow_cmdline = []          # matched against the command line, args joined by spaces
//! deny_cmdline = []
//! skip_embedded_python = true
//! ```
//!
//! [`Discovery::scan`] reads, for every user-space process: `stat` (comm, parent,
//! state, CPU ticks, start time), `cmdline` (first 4 KiB), the `exe` link, `cgroup`
//! (container id, Kubernetes pod uid) and `maps` (runtime, streamed line by line and abandoned as soon
//! as the answer is known, see [`maps`]). All files of one process are opened
//! through one `/proc/PID` directory handle, so a PID reused mid-scan cannot mix
//! two processes. A process that exits during the scan (ENOENT/ESRCH on any file)
//! is left out silently: that is normal, not an error. Nothing large is read: no
//! libpython, no whole cmdline of a Java process with a 100 KB classpath. A process
//! in a Kubernetes pod also gets, best effort, its pod's name (`HOSTNAME` in the
//! first 4 KiB of `environ`) and namespace (its service account file), see
//! [`kubernetes`].
//!
//! Scanning is blocking file I/O: call it from a blocking context
//! (`tokio::task::spawn_blocking`), once per window.

mod cgroup;
mod config;
mod info;
pub mod kubernetes;
mod maps;
mod select;

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read};
use std::time::Duration;

use procfs::process::Process;
use procfs::ProcError;

pub use cgroup::container_id;
pub use config::DiscoveryConfig;
pub use info::{ProcessInfo, Runtime};
pub use kubernetes::{pod_uid, PodInfo};
pub use maps::{
    classify, is_embedded_python, Classification, PYTHON_MAPS_PATTERN, RUBY_MAPS_PATTERN,
};
pub use select::{select, skip_reason, Rules};

/// The most of a command line that is read (and kept) per process.
pub const CMDLINE_MAX_BYTES: usize = 4096;
/// The most of a cgroup file that is read.
const CGROUP_MAX_BYTES: u64 = 16 * 1024;
/// `PF_KTHREAD` in `/proc/PID/stat` flags.
const PF_KTHREAD: u32 = 0x0020_0000;

/// Scans `/proc`, remembering each process's CPU ticks between scans.
pub struct Discovery {
    rules: Rules,
    ticks_per_second: u64,
    /// CPU ticks at the previous scan, by (pid, start time). Rebuilt by every scan,
    /// so it holds only processes alive at the last scan.
    previous: HashMap<(u32, u64), u64>,
    /// This node's host name: a pod whose `HOSTNAME` is this one shares the host's
    /// network (and name), so its `HOSTNAME` is not its pod name.
    node_hostname: Option<String>,
}

/// Why one process could not be read.
enum ReadError {
    /// It exited (or its PID was reused) while we read it.
    Vanished,
    Other(String),
}

impl From<ProcError> for ReadError {
    fn from(e: ProcError) -> Self {
        match e {
            ProcError::NotFound(_) => ReadError::Vanished,
            e => ReadError::Other(e.to_string()),
        }
    }
}

impl From<io::Error> for ReadError {
    fn from(e: io::Error) -> Self {
        if e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ESRCH) {
            ReadError::Vanished
        } else {
            ReadError::Other(e.to_string())
        }
    }
}

impl Discovery {
    pub fn new(config: DiscoveryConfig) -> Discovery {
        Discovery::with_rules(Rules::from_config(&config))
    }

    pub fn with_rules(rules: Rules) -> Discovery {
        Discovery {
            rules,
            ticks_per_second: procfs::ticks_per_second().max(1),
            previous: HashMap::new(),
            node_hostname: std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty()),
        }
    }

    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// Every user-space process alive now (kernel threads and zombies left out).
    /// Never fails: unreadable and vanished processes are skipped (DEBUG log).
    pub fn scan(&mut self) -> Vec<ProcessInfo> {
        let uptime = read_uptime();
        let entries = match std::fs::read_dir("/proc") {
            Ok(entries) => entries,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list /proc; no processes discovered");
                return Vec::new();
            }
        };
        let mut found = Vec::new();
        let mut line = Vec::new();
        let host = self.node_hostname.as_deref();
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            match read_process(pid, uptime, self.ticks_per_second, host, &mut line) {
                Ok(Some(p)) => found.push(p),
                Ok(None) => {}
                Err(ReadError::Vanished) => tracing::trace!(pid, "process exited during the scan"),
                Err(ReadError::Other(e)) => tracing::debug!(pid, error = %e, "cannot read process"),
            }
        }
        let mut current = HashMap::with_capacity(found.len());
        for p in &mut found {
            let key = (p.pid, p.start_ticks);
            let before = self.previous.get(&key).copied().unwrap_or(0);
            p.cpu_ticks_delta = p.cpu_ticks.saturating_sub(before);
            current.insert(key, p.cpu_ticks);
        }
        self.previous = current;
        found
    }

    /// One process, or `None` if it does not exist (any more), is a kernel thread or
    /// a zombie. `cpu_ticks_delta` is relative to the last scan.
    pub fn inspect(&self, pid: u32) -> Option<ProcessInfo> {
        let mut line = Vec::new();
        let host = self.node_hostname.as_deref();
        let mut p =
            read_process(pid, read_uptime(), self.ticks_per_second, host, &mut line).ok()??;
        let before = self
            .previous
            .get(&(p.pid, p.start_ticks))
            .copied()
            .unwrap_or(0);
        p.cpu_ticks_delta = p.cpu_ticks.saturating_sub(before);
        Some(p)
    }

    /// [`select`] with this discovery's rules.
    pub fn select(&self, procs: &[ProcessInfo], runtime: Runtime) -> Vec<ProcessInfo> {
        select(procs, runtime, &self.rules)
    }

    /// Forgets the CPU ticks of previous scans.
    pub fn reset(&mut self) {
        self.previous.clear();
    }
}

/// Seconds since boot, from `/proc/uptime` (the same clock as process start times).
fn read_uptime() -> f64 {
    std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::MAX)
}

fn read_process(
    pid: u32,
    uptime: f64,
    ticks_per_second: u64,
    node_hostname: Option<&str>,
    line: &mut Vec<u8>,
) -> Result<Option<ProcessInfo>, ReadError> {
    let proc = Process::new(pid as i32)?;
    let stat = proc.stat()?;
    if stat.flags & PF_KTHREAD != 0 || matches!(stat.state, 'Z' | 'X' | 'x') {
        return Ok(None);
    }
    let cmdline = read_cmdline(&proc)?;
    let exe = match proc.exe() {
        Ok(path) => Some(path.to_string_lossy().into_owned()),
        Err(ProcError::NotFound(_)) if !proc.is_alive() => return Err(ReadError::Vanished),
        Err(_) => None,
    };
    let (container, pod) = match proc.open_relative("cgroup") {
        Ok(file) => {
            let mut text = String::new();
            file.take(CGROUP_MAX_BYTES).read_to_string(&mut text)?;
            (
                container_id(&text),
                kubernetes::read_pod(&proc, &text, node_hostname),
            )
        }
        Err(ProcError::NotFound(_)) => return Err(ReadError::Vanished),
        // Unreadable (hardened /proc): the process is still worth reporting.
        Err(_) => (None, None),
    };
    let classification = match proc.open_relative("maps") {
        Ok(file) => classify_maps(file, exe.as_deref(), &cmdline, line)?,
        Err(ProcError::PermissionDenied(_)) => Classification::default(),
        Err(e) => return Err(e.into()),
    };
    let start_secs = stat.starttime as f64 / ticks_per_second as f64;
    let age = Duration::from_secs_f64((uptime - start_secs).clamp(0.0, 1e9));
    Ok(Some(ProcessInfo {
        pid,
        ppid: stat.ppid.max(0) as u32,
        comm: stat.comm,
        cmdline,
        exe,
        age,
        start_ticks: stat.starttime,
        cpu_ticks: stat.utime + stat.stime,
        cpu_ticks_delta: 0,
        container,
        pod,
        runtime: classification.runtime,
        embedded_python: classification.embedded_python,
    }))
}

/// The command line, NULs turned into spaces, cut at [`CMDLINE_MAX_BYTES`].
fn read_cmdline(proc: &Process) -> Result<String, ReadError> {
    let mut raw = Vec::new();
    proc.open_relative("cmdline")?
        .take(CMDLINE_MAX_BYTES as u64)
        .read_to_end(&mut raw)?;
    for b in raw.iter_mut() {
        if *b == 0 {
            *b = b' ';
        }
    }
    Ok(String::from_utf8_lossy(raw.trim_ascii_end()).into_owned())
}

/// Streams a maps file through the classifier, one line in memory at a time.
fn classify_maps(
    file: std::fs::File,
    exe: Option<&str>,
    cmdline: &str,
    line: &mut Vec<u8>,
) -> Result<Classification, ReadError> {
    let mut classifier = maps::MapsClassifier::new(exe, cmdline);
    let mut reader = BufReader::with_capacity(8192, file);
    loop {
        line.clear();
        if reader.read_until(b'\n', line)? == 0 {
            break;
        }
        if classifier.feed_line(line) {
            break;
        }
    }
    Ok(classifier.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_defaults_and_unknown_fields() {
        let c: DiscoveryConfig = toml::from_str("").unwrap();
        assert_eq!(c, DiscoveryConfig::default());
        assert_eq!(c.min_age.get(), Duration::from_secs(10));
        assert_eq!(c.max_processes, 50);
        let c: DiscoveryConfig =
            toml::from_str("min_age = \"0s\"\ndeny_comm = ['^celery$']").unwrap();
        assert_eq!(c.min_age.get(), Duration::ZERO);
        assert!(c.deny_comm[0].as_regex().is_match("celery"));
        assert!(toml::from_str::<DiscoveryConfig>("min_duration = \"10s\"").is_err());
        assert!(toml::from_str::<DiscoveryConfig>("deny_comm = ['(']").is_err());
    }

    #[test]
    fn tuned_skip_does_not_catch_finetuned() {
        let r = Rules::default();
        let hit = |s: &str| r.python_skip_cmdline.iter().any(|re| re.is_match(s));
        assert!(hit("/usr/bin/python3 -Es /usr/sbin/tuned -l -P"));
        assert!(!hit("python3 /srv/finetuned-model/serve.py"));
        assert!(hit(
            "/usr/bin/python3 /usr/share/unattended-upgrades/unattended-upgrade-shutdown"
        ));
    }

    #[test]
    fn label_pairs_say_what_is_known() {
        let mut p = ProcessInfo {
            pid: 1,
            ppid: 0,
            comm: "x".into(),
            cmdline: String::new(),
            exe: None,
            age: Duration::ZERO,
            start_ticks: 0,
            cpu_ticks: 0,
            cpu_ticks_delta: 0,
            container: None,
            pod: None,
            runtime: None,
            embedded_python: false,
        };
        assert!(p.label_pairs().is_empty());
        p.container = Some("c1".into());
        p.pod = Some(PodInfo {
            uid: "u1".into(),
            name: None,
            namespace: Some("shop".into()),
        });
        assert_eq!(
            p.label_pairs(),
            vec![
                ("container", "c1"),
                ("pod_uid", "u1"),
                ("namespace", "shop")
            ]
        );
    }

    #[test]
    fn scans_itself_but_not_kernel_threads() {
        let mut d = Discovery::new(DiscoveryConfig::default());
        let procs = d.scan();
        let me = procs
            .iter()
            .find(|p| p.pid == std::process::id())
            .expect("finds itself");
        assert!(me.cmdline.len() <= CMDLINE_MAX_BYTES);
        assert!(
            !procs.iter().any(|p| p.pid == 2),
            "kthreadd is a kernel thread"
        );
        assert!(d.inspect(u32::MAX - 1).is_none());
    }
}
