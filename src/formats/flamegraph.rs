//! Interactive SVG flame graphs of a set of stacks, drawn by `inferno`.
//!
//! Output is deterministic: stacks are merged by frames (containers and pids are not
//! drawn) and sorted, and colours are derived from frame names, not chosen at random.

use std::collections::BTreeMap;
use std::io::{self, Write};

use crate::event::Stack;

/// Title used when none is configured.
pub const DEFAULT_TITLE: &str = "profpipe CPU profile";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlameGraphOptions {
    /// Shown at the top of the graph.
    pub title: String,
    /// Shown under the title (e.g. the window), if any.
    pub subtitle: Option<String>,
    /// What a count is, in tooltips ("samples").
    pub count_name: String,
}

impl Default for FlameGraphOptions {
    fn default() -> Self {
        FlameGraphOptions {
            title: DEFAULT_TITLE.to_string(),
            subtitle: None,
            count_name: "samples".to_string(),
        }
    }
}

/// Writes an SVG flame graph of `stacks`. With no samples at all, writes a small
/// SVG that says so (a window can be empty; its file should still be valid).
pub fn write_svg<'a, W: Write>(
    writer: W,
    stacks: impl IntoIterator<Item = &'a Stack>,
    opts: &FlameGraphOptions,
) -> io::Result<()> {
    // Merge by frames and sort: inferno wants sorted lines, and merged input makes
    // the output independent of the order and split of the stacks.
    let mut merged: BTreeMap<&str, u64> = BTreeMap::new();
    for s in stacks {
        if s.count > 0 && !s.frames.is_empty() {
            let c = merged.entry(&s.frames).or_insert(0);
            *c = c.saturating_add(s.count);
        }
    }
    if merged.is_empty() {
        return write_empty_svg(writer, opts);
    }
    let lines: Vec<String> = merged
        .iter()
        .map(|(frames, count)| {
            let mut line = String::with_capacity(frames.len() + 21);
            // Newlines would split a line; inferno trims each line itself.
            if frames.contains(['\n', '\r']) {
                line.push_str(&frames.replace(['\n', '\r'], " "));
            } else {
                line.push_str(frames);
            }
            line.push(' ');
            line.push_str(&count.to_string());
            line
        })
        .collect();
    let mut options = inferno::flamegraph::Options::default();
    options.title = opts.title.clone();
    options.subtitle = opts.subtitle.clone();
    options.count_name = opts.count_name.clone();
    options.deterministic = true;
    inferno::flamegraph::from_lines(&mut options, lines.iter().map(String::as_str), writer)
}

fn write_empty_svg<W: Write>(mut w: W, opts: &FlameGraphOptions) -> io::Result<()> {
    write!(
        w,
        concat!(
            r#"<?xml version="1.0" standalone="no"?>"#,
            "\n",
            r#"<svg version="1.1" width="1200" height="90" viewBox="0 0 1200 90" "#,
            r#"xmlns="http://www.w3.org/2000/svg">"#,
            "\n",
            r#"<text x="600" y="30" text-anchor="middle" font-size="17">{}</text>"#,
            "\n",
            r#"<text x="600" y="60" text-anchor="middle" font-size="12">no samples</text>"#,
            "\n</svg>\n"
        ),
        xml_escape(&opts.title)
    )
}

fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if (c as u32) < 0x20 && c != '\t' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(stacks: &[Stack], opts: &FlameGraphOptions) -> String {
        let mut out = Vec::new();
        write_svg(&mut out, stacks, opts).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn renders_an_interactive_svg() {
        let stacks = vec![
            Stack::new("bash;main;read_[k]", 30),
            Stack::new("python3;<module> (x.py:1)_[p];f (x.py:2)_[p]", 12),
        ];
        let opts = FlameGraphOptions {
            title: "host <1> & co".into(),
            ..Default::default()
        };
        let svg = render(&stacks, &opts);
        assert!(svg.starts_with("<?xml"), "{}", &svg[..100]);
        assert!(svg.contains("<svg"));
        assert!(svg.contains("host &lt;1&gt; &amp; co"));
        // inferno draws `_[k]` frames in kernel colours and strips the suffix.
        assert!(
            svg.contains("<title>read (30 samples, 71.43%)</title>"),
            "{svg}"
        );
        assert!(svg.contains("f (x.py:2)_[p] (12 samples"));
        assert!(svg.contains("<script"));
        assert!(svg.trim_end().ends_with("</svg>"));
    }

    #[test]
    fn output_is_deterministic_and_order_independent() {
        let a = vec![
            Stack::new("a;b", 3),
            Stack::new("a;c", 5),
            Stack::new("a;b", 2),
            Stack::new("z", 1),
        ];
        let mut b = a.clone();
        b.reverse();
        let opts = FlameGraphOptions::default();
        let first = render(&a, &opts);
        assert_eq!(first, render(&a, &opts));
        assert_eq!(first, render(&b, &opts));
        let merged = vec![
            Stack::new("a;b", 5),
            Stack::new("a;c", 5),
            Stack::new("z", 1),
        ];
        assert_eq!(first, render(&merged, &opts));
    }

    #[test]
    fn empty_input_is_still_valid_svg() {
        let svg = render(&[Stack::new("a", 0)], &FlameGraphOptions::default());
        assert!(svg.starts_with("<?xml"));
        assert!(svg.contains("<svg"));
        assert!(svg.contains("no samples"));
    }
}
