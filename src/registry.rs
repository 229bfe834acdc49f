//! Every component type profpipe ships, assembled here at the top of the library and
//! handed down to [`crate::config`], which knows no component by name.

use crate::config::Registry;

/// The registry of every source, transform and sink type.
pub fn registry() -> Registry {
    Registry {
        sources: crate::sources::KINDS,
        transforms: crate::transforms::KINDS,
        sinks: crate::sinks::KINDS,
    }
}
