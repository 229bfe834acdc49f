//! Reading a config: TOML text → a validated [`Config`], or every problem in it.
//!
//! 1. Parse with spans (`toml::de::DeTable`). Syntax errors stop the load: after
//!    one, nothing else in the file is reliable. All of them are reported, though.
//!    Then `${NAME}` in string values is replaced from the environment
//!    (`env_vars.rs`), in both trees, before anything reads them.
//! 2. Top-level keys, then `[agent]` and `[telemetry]` (`settings.rs`).
//! 3. Each component (`component.rs`): its id, `type`, `inputs` and `buffer`, then
//!    its kind's `parse` (given the table without those three keys) and, if that
//!    succeeds, `validate`.
//! 4. The graph (`graph.rs`) and checks across tables (`checks.rs`).
//!
//! Nothing here does I/O but [`load_file`] reading the file. Every problem is
//! recorded with a byte span of the span-preserving parse (`report.rs`); at the end
//! the spans become `line:column` and the errors are sorted.

use std::collections::HashSet;
use std::path::Path;

use toml::de::{DeString, DeTable, DeValue};
use toml::Spanned;

use super::agent::{AgentConfig, TelemetryConfig};
use super::checks::{check_buffers_fit, check_ids};
use super::component::read_section;
use super::data_types;
use super::declared::{Built, Declared};
use super::env_vars;
use super::errors::{ConfigError, ConfigErrors};
use super::graph::{self, Node, Role};
use super::pipeline::{Config, Registry, SinkEntry, SourceEntry, TransformEntry};
use super::report::Report;
use super::settings::{read_memory_limit, read_settings, AGENT_FIELDS, TELEMETRY_FIELDS};
use super::suggest::{did_you_mean, list};
use crate::event::ComponentId;

/// The tables a config may have at its top level.
const TOP_LEVEL: &[&str] = &["agent", "telemetry", "sources", "transforms", "sinks"];

/// Reads and loads a config file. A file that cannot be read is one error at 0:0.
pub fn load_file(path: &Path, registry: &Registry) -> Result<Config, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            file: path.to_path_buf(),
            line: 0,
            column: 0,
            message: format!("cannot read: {e}"),
        }])
    })?;
    load_str(path, &text, registry)
}

/// Loads a config from text. `name` is only used in errors: a path, or a name such
/// as `<embedded default>` for a config compiled into the binary.
pub fn load_str(name: &Path, text: &str, registry: &Registry) -> Result<Config, ConfigErrors> {
    load_str_with_env(name, text, registry, &|n| std::env::var(n))
}

/// [`load_str`] with `${NAME}` looked up by `env` instead of in the process
/// environment (tests, or a caller with its own variables).
pub fn load_str_with_env(
    name: &Path,
    text: &str,
    registry: &Registry,
    env: &dyn Fn(&str) -> Result<String, std::env::VarError>,
) -> Result<Config, ConfigErrors> {
    let mut report = Report::new(name, text);
    let (mut doc, syntax) = DeTable::parse_recoverable(text);
    if !syntax.is_empty() {
        report_syntax(&mut report, text, syntax);
        return Err(report.finish());
    }
    // The same text again, as plain values to hand to serde. It parsed with spans,
    // so it parses here too; should it not (a value toml::Value cannot hold), the
    // error still has a place.
    let mut values: toml::Table = match toml::from_str(text) {
        Ok(values) => values,
        Err(e) => {
            report.maybe_at(e.span(), format!("invalid TOML: {}", e.message()));
            return Err(report.finish());
        }
    };
    let used = env_vars::substitute(&mut report, text, &mut doc, &mut values, env);
    report.redact(used);
    let config = load(&mut report, registry, &doc, &values);
    match config {
        Some(config) if report.is_empty() => Ok(config),
        _ => Err(report.finish()),
    }
}

/// Syntax errors, named as the parser names them. The parser recovers and goes on,
/// but what it finds later on the line of an error is mostly a consequence of it,
/// so only the first error of each line is reported.
fn report_syntax(report: &mut Report<'_>, text: &str, mut errors: Vec<toml::de::Error>) {
    errors.sort_by_key(|e| e.span().map(|s| s.start));
    let mut lines_seen = HashSet::new();
    for e in errors {
        let mut message = format!("invalid TOML: {}", e.message());
        if let Some(span) = e.span() {
            if !lines_seen.insert(report.line_of(span.start)) {
                continue;
            }
            // The parser says only "duplicate key"; the key is had from the span.
            let key = text.get(span).unwrap_or("");
            if e.message() == "duplicate key" && !key.is_empty() && !key.contains('\n') {
                message = format!("invalid TOML: duplicate key `{key}`");
            }
        }
        report.maybe_at(e.span(), message);
    }
}

