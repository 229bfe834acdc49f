//! Checks on ids and across component tables: ids are well formed and unique, and
//! no buffer is larger than the memory limit that caps them all.

use std::collections::HashMap;

use super::declared::Declared;
use super::report::Report;
use crate::units::ByteSize;

/// Letters, digits, `_` and `-`: an id is used in metric labels and file names.
pub(super) fn is_valid_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Ids are unique across sources, transforms and sinks.
pub(super) fn check_ids(report: &mut Report<'_>, declared: &[Declared<'_>]) {
    let mut first: HashMap<&str, &Declared<'_>> = HashMap::new();
    for d in declared {
        match first.get(d.id) {
            Some(other) => {
                let line = report.line_of(other.table.span().start);
                report.at(
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
pub(super) fn check_buffers_fit(
    report: &mut Report<'_>,
    limit: ByteSize,
    default: bool,
    declared: &[Declared<'_>],
) {
    let default = if default { ", the default" } else { "" };
    for d in declared {
        if let Some((size, span)) = &d.buffer_size {
            if *size > limit {
                report.at(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        assert!(is_valid_id("a-b_C9"));
        assert!(!is_valid_id("a.b") && !is_valid_id("") && !is_valid_id("é"));
    }
}
