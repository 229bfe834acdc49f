//! Reading a config: TOML text → a validated [`Config`], or every problem in it.
//!
//! 1. Parse with spans (`toml::de::DeTable`). Syntax errors stop the load: after
//!    one, nothing else in the file is reliable. All of them are reported, though.
//! 2. Top-level keys, then `[agent]` and `[telemetry]`.
//! 3. Each component: its id, `type`, `inputs` and `buffer`, then its kind's `parse`
//!    (given the table without those three keys) and, if that succeeds, `validate`.
//! 4. The graph (`graph.rs`) and checks across tables (buffers against the memory
//!    limit).
//!
//! Nothing here does I/O but [`load_file`] reading the file. Every problem is
//! recorded with a byte span of the span-preserving parse; at the end the spans
//! become `line:column` and the errors are sorted.

use std::collections::HashMap;
use std::ops::Range;
use std::path::Path;

use serde::de::DeserializeOwned;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::graph::{self, Node, Role};
use super::locate::{self, Lines};
use super::{
    AgentConfig, Config, ConfigError, ConfigErrors, Registry, SinkEntry, SourceEntry,
    TelemetryConfig, TransformEntry,
};
use crate::buffer::BufferConfig;
use crate::component::{parse_table, FieldError, Kind, SinkConfig, SourceConfig, TransformConfig};
use crate::event::ComponentId;
use crate::units::ByteSize;

/// The tables a config may have at its top level.
const TOP_LEVEL: &[&str] = &["agent", "telemetry", "sources", "transforms", "sinks"];
/// Fields of [`AgentConfig`], [`TelemetryConfig`] and [`BufferConfig`], for "did you
/// mean" suggestions (serde does not list them when it ignores an unknown field).
/// A test checks that they are all accepted.
const AGENT_FIELDS: &[&str] = &[
    "memory_limit",
    "shutdown_timeout",
    "hostname",
    "state_dir",
    "supervisor",
];
const TELEMETRY_FIELDS: &[&str] = &["listen"];
const BUFFER_FIELDS: &[&str] = &["max_bytes", "when_full"];
/// Keys of a component table that the loader reads itself; the kind's `parse` sees
/// the rest.
const COMMON_FIELDS: &[&str] = &["type", "inputs", "buffer"];

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
    let mut report = Report::new(name, text);
    let (doc, syntax) = DeTable::parse_recoverable(text);
    if !syntax.is_empty() {
        report_syntax(&mut report, text, syntax);
        return Err(report.finish());
    }
    // The same text again, as plain values to hand to serde. It parsed with spans,
    // so it parses here too; should it not (a value toml::Value cannot hold), the
    // error still has a place.
    let values: toml::Table = match toml::from_str(text) {
        Ok(values) => values,
        Err(e) => {
            report.maybe_at(e.span(), format!("invalid TOML: {}", e.message()));
            return Err(report.finish());
        }
    };
    let config = Loader {
        report: &mut report,
        registry,
    }
    .load(&doc, &values);
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
    let mut lines_seen = std::collections::HashSet::new();
    for e in errors {
        let mut message = format!("invalid TOML: {}", e.message());
        if let Some(span) = e.span() {
            if !lines_seen.insert(report.lines.position(span.start).0) {
                continue;
            }
            let key = text.get(span).unwrap_or("");
            if e.message() == "duplicate key" && !key.is_empty() && !key.contains('\n') {
                message = format!("invalid TOML: duplicate key `{key}`");
            }
        }
        report.maybe_at(e.span(), message);
    }
}

/// Problems found so far, each with a byte span (or none).
struct Report<'t> {
    file: &'t Path,
    lines: Lines<'t>,
    problems: Vec<(Option<Range<usize>>, String)>,
}

impl<'t> Report<'t> {
    fn new(file: &'t Path, text: &'t str) -> Self {
        Report {
            file,
            lines: Lines::new(text),
            problems: Vec::new(),
        }
    }

    fn at(&mut self, span: Range<usize>, message: impl Into<String>) {
        self.problems.push((Some(span), message.into()));
    }

    fn maybe_at(&mut self, span: Option<Range<usize>>, message: impl Into<String>) {
        self.problems.push((span, message.into()));
    }

    fn is_empty(&self) -> bool {
        self.problems.is_empty()
    }

    /// The problems as errors, in file order (those without a place first), each
    /// reported once.
    fn finish(self) -> ConfigErrors {
        let mut errors: Vec<ConfigError> = self
            .problems
            .into_iter()
            .map(|(span, message)| {
                let (line, column) = span.map_or((0, 0), |s| self.lines.position(s.start));
                ConfigError {
                    file: self.file.to_path_buf(),
                    line,
                    column,
                    message: one_line(&message),
                }
            })
            .collect();
        errors.sort_by_key(|e| (e.line, e.column));
        let mut seen = std::collections::HashSet::new();
        errors.retain(|e| seen.insert((e.line, e.column, e.message.clone())));
        ConfigErrors(errors)
    }
}

/// A component as declared, with what the loader made of it.
struct Declared<'d> {
    role: Role,
    id: &'d str,
    table: &'d Spanned<DeValue<'d>>,
    inputs: Vec<(&'d str, Range<usize>)>,
    /// The `buffer` table, if one was written and it is valid.
    buffer: Option<BufferConfig>,
    /// `buffer.max_bytes`, if it was written and is valid (even if other fields of
    /// `buffer` are not), with the span of its value.
    buffer_size: Option<(ByteSize, Range<usize>)>,
    /// The typed config, if `type` named a kind and its table parsed and validated.
    built: Option<Built>,
}

