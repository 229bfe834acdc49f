//! "Did you mean": the likely intended name for a misspelled one, and how lists of
//! names are written in messages. Shared by the loader and the graph checks.

/// The candidate closest to `word`, if it is close enough to be a likely typo
/// (edit distance, transpositions counting one, at most a third of the word's
/// length, and at least 1).
pub(super) fn did_you_mean<'c>(
    word: &str,
    candidates: impl IntoIterator<Item = &'c str>,
) -> Option<&'c str> {
    let limit = (word.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .filter(|c| *c != word)
        .map(|c| (strsim::damerau_levenshtein(word, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// "`a`, `b`, `c`"
pub(super) fn list(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names_only() {
        assert_eq!(did_you_mean("fil", ["file", "perf"]), Some("file"));
        let top = ["agent", "telemetry", "sources", "transforms", "sinks"];
        assert_eq!(did_you_mean("sink", top), Some("sinks"));
        assert_eq!(did_you_mean("transfroms", top), Some("transforms"));
        assert_eq!(did_you_mean("zzz", ["file", "perf"]), None);
        assert_eq!(did_you_mean("file", ["file"]), None);
        assert_eq!(list(&["a", "b"]), "`a`, `b`");
    }
}
