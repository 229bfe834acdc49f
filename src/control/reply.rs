//! Reading a reply from a server we do not trust: at most `max` bytes, read chunk by
//! chunk and cut off past it (a 50 MB body costs at most `max` of memory), and JSON
//! at most [`MAX_DEPTH`] levels deep, checked on the bytes before serde sees them.

use super::error::ExchangeError;

/// Deepest nesting of arrays and objects a reply may have. Performance Studio's
/// replies nest 4 levels (`profiler_configs.perf.events`).
pub const MAX_DEPTH: usize = 32;

/// The body of `response`, refused past `max` bytes (told by `Content-Length`
/// before reading, or found while reading).
pub async fn read_capped(
    mut response: reqwest::Response,
    max: u64,
) -> Result<Vec<u8>, ExchangeError> {
    if response.content_length().is_some_and(|n| n > max) {
        return Err(ExchangeError::TooLarge(max));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| ExchangeError::Transport(e.to_string()))?
    {
        if body.len() as u64 + chunk.len() as u64 > max {
            return Err(ExchangeError::TooLarge(max));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Fails if `json` nests arrays/objects deeper than `max`. A scan of the bytes
/// (brackets inside strings do not count), so a hostile `[[[[...` is refused
/// without recursion. Malformed JSON passes here and fails in serde.
pub fn check_depth(json: &[u8], max: usize) -> Result<(), ExchangeError> {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in json {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return Err(ExchangeError::TooDeep(max));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// `json` as a `T`, after the depth check.
pub fn parse<T: serde::de::DeserializeOwned>(json: &[u8]) -> Result<T, ExchangeError> {
    check_depth(json, MAX_DEPTH)?;
    serde_json::from_slice(json).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => ExchangeError::BadShape(e.to_string()),
        _ => ExchangeError::BadJson(e.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_counts_brackets_outside_strings_only() {
        assert!(check_depth(br#"{"a":[{"b":"[[[[["}]}"#, 3).is_ok());
        assert!(check_depth(br#"{"a":[{"b":[1]}]}"#, 3).is_err());
        let deep = "[".repeat(100_000);
        assert!(matches!(
            check_depth(deep.as_bytes(), MAX_DEPTH),
            Err(ExchangeError::TooDeep(_))
        ));
        assert!(check_depth(br#"{"a":"\"[[[[\\"}"#, 1).is_ok());
    }

    #[test]
    fn garbage_and_wrong_shapes_are_told_apart() {
        #[derive(Debug, serde::Deserialize)]
        struct R {
            #[allow(dead_code)]
            a: u32,
        }
        assert!(matches!(
            parse::<R>(b"not json"),
            Err(ExchangeError::BadJson(_))
        ));
        assert!(matches!(
            parse::<R>(br#"{"a":"x"}"#),
            Err(ExchangeError::BadShape(_))
        ));
        assert!(parse::<R>(br#"{"a":1}"#).is_ok());
    }
}