/// Checks everything; returns a config only if every part of it could be read
/// (the caller still rejects it if any problem was reported).
fn load<'d>(
    report: &mut Report<'_>,
    registry: &Registry,
    doc: &'d Spanned<DeTable<'d>>,
    values: &toml::Table,
) -> Option<Config> {
    let empty = toml::Value::Table(toml::Table::new());
    let mut agent = Some(AgentConfig::default());
    let mut telemetry = Some(TelemetryConfig::default());
    // `[agent] memory_limit`, if valid (even if other fields of `[agent]` are
    // not), and whether it is the default.
    let mut memory_limit = Some((AgentConfig::default().memory_limit, true));
    let mut declared: Vec<Declared<'d>> = Vec::new();
    // Sections the file has, valid or not, or misspells: an error about them
    // is reported already, so "the pipeline has no sinks" would say it twice.
    let mut claimed: Vec<Role> = Vec::new();

    for (key, value) in doc.get_ref().iter() {
        let name = key.get_ref().as_ref();
        let raw = values.get(name).unwrap_or(&empty);
        match name {
            "agent" => {
                agent = read_settings(report, "[agent]", value, raw, AGENT_FIELDS);
                memory_limit = read_memory_limit(report, value, raw, memory_limit);
            }
            "telemetry" => {
                telemetry = read_settings(report, "[telemetry]", value, raw, TELEMETRY_FIELDS)
            }
            "sources" | "transforms" | "sinks" => {
                let role = section_role(name).expect("a section name");
                claimed.push(role);
                read_section(report, registry, role, value, raw, &mut declared)
            }
            _ => {
                claimed.extend(unknown_top_level(report, key, value));
            }
        }
    }
    declared.sort_by_key(|d| d.table.span().start);

    check_ids(report, &declared);
    let nodes: Vec<Node<'_>> = declared
        .iter()
        .map(|d| Node {
            id: d.id,
            role: d.role,
            header: d.table.span(),
            inputs: d.inputs.clone(),
        })
        .collect();
    let graph_problems = graph::check(&nodes, &claimed);
    let graph_ok = graph_problems.is_empty();
    for p in graph_problems {
        report.maybe_at(p.span, p.message);
    }
    if graph_ok {
        for (span, message) in data_types::check(&declared) {
            report.at(span, message);
        }
    }
    if let Some((limit, default)) = memory_limit {
        check_buffers_fit(report, limit, default, &declared);
    }

    let (agent, telemetry) = (agent?, telemetry?);
    let mut config = Config {
        agent,
        telemetry,
        sources: Vec::new(),
        transforms: Vec::new(),
        sinks: Vec::new(),
    };
    for d in declared {
        let id: ComponentId = d.id.into();
        let inputs: Vec<ComponentId> = d.inputs.iter().map(|(s, _)| (*s).into()).collect();
        let buffer = d.buffer.unwrap_or_default();
        match d.built? {
            Built::Source(type_name, config_) => config.sources.push(SourceEntry {
                id,
                type_name,
                labels: d.labels,
                declared: d.text,
                config: config_,
            }),
            Built::Transform(type_name, config_) => config.transforms.push(TransformEntry {
                id,
                type_name,
                inputs,
                buffer,
                declared: d.text,
                config: config_,
            }),
            Built::Sink(type_name, config_) => config.sinks.push(SinkEntry {
                id,
                type_name,
                inputs,
                buffer,
                declared: d.text,
                config: config_,
            }),
        }
    }
    Some(config)
}

/// A top-level key that is not one of [`TOP_LEVEL`]: reported, with a suggestion
/// from that list. Returns the section it misspells, if it is one.
fn unknown_top_level(
    report: &mut Report<'_>,
    key: &Spanned<DeString<'_>>,
    value: &Spanned<DeValue<'_>>,
) -> Option<Role> {
    let name = key.get_ref().as_ref();
    let what = match value.get_ref() {
        DeValue::Table(_) => "table",
        DeValue::Array(a) if !a.is_empty() && a.iter().all(|v| v.get_ref().is_table()) => {
            "array of tables"
        }
        _ => "key",
    };
    let (message, claimed) = match did_you_mean(name, TOP_LEVEL.iter().copied()) {
        Some(s) => (
            format!("unknown {what} `{name}`, did you mean `{s}`?"),
            section_role(s),
        ),
        None => (
            format!(
                "unknown {what} `{name}`, expected one of {}",
                list(TOP_LEVEL)
            ),
            None,
        ),
    };
    report.at(key.span(), message);
    claimed
}

fn section_role(name: &str) -> Option<Role> {
    match name {
        "sources" => Some(Role::Source),
        "transforms" => Some(Role::Transform),
        "sinks" => Some(Role::Sink),
        _ => None,
    }
}
