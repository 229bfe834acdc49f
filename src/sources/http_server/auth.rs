//! The optional bearer token: a [`Secret`](crate::secret::Secret), loaded once at
//! build, compared in constant time, never printed.

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
    #[error("auth.token: {0}")]
    Secret(#[from] crate::secret::SecretError),
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
        let text = config.token.load()?;
        Token::new(text.expose().trim())
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
            token: crate::secret::Secret::File(path.clone()),
        };
        let t = Token::load(&config).unwrap();
        assert!(t.allows(&headers(&[("authorization", "Bearer abc")])));
        std::fs::write(&path, " \n").unwrap();
        assert!(matches!(Token::load(&config), Err(TokenError::Empty)));
        std::fs::write(&path, "").unwrap();
        assert!(Token::load(&config).is_err());
    }
}
