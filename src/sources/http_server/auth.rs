//! The optional bearer token: loaded once at build from a file or an environment
//! variable (never from the config file or argv), compared in constant time, never
//! printed.

use std::fmt;

use hyper::HeaderMap;

use super::config::AuthConfig;

/// gProfiler's agent cannot send `Authorization`; it sends its API key here.
pub const GPROFILER_API_KEY: &str = "gprofiler-api-key";

/// The token pushes must carry.
#[derive(Clone)]
pub struct Token(Box<[u8]>);

/// Why the token could not be loaded (a build error).
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("cannot read token_file {path}: {error}")]
    File { path: String, error: std::io::Error },
    #[error("environment variable {0} (token_env) is not set or not UTF-8")]
    Env(String),
    #[error("the token is empty")]
    Empty,
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

impl Token {
    pub fn load(config: &AuthConfig) -> Result<Token, TokenError> {
        let text = match (&config.token_file, &config.token_env) {
            (Some(path), _) => std::fs::read_to_string(path).map_err(|error| TokenError::File {
                path: path.display().to_string(),
                error,
            })?,
            (None, Some(var)) => std::env::var(var).map_err(|_| TokenError::Env(var.clone()))?,
            (None, None) => return Err(TokenError::Empty),
        };
        Token::new(text.trim())
    }

    pub fn new(text: &str) -> Result<Token, TokenError> {
        if text.is_empty() {
            return Err(TokenError::Empty);
        }
        Ok(Token(text.as_bytes().into()))
    }

    /// True when the request carries the token, as `Authorization: Bearer <token>`
    /// or in `GPROFILER-API-KEY`.
    pub fn allows(&self, headers: &HeaderMap) -> bool {
        let bearer = headers
            .get(hyper::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, rest) = v.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
            });
        let api_key = headers.get(GPROFILER_API_KEY).and_then(|v| v.to_str().ok());
        [bearer, api_key]
            .into_iter()
            .flatten()
            .any(|given| self.matches(given.as_bytes()))
    }

    /// Compares without an early exit, so timing does not tell how much matched.
    fn matches(&self, given: &[u8]) -> bool {
        if given.len() != self.0.len() {
            return false;
        }
        self.0
            .iter()
            .zip(given)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn bearer_or_api_key_and_nothing_else() {
        let t = Token::new("s3cret").unwrap();
        assert!(t.allows(&headers(&[("authorization", "Bearer s3cret")])));
        assert!(t.allows(&headers(&[("authorization", "bearer  s3cret")])));
        assert!(t.allows(&headers(&[("gprofiler-api-key", "s3cret")])));
        assert!(!t.allows(&headers(&[("authorization", "Bearer s3cre")])));
        assert!(!t.allows(&headers(&[("authorization", "Basic s3cret")])));
        assert!(!t.allows(&headers(&[])));
        assert_eq!(format!("{t:?}"), "Token(<redacted>)");
    }

    #[test]
    fn loads_from_a_file_trimmed_and_refuses_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "abc\n").unwrap();
        let config = AuthConfig {
            token_file: Some(path.clone()),
            token_env: None,
        };
        let t = Token::load(&config).unwrap();
        assert!(t.allows(&headers(&[("authorization", "Bearer abc")])));
        std::fs::write(&path, " \n").unwrap();
        assert!(matches!(Token::load(&config), Err(TokenError::Empty)));
    }
}
