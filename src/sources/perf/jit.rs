//! Naming JIT frames: what the perf source does for JVMs and Node.js processes
//! before each window's `perf script`.
//!
//! ```text
//! window ends ─► rotate ─► scan /proc (spawn_blocking) ─► JVMs and Node.js processes
//!   JVMs:  attach (≤ max_concurrent at once, each ≤ attach_timeout) ─► Compiler.perfmap
//!          (first time: VM.flags, unless the command line says) ─► wait ≤ window_budget
//!   Node:  /proc/PID/root/tmp/perf-<nspid>.map there?
//! ─► labels of single processes ─► perf script ─► chunks carrying those labels
//! ```
//!
//! perf itself finds each map: it looks for `/tmp/perf-<nspid>.map` inside the
//! process's mount namespace (checked with perf 6.1 and a JVM in its own PID and
//! mount namespace with a private /tmp), so nothing is copied or linked into the
//! host's /tmp. The map is a snapshot of the code cache when it is written: code
//! compiled and thrown away within the window before that stays unnamed.
//!
//! Per process, once (its pid and start time; forgotten when discovery stops
//! seeing it):
//! - a JVM without `-XX:+PreserveFramePointer`: label `java_frame_pointers =
//!   "false"`, one INFO;
//! - a JVM that refuses the attach (`-XX:+DisableAttachMechanism`, `-Xrs`, another
//!   user namespace, nowhere to write the trigger file, a JDK without
//!   `Compiler.perfmap`): one `attach_refused` diagnostic (profiler `jvm_attach`,
//!   counted by `classify`, INFO) and `component_errors_total{reason="attach_refused"}`;
//!   it is never asked again (no SIGQUIT, so no thread dump in its output, each
//!   window);
//! - a Node.js process without a perf map: label `node_perf_map = "false"`, one INFO.
//!
//! When a JVM that wrote its map in the host's /tmp has exited, the map is removed.
//! A JVM that does not answer in time gets a `timeout` diagnostic; an attach still
//! running when the window's budget is spent finishes in the background (it has its
//! own deadline) and that JVM is skipped until it has.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use crate::event::{LabelSet, ProcessLabels, RunEnd};
use crate::process::jvm_attach::{self, AttachError, JvmCommand, JvmTarget};
use crate::process::{Discovery, ProcessInfo, Runtime};
use crate::telemetry::ComponentMetrics;

use super::config::JitConfig;

/// The label of a JVM without frame pointers.
pub const JAVA_FRAME_POINTERS: &str = "java_frame_pointers";
/// The label of a Node.js process without a perf map.
pub const NODE_PERF_MAP: &str = "node_perf_map";
/// The `profiler` label of attach diagnostics.
pub const JVM_ATTACH: &str = "jvm_attach";

/// A problem to report as a diagnostic of the window.
pub(super) struct Problem {
    pub comm: String,
    pub end: RunEnd,
    pub text: String,
}

/// What one window's preparation found.
#[derive(Default)]
pub(super) struct Prepared {
    pub process_labels: ProcessLabels,
    pub problems: Vec<Problem>,
}

/// How one attach ended.
struct Outcome {
    perf_map: Result<(), AttachError>,
    /// The JVM's pid in its namespace, once known.
    ns_pid: Option<u32>,
    /// From `VM.flags`, when it was asked.
    frame_pointers: Option<bool>,
}

type Attach = JoinHandle<Result<Outcome, tokio::task::JoinError>>;

/// One process seen by discovery.
struct Known {
    start_ticks: u64,
    runtime: Runtime,
    comm: String,
    /// An attach started in an earlier window and not yet finished.
    attaching: Option<Attach>,
    /// Refused once: never asked again.
    refused: bool,
    frame_pointers: Option<bool>,
    has_perf_map: bool,
    /// It wrote `/tmp/perf-<pid>.map` in the host's /tmp at our request.
    wrote_host_map: bool,
    /// Its INFO line was logged.
    told: bool,
}

pub(super) struct Jit {
    config: JitConfig,
    discovery: Arc<Mutex<Discovery>>,
    permits: Arc<Semaphore>,
    known: HashMap<u32, Known>,
    metrics: ComponentMetrics,
}