enum Built {
    Source(&'static str, Box<dyn SourceConfig>),
    Transform(&'static str, Box<dyn TransformConfig>),
    Sink(&'static str, Box<dyn SinkConfig>),
}

struct Loader<'r, 't> {
    report: &'r mut Report<'t>,
    registry: &'r Registry,
}

impl Loader<'_, '_> {
    /// Checks everything; returns a config only if every part of it could be read
    /// (the caller still rejects it if any problem was reported).
    fn load<'d>(&mut self, doc: &'d Spanned<DeTable<'d>>, values: &toml::Table) -> Option<Config> {
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
                    agent = self.read_settings("[agent]", value, raw, AGENT_FIELDS);
                    memory_limit = match size_field(raw, "memory_limit") {
                        Field::Absent => memory_limit,
                        Field::Invalid => None,
                        Field::Valid(size) if size.get() == 0 => {
                            let place = locate::find(value, &["memory_limit".to_string()]);
                            self.report.at(
                                place.value,
                                "[agent]: `memory_limit` must be greater than 0",
                            );
                            None
                        }
                        Field::Valid(size) => Some((size, false)),
                    };
                }
                "telemetry" => {
                    telemetry = self.read_settings("[telemetry]", value, raw, TELEMETRY_FIELDS)
                }
                "sources" | "transforms" | "sinks" => {
                    let role = section_role(name).expect("a section name");
                    claimed.push(role);
                    self.read_section(role, value, raw, &mut declared)
                }
                _ => {
                    let what = match value.get_ref() {
                        DeValue::Table(_) => "table",
                        DeValue::Array(a)
                            if !a.is_empty() && a.iter().all(|v| v.get_ref().is_table()) =>
                        {
                            "array of tables"
                        }
                        _ => "key",
                    };
                    let message = match did_you_mean(name, TOP_LEVEL.iter().copied()) {
                        Some(s) => {
                            claimed.extend(section_role(s));
                            format!("unknown {what} `{name}`, did you mean `{s}`?")
                        }
                        None => format!(
                            "unknown {what} `{name}`, expected one of {}",
                            list(TOP_LEVEL)
                        ),
                    };
                    self.report.at(key.span(), message);
                }
            }
        }
        declared.sort_by_key(|d| d.table.span().start);

