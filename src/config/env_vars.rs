//! `${NAME}` in config strings: replaced by the environment variable `NAME`, so
//! secrets (tokens, passwords) stay out of config files and argv.
//!
//! ```toml
//! api_key = "${GPROFILER_TOKEN}"      # the whole value from the environment
//! path = "/data/${HOSTNAME}/out"      # or part of it
//! note = "costs $${PRICE}"            # `$${` is a literal `${`: "costs ${PRICE}"
//! ```
//!
//! Only string values are expanded (in tables, arrays and inline tables alike), not
//! keys or comments, and before any of them is read, so every field of every kind
//! accepts it. `NAME` is `[A-Za-z_][A-Za-z0-9_]*`. An unset variable, one that is
//! not UTF-8, or a `${` that does not start `${NAME}` is a problem of the load,
//! placed at the `${` and reported with all the others (what later checks would
//! say of the value left unexpanded is not reported). A `$` not followed by `{`
//! is kept as it is. The values substituted are never shown: any later message
//! that would quote one shows its `${NAME}` instead.

use std::env::VarError;
use std::ops::Range;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::redact::Used;
use super::report::Report;

/// Where variables are looked up: the process environment in a load, a map in tests.
pub(super) type Lookup<'e> = &'e dyn Fn(&str) -> Result<String, VarError>;

/// What is wrong with one `${...}`, at a byte offset of the (decoded) string.
#[derive(Debug, PartialEq, Eq)]
struct Problem {
    at: usize,
    /// The `${NAME}` (or the bad `${...` up to the end) as written, to find it in the
    /// raw text.
    written: String,
    message: String,
}

/// Expands every string value of `doc` and, at the same place, of `values` (the
/// tree serde reads). Problems go to `report`; the variables used are returned.
pub(super) fn substitute<'t>(
    report: &mut Report<'t>,
    text: &'t str,
    doc: &mut Spanned<DeTable<'_>>,
    values: &mut toml::Table,
    env: Lookup<'_>,
) -> Vec<Used> {
    let mut used = Vec::new();
    let mut walk = Walk {
        report,
        text,
        env,
        used: &mut used,
    };
    walk.table(doc.get_mut(), Some(values));
    used
}

struct Walk<'r, 't, 'e, 'u> {
    report: &'r mut Report<'t>,
    text: &'t str,
    env: Lookup<'e>,
    used: &'u mut Vec<Used>,
}

impl Walk<'_, '_, '_, '_> {
    fn table(&mut self, doc: &mut DeTable<'_>, mut values: Option<&mut toml::Table>) {
        for (key, value) in doc.iter_mut() {
            let v = values
                .as_mut()
                .and_then(|t| t.get_mut(key.get_ref().as_ref()));
            self.value(value, v);
        }
    }

    fn value(&mut self, doc: &mut Spanned<DeValue<'_>>, values: Option<&mut toml::Value>) {
        let span = doc.span();
        match doc.get_mut() {
            DeValue::String(s) => {
                if let Some(expanded) = self.string(s, span) {
                    if let Some(toml::Value::String(v)) = values {
                        v.clone_from(&expanded);
                    }
                    *s = expanded.into();
                }
            }
            DeValue::Array(items) => {
                let mut values = match values {
                    Some(toml::Value::Array(a)) => Some(a),
                    _ => None,
                };
                for (i, item) in items.iter_mut().enumerate() {
                    let v = values.as_mut().and_then(|a| a.get_mut(i));
                    self.value(item, v);
                }
            }
            DeValue::Table(t) => {
                let values = match values {
                    Some(toml::Value::Table(v)) => Some(v),
                    _ => None,
                };
                self.table(t, values);
            }
            _ => {}
        }
    }

    /// The expanded string if it changes; `None` when it has nothing to expand or
    /// a problem (reported; the value stays as written).
    fn string(&mut self, s: &str, span: Range<usize>) -> Option<String> {
        match expand(s, self.env) {
            Ok(None) => None,
            Ok(Some((out, used))) => {
                self.used.extend(used);
                Some(out)
            }
            Err(problems) => {
                let raw = self.text.get(span.clone()).unwrap_or("");
                let mut from = 0;
                for p in problems {
                    // The place in the file: the `${...}` as written, if the string
                    // spells it literally (no escapes before it), else the string.
                    let at = find_unescaped(raw, &p.written, from)
                        .inspect(|&i| from = i + p.written.len())
                        .map_or(span.start, |i| span.start + i);
                    self.report.at(at..at + p.written.len(), p.message);
                }
                self.report.mute(span);
                None
            }
        }
    }
}

/// `needle` in `raw` at or after `from`, not preceded by `$` (an escape).
fn find_unescaped(raw: &str, needle: &str, mut from: usize) -> Option<usize> {
    while let Some(i) = raw.get(from..)?.find(needle) {
        let i = from + i;
        if i == 0 || raw.as_bytes()[i - 1] != b'$' {
            return Some(i);
        }
        from = i + 1;
    }
    None
}