impl Jit {
    pub fn new(
        config: JitConfig,
        discovery: crate::process::DiscoveryConfig,
        metrics: ComponentMetrics,
    ) -> Jit {
        Jit {
            permits: Arc::new(Semaphore::new(config.max_concurrent.max(1))),
            config,
            discovery: Arc::new(Mutex::new(Discovery::new(discovery))),
            known: HashMap::new(),
            metrics,
        }
    }

    /// Makes the JVMs write their perf maps and returns the labels and problems of
    /// this window. Takes at most `window_budget` (plus a `/proc` scan).
    pub async fn prepare(&mut self) -> Prepared {
        let (java, node) = (self.config.java, self.config.node);
        if !java && !node {
            return Prepared::default();
        }
        let discovery = self.discovery.clone();
        let scan = tokio::task::spawn_blocking(move || {
            let mut d = discovery.lock().unwrap_or_else(|e| e.into_inner());
            let all = d.scan();
            let jvms = if java {
                d.select(&all, Runtime::Java)
            } else {
                Vec::new()
            };
            let nodes = if node {
                d.select(&all, Runtime::Node)
            } else {
                Vec::new()
            };
            let nodes: Vec<(ProcessInfo, bool)> = nodes
                .into_iter()
                .map(|p| {
                    let map = node_has_perf_map(p.pid);
                    (p, map)
                })
                .collect();
            let running: HashSet<(u32, u64)> = all.iter().map(|p| (p.pid, p.start_ticks)).collect();
            (jvms, nodes, running)
        });
        let Ok((jvms, nodes, running)) = scan.await else {
            return Prepared::default();
        };
        self.forget_gone(&jvms, &nodes, &running);
        let mut prepared = Prepared::default();
        for (p, has_map) in nodes {
            let k = self.entry(&p, Runtime::Node);
            k.has_perf_map = has_map;
        }
        let started = self.start_attaches(&jvms);
        self.wait(started, &mut prepared).await;
        prepared.process_labels = self.labels();
        prepared
    }

