//! Reading `labels = { service = "checkout" }` of a source: taken out of every
//! source table before its kind parses the rest, so that no source struct has to
//! know about labels. The topology applies them to every data event the source
//! emits (see `buffer::Output::with_labels`).

use toml::de::DeValue;
use toml::Spanned;

use super::describe::report_fields;
use super::graph::Role;
use super::report::Report;
use super::retry::parse_all;
use crate::component::parse_table;
use crate::event::LabelSet;

/// A source's `labels`, each checked (name, value, bound). Absent: empty. Invalid:
/// every problem is reported, each at the label it is about, and the valid labels
/// are returned (the load fails anyway). Transforms and sinks are not read here:
/// for them `labels` is an ordinary field of their kind (or an unknown one).
pub(super) fn read_labels(
    report: &mut Report<'_>,
    role: Role,
    ctx: &str,
    table: &Spanned<DeValue<'_>>,
    raw: &toml::Value,
) -> LabelSet {
    let (Role::Source, Some(value)) = (role, raw.get("labels")) else {
        return LabelSet::default();
    };
    if !value.is_table() {
        let span = table
            .get_ref()
            .as_table()
            .and_then(|t| t.get("labels"))
            .map_or(table.span(), |v| v.span());
        report.at(
            span,
            format!("{ctx}: `labels` must be a table, e.g. labels = {{ service = \"checkout\" }}"),
        );
        return LabelSet::default();
    }
    match parse_all(parse_table::<LabelSet>, value.clone()) {
        Ok(labels) => labels,
        Err(errors) => {
            report_fields(report, ctx, table, &["labels"], errors, &[]);
            LabelSet::default()
        }
    }
}
