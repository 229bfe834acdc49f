//! A size field read on its own, apart from the rest of its table: the checks of
//! sizes against each other (a buffer against the memory limit) run even when
//! another field of the same table is wrong.

use crate::units::ByteSize;

/// A field of a table read on its own.
pub(super) enum Field<T> {
    Absent,
    Invalid,
    Valid(T),
}

/// A size field of a table (`table` need not be a table).
pub(super) fn size_field(table: &toml::Value, key: &str) -> Field<ByteSize> {
    match table.get(key) {
        None => Field::Absent,
        Some(v) => match v.as_str().map(str::parse) {
            Some(Ok(size)) => Field::Valid(size),
            _ => Field::Invalid,
        },
    }
}
