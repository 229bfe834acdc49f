//! A heartbeat reply's `profiling_command`, read through an allow-list.
//!
//! ```json
//! {"success": true, "command_id": "c-17",
//!  "profiling_command": {"command_type": "start",
//!    "combined_config": {"duration": 60, "frequency": 11, "continuous": false,
//!      "profiler_configs": {"perf": {"mode": "enabled_restricted", "events": []},
//!                           "pyspy": "enabled", "rbspy": "disabled"}}}}
//! ```
//!
//! Only the settings below become pipeline settings, each checked; nothing of the
//! reply reaches a command line as text (perf event names must look like event
//! names). Keys gProfiler's server sends that have no meaning here are ignored
//! (`profiling_mode` must be `cpu` when present); an enabled profiler this agent
//! does not run is ignored too, since the command's other profilers still run.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A command's id as the server sent it (a string or a number), as text.
pub type CommandId = String;

/// Longest command id kept; longer ones are refused (they are persisted and sent
/// back with every heartbeat).
pub const MAX_ID_LEN: usize = 128;
/// Most perf events a command may name.
pub const MAX_EVENTS: usize = 16;
/// Longest profiling session a command may ask for (a day).
pub const MAX_DURATION_SECS: u64 = 86_400;
/// Highest sampling frequency a command may ask for.
pub const MAX_FREQUENCY: u32 = 1_000;

/// One command of the server.
#[derive(Clone, Debug, PartialEq)]
pub struct Command {
    pub id: CommandId,
    /// What to do, or why the command is refused (reported `failed` with it).
    pub action: Result<Action, String>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    Start(ProfilingRequest),
    Stop,
}

/// A validated start command: what the pipeline it becomes profiles.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfilingRequest {
    /// Seconds per profile (the window); an ad-hoc command profiles one window.
    pub duration_secs: u64,
    pub frequency: u32,
    /// Desired state until stopped (true), or one window, once (false).
    pub continuous: bool,
    pub profilers: Profilers,
    /// perf `-e` events, in order; empty: perf's default fallback chain.
    pub perf_events: Vec<String>,
    /// py-spy / rbspy: most processes per window.
    pub max_processes: Option<usize>,
}

/// Which profilers a command runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profilers {
    pub perf: bool,
    pub py_spy: bool,
    pub rbspy: bool,
}

impl Profilers {
    pub fn any(self) -> bool {
        self.perf || self.py_spy || self.rbspy
    }

    /// Two commands may run side by side only if no profiler is in both.
    pub fn overlaps(self, other: Profilers) -> bool {
        (self.perf && other.perf) || (self.py_spy && other.py_spy) || (self.rbspy && other.rbspy)
    }

    pub fn names(self) -> Vec<&'static str> {
        [
            (self.perf, "perf"),
            (self.py_spy, "py_spy"),
            (self.rbspy, "rbspy"),
        ]
        .into_iter()
        .filter_map(|(on, n)| on.then_some(n))
        .collect()
    }
}

/// The command in a reply, if it has one with an id. `Err`: a command is there
/// but its id is unusable (nothing can be reported for it).
pub fn from_reply(
    profiling_command: Option<&Value>,
    command_id: Option<&Value>,
) -> Result<Option<Command>, String> {
    let Some(pc) = profiling_command.filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let id = match command_id {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => return Err("a profiling_command without a command_id".into()),
    };
    if id.is_empty() || id.len() > MAX_ID_LEN || id.chars().any(char::is_control) {
        return Err(format!(
            "a command_id that is empty, longer than {MAX_ID_LEN} bytes or has control characters"
        ));
    }
    Ok(Some(Command {
        id,
        action: action(pc),
    }))
}

fn action(pc: &Value) -> Result<Action, String> {
    let kind = pc.get("command_type").and_then(Value::as_str);
    match kind {
        Some("stop") => Ok(Action::Stop),
        Some("start") => {
            let empty = Value::Object(Default::default());
            let config = pc.get("combined_config").unwrap_or(&empty);
            request(config).map(Action::Start)
        }
        Some(other) => Err(format!("unknown command type `{}`", clip(other))),
        None => Err("the command has no command_type".into()),
    }
}

