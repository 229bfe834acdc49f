//! What of a server's answer goes into one log line: a short, single-line excerpt.
//!
//! A failed request is logged with the status and this excerpt, never the whole
//! body: a proxy's HTML error page is a dozen lines of markup that say nothing
//! the status does not, and a log record must stay one line. So:
//!
//! - text (JSON, plain text, XML): whitespace runs collapsed to one space, cut to
//!   [`MAX_EXCERPT`] characters with `…`;
//! - HTML: only its `<title>` (`502 Bad Gateway`), the one line a page has that
//!   says what it is; none if it has no title;
//! - empty or binary (not UTF-8, or control characters): none.

/// Most characters of an excerpt.
pub const MAX_EXCERPT: usize = 120;

/// How much of a body is looked at: an excerpt comes from its start, and a
/// `<title>` is in the head.
const LOOK_AT: usize = 4096;

/// The excerpt of `body`, or `None` when it has nothing worth a log line.
pub fn excerpt(body: &[u8]) -> Option<String> {
    let head = &body[..body.len().min(LOOK_AT)];
    // A cut in the middle of a character is not a reason to call it binary.
    let text = match std::str::from_utf8(head) {
        Ok(t) => t,
        Err(e) if e.error_len().is_none() => head_str(head, e.valid_up_to()),
        Err(_) => return None,
    };
    let text = text.trim_start_matches('\u{feff}').trim_start();
    if is_html(text) {
        return title(text).and_then(|t| collapse(&t));
    }
    if text.chars().any(|c| c.is_control() && !c.is_whitespace()) {
        return None;
    }
    collapse(text)
}

fn head_str(head: &[u8], valid: usize) -> &str {
    std::str::from_utf8(&head[..valid]).unwrap_or_default()
}

fn is_html(text: &str) -> bool {
    let start: String = text
        .chars()
        .take(15)
        .collect::<String>()
        .to_ascii_lowercase();
    start.starts_with("<!doctype html") || start.starts_with("<html") || start.starts_with("<head")
}

/// The text of the first `<title>...</title>`.
fn title(text: &str) -> Option<String> {
    let lower = text.to_ascii_lowercase();
    let open = lower.find("<title")?;
    let start = open + lower[open..].find('>')? + 1;
    let end = start + lower[start..].find("</title")?;
    Some(text[start..end].to_string())
}

/// Whitespace runs as one space, at most [`MAX_EXCERPT`] characters; `None` if
/// nothing is left.
fn collapse(text: &str) -> Option<String> {
    let mut out = String::new();
    let mut count = 0;
    for word in text.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
            count += 1;
        }
        for c in word.chars() {
            if count >= MAX_EXCERPT {
                out.push('…');
                return Some(out);
            }
            out.push(c);
            count += 1;
        }
    }
    (!out.is_empty()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_one_short_line() {
        assert_eq!(
            excerpt(b"  {\"error\":\n  \"bad key\"}\n").as_deref(),
            Some("{\"error\": \"bad key\"}")
        );
        let long = "word ".repeat(100);
        let e = excerpt(long.as_bytes()).unwrap();
        assert_eq!(e.chars().count(), MAX_EXCERPT + 1);
        assert!(e.ends_with('…'), "{e}");
        assert_eq!(excerpt(b""), None);
        assert_eq!(excerpt(b" \n "), None);
    }

    #[test]
    fn html_gives_its_title_and_binary_nothing() {
        let page = b"<!DOCTYPE html>\n<html>\n<head>\n<title>502 Bad Gateway</title>\n</head>\n<body>\n<center><h1>502 Bad Gateway</h1></center>\n<hr><center>nginx</center>\n</body>\n</html>\n";
        assert_eq!(excerpt(page).as_deref(), Some("502 Bad Gateway"));
        assert_eq!(excerpt(b"<html><body>oops</body></html>"), None);
        assert_eq!(excerpt(&[0x1f, 0x8b, 0x08, 0, 0, 0]), None);
        assert_eq!(excerpt(&[0xff, 0xfe, 0x00]), None);
    }
}
