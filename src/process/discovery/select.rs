//! Which discovered processes a profiler should attach to this window.
//!
//! The same rules for every runtime (gProfiler applied its minimum age to Python at
//! selection but to Ruby and Java only to newly spawned processes):
//! 1. the runtime matches;
//! 2. not the agent itself, nor any process descended from it (its profilers and
//!    their helpers), found by walking the parent chain;
//! 3. at least `min_age` old: younger processes tend to exit before a profiler has
//!    attached (gProfiler's 300 errors a day);
//! 4. comm and cmdline pass the allow lists (if any) and no deny pattern matches;
//! 5. Python only: not embedded Python (when `skip_embedded_python`), not PyPy
//!    (py-spy cannot read it), cmdline matches none of `python_skip_cmdline`;
//! 6. at most `max_processes`, busiest first (CPU ticks since the previous scan).

use std::collections::HashMap;
use std::time::Duration;

use regex::Regex;

use super::config::DiscoveryConfig;
use super::info::{ProcessInfo, Runtime};
use crate::process::embedded_python::exe_basename;

/// Compiled selection rules.
#[derive(Clone, Debug)]
pub struct Rules {
    pub min_age: Duration,
    pub max_processes: usize,
    pub allow_comm: Vec<Regex>,
    pub deny_comm: Vec<Regex>,
    pub allow_cmdline: Vec<Regex>,
    pub deny_cmdline: Vec<Regex>,
    /// Skip this process and its descendants (default: the agent's own PID).
    pub agent_pid: Option<u32>,
    pub skip_embedded_python: bool,
    pub python_skip_cmdline: Vec<Regex>,
}

impl Rules {
    /// The rules of `config`, with the current process as the agent.
    pub fn from_config(config: &DiscoveryConfig) -> Rules {
        let compile = |v: &[crate::units::RegexStr]| -> Vec<Regex> {
            v.iter().map(|r| r.as_regex().clone()).collect()
        };
        Rules {
            min_age: config.min_age.get(),
            max_processes: config.max_processes,
            allow_comm: compile(&config.allow_comm),
            deny_comm: compile(&config.deny_comm),
            allow_cmdline: compile(&config.allow_cmdline),
            deny_cmdline: compile(&config.deny_cmdline),
            agent_pid: Some(std::process::id()),
            skip_embedded_python: config.skip_embedded_python,
            python_skip_cmdline: compile(&config.python_skip_cmdline),
        }
    }
}

impl Default for Rules {
    fn default() -> Self {
        Rules::from_config(&DiscoveryConfig::default())
    }
}

/// The processes of `runtime` in `procs` that `rules` allow, busiest first, at most
/// `max_processes`. `procs` should be a whole scan: the agent's descendants are found
/// through the parent links within it.
pub fn select(procs: &[ProcessInfo], runtime: Runtime, rules: &Rules) -> Vec<ProcessInfo> {
    let parents: HashMap<u32, u32> = match rules.agent_pid {
        Some(_) => procs.iter().map(|p| (p.pid, p.ppid)).collect(),
        None => HashMap::new(),
    };
    let mut chosen: Vec<&ProcessInfo> = procs
        .iter()
        .filter(|p| p.runtime == Some(runtime))
        .filter(|p| match skip_reason(p, rules, &parents) {
            None => true,
            Some(reason) => {
                tracing::debug!(pid = p.pid, comm = %p.comm, reason, "not profiling process");
                false
            }
        })
        .collect();
    chosen.sort_by(|a, b| {
        b.cpu_ticks_delta
            .cmp(&a.cpu_ticks_delta)
            .then(a.pid.cmp(&b.pid))
    });
    if chosen.len() > rules.max_processes {
        tracing::debug!(
            %runtime,
            found = chosen.len(),
            kept = rules.max_processes,
            "more processes than max_processes; keeping the busiest"
        );
        chosen.truncate(rules.max_processes);
    }
    chosen.into_iter().cloned().collect()
}

/// Why `p` is skipped (rules 2 to 5), or `None`.
pub fn skip_reason(
    p: &ProcessInfo,
    rules: &Rules,
    parents: &HashMap<u32, u32>,
) -> Option<&'static str> {
    if let Some(agent) = rules.agent_pid {
        if descends_from(p.pid, agent, parents) {
            return Some("the agent or its child");
        }
    }
    if p.age < rules.min_age {
        return Some("younger than min_age");
    }
    if !rules.allow_comm.is_empty() && !rules.allow_comm.iter().any(|r| r.is_match(&p.comm)) {
        return Some("comm not in allow_comm");
    }
    if rules.deny_comm.iter().any(|r| r.is_match(&p.comm)) {
        return Some("comm in deny_comm");
    }
    if !rules.allow_cmdline.is_empty()
        && !rules.allow_cmdline.iter().any(|r| r.is_match(&p.cmdline))
    {
        return Some("cmdline not in allow_cmdline");
    }
    if rules.deny_cmdline.iter().any(|r| r.is_match(&p.cmdline)) {
        return Some("cmdline in deny_cmdline");
    }
    if p.runtime == Some(Runtime::Python) {
        if rules.skip_embedded_python && p.embedded_python {
            return Some("embedded python");
        }
        if p.exe
            .as_deref()
            .is_some_and(|e| exe_basename(e).starts_with("pypy"))
        {
            return Some("pypy");
        }
        if rules
            .python_skip_cmdline
            .iter()
            .any(|r| r.is_match(&p.cmdline))
        {
            return Some("cmdline in python_skip_cmdline");
        }
    }
    None
}