/// The string with each `${NAME}` replaced and each `$${` made `${`; `None` if it
/// has neither.
fn expand(s: &str, env: Lookup<'_>) -> Result<Option<(String, Vec<Used>)>, Vec<Problem>> {
    if !s.contains("${") {
        return Ok(None);
    }
    let mut out = String::with_capacity(s.len());
    let mut used = Vec::new();
    let mut problems = Vec::new();
    let mut rest = s;
    while let Some(i) = rest.find("${") {
        let at = s.len() - rest.len() + i;
        if i > 0 && rest.as_bytes()[i - 1] == b'$' {
            // `$${`: the first `$` escapes; keep `${` and go on after it.
            out.push_str(&rest[..i - 1]);
            out.push_str("${");
            rest = &rest[i + 2..];
            continue;
        }
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let name_len = after
            .bytes()
            .position(|b| !(b.is_ascii_alphanumeric() || b == b'_'))
            .unwrap_or(after.len());
        let name = &after[..name_len];
        let closed = after.as_bytes().get(name_len) == Some(&b'}');
        if name.is_empty() || name.as_bytes()[0].is_ascii_digit() || !closed {
            let written_len = if closed { name_len + 3 } else { name_len + 2 };
            problems.push(Problem {
                at,
                written: rest[i..i + written_len].to_string(),
                message: "`${` must start `${NAME}` (NAME of letters, digits and `_`, not starting with a digit); write `$${` for a literal `${`".into(),
            });
            out.push_str(&rest[i..i + written_len]);
            rest = &rest[i + written_len..];
            continue;
        }
        let written = format!("${{{name}}}");
        match env(name) {
            Ok(value) => {
                out.push_str(&value);
                used.push(Used {
                    name: name.to_string(),
                    value,
                });
            }
            Err(VarError::NotPresent) => problems.push(Problem {
                at,
                written: written.clone(),
                message: format!("environment variable `{name}` is not set (used as `{written}`)"),
            }),
            Err(VarError::NotUnicode(_)) => problems.push(Problem {
                at,
                written: written.clone(),
                message: format!(
                    "environment variable `{name}` is not valid UTF-8 (used as `{written}`)"
                ),
            }),
        }
        rest = &after[name_len + 1..];
    }
    out.push_str(rest);
    if problems.is_empty() {
        Ok(Some((out, used)))
    } else {
        Err(problems)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::redact::redact;

    fn env(name: &str) -> Result<String, VarError> {
        match name {
            "TOKEN" => Ok("s3cr3t-value".into()),
            "HOST" => Ok("web-1".into()),
            "EMPTY" => Ok(String::new()),
            "BAD" => Err(VarError::NotUnicode("\u{fffd}".into())),
            _ => Err(VarError::NotPresent),
        }
    }

    fn ok(s: &str) -> Option<String> {
        expand(s, &env).unwrap().map(|(s, _)| s)
    }

    fn problems(s: &str) -> Vec<(usize, String)> {
        expand(s, &env)
            .unwrap_err()
            .into_iter()
            .map(|p| (p.at, p.written))
            .collect()
    }

    #[test]
    fn names_are_replaced_and_escapes_kept() {
        assert_eq!(ok("plain $ and $$ and {x}"), None);
        assert_eq!(ok("${TOKEN}").as_deref(), Some("s3cr3t-value"));
        assert_eq!(
            ok("/d/${HOST}/${HOST}x").as_deref(),
            Some("/d/web-1/web-1x")
        );
        assert_eq!(ok("a${EMPTY}b").as_deref(), Some("ab"));
        assert_eq!(ok("$${TOKEN}").as_deref(), Some("${TOKEN}"));
        // `$` then the escape `$${`.
        assert_eq!(ok("$$${HOST}").as_deref(), Some("$${HOST}"));
        assert_eq!(ok("$${").as_deref(), Some("${"));
        // A value is not expanded again.
        let nested = |n: &str| match n {
            "A" => Ok("${B}".to_string()),
            _ => Err(VarError::NotPresent),
        };
        assert_eq!(expand("${A}", &nested).unwrap().unwrap().0, "${B}");
    }

    #[test]
    fn every_problem_of_a_string_is_reported() {
        assert_eq!(
            problems("${NOPE}/${HOST}/${BAD}/${}/${1X}/${open"),
            vec![
                (0, "${NOPE}".to_string()),
                (16, "${BAD}".to_string()),
                (23, "${}".to_string()),
                (27, "${1X}".to_string()),
                (33, "${open".to_string()),
            ]
        );
        let p = expand("${NOPE}", &env).unwrap_err();
        assert_eq!(
            p[0].message,
            "environment variable `NOPE` is not set (used as `${NOPE}`)"
        );
    }

    #[test]
    fn both_trees_are_expanded_and_problems_placed() {
        let text = "a = \"${HOST}\"\n[t]\nb = [\"x\", { c = \"k=${TOKEN}\" }]\nd = \"${NOPE}\"\n";
        let (mut doc, syntax) = DeTable::parse_recoverable(text);
        assert!(syntax.is_empty());
        let mut values: toml::Table = toml::from_str(text).unwrap();
        let mut report = Report::new(Path::new("f.toml"), text);
        let used = substitute(&mut report, text, &mut doc, &mut values, &env);
        assert_eq!(values["a"].as_str(), Some("web-1"));
        assert_eq!(values["t"]["b"][1]["c"].as_str(), Some("k=s3cr3t-value"));
        assert_eq!(
            values["t"]["d"].as_str(),
            Some("${NOPE}"),
            "left as written"
        );
        match doc.get_ref().get("a").unwrap().get_ref() {
            DeValue::String(s) => assert_eq!(s, "web-1"),
            other => panic!("{other:?}"),
        }
        let names: Vec<&str> = used.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(names, ["HOST", "TOKEN"]);
        assert!(!format!("{used:?}").contains("s3cr3t"));
        assert_eq!(
            report.finish().to_string(),
            "f.toml:4:6: environment variable `NOPE` is not set (used as `${NOPE}`)"
        );
    }

    #[test]
    fn values_are_kept_out_of_messages() {
        let used = vec![
            Used {
                name: "TOKEN".into(),
                value: "s3cr3t-value".into(),
            },
            Used {
                name: "N".into(),
                value: "11".into(),
            },
        ];
        assert_eq!(
            redact(
                "invalid value: string \"s3cr3t-value\", expected 11 things",
                &used
            ),
            "invalid value: string \"${TOKEN}\", expected 11 things"
        );
    }
}
