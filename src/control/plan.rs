//! A start command → the TOML text of a pipeline → a [`Config`] from the same loader
//! `profpipe run --config` uses, so a command can only ever ask for what a config
//! file could, and everything is validated the same way.
//!
//! The pipeline is the default one's shape (`pipelines/default.toml`):
//!
//! ```text
//! perf ─► fold ─┐
//! py_spy ───────┼─► classify ─► merge ─► the config's [sinks] (or Performance Studio)
//! rbspy ────────┘
//! ```
//!
//! with only the command's profilers. A reload is applied in place, as for any
//! pipeline ([`crate::topology::RunningTopology::reload`]), so the profilers that
//! did not change keep running. Each slot (continuous, ad-hoc) gets its own
//! scratch directory `<state_dir>/<slot>`, so the two never share perf's files.

use std::path::Path;

use toml::{Table, Value};

use super::command::ProfilingRequest;
use super::config::ControlConfig;
use crate::config::{self, Config, Registry};
use crate::secret::Secret;
use crate::units::ByteSize;

/// Which of the two pipelines a command runs in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Slot {
    Continuous,
    AdHoc,
}

impl Slot {
    pub fn name(self) -> &'static str {
        match self {
            Slot::Continuous => "continuous",
            Slot::AdHoc => "adhoc",
        }
    }
}

/// What a config file gives every command's pipeline: `[agent]`, `[sinks]` and the
/// `[control]` table (sources' extra settings, the default sink's server).
#[derive(Clone, Debug)]
pub struct Template {
    pub control: ControlConfig,
    /// `[agent]` as written.
    pub agent: Option<Table>,
    /// `[sinks]` as written; each sink's `inputs` is set here.
    pub sinks: Option<Table>,
}

/// A pipeline made for a command: its text (compared at reload) and validated config.
pub struct Planned {
    pub text: String,
    pub config: Config,
}

impl Template {
    /// The pipeline of `request` in `slot` (`None`: no scratch subdirectory, for
    /// validating the template).
    pub fn plan(
        &self,
        name: &Path,
        request: &ProfilingRequest,
        slot: Option<Slot>,
        registry: &Registry,
    ) -> Result<Planned, String> {
        let text = self.text(request, slot);
        let config =
            config::load_str(name, &text, registry).map_err(|errors| format!("{errors}"))?;
        Ok(Planned { text, config })
    }

    /// The TOML text of `request`'s pipeline.
    pub fn text(&self, request: &ProfilingRequest, slot: Option<Slot>) -> String {
        let mut doc = Table::new();
        let mut agent = self.agent.clone().unwrap_or_default();
        if let Some(slot) = slot {
            let base = match agent.get("state_dir") {
                Some(Value::String(s)) => s.clone(),
                _ => crate::config::AgentConfig::default()
                    .state_dir
                    .display()
                    .to_string(),
            };
            agent.insert(
                "state_dir".into(),
                Value::String(format!("{}/{}", base.trim_end_matches('/'), slot.name())),
            );
        }
        // The continuous and an ad-hoc pipeline may run at once: each gets half of
        // `memory_limit`, so together they hold no more than it. (An invalid value is
        // left for the loader to report.)
        let limit = match agent.get("memory_limit") {
            Some(Value::String(s)) => s.parse::<ByteSize>().ok(),
            Some(_) => None,
            None => Some(crate::config::AgentConfig::default().memory_limit),
        };
        if let Some(limit) = limit {
            let half = format!("{} B", limit.get() / 2);
            agent.insert("memory_limit".into(), Value::String(half));
        }
        doc.insert("agent".into(), Value::Table(agent));

        let window = Value::String(format!("{}s", request.duration_secs));
        let mut sources = Table::new();
        let mut runtime_inputs = Vec::new();
        let p = request.profilers;
        if p.perf {
            let mut s = self.source_base("perf");
            s.insert("frequency".into(), Value::Integer(request.frequency.into()));
            s.insert("window".into(), window.clone());
            if !request.perf_events.is_empty() {
                let events = request.perf_events.iter().cloned().map(Value::String);
                s.insert("events".into(), Value::Array(events.collect()));
            }
            self.once(&mut s, request);
            sources.insert("perf".into(), Value::Table(s));
            runtime_inputs.push("fold");
        }
        for (on, kind, id) in [(p.py_spy, "py_spy", "python"), (p.rbspy, "rbspy", "ruby")] {
            if !on {
                continue;
            }
            let mut s = self.source_base(kind);
            s.insert("frequency".into(), Value::Integer(request.frequency.into()));
            s.insert("window".into(), window.clone());
            if let Some(n) = request.max_processes {
                let d = s
                    .entry("discovery")
                    .or_insert_with(|| Value::Table(Table::new()));
                if let Value::Table(d) = d {
                    d.insert("max_processes".into(), Value::Integer(n as i64));
                }
            }
            self.once(&mut s, request);
            sources.insert(id.into(), Value::Table(s));
            runtime_inputs.push(id);
        }
        doc.insert("sources".into(), Value::Table(sources));

        let mut transforms = Table::new();
        if p.perf {
            let mut fold = Table::new();
            fold.insert("type".into(), "fold".into());
            fold.insert("inputs".into(), strings(&["perf"]));
            fold.insert("kernel".into(), true.into());
            fold.insert("unknown_as_dso".into(), true.into());
            transforms.insert("fold".into(), Value::Table(fold));
        }
        let mut classify = Table::new();
        classify.insert("type".into(), "classify".into());
        classify.insert("inputs".into(), strings(&runtime_inputs));
        transforms.insert("classify".into(), Value::Table(classify));
        let mut merge = Table::new();
        merge.insert("type".into(), "merge".into());
        merge.insert("inputs".into(), strings(&["classify"]));
        transforms.insert("merge".into(), Value::Table(merge));
        doc.insert("transforms".into(), Value::Table(transforms));

        let sinks = match &self.sinks {
            Some(sinks) if !sinks.is_empty() => {
                let mut sinks = sinks.clone();
                for (_, sink) in sinks.iter_mut() {
                    if let Value::Table(t) = sink {
                        t.insert("inputs".into(), strings(&[LAST]));
                    }
                }
                sinks
            }
            _ => self.studio_sink(),
        };
        doc.insert("sinks".into(), Value::Table(sinks));
        toml::to_string(&doc).expect("a table of plain values serializes")
    }

