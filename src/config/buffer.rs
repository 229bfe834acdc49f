//! Reading `buffer = { max_bytes = ..., when_full = ... }` of a transform or sink.

use std::ops::Range;

use toml::de::DeValue;
use toml::Spanned;

use super::describe::report_fields;
use super::graph::Role;
use super::locate;
use super::report::Report;
use super::retry::parse_all;
use super::size::{size_field, Field};
use crate::buffer::{BufferConfig, BufferKind, DeadLetterConfig};
use crate::component::parse_table;
use crate::units::ByteSize;

/// Fields of [`BufferConfig`], for "did you mean" suggestions (serde does not list
/// them when it ignores an unknown field). A test checks that they are accepted.
pub(super) const BUFFER_FIELDS: &[&str] = &[
    "max_bytes",
    "when_full",
    "type",
    "sync",
    "sync_interval",
    "dead_letter",
];

/// `buffer.max_bytes` with the span of its value.
pub(super) type SizeAt = (ByteSize, Range<usize>);

/// `buffer`: allowed on transforms and sinks only. Returns the buffer if it is
/// valid, and `max_bytes` with its span if that is (even if other fields of
/// `buffer` are not).
pub(super) fn read_buffer(
    report: &mut Report<'_>,
    role: Role,
    ctx: &str,
    table: &Spanned<DeValue<'_>>,
    raw: &toml::Value,
) -> (Option<BufferConfig>, Option<SizeAt>) {
    let entry = table
        .get_ref()
        .as_table()
        .and_then(|t| t.get_key_value("buffer"));
    let (Some((key, value)), Some(raw)) = (entry, raw.get("buffer")) else {
        return (None, None);
    };
    if role == Role::Source {
        report.at(
            key.span(),
            format!(
                "{ctx}: a source has no `buffer`; buffers belong to the components that read it"
            ),
        );
        return (None, None);
    }
    if !raw.is_table() {
        report.at(
            value.span(),
            format!("{ctx}: `buffer` must be a table, e.g. buffer = {{ max_bytes = \"64MiB\", when_full = \"block\" }}"),
        );
        return (None, None);
    }
    let size = match size_field(raw, "max_bytes") {
        Field::Valid(size) => {
            let place = locate::find(table, &["buffer".into(), "max_bytes".into()]);
            if size.get() == 0 {
                report.at(
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
        Ok(buffer) => {
            let ok = check_kind(report, role, ctx, table, raw, &buffer);
            // A disk buffer's bytes are on disk: they do not count against memory.
            let size = size.filter(|_| buffer.kind == BufferKind::Memory);
            (ok.then_some(buffer), size)
        }
        Err(errors) => {
            report_fields(report, ctx, table, &["buffer"], errors, BUFFER_FIELDS);
            // A `type` that did not parse may have meant disk: its size is not
            // judged against memory.
            let memory = raw.get("type").is_none_or(|t| t.as_str() == Some("memory"));
            (None, size.filter(|_| memory))
        }
    }
}

/// What only makes sense for one kind of buffer. Returns whether all is well.
fn check_kind(
    report: &mut Report<'_>,
    role: Role,
    ctx: &str,
    table: &Spanned<DeValue<'_>>,
    raw: &toml::Value,
    buffer: &BufferConfig,
) -> bool {
    let at = |field: &str| locate::find(table, &["buffer".into(), field.into()]).value;
    let mut problems: Vec<(Range<usize>, String)> = Vec::new();
    if buffer.kind == BufferKind::Disk {
        if role != Role::Sink {
            problems.push((
                at("type"),
                format!("{ctx}: a disk buffer belongs in front of a sink; a {role}'s buffer is in memory"),
            ));
        }
        if raw.get("max_bytes").is_none() {
            problems.push((
                at("type"),
                format!("{ctx}: a disk buffer needs `max_bytes`, the disk it may use (e.g. buffer = {{ type = \"disk\", max_bytes = \"1GiB\" }})"),
            ));
        } else if buffer.max_bytes < BufferConfig::MIN_DISK_BYTES {
            problems.push((
                at("max_bytes"),
                format!(
                    "{ctx}: a disk buffer's `max_bytes` must be at least {}",
                    BufferConfig::MIN_DISK_BYTES
                ),
            ));
        }
        if buffer.sync_interval.get().is_zero() {
            problems.push((
                at("sync_interval"),
                format!("{ctx}: `buffer.sync_interval` must be greater than 0 (or use sync = \"always\")"),
            ));
        }
        let dl = &buffer.dead_letter;
        let at_dl = |field: &str| {
            locate::find(
                table,
                &["buffer".into(), "dead_letter".into(), field.into()],
            )
            .value
        };
        if dl.max_attempts == 0 {
            problems.push((
                at_dl("max_attempts"),
                format!("{ctx}: `buffer.dead_letter.max_attempts` must be at least 1"),
            ));
        }
        if dl.max_record_age.get().is_zero() {
            problems.push((
                at_dl("max_record_age"),
                format!("{ctx}: `buffer.dead_letter.max_record_age` must be greater than 0"),
            ));
        }
        if dl.max_bytes < DeadLetterConfig::MIN_BYTES {
            problems.push((
                at_dl("max_bytes"),
                format!(
                    "{ctx}: `buffer.dead_letter.max_bytes` must be at least {}",
                    DeadLetterConfig::MIN_BYTES
                ),
            ));
        }
    } else {
        for field in ["sync", "sync_interval", "dead_letter"] {
            if raw.get(field).is_some() {
                problems.push((
                    at(field),
                    format!("{ctx}: `buffer.{field}` is for disk buffers (type = \"disk\"); this buffer is in memory"),
                ));
            }
        }
    }
    let ok = problems.is_empty();
    for (span, message) in problems {
        report.at(span, message);
    }
    ok
}
