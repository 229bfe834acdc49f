//! Places in a config file: byte offsets to lines and columns, and field paths to
//! the spans of the keys and values they name.
//!
//! The loader records every problem with a byte span from the span-preserving parse
//! (`toml::de::DeTable`); only at the end are spans turned into `line:column`.

use std::ops::Range;

use toml::de::DeValue;
use toml::Spanned;

/// Where each line of a text starts, to turn byte offsets into 1-based line and
/// column numbers.
pub(crate) struct Lines<'t> {
    text: &'t str,
    /// Byte offset of the first byte of each line; `starts[0] == 0`.
    starts: Vec<usize>,
}

impl<'t> Lines<'t> {
    pub(crate) fn new(text: &'t str) -> Self {
        let starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Lines { text, starts }
    }

    /// The 1-based line and column of a byte offset. Columns count characters, not
    /// bytes, so `"é" = 1` puts `=` in column 3. An offset past the end of the text
    /// is placed just after its last character.
    pub(crate) fn position(&self, offset: usize) -> (usize, usize) {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        // `starts[0] == 0 <= offset`, so the partition point is at least 1.
        let line = self.starts.partition_point(|&s| s <= offset) - 1;
        let column = self.text[self.starts[line]..offset].chars().count() + 1;
        (line + 1, column)
    }
}

/// What a field path resolves to inside a table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Place {
    /// The key of the deepest element found (for an array element: the element).
    /// For an empty path, the table itself.
    pub key: Range<usize>,
    /// The value of the deepest element found.
    pub value: Range<usize>,
    /// True when every segment of the path was found; false when the path stops
    /// early (e.g. a missing field), and `key`/`value` are those of the deepest
    /// element that exists.
    pub exact: bool,
}

/// Follows `path` (table keys, and array indexes written as numbers) from `root`,
/// e.g. `["buffer", "max_bytes"]` or `["drop_frames", "1"]`.
pub(crate) fn find(root: &Spanned<DeValue<'_>>, path: &[String]) -> Place {
    let mut place = Place {
        key: root.span(),
        value: root.span(),
        exact: true,
    };
    let mut current = root;
    for segment in path {
        let next = match current.get_ref() {
            DeValue::Table(table) => table
                .get_key_value(segment.as_str())
                .map(|(k, v)| (k.span(), v)),
            DeValue::Array(array) => segment
                .parse::<usize>()
                .ok()
                .and_then(|i| array.get(i))
                .map(|v| (v.span(), v)),
            _ => None,
        };
        match next {
            Some((key, value)) => {
                place.key = key;
                place.value = value.span();
                current = value;
            }
            None => {
                place.exact = false;
                break;
            }
        }
    }
    place
}

#[cfg(test)]
mod tests {
    use super::*;
    use toml::de::DeTable;

    #[test]
    fn lines_and_columns() {
        let text = "a = 1\n\nbé = \"x\"\r\nc";
        let lines = Lines::new(text);
        assert_eq!(lines.position(0), (1, 1));
        assert_eq!(lines.position(4), (1, 5));
        assert_eq!(lines.position(5), (1, 6)); // the newline itself
        assert_eq!(lines.position(6), (2, 1));
        assert_eq!(lines.position(7), (3, 1));
        // `é` is two bytes but one column; `=` follows it and a space.
        let eq = text.find('=').unwrap();
        let eq = text[eq + 1..].find('=').unwrap() + eq + 1;
        assert_eq!(lines.position(eq), (3, 4));
        // Inside a multi-byte character: its start.
        assert_eq!(lines.position(9), (3, 2));
        assert_eq!(lines.position(text.len() - 1), (4, 1));
        assert_eq!(lines.position(text.len()), (4, 2));
        assert_eq!(lines.position(text.len() + 10), (4, 2));
        assert_eq!(Lines::new("").position(0), (1, 1));
    }

    fn strings(path: &[&str]) -> Vec<String> {
        path.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn finds_keys_values_and_array_elements() {
        let text = "[s.a]\nx = 1\nbuffer.max_bytes = \"1MiB\"\nl = ['p', 'q']\nt = { u = 2 }\n";
        let doc = DeTable::parse(text).unwrap();
        let s = doc.get_ref().get("s").unwrap();
        let a = s.get_ref().get("a").unwrap();
        let slice = |r: Range<usize>| &text[r];

        let p = find(a, &[]);
        assert_eq!((slice(p.key.clone()), p.exact), ("[s.a]", true));

        let p = find(a, &strings(&["x"]));
        assert_eq!((slice(p.key), slice(p.value), p.exact), ("x", "1", true));

        let p = find(a, &strings(&["buffer", "max_bytes"]));
        assert_eq!(
            (slice(p.key), slice(p.value), p.exact),
            ("max_bytes", "\"1MiB\"", true)
        );

        let p = find(a, &strings(&["l", "1"]));
        assert_eq!(
            (slice(p.key), slice(p.value), p.exact),
            ("'q'", "'q'", true)
        );

        let p = find(a, &strings(&["t", "u"]));
        assert_eq!((slice(p.key), slice(p.value)), ("u", "2"));

        // Missing: the deepest element that exists.
        let p = find(a, &strings(&["t", "missing"]));
        assert_eq!((slice(p.value), p.exact), ("{ u = 2 }", false));
        let p = find(a, &strings(&["missing"]));
        assert_eq!((slice(p.value), p.exact), ("[s.a]", false));
        let p = find(a, &strings(&["l", "7"]));
        assert_eq!((slice(p.value), p.exact), ("['p', 'q']", false));
        let p = find(a, &strings(&["x", "deeper"]));
        assert_eq!((slice(p.value), p.exact), ("1", false));
    }
}