    /// Forgets processes discovery no longer selects (exited, or deselected), and
    /// removes the perf maps JVMs that exited wrote in the host's /tmp at our
    /// request (a JVM never removes its map; `jcmd` leaves them too), so a host
    /// whose JVMs restart does not fill /tmp. Only when no process has that pid
    /// any more: then nothing can be writing that file.
    ///
    /// A JVM that refused is remembered while it runs, selected or not, so that
    /// dropping out of `max_processes` and back never earns it another SIGQUIT.
    fn forget_gone(
        &mut self,
        jvms: &[ProcessInfo],
        nodes: &[(ProcessInfo, bool)],
        running: &HashSet<(u32, u64)>,
    ) {
        let alive: HashMap<u32, u64> = jvms
            .iter()
            .chain(nodes.iter().map(|(p, _)| p))
            .map(|p| (p.pid, p.start_ticks))
            .collect();
        let mut stale = Vec::new();
        self.known.retain(|pid, k| {
            let keep = alive.get(pid) == Some(&k.start_ticks)
                || (k.refused && running.contains(&(*pid, k.start_ticks)));
            if !keep && k.wrote_host_map {
                stale.push(*pid);
            }
            keep
        });
        if !stale.is_empty() {
            tokio::task::spawn_blocking(move || {
                for pid in stale {
                    if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
                        let _ = std::fs::remove_file(format!("/tmp/perf-{pid}.map"));
                    }
                }
            });
        }
    }

    fn entry(&mut self, p: &ProcessInfo, runtime: Runtime) -> &mut Known {
        self.known.entry(p.pid).or_insert_with(|| Known {
            start_ticks: p.start_ticks,
            runtime,
            comm: p.comm.clone(),
            attaching: None,
            refused: false,
            frame_pointers: None,
            has_perf_map: true,
            wrote_host_map: false,
            told: false,
        })
    }

    /// Starts an attach for every JVM not refused and not still attaching; returns
    /// the pids of those started or still running.
    fn start_attaches(&mut self, jvms: &[ProcessInfo]) -> Vec<u32> {
        let timeout = self.config.attach_timeout.get();
        let mut waiting = Vec::new();
        for p in jvms {
            let permits = self.permits.clone();
            let k = self.entry(p, Runtime::Java);
            if k.refused {
                continue;
            }
            if k.frame_pointers.is_none() {
                k.frame_pointers = frame_pointers_from_cmdline(&p.cmdline);
            }
            if k.attaching.is_none() {
                let (pid, start_ticks) = (p.pid, k.start_ticks);
                let need_flags = k.frame_pointers.is_none();
                // Said on its command line: refused without a SIGQUIT (which
                // would print a thread dump in its output).
                let disabled = has_flag(&p.cmdline, "-XX:+DisableAttachMechanism");
                k.attaching = Some(tokio::spawn(async move {
                    // The wait for a permit counts against the window's budget,
                    // never against the attach's own timeout.
                    let _permit = permits.acquire_owned().await;
                    tokio::task::spawn_blocking(move || {
                        if disabled {
                            return Outcome {
                                perf_map: Err(AttachError::Refused(
                                    "started with -XX:+DisableAttachMechanism".into(),
                                )),
                                ns_pid: None,
                                frame_pointers: None,
                            };
                        }
                        attach(pid, start_ticks, need_flags, timeout)
                    })
                    .await
                }));
            }
            waiting.push(p.pid);
        }
        waiting
    }

    /// Waits for the attaches of `pids` until the window's budget is spent, and
    /// takes in their outcomes.
    async fn wait(&mut self, pids: Vec<u32>, prepared: &mut Prepared) {
        let until = tokio::time::Instant::now() + self.config.window_budget.get();
        for pid in pids {
            let Some(k) = self.known.get_mut(&pid) else {
                continue;
            };
            let Some(handle) = k.attaching.as_mut() else {
                continue;
            };
            let outcome = match tokio::time::timeout_at(until, handle).await {
                // Still running: it finishes in the background; this JVM waits.
                Err(_) => {
                    self.metrics.errors("attach_budget", 1);
                    continue;
                }
                Ok(Ok(Ok(outcome))) => outcome,
                // A panicked or cancelled attach thread: try again next window.
                Ok(_) => {
                    k.attaching = None;
                    continue;
                }
            };
            k.attaching = None;
            if outcome.perf_map.is_ok() && outcome.ns_pid == Some(pid) {
                k.wrote_host_map = true;
            }
            if outcome.frame_pointers.is_some() {
                k.frame_pointers = outcome.frame_pointers;
            }
            let problem = match outcome.perf_map {
                Ok(()) | Err(AttachError::Gone) => None,
                Err(AttachError::TimedOut(step)) => Some((
                    RunEnd::TimedOut,
                    format!("jvm attach timed out while {step} (pid {pid})"),
                )),
                Err(e) => {
                    // Refused, an error answer (a JDK older than 17 has no
                    // Compiler.perfmap) or an I/O error: asking again would only
                    // repeat it (and a SIGQUIT prints a thread dump each time).
                    k.refused = true;
                    self.metrics.errors("attach_refused", 1);
                    let e = match e {
                        AttachError::Refused(_) => e.to_string(),
                        other => format!("attach refused: {other}"),
                    };
                    Some((
                        RunEnd::Exited(1),
                        format!("jvm {e} (pid {pid}); its JIT frames stay unnamed"),
                    ))
                }
            };
            if let Some((end, text)) = problem {
                prepared.problems.push(Problem {
                    comm: k.comm.clone(),
                    end,
                    text,
                });
            }
        }
    }

    /// The labels of this window's processes, logging each one's INFO once.
    fn labels(&mut self) -> ProcessLabels {
        let mut out: Vec<(u32, LabelSet)> = Vec::new();
        for (&pid, k) in self.known.iter_mut() {
            let label = match k.runtime {
                Runtime::Java if k.frame_pointers == Some(false) => JAVA_FRAME_POINTERS,
                Runtime::Node if !k.has_perf_map => NODE_PERF_MAP,
                _ => continue,
            };
            if !k.told {
                k.told = true;
                tell(pid, &k.comm, label);
            }
            if let Ok(set) = LabelSet::default().with(label, "false") {
                out.push((pid, set));
            }
        }
        out.sort_by_key(|(pid, _)| *pid);
        out.into()
    }
}

