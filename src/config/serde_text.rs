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

/// serde's words for types, in the config's: "expected u32" is "expected a whole
/// number", "a sequence" is "a list", "a map" or "struct X" is "a table". The
/// messages of a config's own types say what they expect themselves.
pub(super) fn in_config_words(message: &str) -> String {
    const WORDS: &[(&str, &str)] = &[
        ("expected a sequence", "expected a list"),
        ("expected a map", "expected a table"),
        ("invalid type: sequence", "invalid type: list"),
        ("invalid type: map", "invalid type: table"),
        ("invalid type: floating point", "invalid type: number"),
        ("invalid type: boolean", "invalid type: true/false"),
        ("expected a boolean", "expected true or false"),
    ];
    let mut out = message.to_string();
    for (serde, ours) in WORDS {
        out = out.replace(serde, ours);
    }
    // "expected u32", "expected usize", "expected i64" ... and "expected struct X",
    // "expected enum X", "expected f64" at the end of a message.
    if let Some((head, tail)) = out.rsplit_once("expected ") {
        let word = tail.split_whitespace().next().unwrap_or("");
        let plain = match word {
            "u8" | "u16" | "u32" | "u64" | "u128" | "usize" => {
                Some("a whole number (0 or more)".to_string())
            }
            "i8" | "i16" | "i32" | "i64" | "i128" | "isize" => Some("a whole number".into()),
            "f32" | "f64" => Some("a number".into()),
            "struct" => Some("a table".into()),
            "enum" => Some("one of its listed values".into()),
            _ => None,
        };
        if let Some(plain) = plain {
            let rest = if matches!(word, "struct" | "enum") {
                // "struct SecretRef": the name goes too.
                tail.split_whitespace()
                    .skip(2)
                    .collect::<Vec<_>>()
                    .join(" ")
            } else {
                tail.split_whitespace()
                    .skip(1)
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            out = format!(
                "{head}expected {plain}{}{rest}",
                if rest.is_empty() { "" } else { " " }
            );
        }
    }
    out
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
    fn rust_type_names_become_config_words() {
        assert_eq!(
            in_config_words("invalid type: string \"high\", expected u32"),
            "invalid type: string \"high\", expected a whole number (0 or more)"
        );
        assert_eq!(
            in_config_words("invalid type: string \"k:1\", expected a sequence"),
            "invalid type: string \"k:1\", expected a list"
        );
        assert_eq!(
            in_config_words("invalid type: string \"x\", expected struct SecretRef"),
            "invalid type: string \"x\", expected a table"
        );
        assert_eq!(
            in_config_words("invalid type: map, expected a string"),
            "invalid type: table, expected a string"
        );
        assert_eq!(
            in_config_words("invalid value: integer `-1`, expected i64"),
            "invalid value: integer `-1`, expected a whole number"
        );
        assert_eq!(in_config_words("unknown field `x`"), "unknown field `x`");
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
