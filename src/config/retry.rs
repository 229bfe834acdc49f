//! Reading a table to the end: serde stops at the first problem, the loader wants
//! them all.

use super::serde_text::{self, clean_message, Said};
use crate::component::FieldError;

/// Runs a `parse` (a kind's, or [`parse_table`](crate::component::parse_table))
/// until it has said everything.
///
/// serde stops at the first bad value, and a struct with `deny_unknown_fields` at the
/// first unknown field, so one run reports one problem per table. Here each problem
/// whose path names a key is recorded, that key is removed, and the table is parsed
/// again, until it parses or no key is left to blame. "missing field" errors caused
/// by a removal are not reported. Removing the key of an array removes the whole
/// array, so only the first bad element of an array whose elements are not tables is
/// reported.
pub(super) fn parse_all<R>(
    parse: fn(toml::Value) -> Result<R, Vec<FieldError>>,
    mut value: toml::Value,
) -> Result<R, Vec<FieldError>> {
    let mut found: Vec<FieldError> = Vec::new();
    let mut removed: Vec<Vec<String>> = Vec::new();
    // Each round that goes on removes a key, so this ends; the bound is a safety net.
    for _ in 0..1000 {
        let errors = match parse(value.clone()) {
            Ok(r) if found.is_empty() => return Ok(r),
            Ok(_) => return Err(found),
            Err(errors) => errors,
        };
        let mut progress = false;
        for e in errors {
            if found.contains(&e) {
                continue;
            }
            // Take out the key the error is about, or the table it is in: serde
            // stopped there, and will go past it next time.
            let cut = key_prefix(&value, &e.path);
            if cut > 0 && remove_path(&mut value, &e.path[..cut]) {
                removed.push(e.path[..cut].to_vec());
                progress = true;
            }
            // A consequence of an earlier removal is not reported; it still had to
            // be taken out, or the keys after it would never be seen.
            if !caused_by_removal(&e, &removed) {
                found.push(e);
            }
        }
        if !progress {
            break;
        }
    }
    Err(found)
}

/// "missing field `x`" in a table from which `x` was removed.
fn caused_by_removal(e: &FieldError, removed: &[Vec<String>]) -> bool {
    let Said::MissingField { name } = serde_text::read(clean_message(&e.message)) else {
        return false;
    };
    removed.iter().any(|r| {
        r.len() == e.path.len() + 1 && r[..e.path.len()] == e.path[..] && r[e.path.len()] == name
    })
}

/// How many segments of `path` lead to its deepest element that is a key of a
/// table in `value` (0 if none): removing that key removes the problem without
/// shifting the indexes of array elements.
fn key_prefix(value: &toml::Value, path: &[String]) -> usize {
    let mut cut = 0;
    let mut current = value;
    for (i, segment) in path.iter().enumerate() {
        let next = match current {
            toml::Value::Table(t) => {
                let next = t.get(segment);
                if next.is_some() {
                    cut = i + 1;
                }
                next
            }
            toml::Value::Array(a) => segment.parse::<usize>().ok().and_then(|i| a.get(i)),
            _ => None,
        };
        match next {
            Some(v) => current = v,
            None => break,
        }
    }
    cut
}

/// Removes the key at `path` from a value; false if there is none.
fn remove_path(value: &mut toml::Value, path: &[String]) -> bool {
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    let mut current = value;
    for segment in parents {
        let next = match current {
            toml::Value::Table(t) => t.get_mut(segment),
            toml::Value::Array(a) => segment.parse::<usize>().ok().and_then(|i| a.get_mut(i)),
            _ => None,
        };
        match next {
            Some(v) => current = v,
            None => return false,
        }
    }
    match current {
        toml::Value::Table(t) => t.remove(last).is_some(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;
    use crate::component::parse_table;
    use crate::units::DurationStr;

    #[test]
    fn parse_all_goes_on_after_each_problem() {
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)] // fields are only parsed
        struct Inner {
            n: u32,
        }
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)] // fields are only parsed
        struct Outer {
            a: u32,
            b: DurationStr,
            inner: Inner,
            list: Vec<Inner>,
        }
        fn parse(v: toml::Value) -> Result<Outer, Vec<FieldError>> {
            parse_table(v)
        }
        let value: toml::Value = toml::from_str(
            "a = 'x'\nb = 'never'\nzz = 1\ninner = { n = 1, q = 2 }\nlist = [{ n = 1 }, { n = 'y', r = 3 }]",
        )
        .unwrap();
        let errors: Vec<(String, String)> = parse_all(parse, value)
            .unwrap_err()
            .into_iter()
            .map(|e| (e.path.join("."), clean_message(&e.message).to_string()))
            .collect();
        let paths: Vec<&str> = errors.iter().map(|(p, _)| p.as_str()).collect();
        // Every problem once; no "missing field `a`" after `a` was taken out.
        assert_eq!(
            paths,
            ["a", "b", "inner.q", "list.1.n", "list.1.r", "zz"],
            "{errors:#?}"
        );
        assert!(errors.iter().all(|(_, m)| !m.starts_with("missing field")));
        assert!(errors[2].1.starts_with("unknown field `q`, expected `n`"));

        // A good table parses in one go.
        let ok: toml::Value =
            toml::from_str("a = 1\nb = '1s'\ninner = { n = 1 }\nlist = []").unwrap();
        assert!(parse_all(parse, ok).is_ok());
    }
}
