//! Discovery's settings: which processes a profiler source may be pointed at.

use serde::Deserialize;

use crate::units::{DurationStr, RegexStr};

/// Discovery settings.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DiscoveryConfig {
    /// Processes younger than this are not profiled, whatever their runtime: most
    /// would exit before the profiler attached.
    pub min_age: DurationStr,
    /// At most this many processes per runtime and window; the busiest (CPU since
    /// the previous scan) are kept.
    pub max_processes: usize,
    /// If non-empty, only processes whose comm matches one of these.
    pub allow_comm: Vec<RegexStr>,
    /// Never processes whose comm matches one of these.
    pub deny_comm: Vec<RegexStr>,
    /// If non-empty, only processes whose command line matches one of these.
    pub allow_cmdline: Vec<RegexStr>,
    /// Never processes whose command line matches one of these.
    pub deny_cmdline: Vec<RegexStr>,
    /// Skip processes that embed Python without being an interpreter (Envoy, ...).
    pub skip_embedded_python: bool,
    /// Python processes never profiled: system daemons written in Python
    /// (gProfiler's list; default `unattended-upgrade`, `networkd-dispatcher`,
    /// `supervisord`, `tuned`).
    pub python_skip_cmdline: Vec<RegexStr>,
}

impl Default for DiscoveryConfig {
    fn default() -> Self {
        let re = |s: &str| RegexStr(regex::Regex::new(s).expect("valid regex"));
        DiscoveryConfig {
            min_age: DurationStr::from_secs(10),
            max_processes: 50,
            allow_comm: Vec::new(),
            deny_comm: Vec::new(),
            allow_cmdline: Vec::new(),
            deny_cmdline: Vec::new(),
            skip_embedded_python: true,
            python_skip_cmdline: vec![
                re("unattended-upgrade"),
                re("networkd-dispatcher"),
                re("supervisord"),
                re(r"(^|/)tuned(\s|$)"),
            ],
        }
    }
}
