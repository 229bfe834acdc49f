//! Turning the [`FieldError`]s of a table into located messages: each at the key it
//! names (unknown fields) or its value (anything else), with a suggestion for a
//! misspelled field or variant.

use std::ops::Range;

use toml::de::DeValue;
use toml::Spanned;

use super::locate;
use super::report::Report;
use super::serde_text::{self, clean_message, Said};
use super::suggest::{did_you_mean, list};
use crate::component::FieldError;

/// Reports the [`FieldError`]s of the table under `prefix` of `table`, each at
/// the key it names (unknown fields) or its value (anything else), or at the
/// deepest part of its path that exists (a missing field: the table itself).
/// `known`: the field names of that table, if the caller knows them, for a
/// suggestion when the message does not list them.
///
/// "missing field `path`" is left out when an unknown field of the same table
/// was found to be a misspelling of `path`: the suggestion says it all.
pub(super) fn report_fields(
    report: &mut Report<'_>,
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
        report.at(d.span.clone(), format!("{ctx}: {}", d.text));
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

/// An unknown field that serde ignored and `parse_table` collected through
/// `serde_ignored`: its path ends with the field's name, so the name is had from
/// the path, not the message. (`parse_table` words these errors itself, as
/// "unknown field `name`"; serde's own, from `deny_unknown_fields`, always go on
/// to say what was expected.)
fn ignored_field(error: &FieldError) -> Option<&str> {
    let name = error.path.last()?;
    (error.message == format!("unknown field `{name}`")).then_some(name.as_str())
}

fn describe(
    table: &Spanned<DeValue<'_>>,
    prefix: &[&str],
    error: FieldError,
    known: &[&str],
) -> Described {
    let mut path: Vec<String> = prefix.iter().map(|s| s.to_string()).collect();
    path.extend(error.path.iter().cloned());
    let message = clean_message(&error.message);
    let said = serde_text::read(message);

    let unknown = match (ignored_field(&error), said.clone()) {
        (Some(name), _) => Some((name.to_string(), Vec::new())),
        (None, Said::UnknownField { name, listed }) => {
            // serde names the field in the message, the path ends at its table.
            if path.last() != Some(&name) {
                path.push(name.clone());
            }
            Some((name, listed))
        }
        _ => None,
    };
    if let Some((name, listed)) = unknown {
        return unknown_field(table, prefix, path, &name, &listed, known);
    }

    let place = locate::find(table, &path);
    let mut text = serde_text::in_config_words(message);
    let mut missing = None;
    match said {
        Said::MissingField { name } => {
            let mut p = path.clone();
            p.push(name);
            missing = Some(p);
        }
        Said::UnknownVariant { name, listed } => {
            if let Some(s) = did_you_mean(&name, listed.iter().map(String::as_str)) {
                text = format!("unknown variant `{name}`, did you mean `{s}`?");
            }
        }
        Said::UnknownField { .. } | Said::Other => {}
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

/// "unknown field `buffer.x`", at the key, with a suggestion from the names serde
/// listed or, for a field of the table itself, from `known`.
fn unknown_field(
    table: &Spanned<DeValue<'_>>,
    prefix: &[&str],
    path: Vec<String>,
    name: &str,
    listed: &[String],
    known: &[&str],
) -> Described {
    let candidates: Vec<&str> = if listed.is_empty() && path.len() == prefix.len() + 1 {
        known.to_vec()
    } else {
        listed.iter().map(String::as_str).collect()
    };
    let place = locate::find(table, &path);
    let span = if place.exact { place.key } else { place.value };
    let dotted = path.join(".");
    let suggestion = did_you_mean(name, candidates.iter().copied());
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
    Described {
        span,
        text,
        suggests,
        missing: None,
    }
}