/// The one INFO line of a process whose frames cannot all be named.
fn tell(pid: u32, comm: &str, label: &str) {
    if label == JAVA_FRAME_POINTERS {
        tracing::info!(
            pid,
            comm,
            label = "java_frame_pointers=false",
            "JVM without -XX:+PreserveFramePointer: its Java frames are named but perf cannot \
             walk past them, so their callers are lost (stacks stop at the leaf Java frame); \
             start it with -XX:+PreserveFramePointer for whole stacks"
        );
    } else {
        tracing::info!(
            pid,
            comm,
            label = "node_perf_map=false",
            "Node.js process without a perf map: its JavaScript frames stay unnamed; start it \
             with --perf-basic-prof-only-functions (or --perf-basic-prof), e.g. \
             NODE_OPTIONS=--perf-basic-prof-only-functions"
        );
    }
}

/// Whether `flag` is one of the command line's arguments.
fn has_flag(cmdline: &str, flag: &str) -> bool {
    cmdline.split(' ').any(|a| a == flag)
}

/// `-XX:+PreserveFramePointer` / `-XX:-PreserveFramePointer` on the command line
/// (the last one counts); None when it does not say (VM.flags will).
fn frame_pointers_from_cmdline(cmdline: &str) -> Option<bool> {
    cmdline.split(' ').rev().find_map(|a| match a {
        "-XX:+PreserveFramePointer" => Some(true),
        "-XX:-PreserveFramePointer" => Some(false),
        _ => None,
    })
}

/// One attach: the perf map, then (if asked) the flags. Blocking.
fn attach(pid: u32, start_ticks: u64, need_flags: bool, timeout: Duration) -> Outcome {
    let target = match JvmTarget::read(pid) {
        Ok(t) if t.start_ticks == start_ticks => t,
        Ok(_) => {
            return Outcome {
                perf_map: Err(AttachError::Gone),
                ns_pid: None,
                frame_pointers: None,
            }
        }
        Err(e) => {
            return Outcome {
                perf_map: Err(e),
                ns_pid: None,
                frame_pointers: None,
            }
        }
    };
    let perf_map = jvm_attach::execute(&target, JvmCommand::PerfMap, timeout).map(|_| ());
    let frame_pointers = if need_flags && perf_map.is_ok() {
        jvm_attach::execute(&target, JvmCommand::Flags, timeout)
            .ok()
            .map(|r| r.output.contains("-XX:+PreserveFramePointer"))
    } else {
        None
    };
    Outcome {
        perf_map,
        ns_pid: Some(target.ns_pid),
        frame_pointers,
    }
}

/// Whether a Node.js process writes a perf map (started with `--perf-basic-prof`
/// or `--perf-basic-prof-only-functions`, on its command line or in
/// `NODE_OPTIONS`): its `/tmp/perf-<nspid>.map`, inside its mount namespace.
/// Unreadable counts as present: nothing is claimed that was not seen.
fn node_has_perf_map(pid: u32) -> bool {
    match JvmTarget::read(pid) {
        Ok(t) => t.perf_map_path().exists(),
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_pointer_flag_on_the_command_line() {
        assert_eq!(
            frame_pointers_from_cmdline("java -XX:+PreserveFramePointer -cp . Busy"),
            Some(true)
        );
        assert_eq!(
            frame_pointers_from_cmdline(
                "java -XX:+PreserveFramePointer -XX:-PreserveFramePointer Busy"
            ),
            Some(false)
        );
        assert_eq!(frame_pointers_from_cmdline("java -cp . Busy"), None);
        assert!(has_flag(
            "java -XX:+DisableAttachMechanism Busy",
            "-XX:+DisableAttachMechanism"
        ));
        assert!(!has_flag(
            "java -Dx=-XX:+DisableAttachMechanism Busy",
            "-XX:+DisableAttachMechanism"
        ));
    }
}
