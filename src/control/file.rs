//! A config file with a `[control]` table: checked whole before anything runs.
//!
//! Besides `[control]` it may hold `[agent]`, `[telemetry]` and `[sinks]` (where a
//! command's profiles go; each sink's `inputs` is set by the agent). Sources and
//! transforms come from the server's commands, so declaring them is an error. The
//! file is valid only if the pipeline of a command enabling every profiler loads:
//! a broken sink is found at start (or reload), not at the first command.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use toml::{Table, Value};

use super::command::{Profilers, ProfilingRequest};
use super::config::ControlConfig;
use super::error::ControlError;
use super::plan::Template;
use crate::config::AgentConfig;

/// A checked control-mode config.
#[derive(Clone, Debug)]
pub struct ControlFile {
    pub path: PathBuf,
    pub template: Template,
    /// `[telemetry] listen`.
    pub listen: Option<SocketAddr>,
    /// `[agent]` as the loader read it (`${NAME}` expanded, defaults filled in).
    pub agent: AgentConfig,
}

/// Whether `text` is a control-mode config (has a top-level `control` table).
/// Text that does not parse is not: the pipeline loader reports its errors.
pub fn is_control_mode(text: &str) -> bool {
    toml::from_str::<Table>(text).is_ok_and(|t| t.contains_key("control"))
}

impl ControlFile {
    pub fn read(path: &Path) -> Result<ControlFile, ControlError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ControlError::Config(format!("{}: cannot read: {e}", path.display())))?;
        Self::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<ControlFile, ControlError> {
        let registry = &crate::registry::registry();
        let at = |m: String| ControlError::Config(format!("{}: {m}", path.display()));
        let mut doc: Table = toml::from_str(text).map_err(|e| at(format!("invalid TOML: {e}")))?;
        if doc.remove("control").is_none() {
            return Err(at("no [control] table".into()));
        }
        // Read from the text, not the table: serde's errors then carry the line and
        // column of the offending key.
        #[derive(serde::Deserialize)]
        struct OnlyControl {
            control: ControlConfig,
        }
        let control = toml::from_str::<OnlyControl>(text)
            .map_err(|e| at(format!("[control]: {e}")))?
            .control;
        let mut problems = control.check();
        for key in doc.keys() {
            match key.as_str() {
                "agent" | "telemetry" | "sinks" => {}
                "sources" | "transforms" => problems.push(format!(
                    "[{key}]: with [control], sources and transforms come from the server's \
                     commands; declare only [agent], [telemetry] and [sinks]"
                )),
                other => problems.push(format!("unknown table `{other}`")),
            }
        }
        if !problems.is_empty() {
            return Err(at(problems.join("\n")));
        }
        let table = |doc: &mut Table, k: &str| match doc.remove(k) {
            Some(Value::Table(t)) => Ok(Some(t)),
            Some(_) => Err(at(format!("[{k}] must be a table"))),
            None => Ok(None),
        };
        let agent = table(&mut doc, "agent")?;
        let sinks = table(&mut doc, "sinks")?;
        let listen = match table(&mut doc, "telemetry")? {
            Some(t) => {
                let t: crate::config::TelemetryConfig = Value::Table(t)
                    .try_into()
                    .map_err(|e: toml::de::Error| at(format!("[telemetry]: {}", e.message())))?;
                t.listen
            }
            None => None,
        };
        let template = Template {
            control,
            agent,
            sinks,
        };
        let every = ProfilingRequest {
            duration_secs: 60,
            frequency: 11,
            continuous: true,
            profilers: Profilers {
                perf: true,
                py_spy: true,
                rbspy: true,
            },
            perf_events: Vec::new(),
            max_processes: None,
        };
        let name = PathBuf::from(format!("{} (a command's pipeline)", path.display()));
        let planned = template
            .plan(&name, &every, None, registry)
            .map_err(ControlError::Pipeline)?;
        Ok(ControlFile {
            path: path.to_path_buf(),
            template,
            listen,
            agent: planned.config.agent,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[control]
server = "http://127.0.0.1:9"
token = { env = "PATH" }
service = "svc"
interval = "200ms"

[agent]
state_dir = "/tmp/profpipe-control-test"

[sinks.local]
type = "file"
path = "/tmp/profpipe-control-test/profiles"
"#;

    #[test]
    fn a_control_file_is_checked_whole() {
        assert!(is_control_mode(GOOD));
        let f = ControlFile::parse(Path::new("c.toml"), GOOD).unwrap();
        assert_eq!(f.agent.state_dir, Path::new("/tmp/profpipe-control-test"));

        let bad_sink = GOOD.replace("type = \"file\"", "type = \"flie\"");
        let e = ControlFile::parse(Path::new("c.toml"), &bad_sink).unwrap_err();
        assert!(e.to_string().contains("flie"), "{e}");

        let with_source = format!("{GOOD}\n[sources.x]\ntype = \"perf\"\n");
        let e = ControlFile::parse(Path::new("c.toml"), &with_source).unwrap_err();
        assert!(e.to_string().contains("come from the server"), "{e}");

        let typo = GOOD.replace("interval", "intervall");
        let e = ControlFile::parse(Path::new("c.toml"), &typo).unwrap_err();
        assert!(e.to_string().contains("line 6"), "{e}");

        let no_token = GOOD.replace("token = { env = \"PATH\" }", "");
        let e = ControlFile::parse(Path::new("c.toml"), &no_token).unwrap_err();
        assert!(e.to_string().contains("token"), "{e}");
    }
}