/// `combined_config` through the allow-list.
pub fn request(config: &Value) -> Result<ProfilingRequest, String> {
    let Value::Object(c) = config else {
        return Err("combined_config is not an object".into());
    };
    if let Some(mode) = c.get("profiling_mode").filter(|v| !v.is_null()) {
        if mode.as_str() != Some("cpu") {
            return Err(format!(
                "profiling_mode {}: only `cpu` is supported",
                clip(&mode.to_string())
            ));
        }
    }
    let duration_secs = number(c.get("duration"), "duration", 60)?;
    if !(1..=MAX_DURATION_SECS).contains(&duration_secs) {
        return Err(format!(
            "duration {duration_secs}: must be 1 to {MAX_DURATION_SECS} seconds"
        ));
    }
    let frequency = number(c.get("frequency"), "frequency", 11)?;
    if !(1..=MAX_FREQUENCY as u64).contains(&frequency) {
        return Err(format!(
            "frequency {frequency}: must be 1 to {MAX_FREQUENCY} Hz"
        ));
    }
    let continuous = match c.get("continuous") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) if s == "true" || s == "false" => s == "true",
        Some(v) => {
            return Err(format!(
                "continuous {}: not a boolean",
                clip(&v.to_string())
            ))
        }
    };
    if has_pids(c.get("pids"))? {
        return Err("pids: profiling chosen processes is not supported by this agent".into());
    }
    let max_processes = match c.get("max_processes").filter(|v| !v.is_null()) {
        None => None,
        Some(v) => {
            let n = number(Some(v), "max_processes", 0)?;
            if !(1..=10_000).contains(&n) {
                return Err(format!("max_processes {n}: must be 1 to 10000"));
            }
            Some(n as usize)
        }
    };
    let (profilers, perf_events) = profilers(c.get("profiler_configs"))?;
    if !profilers.any() {
        return Err("no profiler this agent runs (perf, pyspy, rbspy) is enabled".into());
    }
    Ok(ProfilingRequest {
        duration_secs,
        frequency: frequency as u32,
        continuous,
        profilers,
        perf_events,
        max_processes,
    })
}

/// A non-negative integer given as a number or as digits in a string.
fn number(v: Option<&Value>, name: &str, default: u64) -> Result<u64, String> {
    match v {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Number(n)) => n
            .as_u64()
            .ok_or_else(|| format!("{name} {n}: not a non-negative integer")),
        Some(Value::String(s)) => s
            .trim()
            .parse()
            .map_err(|_| format!("{name} `{}`: not a non-negative integer", clip(s))),
        Some(v) => Err(format!("{name} {}: not a number", clip(&v.to_string()))),
    }
}

/// Whether `pids` names any process: a list, or (as Performance Studio sends it) a
/// comma-joined string.
fn has_pids(v: Option<&Value>) -> Result<bool, String> {
    match v {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Array(a)) => Ok(!a.is_empty()),
        Some(Value::String(s)) => Ok(s.split(',').any(|p| !p.trim().is_empty())),
        Some(v) => Err(format!("pids {}: not a list", clip(&v.to_string()))),
    }
}

/// `profiler_configs`: absent means every profiler this agent runs, as gProfiler's
/// defaults enable them all.
fn profilers(v: Option<&Value>) -> Result<(Profilers, Vec<String>), String> {
    let Some(Value::Object(p)) = v.filter(|v| !v.is_null()) else {
        return match v.filter(|v| !v.is_null()) {
            None => Ok((
                Profilers {
                    perf: true,
                    py_spy: true,
                    rbspy: true,
                },
                Vec::new(),
            )),
            Some(other) => Err(format!(
                "profiler_configs {}: not an object",
                clip(&other.to_string())
            )),
        };
    };
    let mut out = Profilers::default();
    let mut events = Vec::new();
    if let Some(perf) = p.get("perf") {
        let mode = match perf {
            Value::Object(o) => o
                .get("mode")
                .and_then(Value::as_str)
                .unwrap_or("enabled_restricted"),
            Value::String(s) => s.as_str(),
            _ => return Err("profiler_configs.perf: not an object or a mode".into()),
        };
        out.perf = enabled(
            mode,
            "perf",
            &["enabled_restricted", "enabled_aggressive", "enabled"],
        )?;
        if let Some(list) = perf.get("events").filter(|v| !v.is_null()) {
            let Value::Array(list) = list else {
                return Err("profiler_configs.perf.events: not a list".into());
            };
            if list.len() > MAX_EVENTS {
                return Err(format!(
                    "profiler_configs.perf.events: more than {MAX_EVENTS}"
                ));
            }
            for e in list {
                let name = e.as_str().filter(|s| is_event_name(s)).ok_or_else(|| {
                    format!(
                        "profiler_configs.perf.events: {} is not a perf event name",
                        clip(&e.to_string())
                    )
                })?;
                events.push(name.to_string());
            }
        }
    } else {
        out.perf = true;
    }
    out.py_spy = match p.get("pyspy") {
        None => true,
        Some(Value::String(s)) => enabled(s, "pyspy", &["enabled", "enabled_fallback"])?,
        Some(_) => return Err("profiler_configs.pyspy: not a mode".into()),
    };
    out.rbspy = match p.get("rbspy") {
        None => true,
        Some(Value::String(s)) => enabled(s, "rbspy", &["enabled"])?,
        Some(_) => return Err("profiler_configs.rbspy: not a mode".into()),
    };
    Ok((out, events))
}

