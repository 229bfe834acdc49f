//! Key templates: `{host}/{date}/{window_start}.{ext}` and the like, for Kafka
//! message keys and S3 object keys.
//!
//! A template is checked once, when the config is validated: an unknown
//! placeholder or a stray brace is a config error, not a surprise in production.
//! Placeholders:
//!
//! | placeholder | value |
//! |---|---|
//! | `{host}` | the agent's host name |
//! | `{date}` | the window's start, `YYYY-MM-DD` (UTC) |
//! | `{window_start}`, `{window_end}` | `YYYYMMDDTHHMMSS.mmmZ` (UTC) |
//! | `{ext}` | the extension the sink renders with (its encoding's: `json`, `col`, `pb.gz`) |
//! | `{part}` | the part's index (0 when the window fits one message) |
//! | `{profile_id}` | the window's stable profile id |
//! | any other name, e.g. `{service}` | that label's value, `unknown` when unset |
//!
//! `{{` and `}}` are literal braces.

use crate::event::{check_name, LabelSet, Window};
use crate::formats::timestamp::{file_stamp, iso8601};

/// A parsed template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    pieces: Vec<Piece>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece {
    Text(String),
    Host,
    Date,
    WindowStart,
    WindowEnd,
    Ext,
    Part,
    ProfileId,
    Label(String),
}

/// What a template is rendered with.
#[derive(Clone, Copy, Debug)]
pub struct Values<'a> {
    pub host: &'a str,
    pub window: Window,
    pub labels: &'a LabelSet,
    pub ext: &'a str,
    pub part: usize,
    pub profile_id: &'a str,
}

/// The value of an unset label.
pub const UNSET: &str = "unknown";

impl Template {
    /// Parses `text`; the error says what is wrong, for a config error.
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut pieces = Vec::new();
        let mut lit = String::new();
        let mut chars = text.char_indices().peekable();
        while let Some((at, c)) = chars.next() {
            match c {
                '{' if chars.peek().map(|p| p.1) == Some('{') => {
                    chars.next();
                    lit.push('{');
                }
                '}' if chars.peek().map(|p| p.1) == Some('}') => {
                    chars.next();
                    lit.push('}');
                }
                '{' => {
                    let rest = &text[at + 1..];
                    let Some(len) = rest.find('}') else {
                        return Err(format!(
                            "`{{` at byte {at} is not closed (write `{{{{` for a literal brace)"
                        ));
                    };
                    let name = &rest[..len];
                    for _ in 0..=name.chars().count() {
                        chars.next();
                    }
                    if !lit.is_empty() {
                        pieces.push(Piece::Text(std::mem::take(&mut lit)));
                    }
                    pieces.push(Self::placeholder(name)?);
                }
                '}' => {
                    return Err(format!(
                        "`}}` at byte {at} closes nothing (write `}}}}` for a literal brace)"
                    ))
                }
                c => lit.push(c),
            }
        }
        if !lit.is_empty() {
            pieces.push(Piece::Text(lit));
        }
        Ok(Template { pieces })
    }

    fn placeholder(name: &str) -> Result<Piece, String> {
        Ok(match name {
            "host" => Piece::Host,
            "date" => Piece::Date,
            "window_start" => Piece::WindowStart,
            "window_end" => Piece::WindowEnd,
            "ext" => Piece::Ext,
            "part" => Piece::Part,
            "profile_id" => Piece::ProfileId,
            label => {
                check_name(label).map_err(|e| {
                    format!("`{{{label}}}` is neither a known placeholder nor a label name: {e}")
                })?;
                Piece::Label(label.to_string())
            }
        })
    }

    /// True if the template names `{part}`, so the keys of a split window's parts
    /// differ.
    pub fn has_part(&self) -> bool {
        self.pieces.contains(&Piece::Part)
    }

    pub fn render(&self, v: &Values<'_>) -> String {
        let mut out = String::new();
        for p in &self.pieces {
            match p {
                Piece::Text(t) => out.push_str(t),
                Piece::Host => out.push_str(v.host),
                Piece::Date => out.push_str(&iso8601(v.window.start_ms)[..10]),
                Piece::WindowStart => out.push_str(&file_stamp(v.window.start_ms)),
                Piece::WindowEnd => out.push_str(&file_stamp(v.window.end_ms)),
                Piece::Ext => out.push_str(v.ext),
                Piece::Part => out.push_str(&v.part.to_string()),
                Piece::ProfileId => out.push_str(v.profile_id),
                Piece::Label(name) => out.push_str(v.labels.get(name).unwrap_or(UNSET)),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(labels: &LabelSet) -> Values<'_> {
        Values {
            host: "web-1",
            window: Window::new(1_701_621_060_123, 1_701_621_120_123),
            labels,
            ext: "json.gz",
            part: 2,
            profile_id: "00ff",
        }
    }

    #[test]
    fn renders_every_placeholder() {
        let labels = LabelSet::default().with("service", "checkout").unwrap();
        let t = Template::parse(
            "{service}/{date}/{host}/{window_start}-{window_end}.{part}.{ext}/{profile_id}/{env}",
        )
        .unwrap();
        assert_eq!(
            t.render(&values(&labels)),
            "checkout/2023-12-03/web-1/20231203T163100.123Z-20231203T163200.123Z.2.json.gz/00ff/unknown"
        );
        assert!(t.has_part());
    }

    #[test]
    fn braces_escape_and_errors_are_clear() {
        let l = LabelSet::default();
        assert_eq!(
            Template::parse("{{x}}-{host}").unwrap().render(&values(&l)),
            "{x}-web-1"
        );
        assert!(!Template::parse("{host}").unwrap().has_part());
        let e = Template::parse("a/{host").unwrap_err();
        assert!(e.contains("not closed"), "{e}");
        let e = Template::parse("a}b").unwrap_err();
        assert!(e.contains("closes nothing"), "{e}");
        let e = Template::parse("{9lives}").unwrap_err();
        assert!(e.contains("neither a known placeholder"), "{e}");
        let e = Template::parse("{}").unwrap_err();
        assert!(e.contains("neither"), "{e}");
    }

    #[test]
    fn non_ascii_text_around_placeholders_survives() {
        let l = LabelSet::default();
        let t = Template::parse("é/{host}/ü").unwrap();
        assert_eq!(t.render(&values(&l)), "é/web-1/ü");
    }
}
