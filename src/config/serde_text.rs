//! The little that is read out of serde's and toml's message text, because it is
//! carried nowhere else.
//!
//! Why it cannot be avoided: a kind's `parse` hands back [`FieldError`]s whose
//! message is the error's text. serde builds "unknown field `x`, expected one of
//! `a`, `b`" (a struct with `deny_unknown_fields`), "unknown variant `x`, expected
//! ..." (an enum field) and "missing field `x`" with the default methods of
//! `serde::de::Error`, which format the name and the expected names into a string;
//! toml's error type keeps only that string. The names of a kind's fields and of
//! its enums' variants are known to no one else (the config structs live in the
//! components, which config does not see). Everything that *can* be had
//! structurally is: unknown top-level keys and `type` names are compared against
//! the lists the loader has, and unknown fields that serde ignored come with their
//! path from `serde_ignored` (see `describe.rs`).
//!
//! [`FieldError`]: crate::component::FieldError

/// A serde error message without the context lines toml's errors add to it
/// ("…\nin `buffer`").
pub(super) fn clean_message(message: &str) -> &str {
    let message = message.trim_end();
    match message.rsplit_once('\n') {
        Some((head, last)) if last.starts_with("in `") && last.ends_with('`') => head.trim_end(),
        _ => message,
    }
}

/// What serde's message says, for the three messages the loader acts on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Said {
    /// "unknown field `name`, expected one of `a`, `b`" (or "there are no fields").
    UnknownField {
        name: String,
        listed: Vec<String>,
    },
    /// "unknown variant `name`, expected `a` or `b`".
    UnknownVariant {
        name: String,
        listed: Vec<String>,
    },
    /// "missing field `name`".
    MissingField {
        name: String,
    },
    Other,
}

/// Reads a cleaned message (see [`clean_message`]).
pub(super) fn read(message: &str) -> Said {
    if let Some((name, listed)) = named(message, "unknown field `") {
        Said::UnknownField { name, listed }
    } else if let Some((name, listed)) = named(message, "unknown variant `") {
        Said::UnknownVariant { name, listed }
    } else if let Some((name, _)) = named(message, "missing field `") {
        Said::MissingField { name }
    } else {
        Said::Other
    }
}

/// For "PREFIXx`, expected one of `a`, `b`": the name and the listed alternatives.
fn named(message: &str, prefix: &str) -> Option<(String, Vec<String>)> {
    let rest = message.strip_prefix(prefix)?;
    let (name, rest) = rest.split_once('`')?;
    let listed = rest
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect();
    Some((name.to_string(), listed))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn messages_are_cleaned_and_read() {
        assert_eq!(
            clean_message("unknown field `x`\nin `buffer`\n"),
            "unknown field `x`"
        );
        assert_eq!(clean_message("plain\n"), "plain");
        assert_eq!(
            read("unknown field `x`, expected one of `a`, `b`"),
            Said::UnknownField {
                name: "x".into(),
                listed: strings(&["a", "b"])
            }
        );
        assert_eq!(
            read("unknown variant `x`, expected `a` or `b`"),
            Said::UnknownVariant {
                name: "x".into(),
                listed: strings(&["a", "b"])
            }
        );
        assert_eq!(
            read("unknown field `x`, there are no fields"),
            Said::UnknownField {
                name: "x".into(),
                listed: vec![]
            }
        );
        assert_eq!(
            read("missing field `path`"),
            Said::MissingField {
                name: "path".into()
            }
        );
        assert_eq!(read("invalid size \"x\""), Said::Other);
    }
}