        self.check_ids(&declared);
        let nodes: Vec<Node<'_>> = declared
            .iter()
            .map(|d| Node {
                id: d.id,
                role: d.role,
                header: d.table.span(),
                inputs: d.inputs.clone(),
            })
            .collect();
        for p in graph::check(&nodes, &claimed) {
            self.report.maybe_at(p.span, p.message);
        }
        if let Some((limit, default)) = memory_limit {
            self.check_buffers_fit(limit, default, &declared);
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
                    config: config_,
                }),
                Built::Transform(type_name, config_) => config.transforms.push(TransformEntry {
                    id,
                    type_name,
                    inputs,
                    buffer,
                    config: config_,
                }),
                Built::Sink(type_name, config_) => config.sinks.push(SinkEntry {
                    id,
                    type_name,
                    inputs,
                    buffer,
                    config: config_,
                }),
            }
        }
        Some(config)
    }

    /// `[agent]` or `[telemetry]`: a plain serde struct.
    fn read_settings<T: DeserializeOwned>(
        &mut self,
        ctx: &str,
        table: &Spanned<DeValue<'_>>,
        raw: &toml::Value,
        known: &[&str],
    ) -> Option<T> {
        if !table.get_ref().is_table() {
            self.report
                .at(table.span(), format!("{ctx} must be a table"));
            return None;
        }
        match parse_all(parse_table::<T>, raw.clone()) {
            Ok(t) => Some(t),
            Err(errors) => {
                self.field_problems(ctx, table, &[], errors, known);
                None
            }
        }
    }

    /// `[sources]`, `[transforms]` or `[sinks]`: one table per component.
    fn read_section<'d>(
        &mut self,
        role: Role,
        section: &'d Spanned<DeValue<'d>>,
        raw: &toml::Value,
        out: &mut Vec<Declared<'d>>,
    ) {
        let Some(table) = section.get_ref().as_table() else {
            self.report.at(
                section.span(),
                format!("`{role}s` must be a table of components, e.g. [{role}s.my_id]"),
            );
            return;
        };
        for (key, value) in table.iter() {
            let id = key.get_ref().as_ref();
            if !is_valid_id(id) {
                self.report.at(
                    key.span(),
                    format!("invalid {role} id `{id}`: use only letters, digits, `_` and `-`"),
                );
            }
            if !value.get_ref().is_table() {
                self.report.at(
                    value.span(),
                    format!("{role} `{id}` must be a table, e.g. [{role}s.{id}] with a `type`"),
                );
                continue;
            }
            let raw = raw
                .get(id)
                .cloned()
                .unwrap_or(toml::Value::Table(toml::Table::new()));
            let declared = self.read_component(role, id, value, raw);
            out.push(declared);
        }
    }

    fn read_component<'d>(
        &mut self,
        role: Role,
        id: &'d str,
        table: &'d Spanned<DeValue<'d>>,
        raw: toml::Value,
    ) -> Declared<'d> {
        let ctx = format!("{role} `{id}`");
        let inputs = self.read_inputs(role, id, &ctx, table);
        let (buffer, buffer_size) = self.read_buffer(role, &ctx, table, &raw);
        let mut rest = match raw {
            toml::Value::Table(t) => t,
            _ => toml::Table::new(),
        };
        for key in COMMON_FIELDS {
            rest.remove(*key);
        }
        let rest = toml::Value::Table(rest);
        let built = match role {
            Role::Source => self
                .read_kind(role, id, &ctx, table, self.registry.sources, rest, |c| {
                    c.validate()
                })
                .map(|(name, c)| Built::Source(name, c)),
            Role::Transform => self
                .read_kind(role, id, &ctx, table, self.registry.transforms, rest, |c| {
                    c.validate()
                })
                .map(|(name, c)| Built::Transform(name, c)),
            Role::Sink => self
                .read_kind(role, id, &ctx, table, self.registry.sinks, rest, |c| {
                    c.validate()
                })
                .map(|(name, c)| Built::Sink(name, c)),
        };
        Declared {
            role,
            id,
            table,
            inputs,
            buffer,
            buffer_size,
            built,
        }
    }

    /// `inputs`: required and non-empty on transforms and sinks, absent on sources.
    fn read_inputs<'d>(
        &mut self,
        role: Role,
        id: &str,
        ctx: &str,
        table: &'d Spanned<DeValue<'d>>,
    ) -> Vec<(&'d str, Range<usize>)> {
        let mut inputs = Vec::new();
        let entry = table
            .get_ref()
            .as_table()
            .and_then(|t| t.get_key_value("inputs"));
        let Some((key, value)) = entry else {
            if role != Role::Source {
                self.report
                    .at(table.span(), format!("{role} `{id}` has no inputs"));
            }
            return inputs;
        };
        if role == Role::Source {
            self.report.at(
                key.span(),
                format!("{ctx}: a source has no `inputs`; it is where events start"),
            );
            return inputs;
        }
        let Some(array) = value.get_ref().as_array() else {
            let message = match value.get_ref().as_str() {
                Some(s) => {
                    // Meant as one input: count it for the graph checks, so that
                    // `s` is not also reported as unread.
                    inputs.push((s, value.span()));
                    format!("{ctx}: `inputs` must be an array: inputs = [\"{s}\"]")
                }
                None => format!("{ctx}: `inputs` must be an array of component ids, e.g. inputs = [\"my_source\"]"),
            };
            self.report.at(value.span(), message);
            return inputs;
        };
        if array.is_empty() {
            self.report
                .at(value.span(), format!("{role} `{id}` has no inputs"));
        }
        for item in array.iter() {
            match item.get_ref().as_str() {
                Some(s) if inputs.iter().any(|(seen, _)| *seen == s) => self
                    .report
                    .at(item.span(), format!("{ctx}: input `{s}` is listed twice")),
                Some(s) => inputs.push((s, item.span())),
                None => self.report.at(
                    item.span(),
                    format!(
                        "{ctx}: `inputs` must hold component ids (strings), not {}",
                        item.get_ref().type_str()
                    ),
                ),
            }
        }
        inputs
    }

    /// `buffer`: allowed on transforms and sinks only. Returns the buffer if it is
    /// valid, and `max_bytes` with its span if that is.
    #[allow(clippy::type_complexity)]
    fn read_buffer(
        &mut self,
        role: Role,
        ctx: &str,
        table: &Spanned<DeValue<'_>>,
        raw: &toml::Value,
    ) -> (Option<BufferConfig>, Option<(ByteSize, Range<usize>)>) {
        let entry = table
            .get_ref()
            .as_table()
            .and_then(|t| t.get_key_value("buffer"));
        let (Some((key, value)), Some(raw)) = (entry, raw.get("buffer")) else {
            return (None, None);
        };
        if role == Role::Source {
            self.report.at(
                key.span(),
                format!("{ctx}: a source has no `buffer`; buffers belong to the components that read it"),
            );
            return (None, None);
        }
        if !raw.is_table() {
            self.report.at(
                value.span(),
                format!("{ctx}: `buffer` must be a table, e.g. buffer = {{ max_bytes = \"64MiB\", when_full = \"block\" }}"),
            );
            return (None, None);
        }
        let size = match size_field(raw, "max_bytes") {
            Field::Valid(size) => {
                let place = locate::find(table, &["buffer".into(), "max_bytes".into()]);
                if size.get() == 0 {
                    self.report.at(
                        place.value,
                        format!("{ctx}: `buffer.max_bytes` must be greater than 0"),
                    );
                    None
                } else {
                    Some((size, place.value))
                }
            }
            Field::Absent | Field::Invalid => None,
        };
        match parse_all(parse_table::<BufferConfig>, raw.clone()) {
            Ok(buffer) => (Some(buffer), size),
            Err(errors) => {
                self.field_problems(ctx, table, &["buffer"], errors, BUFFER_FIELDS);
                (None, size)
            }
        }
    }

    /// `type`, then the kind's `parse` of the rest of the table, then `validate`.
    #[allow(clippy::too_many_arguments)]
    fn read_kind<T: ?Sized>(
        &mut self,
        role: Role,
        id: &str,
        ctx: &str,
        table: &Spanned<DeValue<'_>>,
        kinds: &'static [Kind<T>],
        rest: toml::Value,
        validate: fn(&T) -> Vec<FieldError>,
    ) -> Option<(&'static str, Box<T>)> {
        let names: Vec<&str> = kinds.iter().map(|k| k.name).collect();
        let known = if names.is_empty() {
            format!("no {role} types are available")
        } else {
            format!("known {role} types: {}", list(&names))
        };
        let type_value = table.get_ref().as_table().and_then(|t| t.get("type"));
        let Some(type_value) = type_value else {
            self.report.at(
                table.span(),
                format!("{role} `{id}` has no `type` ({known})"),
            );
            return None;
        };
        let Some(type_name) = type_value.get_ref().as_str() else {
            self.report.at(
                type_value.span(),
                format!("{ctx}: `type` must be a string ({known})"),
            );
            return None;
        };
        let Some(kind) = kinds.iter().find(|k| k.name == type_name) else {
            let message = match did_you_mean(type_name, names.iter().copied()) {
                Some(s) => format!("unknown {role} type `{type_name}`, did you mean `{s}`?"),
                None => format!("unknown {role} type `{type_name}` ({known})"),
            };
            self.report.at(type_value.span(), message);
            return None;
        };
        match parse_all(kind.parse, rest) {
            Ok(config) => {
                let problems = validate(&config);
                if problems.is_empty() {
                    return Some((kind.name, config));
                }
                self.field_problems(ctx, table, &[], problems, &[]);
                None
            }
            Err(errors) => {
                self.field_problems(ctx, table, &[], errors, &[]);
                None
            }
        }
    }

    /// Reports the [`FieldError`]s of the table under `prefix` of `table`, each at
    /// the key it names (unknown fields) or its value (anything else), or at the
    /// deepest part of its path that exists (a missing field: the table itself).
    /// `known`: the field names of that table, if the caller knows them, for a
    /// suggestion when the message does not list them.
    ///
    /// "missing field `path`" is left out when an unknown field of the same table
    /// was found to be a misspelling of `path`: the suggestion says it all.
    fn field_problems(
        &mut self,
        ctx: &str,
        table: &Spanned<DeValue<'_>>,
        prefix: &[&str],
        errors: Vec<FieldError>,
        known: &[&str],
    ) {
        let described: Vec<Described> = errors
            .into_iter()
            .map(|e| describe(table, prefix, e, known))
            .collect();
        for d in &described {
            if let Some(missing) = &d.missing {
                if described
                    .iter()
                    .any(|o| o.suggests.as_ref() == Some(missing))
                {
                    continue;
                }
            }
            self.report.at(d.span.clone(), format!("{ctx}: {}", d.text));
        }
    }

    /// Ids are unique across sources, transforms and sinks.
    fn check_ids(&mut self, declared: &[Declared<'_>]) {
        let mut first: HashMap<&str, &Declared<'_>> = HashMap::new();
        for d in declared {
            match first.get(d.id) {
                Some(other) => {
                    let (line, _) = self.report.lines.position(other.table.span().start);
                    self.report.at(
                        d.table.span(),
                        format!(
                            "{} id `{}` is already used by the {} on line {line}; ids must be unique across sources, transforms and sinks",
                            d.role, d.id, other.role
                        ),
                    );
                }
                None => {
                    first.insert(d.id, d);
                }
            }
        }
    }

    /// A buffer larger than `[agent] memory_limit` contradicts it: the limit caps
    /// all buffers together.
    fn check_buffers_fit(&mut self, limit: ByteSize, default: bool, declared: &[Declared<'_>]) {
        let default = if default { ", the default" } else { "" };
        for d in declared {
            if let Some((size, span)) = &d.buffer_size {
                if *size > limit {
                    self.report.at(
                        span.clone(),
                        format!(
                            "{} `{}`: `buffer.max_bytes` ({size}) is larger than [agent] memory_limit ({limit}{default}), which caps all buffers together",
                            d.role, d.id
                        ),
                    );
                }
            }
        }
    }
}

/// A field of a table read on its own, apart from the rest of the table.
enum Field<T> {
    Absent,
    Invalid,
    Valid(T),
}

/// A size field of a table (`table` need not be a table).
fn size_field(table: &toml::Value, key: &str) -> Field<ByteSize> {
    match table.get(key) {
        None => Field::Absent,
        Some(v) => match v.as_str().map(str::parse) {
            Some(Ok(size)) => Field::Valid(size),
            _ => Field::Invalid,
        },
    }
}

/// A [`FieldError`] made ready to report.
struct Described {
    span: Range<usize>,
    text: String,
    /// For an unknown field with a suggestion: the path of the field suggested.
    suggests: Option<Vec<String>>,
    /// For "missing field `x`": the path of `x`.
    missing: Option<Vec<String>>,
}

fn describe(
    table: &Spanned<DeValue<'_>>,
    prefix: &[&str],
    error: FieldError,
    known: &[&str],
) -> Described {
    let mut path: Vec<String> = prefix.iter().map(|s| s.to_string()).collect();
    path.extend(error.path);
    let message = clean_message(&error.message);

    if let Some((name, listed)) = unknown_name(message, "unknown field `") {
        if path.last() != Some(&name) {
            path.push(name.clone());
        }
        let candidates: Vec<&str> = if listed.is_empty() && path.len() == prefix.len() + 1 {
            known.to_vec()
        } else {
            listed.iter().map(String::as_str).collect()
        };
        let place = locate::find(table, &path);
        let span = if place.exact { place.key } else { place.value };
        let dotted = path.join(".");
        let suggestion = did_you_mean(&name, candidates.iter().copied());
        let text = match suggestion {
            Some(s) => format!("unknown field `{dotted}`, did you mean `{s}`?"),
            None if candidates.is_empty() => format!("unknown field `{dotted}`"),
            None => format!(
                "unknown field `{dotted}`, expected one of {}",
                list(&candidates)
            ),
        };
        let suggests = suggestion.map(|s| {
            let mut p = path[..path.len() - 1].to_vec();
            p.push(s.to_string());
            p
        });
        return Described {
            span,
            text,
            suggests,
            missing: None,
        };
    }

    let place = locate::find(table, &path);
    let missing = unknown_name(message, "missing field `").map(|(name, _)| {
        let mut p = path.clone();
        p.push(name);
        p
    });
    let mut text = message.to_string();
    if let Some((name, listed)) = unknown_name(message, "unknown variant `") {
        if let Some(s) = did_you_mean(&name, listed.iter().map(String::as_str)) {
            text = format!("unknown variant `{name}`, did you mean `{s}`?");
        }
    }
    if !path.is_empty() {
        text = format!("`{}`: {text}", path.join("."));
    }
    Described {
        span: place.value,
        text,
        suggests: None,
        missing,
    }
}

/// Runs a `parse` (a kind's, or [`parse_table`]) until it has said everything.
///
/// serde stops at the first bad value, and a struct with `deny_unknown_fields` at the
/// first unknown field, so one run reports one problem per table. Here each problem
/// whose path names a key is recorded, that key is removed, and the table is parsed
/// again, until it parses or no key is left to blame. "missing field" errors caused
/// by a removal are not reported. Removing the key of an array removes the whole
/// array, so only the first bad element of an array whose elements are not tables is
/// reported.
fn parse_all<R>(
    parse: fn(toml::Value) -> Result<R, Vec<FieldError>>,
    mut value: toml::Value,
) -> Result<R, Vec<FieldError>> {
    let mut found: Vec<FieldError> = Vec::new();
    let mut removed: Vec<Vec<String>> = Vec::new();
    // Each round that goes on removes a key, so this ends; the bound is a safety net.
    for _ in 0..1000 {
        let errors = match parse(value.clone()) {
            Ok(r) if found.is_empty() => return Ok(r),
            Ok(_) => return Err(found),
            Err(errors) => errors,
        };
        let mut progress = false;
        for e in errors {
            if found.contains(&e) {
                continue;
            }
            // Take out the key the error is about, or the table it is in: serde
            // stopped there, and will go past it next time.
            let cut = key_prefix(&value, &e.path);
            if cut > 0 && remove_path(&mut value, &e.path[..cut]) {
                removed.push(e.path[..cut].to_vec());
                progress = true;
            }
            // A consequence of an earlier removal is not reported; it still had to
            // be taken out, or the keys after it would never be seen.
            if !caused_by_removal(&e, &removed) {
                found.push(e);
            }
        }
        if !progress {
            break;
        }
    }
    Err(found)
}

/// "missing field `x`" in a table from which `x` was removed.
fn caused_by_removal(e: &FieldError, removed: &[Vec<String>]) -> bool {
    let Some((name, _)) = unknown_name(clean_message(&e.message), "missing field `") else {
        return false;
    };
    removed.iter().any(|r| {
        r.len() == e.path.len() + 1 && r[..e.path.len()] == e.path[..] && r[e.path.len()] == name
    })
}

/// How many segments of `path` lead to its deepest element that is a key of a
/// table in `value` (0 if none): removing that key removes the problem without
/// shifting the indexes of array elements.
fn key_prefix(value: &toml::Value, path: &[String]) -> usize {
    let mut cut = 0;
    let mut current = value;
    for (i, segment) in path.iter().enumerate() {
        let next = match current {
            toml::Value::Table(t) => {
                let next = t.get(segment);
                if next.is_some() {
                    cut = i + 1;
                }
                next
            }
            toml::Value::Array(a) => segment.parse::<usize>().ok().and_then(|i| a.get(i)),
            _ => None,
        };
        match next {
            Some(v) => current = v,
            None => break,
        }
    }
    cut
}

/// Removes the key at `path` from a value; false if there is none.
fn remove_path(value: &mut toml::Value, path: &[String]) -> bool {
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    let mut current = value;
    for segment in parents {
        let next = match current {
            toml::Value::Table(t) => t.get_mut(segment),
            toml::Value::Array(a) => segment.parse::<usize>().ok().and_then(|i| a.get_mut(i)),
            _ => None,
        };
        match next {
            Some(v) => current = v,
            None => return false,
        }
    }
    match current {
        toml::Value::Table(t) => t.remove(last).is_some(),
        _ => false,
    }
}

/// A message on one line, so that each error is one `file:line:column: message`
/// line. Some messages come with a diagram (a regex error echoes the pattern and
/// points at it with `^`): its lines are joined, without the markers, which mean
/// nothing once the lines are joined.
fn one_line(message: &str) -> String {
    let mut out = String::new();
    for line in message.lines().map(str::trim) {
        if line.is_empty() || line.chars().all(|c| matches!(c, '^' | '~' | '-' | ' ')) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(if out.ends_with(':') { " " } else { "; " });
        }
        out.push_str(line);
    }
    out
}