    /// `[control.sources.<kind>]` with the `type` set.
    fn source_base(&self, kind: &str) -> Table {
        let mut s = match self.control.sources.get(kind) {
            Some(Value::Table(t)) => t.clone(),
            _ => Table::new(),
        };
        s.insert("type".into(), Value::String(kind.into()));
        s
    }

    /// An ad-hoc command profiles one window, then its sources end.
    fn once(&self, s: &mut Table, request: &ProfilingRequest) {
        if !request.continuous {
            s.insert("max_windows".into(), Value::Integer(1));
        }
    }

    /// Without `[sinks]`: the control server's own profile endpoint
    /// (`/api/v2/profiles`), with the same token as its API key, as gProfiler does.
    fn studio_sink(&self) -> Table {
        let c = &self.control;
        let mut s = Table::new();
        s.insert("type".into(), "http".into());
        s.insert("inputs".into(), strings(&[LAST]));
        s.insert("target".into(), "gprofiler".into());
        s.insert("endpoint".into(), Value::String(c.server.clone()));
        s.insert("service_name".into(), Value::String(c.service.clone()));
        // The token as the key, where it comes from rather than its value where it
        // can (the text of a planned config is kept in memory only, never logged).
        let key = match &c.token {
            Secret::Env(e) => Value::Table(Table::from_iter([("env".into(), e.clone().into())])),
            Secret::File(f) => Value::Table(Table::from_iter([(
                "file".into(),
                f.display().to_string().into(),
            )])),
            Secret::Value(v) => Value::String(v.expose().to_string()),
        };
        s.insert("api_key".into(), key);
        if let Some(ca) = c.tls.as_ref().and_then(|t| t.ca_file.as_ref()) {
            let mut tls = Table::new();
            tls.insert("ca_file".into(), Value::String(ca.display().to_string()));
            s.insert("tls".into(), Value::Table(tls));
        }
        let mut sinks = Table::new();
        sinks.insert("studio".into(), Value::Table(s));
        sinks
    }
}

/// The transform every sink reads.
const LAST: &str = "merge";

fn strings(v: &[&str]) -> Value {
    Value::Array(v.iter().map(|s| Value::String(s.to_string())).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::command::Profilers;

    fn template(sinks: Option<&str>) -> Template {
        let control: ControlConfig = toml::from_str(
            "server = \"http://127.0.0.1:1\"\ntoken = { env = \"T\" }\nservice = \"svc\"\n\
             [sources.perf]\nbinary = \"/usr/bin/perf\"\n",
        )
        .unwrap();
        Template {
            control,
            agent: Some(toml::from_str("state_dir = \"/tmp/x\"").unwrap()),
            sinks: sinks.map(|s| toml::from_str(s).unwrap()),
        }
    }

    fn request(continuous: bool, profilers: Profilers) -> ProfilingRequest {
        ProfilingRequest {
            duration_secs: 2,
            frequency: 49,
            continuous,
            profilers,
            perf_events: vec!["cpu-clock".into()],
            max_processes: Some(3),
        }
    }

    #[test]
    fn an_ad_hoc_perf_command_becomes_a_valid_one_window_pipeline() {
        let t = template(Some("[local]\ntype = \"file\"\npath = \"/tmp/p\"\n"));
        let r = request(
            false,
            Profilers {
                perf: true,
                ..Default::default()
            },
        );
        let registry = crate::registry::registry();
        let planned = t
            .plan(Path::new("<command>"), &r, Some(Slot::AdHoc), &registry)
            .unwrap_or_else(|e| panic!("{e}"));
        let c = planned.config;
        assert_eq!(c.agent.state_dir, Path::new("/tmp/x/adhoc"));
        assert_eq!(c.agent.memory_limit, ByteSize::mib(32), "half the default");
        assert_eq!(c.sources.len(), 1);
        assert!(c.sources[0].config.is_finite());
        assert_eq!(c.sinks[0].type_name, "file");
        assert_eq!(c.sinks[0].inputs, vec!["merge".into()]);
        assert!(planned.text.contains("binary = \"/usr/bin/perf\""));
    }

    #[test]
    fn without_sinks_profiles_go_to_the_control_server() {
        let t = template(None);
        let all = Profilers {
            perf: true,
            py_spy: true,
            rbspy: true,
        };
        let r = request(true, all);
        let registry = crate::registry::registry();
        std::env::set_var("T", "secret-token");
        let planned = t
            .plan(Path::new("<command>"), &r, None, &registry)
            .unwrap_or_else(|e| panic!("{e}"));
        let c = planned.config;
        assert_eq!(c.sinks[0].type_name, "http");
        assert!(c.sources.iter().all(|s| !s.config.is_finite()));
        assert!(planned.text.contains("target = \"gprofiler\""));
        assert!(!planned.text.contains("secret-token"));
    }
}
