//! Reading `[agent]` and `[telemetry]`: plain serde structs of the loader's own.

use serde::de::DeserializeOwned;
use toml::de::DeValue;
use toml::Spanned;

use super::describe::report_fields;
use super::locate;
use super::report::Report;
use super::retry::parse_all;
use super::size::{size_field, Field};
use crate::component::parse_table;
use crate::units::ByteSize;

/// Fields of [`AgentConfig`](super::AgentConfig) and
/// [`TelemetryConfig`](super::TelemetryConfig), for "did you mean" suggestions
/// (serde does not list them when it ignores an unknown field). A test checks that
/// they are all accepted.
pub(super) const AGENT_FIELDS: &[&str] = &[
    "memory_limit",
    "shutdown_timeout",
    "hostname",
    "state_dir",
    "supervisor",
    "labels",
];
pub(super) const TELEMETRY_FIELDS: &[&str] = &["listen"];

/// `[agent]` or `[telemetry]`: a plain serde struct.
pub(super) fn read_settings<T: DeserializeOwned>(
    report: &mut Report<'_>,
    ctx: &str,
    table: &Spanned<DeValue<'_>>,
    raw: &toml::Value,
    known: &[&str],
) -> Option<T> {
    if !table.get_ref().is_table() {
        report.at(table.span(), format!("{ctx} must be a table"));
        return None;
    }
    match parse_all(parse_table::<T>, raw.clone()) {
        Ok(t) => Some(t),
        Err(errors) => {
            report_fields(report, ctx, table, &[], errors, known);
            None
        }
    }
}

/// `[agent] memory_limit`, read on its own so that buffers are checked against it
/// even if other fields of `[agent]` are wrong. `current`: what it was before this
/// table (the default, `true` meaning "is the default"). `None`: invalid, so there
/// is nothing to check buffers against.
pub(super) fn read_memory_limit(
    report: &mut Report<'_>,
    table: &Spanned<DeValue<'_>>,
    raw: &toml::Value,
    current: Option<(ByteSize, bool)>,
) -> Option<(ByteSize, bool)> {
    match size_field(raw, "memory_limit") {
        Field::Absent => current,
        Field::Invalid => None,
        Field::Valid(size) if size.get() == 0 => {
            let place = locate::find(table, &["memory_limit".to_string()]);
            report.at(
                place.value,
                "[agent]: `memory_limit` must be greater than 0",
            );
            None
        }
        Field::Valid(size) => Some((size, false)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buffer::BufferConfig;
    use crate::config::buffer::BUFFER_FIELDS;
    use crate::config::{AgentConfig, TelemetryConfig};

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
        accepts::<BufferConfig>(BUFFER_FIELDS, &["1MiB", "block", "disk", "always", "1s"]);
    }
}