/// A serde error message without the context lines toml's errors add to it
/// ("…\nin `buffer`").
fn clean_message(message: &str) -> &str {
    let message = message.trim_end();
    match message.rsplit_once('\n') {
        Some((head, last)) if last.starts_with("in `") && last.ends_with('`') => head.trim_end(),
        _ => message,
    }
}

/// For serde's "unknown field `x`, expected one of `a`, `b`" (or "unknown variant
/// …"): the name and the listed alternatives.
fn unknown_name(message: &str, prefix: &str) -> Option<(String, Vec<String>)> {
    let rest = message.strip_prefix(prefix)?;
    let (name, rest) = rest.split_once('`')?;
    let listed = rest
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect();
    Some((name.to_string(), listed))
}

/// The candidate closest to `word`, if it is close enough to be a likely typo
/// (edit distance, transpositions counting one, at most a third of the word's
/// length, and at least 1).
pub(super) fn did_you_mean<'c>(
    word: &str,
    candidates: impl IntoIterator<Item = &'c str>,
) -> Option<&'c str> {
    let limit = (word.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .filter(|c| *c != word)
        .map(|c| (strsim::damerau_levenshtein(word, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// "`a`, `b`, `c`"
fn list(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn section_role(name: &str) -> Option<Role> {
    match name {
        "sources" => Some(Role::Source),
        "transforms" => Some(Role::Transform),
        "sinks" => Some(Role::Sink),
        _ => None,
    }
}

fn is_valid_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use serde::Deserialize;

    use super::*;
    use crate::buffer::WhenFull;
    use crate::component::{
        parse_sink, parse_source, parse_transform, BuildError, SinkContext, SourceContext, Task,
        TransformContext,
    };
    use crate::units::{ByteSize, DurationStr, RegexStr};

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(rename_all = "snake_case")]
    enum Mode {
        Once,
        Follow,
    }

    /// Rejects unknown fields itself (serde lists the known ones).
    #[allow(dead_code)] // fields are only parsed
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct FileSource {
        path: String,
        #[serde(default)]
        window: Option<DurationStr>,
        #[serde(default)]
        mode: Option<Mode>,
    }

    impl SourceConfig for FileSource {
        fn validate(&self) -> Vec<FieldError> {
            if self.path.is_empty() {
                vec![FieldError::new(&["path"], "must not be empty")]
            } else {
                Vec::new()
            }
        }
        fn is_finite(&self) -> bool {
            self.mode == Some(Mode::Once)
        }
        fn build(&self, _: SourceContext) -> Result<Task, BuildError> {
            Err(BuildError("test kind".into()))
        }
    }

    /// Lets serde ignore unknown fields (parse_table collects them).
    #[derive(Debug, Deserialize)]
    struct PerfSource {
        #[serde(default = "eleven")]
        frequency: u32,
    }

    fn eleven() -> u32 {
        11
    }

    impl SourceConfig for PerfSource {
        fn validate(&self) -> Vec<FieldError> {
            if (1..=1000).contains(&self.frequency) {
                Vec::new()
            } else {
                vec![FieldError::new(
                    &["frequency"],
                    "must be between 1 and 1000 Hz",
                )]
            }
        }
        fn build(&self, _: SourceContext) -> Result<Task, BuildError> {
            Err(BuildError("test kind".into()))
        }
    }

    #[allow(dead_code)] // fields are only parsed
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct FilterTransform {
        #[serde(default)]
        drop_frames: Vec<RegexStr>,
    }

    impl TransformConfig for FilterTransform {
        fn build(&self, _: TransformContext) -> Result<Task, BuildError> {
            Err(BuildError("test kind".into()))
        }
    }

    #[allow(dead_code)] // fields are only parsed
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct FileSink {
        path: String,
        #[serde(default)]
        max_size: Option<ByteSize>,
    }

    impl SinkConfig for FileSink {
        fn build(&self, _: SinkContext) -> Result<Task, BuildError> {
            Err(BuildError("test kind".into()))
        }
    }

    static SOURCES: &[Kind<dyn SourceConfig>] = &[
        Kind {
            name: "file",
            parse: parse_source::<FileSource>,
        },
        Kind {
            name: "perf",
            parse: parse_source::<PerfSource>,
        },
    ];
    static TRANSFORMS: &[Kind<dyn TransformConfig>] = &[Kind {
        name: "filter",
        parse: parse_transform::<FilterTransform>,
    }];
    static SINKS: &[Kind<dyn SinkConfig>] = &[Kind {
        name: "file",
        parse: parse_sink::<FileSink>,
    }];

    fn registry() -> Registry {
        Registry {
            sources: SOURCES,
            transforms: TRANSFORMS,
            sinks: SINKS,
        }
    }

    fn load(text: &str) -> Result<Config, ConfigErrors> {
        load_str(Path::new("test.toml"), text, &registry())
    }

    /// The errors of `text` as "line:column: message".
    fn errors(text: &str) -> Vec<String> {
        match load(text) {
            Ok(_) => panic!("config loaded, expected errors"),
            Err(e) => {
                e.0.iter()
                    .map(|e| {
                        assert_eq!(e.file, PathBuf::from("test.toml"));
                        format!("{}:{}: {}", e.line, e.column, e.message)
                    })
                    .collect()
            }
        }
    }

    const VALID: &str = r#"
[agent]
memory_limit = "256MiB"
shutdown_timeout = "5s"

[telemetry]
listen = "127.0.0.1:9102"

[sources.cpu]
type = "perf"
frequency = 99

[sources.logs]
type = "file"
path = "/tmp/x.txt"
mode = "once"
window = "10s"

[transforms.quiet]
type = "filter"
inputs = ["cpu", "logs"]
drop_frames = ['^__pfx_']
buffer = { max_bytes = "16MiB", when_full = "drop_newest" }

[sinks.out]
type = "file"
inputs = ["quiet"]
path = "/tmp/out"
buffer.max_bytes = "1MiB"
"#;

    #[test]
    fn valid_config_is_typed_and_in_file_order() {
        let config = load(VALID).unwrap();
        assert_eq!(config.agent.memory_limit, ByteSize::mib(256));
        assert_eq!(config.agent.shutdown_timeout, DurationStr::from_secs(5));
        assert_eq!(
            config.telemetry.listen,
            Some("127.0.0.1:9102".parse().unwrap())
        );

        let sources: Vec<(&str, &str, bool)> = config
            .sources
            .iter()
            .map(|s| (&*s.id, s.type_name, s.config.is_finite()))
            .collect();
        assert_eq!(sources, [("cpu", "perf", false), ("logs", "file", true)]);

        let [t] = &config.transforms[..] else {
            panic!("one transform")
        };
        assert_eq!((&*t.id, t.type_name), ("quiet", "filter"));
        assert_eq!(t.inputs, ["cpu".into(), "logs".into()] as [ComponentId; 2]);
        assert_eq!(t.buffer.max_bytes, ByteSize::mib(16));
        assert_eq!(t.buffer.when_full, WhenFull::DropNewest);

        let [s] = &config.sinks[..] else {
            panic!("one sink")
        };
        assert_eq!((&*s.id, s.type_name), ("out", "file"));
        assert_eq!(s.inputs, ["quiet".into()] as [ComponentId; 1]);
        assert_eq!(s.buffer.max_bytes, ByteSize::mib(1));
        assert_eq!(s.buffer.when_full, WhenFull::Block);
    }

    #[test]
    fn defaults_apply_without_agent_telemetry_and_buffer() {
        let config = load(
            "[sources.a]\ntype = \"perf\"\n[sinks.b]\ntype = \"file\"\ninputs = [\"a\"]\npath = \"p\"\n",
        )
        .unwrap();
        assert_eq!(config.agent, AgentConfig::default());
        assert_eq!(config.telemetry, TelemetryConfig::default());
        assert_eq!(config.sinks[0].buffer, BufferConfig::default());
    }

    #[test]
    fn embedded_config_is_named_as_given() {
        let name = Path::new("<embedded default>");
        assert!(load_str(name, VALID, &registry()).is_ok());
        let e = load_str(name, "[sources.a]\ntype = 1\n", &registry()).unwrap_err();
        assert!(e.0.iter().all(|e| e.file == name));
        assert!(e.to_string().contains("\n<embedded default>:2:8: "), "{e}");
    }

    #[test]
    fn misspelled_field_is_reported_at_its_key() {
        let text = "\
[sources.cpu]
type = \"perf\"

[sources.logs]
type = \"file\"
path = \"/x\"
windw = \"10s\"

[sinks.out]
type = \"file\"
inputs = [\"cpu\", \"logs\"]
path = \"/y\"
";
        let e = load(text).unwrap_err();
        assert_eq!(
            e.to_string(),
            "test.toml:7:1: source `logs`: unknown field `windw`, did you mean `window`?"
        );
    }

    #[test]
    fn every_unknown_field_is_reported_with_or_without_deny_unknown_fields() {
        let text = "\
[sources.a]
type = \"file\"
path = \"/x\"
pth = 1
mdoe = \"once\"
zzzz = 2

[sources.b]
type = \"perf\"
frequncy = 3
other = 4

[sinks.c]
type = \"file\"
inputs = [\"a\", \"b\"]
path = \"p\"
";
        assert_eq!(
            errors(text),
            [
                "4:1: source `a`: unknown field `pth`, did you mean `path`?",
                "5:1: source `a`: unknown field `mdoe`, did you mean `mode`?",
                "6:1: source `a`: unknown field `zzzz`, expected one of `path`, `window`, `mode`",
                // serde ignored these: no list of known fields, so no suggestion.
                "10:1: source `b`: unknown field `frequncy`",
                "11:1: source `b`: unknown field `other`",
            ]
        );
    }

    #[test]
    fn values_are_located_at_the_value() {
        let text = "\
[agent]
memory_limit = \"lots\"
hostname = 3
shutdown_timot = \"1s\"

[telemetry]
listen = \"nowhere\"

[sources.a]
type = \"file\"
path = \"\"
window = \"sixty\"

[sources.b]
type = \"perf\"
frequency = 5000

[sources.c]
type = \"file\"
path = \"p\"
mode = \"follw\"

[transforms.t]
type = \"filter\"
inputs = [\"a\", \"b\", \"c\"]
drop_frames = [\"ok\", \"(unclosed\"]

[sinks.d]
type = \"file\"
inputs = [\"t\"]
";
        let e = errors(text);
        let expected = [
            "2:16: [agent]: `memory_limit`: invalid size \"lots\"",
            "3:12: [agent]: `hostname`: invalid type: integer `3`, expected a string",
            "4:1: [agent]: unknown field `shutdown_timot`, did you mean `shutdown_timeout`?",
            "7:10: [telemetry]: `listen`: invalid socket address syntax",
            "12:10: source `a`: `window`: invalid duration \"sixty\"",
            "16:13: source `b`: `frequency`: must be between 1 and 1000 Hz",
            "21:8: source `c`: `mode`: unknown variant `follw`, did you mean `follow`?",
            "26:22: transform `t`: `drop_frames.1`: invalid regex \"(unclosed\"",
            "28:1: sink `d`: missing field `path`",
        ];
        assert_eq!(e.len(), expected.len(), "{e:#?}");
        for (e, x) in e.iter().zip(expected) {
            assert!(e.starts_with(x), "{e:?} does not start with {x:?}");
        }
        // `validate` runs only on a table that parsed: `path = ""` is not reported
        // while `window` is broken.
    }

    #[test]
    fn validate_runs_after_parse_succeeds() {
        let text = "[sources.a]\ntype = \"file\"\npath = \"\"\n[sinks.b]\ntype = \"file\"\ninputs = [\"a\"]\npath = \"p\"\n";
        assert_eq!(errors(text), ["3:8: source `a`: `path`: must not be empty"]);
    }

    #[test]
    fn syntax_errors_stop_the_load() {
        let text = "[sources.a]\ntype = \"file\nzz = 1\n[sinks.b]\ninputs = [\"a\",\n";
        assert_eq!(
            errors(text),
            [
                "2:13: invalid TOML: invalid basic string, expected `\"`",
                "5:15: invalid TOML: unclosed array, expected `]`",
            ]
        );
        assert_eq!(
            errors("[sources.a]\ntype = \"file\"\ntype = \"perf\"\n"),
            ["3:1: invalid TOML: duplicate key `type`"]
        );
    }

    #[test]
    fn parse_all_goes_on_after_each_problem() {
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)] // fields are only parsed
        struct Inner {
            n: u32,
        }
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)] // fields are only parsed
        struct Outer {
            a: u32,
            b: DurationStr,
            inner: Inner,
            list: Vec<Inner>,
        }
        fn parse(v: toml::Value) -> Result<Outer, Vec<FieldError>> {
            parse_table(v)
        }
        let value: toml::Value = toml::from_str(
            "a = 'x'\nb = 'never'\nzz = 1\ninner = { n = 1, q = 2 }\nlist = [{ n = 1 }, { n = 'y', r = 3 }]",
        )
        .unwrap();
        let errors: Vec<(String, String)> = parse_all(parse, value)
            .unwrap_err()
            .into_iter()
            .map(|e| (e.path.join("."), clean_message(&e.message).to_string()))
            .collect();
        let paths: Vec<&str> = errors.iter().map(|(p, _)| p.as_str()).collect();
        // Every problem once; no "missing field `a`" after `a` was taken out.
        assert_eq!(
            paths,
            ["a", "b", "inner.q", "list.1.n", "list.1.r", "zz"],
            "{errors:#?}"
        );
        assert!(errors.iter().all(|(_, m)| !m.starts_with("missing field")));
        assert!(errors[2].1.starts_with("unknown field `q`, expected `n`"));

        // A good table parses in one go.
        let ok: toml::Value =
            toml::from_str("a = 1\nb = '1s'\ninner = { n = 1 }\nlist = []").unwrap();
        assert!(parse_all(parse, ok).is_ok());
    }

    #[test]
    fn a_misspelled_required_field_is_not_also_missing() {
        let text = "[sources.a]\ntype = \"file\"\npaht = \"/x\"\n[sinks.b]\ntype = \"file\"\ninputs = [\"a\"]\npath = \"p\"\n";
        assert_eq!(
            errors(text),
            ["3:1: source `a`: unknown field `paht`, did you mean `path`?"]
        );
        // With no suggestion to explain it, the missing field is reported.
        let text = "[sources.a]\ntype = \"file\"\n[sinks.b]\ntype = \"file\"\ninputs = [\"a\"]\npath = \"p\"\n";
        assert_eq!(errors(text), ["1:1: source `a`: missing field `path`"]);
    }

    #[test]
    fn real_registry_names_each_type_once() {
        // A second kind with the same name could never be chosen by `type`.
        fn unique(role: &str, names: Vec<&str>) {
            let mut sorted = names.clone();
            sorted.sort_unstable();
            sorted.dedup();
            assert_eq!(
                sorted.len(),
                names.len(),
                "{role} types named twice: {names:?}"
            );
        }
        let r = crate::registry::registry();
        unique("source", r.sources.iter().map(|k| k.name).collect());
        unique("transform", r.transforms.iter().map(|k| k.name).collect());
        unique("sink", r.sinks.iter().map(|k| k.name).collect());
    }

    #[test]
    fn known_field_lists_match_the_structs() {
        fn accepts<T: DeserializeOwned>(fields: &[&str], values: &[&str]) {
            let mut table = toml::Table::new();
            for (f, v) in fields.iter().zip(values) {
                table.insert(f.to_string(), toml::Value::String(v.to_string()));
            }
            if let Err(e) = parse_table::<T>(toml::Value::Table(table)) {
                panic!("{fields:?}: {e:?}");
            }
        }
        accepts::<AgentConfig>(AGENT_FIELDS, &["1MiB", "1s", "h"]);
        accepts::<TelemetryConfig>(TELEMETRY_FIELDS, &["127.0.0.1:1"]);
        accepts::<BufferConfig>(BUFFER_FIELDS, &["1MiB", "block"]);
    }

    #[test]
    fn messages_are_cleaned_and_parsed() {
        assert_eq!(
            clean_message("unknown field `x`\nin `buffer`\n"),
            "unknown field `x`"
        );
        assert_eq!(clean_message("plain\n"), "plain");
        assert_eq!(
            unknown_name(
                "unknown field `x`, expected one of `a`, `b`",
                "unknown field `"
            ),
            Some(("x".to_string(), vec!["a".to_string(), "b".to_string()]))
        );
        assert_eq!(
            unknown_name(
                "unknown variant `x`, expected `a` or `b`",
                "unknown variant `"
            ),
            Some(("x".to_string(), vec!["a".to_string(), "b".to_string()]))
        );
        assert_eq!(
            unknown_name("unknown field `x`, there are no fields", "unknown field `"),
            Some(("x".to_string(), vec![]))
        );
        assert_eq!(did_you_mean("fil", ["file", "perf"]), Some("file"));
        assert_eq!(
            did_you_mean("sink", TOP_LEVEL.iter().copied()),
            Some("sinks")
        );
        assert_eq!(
            did_you_mean("transfroms", TOP_LEVEL.iter().copied()),
            Some("transforms")
        );
        assert_eq!(did_you_mean("zzz", ["file", "perf"]), None);
        assert!(is_valid_id("a-b_C9"));
        assert!(!is_valid_id("a.b") && !is_valid_id("") && !is_valid_id("é"));
    }
}
