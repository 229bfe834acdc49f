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

#[cfg(test)]
mod tests {
    use super::*;

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
        let r = registry();
        unique("source", r.sources.iter().map(|k| k.name).collect());
        unique("transform", r.transforms.iter().map(|k| k.name).collect());
        unique("sink", r.sinks.iter().map(|k| k.name).collect());
    }
}
