//! Reading `[sources]`, `[transforms]` and `[sinks]`: one table per component, its
//! id, `type`, `inputs` and `buffer` (and a source's `labels`), then its kind's
//! `parse` (given the table without those keys) and, if that succeeds, `validate`.

use toml::de::DeValue;
use toml::Spanned;

use super::buffer::read_buffer;
use super::checks::is_valid_id;
use super::declared::{Built, Declared};
use super::describe::report_fields;
use super::graph::Role;
use super::inputs::read_inputs;
use super::labels::read_labels;
use super::pipeline::Registry;
use super::report::Report;
use super::retry::parse_all;
use super::suggest::{did_you_mean, list};
use crate::component::{FieldError, Kind};

/// Keys of a component table that the loader reads itself; the kind's `parse` sees
/// the rest.
const COMMON_FIELDS: &[&str] = &["type", "inputs", "buffer"];
/// Keys of a source table that the loader reads itself, besides [`COMMON_FIELDS`].
const SOURCE_FIELDS: &[&str] = &["labels"];

/// `[sources]`, `[transforms]` or `[sinks]`: one table per component.
pub(super) fn read_section<'d>(
    report: &mut Report<'_>,
    registry: &Registry,
    role: Role,
    section: &'d Spanned<DeValue<'d>>,
    raw: &toml::Value,
    out: &mut Vec<Declared<'d>>,
) {
    let Some(table) = section.get_ref().as_table() else {
        report.at(
            section.span(),
            format!("`{role}s` must be a table of components, e.g. [{role}s.my_id]"),
        );
        return;
    };
    for (key, value) in table.iter() {
        let id = key.get_ref().as_ref();
        if !is_valid_id(id) {
            report.at(
                key.span(),
                format!("invalid {role} id `{id}`: use only letters, digits, `_` and `-`"),
            );
        }
        if !value.get_ref().is_table() {
            report.at(
                value.span(),
                format!("{role} `{id}` must be a table, e.g. [{role}s.{id}] with a `type`"),
            );
            continue;
        }
        let raw = raw
            .get(id)
            .cloned()
            .unwrap_or(toml::Value::Table(toml::Table::new()));
        let declared = read_component(report, registry, role, id, value, raw);
        out.push(declared);
    }
}

fn read_component<'d>(
    report: &mut Report<'_>,
    registry: &Registry,
    role: Role,
    id: &'d str,
    table: &'d Spanned<DeValue<'d>>,
    raw: toml::Value,
) -> Declared<'d> {
    let ctx = format!("{role} `{id}`");
    let inputs = read_inputs(report, role, id, &ctx, table);
    let (buffer, buffer_size) = read_buffer(report, role, &ctx, table, &raw);
    let labels = read_labels(report, role, &ctx, table, &raw);
    let text = raw.to_string();
    let mut rest = match raw {
        toml::Value::Table(t) => t,
        _ => toml::Table::new(),
    };
    for key in COMMON_FIELDS {
        rest.remove(*key);
    }
    if role == Role::Source {
        for key in SOURCE_FIELDS {
            rest.remove(*key);
        }
    }
    let rest = toml::Value::Table(rest);
    let read = Component {
        role,
        id,
        ctx: &ctx,
        table,
    };
    let built = match role {
        Role::Source => read
            .kind(report, registry.sources, rest, |c| c.validate())
            .map(|(name, c)| Built::Source(name, c)),
        Role::Transform => read
            .kind(report, registry.transforms, rest, |c| c.validate())
            .map(|(name, c)| Built::Transform(name, c)),
        Role::Sink => read
            .kind(report, registry.sinks, rest, |c| c.validate())
            .map(|(name, c)| Built::Sink(name, c)),
    };
    Declared {
        role,
        id,
        table,
        inputs,
        buffer,
        buffer_size,
        labels,
        text,
        built,
    }
}

/// The component being read, for its messages.
struct Component<'a, 'd> {
    role: Role,
    id: &'a str,
    /// "source `id`"
    ctx: &'a str,
    table: &'a Spanned<DeValue<'d>>,
}

impl Component<'_, '_> {
    /// `type`, then the kind's `parse` of the rest of the table, then `validate`.
    /// The name of `type` is looked up in the registry's list here: unknown names
    /// and suggestions come from that list, not from an error message.
    fn kind<T: ?Sized>(
        &self,
        report: &mut Report<'_>,
        kinds: &'static [Kind<T>],
        rest: toml::Value,
        validate: fn(&T) -> Vec<FieldError>,
    ) -> Option<(&'static str, Box<T>)> {
        let (role, id, ctx, table) = (self.role, self.id, self.ctx, self.table);
        let names: Vec<&str> = kinds.iter().map(|k| k.name).collect();
        let known = if names.is_empty() {
            format!("no {role} types are available")
        } else {
            format!("known {role} types: {}", list(&names))
        };
        let type_value = table.get_ref().as_table().and_then(|t| t.get("type"));
        let Some(type_value) = type_value else {
            report.at(
                table.span(),
                format!("{role} `{id}` has no `type` ({known})"),
            );
            return None;
        };
        let Some(type_name) = type_value.get_ref().as_str() else {
            report.at(
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
            report.at(type_value.span(), message);
            return None;
        };
        match parse_all(kind.parse, rest) {
            Ok(config) => {
                let problems = validate(&config);
                if problems.is_empty() {
                    return Some((kind.name, config));
                }
                report_fields(report, ctx, table, &[], problems, &[]);
                None
            }
            Err(errors) => {
                report_fields(report, ctx, table, &[], errors, &[]);
                None
            }
        }
    }
}
