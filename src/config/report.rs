//! The collector of located problems: every problem of one load, each with a byte
//! span of the span-preserving parse (or none), turned into `line:column` errors at
//! the end.

use std::collections::HashSet;
use std::ops::Range;
use std::path::Path;

use super::errors::{ConfigError, ConfigErrors};
use super::locate::Lines;
use super::redact::{redact, Used};

/// Problems found so far, each with a byte span (or none).
pub(super) struct Report<'t> {
    file: &'t Path,
    lines: Lines<'t>,
    problems: Vec<(Option<Range<usize>>, String)>,
    /// Values taken from the environment, never shown (see `env_vars.rs`).
    secrets: Vec<Used>,
    /// Values left as written because a `${NAME}` in them could not be replaced:
    /// what later checks say about them follows from that problem, so is not said.
    muted: Vec<Range<usize>>,
}

impl<'t> Report<'t> {
    pub(super) fn new(file: &'t Path, text: &'t str) -> Self {
        Report {
            file,
            lines: Lines::new(text),
            problems: Vec::new(),
            secrets: Vec::new(),
            muted: Vec::new(),
        }
    }

    /// Keeps these values out of every message.
    pub(super) fn redact(&mut self, used: Vec<Used>) {
        self.secrets.extend(used);
    }

    pub(super) fn at(&mut self, span: Range<usize>, message: impl Into<String>) {
        self.maybe_at(Some(span), message);
    }

    pub(super) fn maybe_at(&mut self, span: Option<Range<usize>>, message: impl Into<String>) {
        if let Some(s) = &span {
            if self.muted.iter().any(|m| m.contains(&s.start)) {
                return;
            }
        }
        self.problems.push((span, message.into()));
    }

    /// Problems reported from now on within `span` are dropped.
    pub(super) fn mute(&mut self, span: Range<usize>) {
        self.muted.push(span);
    }

    pub(super) fn is_empty(&self) -> bool {
        self.problems.is_empty()
    }

    /// The 1-based line of a byte offset, for messages that point at another place.
    pub(super) fn line_of(&self, offset: usize) -> usize {
        self.lines.position(offset).0
    }

    /// The problems as errors, in file order (those without a place first), each
    /// reported once.
    pub(super) fn finish(self) -> ConfigErrors {
        let mut errors: Vec<ConfigError> = self
            .problems
            .into_iter()
            .map(|(span, message)| {
                let (line, column) = span.map_or((0, 0), |s| self.lines.position(s.start));
                ConfigError {
                    file: self.file.to_path_buf(),
                    line,
                    column,
                    message: one_line(&redact(&message, &self.secrets)),
                }
            })
            .collect();
        errors.sort_by_key(|e| (e.line, e.column));
        let mut seen = HashSet::new();
        errors.retain(|e| seen.insert((e.line, e.column, e.message.clone())));
        ConfigErrors(errors)
    }
}

/// A message on one line, so that each error is one `file:line:column: message`
/// line. Some messages come with a diagram (a regex error echoes the pattern and
/// points at it with `^`): its lines are joined, without the markers, which mean
/// nothing once the lines are joined. This is layout of our output, not reading
/// of a message: nothing is taken out of the text.
fn one_line(message: &str) -> String {
    let mut out = String::new();
    for line in message.lines().map(str::trim) {
        if line.is_empty() || line.chars().all(|c| matches!(c, '^' | '~' | '-' | ' ')) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(if out.ends_with(':') { " " } else { "; " });
        }
        out.push_str(line);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diagrams_are_joined_on_one_line() {
        assert_eq!(one_line("plain"), "plain");
        assert_eq!(
            one_line("regex parse error:\n    (a\n    ^\nerror: unclosed group\n"),
            "regex parse error: (a; error: unclosed group"
        );
    }

    #[test]
    fn errors_are_sorted_and_deduplicated() {
        let text = "a = 1\nb = 2\n";
        let mut r = Report::new(Path::new("f.toml"), text);
        r.at(6..7, "second");
        r.at(0..1, "first");
        r.at(0..1, "first");
        r.maybe_at(None, "nowhere");
        assert_eq!(r.line_of(6), 2);
        assert_eq!(
            r.finish().to_string(),
            "f.toml:0:0: nowhere\nf.toml:1:1: first\nf.toml:2:1: second"
        );
    }
}
