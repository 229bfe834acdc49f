//! Reading `inputs = ["a", "b"]`: required and non-empty on transforms and sinks,
//! absent on sources. What it names is checked with the graph (`graph.rs`).

use std::ops::Range;

use toml::de::DeValue;
use toml::Spanned;

use super::graph::Role;
use super::report::Report;

/// Each input id with the span of the string that names it. Kept even when
/// `inputs` is malformed where the intent is plain (`inputs = "a"`), so that the
/// graph checks do not also report `a` as unread.
pub(super) fn read_inputs<'d>(
    report: &mut Report<'_>,
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
            report.at(table.span(), format!("{role} `{id}` has no inputs"));
        }
        return inputs;
    };
    if role == Role::Source {
        report.at(
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
            None => format!(
                "{ctx}: `inputs` must be an array of component ids, e.g. inputs = [\"my_source\"]"
            ),
        };
        report.at(value.span(), message);
        return inputs;
    };
    if array.is_empty() {
        report.at(value.span(), format!("{role} `{id}` has no inputs"));
    }
    for item in array.iter() {
        match item.get_ref().as_str() {
            Some(s) if inputs.iter().any(|(seen, _)| *seen == s) => {
                report.at(item.span(), format!("{ctx}: input `{s}` is listed twice"))
            }
            Some(s) => inputs.push((s, item.span())),
            None => report.at(
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