/// Whether `pid` is `ancestor` or below it in the parent chain recorded in `parents`.
fn descends_from(pid: u32, ancestor: u32, parents: &HashMap<u32, u32>) -> bool {
    let mut cur = pid;
    // Bounded walk: a parent map taken from a racing scan may hold a cycle.
    for _ in 0..128 {
        if cur == ancestor {
            return true;
        }
        match parents.get(&cur) {
            Some(&parent) if parent > 1 && parent != cur => cur = parent,
            _ => return false,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proc(pid: u32, ppid: u32, comm: &str, runtime: Option<Runtime>, delta: u64) -> ProcessInfo {
        ProcessInfo {
            pid,
            ppid,
            comm: comm.into(),
            cmdline: format!("{comm} --serve"),
            exe: Some(format!("/usr/bin/{comm}")),
            age: Duration::from_secs(3600),
            start_ticks: 1000 + pid as u64,
            cpu_ticks: delta * 10,
            cpu_ticks_delta: delta,
            container: None,
            pod: None,
            runtime,
            embedded_python: false,
        }
    }

    fn rules() -> Rules {
        Rules {
            agent_pid: None,
            ..Rules::default()
        }
    }

    fn pids(v: &[ProcessInfo]) -> Vec<u32> {
        v.iter().map(|p| p.pid).collect()
    }

    #[test]
    fn filters_by_runtime_and_sorts_busiest_first() {
        let procs = vec![
            proc(10, 1, "python3", Some(Runtime::Python), 5),
            proc(11, 1, "ruby", Some(Runtime::Ruby), 50),
            proc(12, 1, "python3", Some(Runtime::Python), 9),
            proc(13, 1, "sleep", None, 0),
        ];
        assert_eq!(pids(&select(&procs, Runtime::Python, &rules())), [12, 10]);
        assert_eq!(pids(&select(&procs, Runtime::Ruby, &rules())), [11]);
    }

    #[test]
    fn caps_at_max_processes_keeping_the_busiest() {
        let procs: Vec<_> = (0..100)
            .map(|i| proc(100 + i, 1, "python3", Some(Runtime::Python), i as u64))
            .collect();
        let r = Rules {
            max_processes: 3,
            ..rules()
        };
        assert_eq!(pids(&select(&procs, Runtime::Python, &r)), [199, 198, 197]);
    }

    #[test]
    fn skips_the_agent_tree() {
        let procs = vec![
            proc(50, 1, "profpipe", Some(Runtime::Python), 1),
            proc(51, 50, "sh", None, 1),
            proc(52, 51, "python3", Some(Runtime::Python), 1),
            proc(60, 1, "python3", Some(Runtime::Python), 1),
        ];
        let r = Rules {
            agent_pid: Some(50),
            ..rules()
        };
        assert_eq!(pids(&select(&procs, Runtime::Python, &r)), [60]);
    }

    #[test]
    fn min_age_applies() {
        let mut young = proc(70, 1, "ruby", Some(Runtime::Ruby), 1);
        young.age = Duration::from_secs(3);
        assert!(select(&[young.clone()], Runtime::Ruby, &rules()).is_empty());
        let r = Rules {
            min_age: Duration::ZERO,
            ..rules()
        };
        assert_eq!(pids(&select(&[young], Runtime::Ruby, &r)), [70]);
    }

    #[test]
    fn allow_and_deny_lists() {
        let procs = vec![
            proc(80, 1, "python3", Some(Runtime::Python), 1),
            proc(81, 1, "celery", Some(Runtime::Python), 1),
        ];
        let re = |s: &str| Regex::new(s).unwrap();
        let r = Rules {
            allow_comm: vec![re("^cel")],
            ..rules()
        };
        assert_eq!(pids(&select(&procs, Runtime::Python, &r)), [81]);
        let r = Rules {
            deny_comm: vec![re("^cel")],
            ..rules()
        };
        assert_eq!(pids(&select(&procs, Runtime::Python, &r)), [80]);
        let r = Rules {
            allow_cmdline: vec![re("python3 --serve")],
            ..rules()
        };
        assert_eq!(pids(&select(&procs, Runtime::Python, &r)), [80]);
        let r = Rules {
            deny_cmdline: vec![re("--serve$")],
            ..rules()
        };
        assert!(select(&procs, Runtime::Python, &r).is_empty());
    }

    #[test]
    fn python_specific_skips() {
        let mut embedded = proc(90, 1, "envoy", Some(Runtime::Python), 1);
        embedded.embedded_python = true;
        let pypy = proc(91, 1, "pypy3", Some(Runtime::Python), 1);
        let mut daemon = proc(92, 1, "python3", Some(Runtime::Python), 1);
        daemon.cmdline =
            "/usr/bin/python3 /usr/bin/networkd-dispatcher --run-startup-triggers".into();
        let procs = vec![embedded, pypy, daemon];
        assert!(select(&procs, Runtime::Python, &rules()).is_empty());
        let r = Rules {
            skip_embedded_python: false,
            ..rules()
        };
        assert_eq!(pids(&select(&procs, Runtime::Python, &r)), [90]);
    }
}