fn enabled(mode: &str, name: &str, on: &[&str]) -> Result<bool, String> {
    if mode == "disabled" {
        Ok(false)
    } else if on.contains(&mode) {
        Ok(true)
    } else {
        Err(format!(
            "profiler_configs.{name}: unknown mode `{}`",
            clip(mode)
        ))
    }
}

/// perf event names: `cycles`, `cpu-clock`, `sched:sched_switch`, `r003c`,
/// `cpu/event=0x3c/`; never an option (`-`), never a space.
fn is_event_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && !s.starts_with('-')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-:./=,@".contains(&b))
}

/// The first 64 characters of a server-given text, for messages.
fn clip(s: &str) -> String {
    s.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn start(config: Value) -> Result<Action, String> {
        from_reply(
            Some(&json!({"command_type": "start", "combined_config": config})),
            Some(&json!("c1")),
        )
        .unwrap()
        .unwrap()
        .action
    }

    #[test]
    fn performance_studio_commands_become_requests() {
        let a = start(json!({"duration": 2, "frequency": "49", "continuous": true,
            "pids": "", "profiling_mode": "cpu", "target_hostnames": ["a"],
            "profiler_configs": {"perf": {"mode": "enabled_restricted", "events": ["cpu-clock"]},
                "pyspy": "disabled", "rbspy": "enabled", "async_profiler": {"enabled": true}}}));
        assert_eq!(
            a,
            Ok(Action::Start(ProfilingRequest {
                duration_secs: 2,
                frequency: 49,
                continuous: true,
                profilers: Profilers {
                    perf: true,
                    py_spy: false,
                    rbspy: true
                },
                perf_events: vec!["cpu-clock".into()],
                max_processes: None,
            }))
        );
        let stop = from_reply(Some(&json!({"command_type": "stop"})), Some(&json!(7)));
        assert_eq!(stop.unwrap().unwrap().id, "7");
    }

    #[test]
    fn anything_outside_the_allow_list_is_refused_with_a_reason() {
        for (config, why) in [
            (json!({"frequency": 0}), "frequency"),
            (json!({"duration": -1}), "duration"),
            (json!({"pids": [1, 2]}), "pids"),
            (
                json!({"profiler_configs": {"perf": {"events": ["-a; rm -rf /"]}}}),
                "event",
            ),
            (
                json!({"profiler_configs": {"perf": "disabled", "pyspy": "disabled", "rbspy": "disabled"}}),
                "no profiler",
            ),
            (json!({"profiling_mode": "allocation"}), "profiling_mode"),
        ] {
            let e = start(config).unwrap_err();
            assert!(e.contains(why), "{e}");
        }
        let unknown = from_reply(Some(&json!({"command_type": "reboot"})), Some(&json!("x")));
        assert_eq!(
            unknown.unwrap().unwrap().action,
            Err("unknown command type `reboot`".into())
        );
        assert!(from_reply(Some(&json!({"command_type": "stop"})), None).is_err());
        assert_eq!(from_reply(Some(&Value::Null), None), Ok(None));
    }
}
