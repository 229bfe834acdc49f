//! Credentials of the `http` sink: the header a secret becomes.
//!
//! ```toml
//! auth = { strategy = "bearer", token = { file = "/etc/profpipe/token" } }
//! auth = { strategy = "basic", user = "123456", password = "${PYROSCOPE_PASSWORD}" }
//! auth = { strategy = "api_key", header = "X-API-Key", token = { env = "API_KEY" } }
//! ```
//!
//! Each secret is a [`Secret`] (a string, `{ env = ... }` or `{ file = ... }`),
//! read when the sink starts (and by its healthcheck); the header values built
//! from secrets are marked sensitive, so they are never printed.

use base64::Engine as _;
use reqwest::header::{HeaderName, HeaderValue, AUTHORIZATION};
use serde::Deserialize;

use crate::component::FieldError;
use crate::secret::{Secret, SecretError};

/// `auth = { strategy = ..., ... }`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(tag = "strategy", rename_all = "snake_case", deny_unknown_fields)]
pub enum AuthConfig {
    /// `Authorization: Bearer <token>`.
    Bearer { token: Secret },
    /// `Authorization: Basic base64(user:password)` (Grafana Cloud: the stack's
    /// user id and an access token).
    Basic { user: String, password: Secret },
    /// `<header>: <token>`.
    ApiKey {
        #[serde(default = "default_api_key_header")]
        header: String,
        token: Secret,
    },
}

fn default_api_key_header() -> String {
    "X-API-Key".into()
}

impl AuthConfig {
    fn secret(&self) -> (&'static str, &Secret) {
        match self {
            AuthConfig::Bearer { token } | AuthConfig::ApiKey { token, .. } => ("token", token),
            AuthConfig::Basic { password, .. } => ("password", password),
        }
    }

    pub fn validate(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        let (field, secret) = self.secret();
        if let Err(e) = secret.check() {
            errors.push(FieldError::new(&["auth", field], e));
        }
        match self {
            AuthConfig::Basic { user, .. } if user.is_empty() || user.contains(':') => errors.push(
                FieldError::new(&["auth", "user"], "must be non-empty and hold no `:`"),
            ),
            AuthConfig::ApiKey { header, .. } if HeaderName::try_from(header.as_str()).is_err() => {
                errors.push(FieldError::new(
                    &["auth", "header"],
                    format!("{header:?} is not a valid HTTP header name"),
                ))
            }
            _ => {}
        }
        errors
    }

    /// Reads the secret and builds the header it is sent as.
    pub fn header(&self) -> Result<(HeaderName, HeaderValue), SecretError> {
        let secret = self.secret().1.load()?;
        let (name, value) = match self {
            AuthConfig::Bearer { .. } => (AUTHORIZATION, format!("Bearer {}", secret.expose())),
            AuthConfig::Basic { user, .. } => {
                let pair = format!("{user}:{}", secret.expose());
                let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
                (AUTHORIZATION, format!("Basic {encoded}"))
            }
            AuthConfig::ApiKey { header, .. } => (
                HeaderName::try_from(header.as_str()).map_err(|_| SecretError::BadHeader)?,
                secret.expose().to_string(),
            ),
        };
        Ok((name, sensitive(&value)?))
    }
}

/// A header value holding a secret: marked sensitive so it is never printed.
pub fn sensitive(value: &str) -> Result<HeaderValue, SecretError> {
    let mut v = HeaderValue::try_from(value).map_err(|_| SecretError::BadHeader)?;
    v.set_sensitive(true);
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct T {
        auth: AuthConfig,
    }

    fn parse(s: &str) -> Result<AuthConfig, String> {
        toml::from_str::<T>(s)
            .map(|t| t.auth)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn strategies_parse_and_unknown_fields_are_refused() {
        let a = parse(r#"auth = { strategy = "bearer", token = { env = "T" } }"#).unwrap();
        assert!(a.validate().is_empty());
        let a = parse(r#"auth = { strategy = "api_key", token = { file = "/x" } }"#).unwrap();
        assert!(matches!(a, AuthConfig::ApiKey { ref header, .. } if header == "X-API-Key"));
        let a = parse(r#"auth = { strategy = "bearer", token = "inline" }"#).unwrap();
        assert!(!format!("{a:?}").contains("inline"), "{a:?}");
        let e = parse(r#"auth = { strategy = "bearer", token_file = "/x" }"#).unwrap_err();
        assert!(e.contains("token_file"), "{e}");
        let e = parse(r#"auth = { strategy = "oauth" }"#).unwrap_err();
        assert!(e.contains("oauth"), "{e}");
        let a = parse(r#"auth = { strategy = "basic", user = "u", password = "" }"#).unwrap();
        assert_eq!(a.validate()[0].path, ["auth", "password"]);
    }

    #[test]
    fn secrets_become_sensitive_headers() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "s3cr3t\n").unwrap();
        let a = AuthConfig::Bearer {
            token: Secret::File(file),
        };
        let (name, value) = a.header().unwrap();
        assert_eq!(name, AUTHORIZATION);
        assert_eq!(value.to_str().unwrap(), "Bearer s3cr3t");
        assert!(value.is_sensitive());
        assert!(!format!("{value:?}").contains("s3cr3t"));

        std::env::set_var("PROFPIPE_AUTH_TEST_PW", "pw");
        let b = AuthConfig::Basic {
            user: "user".into(),
            password: Secret::Env("PROFPIPE_AUTH_TEST_PW".into()),
        };
        assert_eq!(
            b.header().unwrap().1.to_str().unwrap(),
            "Basic dXNlcjpwdw=="
        );
        let missing = AuthConfig::Bearer {
            token: Secret::Env("PROFPIPE_AUTH_TEST_UNSET".into()),
        };
        let e = missing.header().unwrap_err().to_string();
        assert!(e.contains("PROFPIPE_AUTH_TEST_UNSET"), "{e}");
    }
}
