//! The process one run profiles, and whether it is still the same process.

use std::sync::Arc;

use crate::event::LabelSet;
use crate::process::ProcessInfo;

/// The process one run profiles.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub pid: u32,
    /// Its process name, the first frame of its stacks.
    pub comm: Arc<str>,
    pub container: Option<Arc<str>>,
    /// Its start time in clock ticks since boot, when known: tells a PID reused
    /// during the run from the target itself.
    pub start_ticks: Option<u64>,
    /// What discovery knows of it (`container`, `pod`, `namespace`, ...), put in
    /// the `labels.extra` of its profiles and diagnostics.
    pub labels: LabelSet,
}

impl Target {
    /// A target known only by its pid and name.
    pub fn new(pid: u32, comm: &str) -> Target {
        Target {
            pid,
            comm: comm.into(),
            container: None,
            start_ticks: None,
            labels: LabelSet::default(),
        }
    }
}

impl From<&ProcessInfo> for Target {
    fn from(p: &ProcessInfo) -> Target {
        Target {
            pid: p.pid,
            comm: p.comm.as_str().into(),
            container: p.container.as_deref().map(Arc::from),
            start_ticks: Some(p.start_ticks),
            labels: p
                .label_pairs()
                .into_iter()
                .fold(LabelSet::default(), |l, (k, v)| l.with(k, v).unwrap_or(l)),
        }
    }
}

/// Whether the target still exists: `/proc/PID` is there, is not a zombie, and
/// (when known) started when the target did, so a reused PID does not count.
pub fn target_alive(target: &Target) -> bool {
    let Ok(proc) = procfs::process::Process::new(target.pid as i32) else {
        return false;
    };
    match proc.stat() {
        Ok(stat) => {
            !matches!(stat.state, 'Z' | 'X' | 'x')
                && target.start_ticks.is_none_or(|t| t == stat.starttime)
        }
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn liveness_checks_start_time() {
        let me = std::process::id();
        assert!(target_alive(&Target::new(me, "me")));
        let stat = procfs::process::Process::myself().unwrap().stat().unwrap();
        let mut t = Target::new(me, "me");
        t.start_ticks = Some(stat.starttime + 1);
        assert!(
            !target_alive(&t),
            "a different start time is another process"
        );
        assert!(!target_alive(&Target::new(u32::MAX - 7, "gone")));
    }
}
