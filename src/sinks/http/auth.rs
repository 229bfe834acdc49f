//! Credentials of the `http` sink: where a secret comes from (a file or an
//! environment variable, never the config text itself, so configs can be shared and
//! secrets never land in argv) and the header it becomes.
//!
//! ```toml
//! auth = { strategy = "bearer", token_file = "/etc/profpipe/token" }
//! auth = { strategy = "basic", user = "123456", password_env = "PYROSCOPE_PASSWORD" }
//! auth = { strategy = "api_key", header = "X-API-Key", token_env = "API_KEY" }
//! api_key = { env = "GPROFILER_API_KEY" }   # target = "gprofiler"
//! ```
//!
//! Secrets are read when the sink starts (and by its healthcheck), trimmed of a
//! trailing newline; an unreadable or empty secret is a start-up error naming the
//! file or variable, never the value. [`Secret`]'s `Debug` prints `***`, and the
//! header values built from secrets are marked sensitive.

use std::fmt;
use std::path::PathBuf;

use base64::Engine as _;
use reqwest::header::{HeaderName, HeaderValue, AUTHORIZATION};
use serde::Deserialize;

use crate::component::FieldError;

/// A secret's value. Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Why a secret could not be read. Names where it was looked for, not its value.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("cannot read secret file {path}: {error}")]
    File {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("environment variable {0} is not set (or not UTF-8)")]
    Env(String),
    #[error("{0} is empty")]
    Empty(String),
    #[error("the secret is not valid in an HTTP header (control characters?)")]
    BadHeader,
}

/// Where one secret comes from: exactly one of a file or an environment variable.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretRef {
    pub file: Option<PathBuf>,
    pub env: Option<String>,
}

impl SecretRef {
    fn validate(&self, path: &[&str], what: (&str, &str)) -> Option<FieldError> {
        match (&self.file, &self.env) {
            (Some(_), None) | (None, Some(_)) => None,
            _ => Some(FieldError::new(
                path,
                format!("give exactly one of `{}` and `{}`", what.0, what.1),
            )),
        }
    }

    pub fn load(&self) -> Result<Secret, SecretError> {
        let (value, place) = match (&self.file, &self.env) {
            (Some(path), _) => {
                let text = std::fs::read_to_string(path).map_err(|error| SecretError::File {
                    path: path.clone(),
                    error,
                })?;
                (text, path.display().to_string())
            }
            (None, Some(var)) => {
                let text = std::env::var(var).map_err(|_| SecretError::Env(var.clone()))?;
                (text, format!("environment variable {var}"))
            }
            (None, None) => return Err(SecretError::Empty("the secret reference".into())),
        };
        // Files written by editors and `echo` end in a newline that is not part of
        // the secret.
        let value = value.trim_end_matches(['\n', '\r']).to_string();
        if value.is_empty() {
            return Err(SecretError::Empty(place));
        }
        Ok(Secret(value))
    }
}

/// `auth = { strategy = ..., ... }`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(tag = "strategy", rename_all = "snake_case", deny_unknown_fields)]
pub enum AuthConfig {
    /// `Authorization: Bearer <token>`.
    Bearer {
        token_file: Option<PathBuf>,
        token_env: Option<String>,
    },
    /// `Authorization: Basic base64(user:password)` (Grafana Cloud: the stack's
    /// user id and an access token).
    Basic {
        user: String,
        password_file: Option<PathBuf>,
        password_env: Option<String>,
    },
    /// `<header>: <token>`.
    ApiKey {
        #[serde(default = "default_api_key_header")]
        header: String,
        token_file: Option<PathBuf>,
        token_env: Option<String>,
    },
}

fn default_api_key_header() -> String {
    "X-API-Key".into()
}

impl AuthConfig {
    fn secret(&self) -> SecretRef {
        let (file, env) = match self {
            AuthConfig::Bearer {
                token_file,
                token_env,
            }
            | AuthConfig::ApiKey {
                token_file,
                token_env,
                ..
            } => (token_file, token_env),
            AuthConfig::Basic {
                password_file,
                password_env,
                ..
            } => (password_file, password_env),
        };
        SecretRef {
            file: file.clone(),
            env: env.clone(),
        }
    }

    pub fn validate(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        let names = match self {
            AuthConfig::Basic { .. } => ("password_file", "password_env"),
            _ => ("token_file", "token_env"),
        };
        errors.extend(self.secret().validate(&["auth"], names));
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
        let secret = self.secret().load()?;
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

/// `api_key = { file | env }` of `target = "gprofiler"`.
pub fn validate_api_key(key: &SecretRef) -> Option<FieldError> {
    key.validate(&["api_key"], ("file", "env"))
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
        let a = parse(r#"auth = { strategy = "bearer", token_env = "T" }"#).unwrap();
        assert!(a.validate().is_empty());
        let a = parse(r#"auth = { strategy = "api_key", token_file = "/x" }"#).unwrap();
        assert!(matches!(a, AuthConfig::ApiKey { ref header, .. } if header == "X-API-Key"));
        let e = parse(r#"auth = { strategy = "bearer", token = "inline" }"#).unwrap_err();
        assert!(e.contains("token"), "{e}");
        let e = parse(r#"auth = { strategy = "oauth" }"#).unwrap_err();
        assert!(e.contains("oauth"), "{e}");
        let a = parse(r#"auth = { strategy = "basic", user = "u" }"#).unwrap();
        assert_eq!(
            a.validate()[0].message,
            "give exactly one of `password_file` and `password_env`"
        );
    }

    #[test]
    fn secrets_come_from_files_and_env_and_never_show() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "s3cr3t\n").unwrap();
        let a = AuthConfig::Bearer {
            token_file: Some(file),
            token_env: None,
        };
        let (name, value) = a.header().unwrap();
        assert_eq!(name, AUTHORIZATION);
        assert_eq!(value.to_str().unwrap(), "Bearer s3cr3t");
        assert!(value.is_sensitive());
        assert!(!format!("{value:?}").contains("s3cr3t"));
        let secret = SecretRef {
            file: Some(dir.path().join("token")),
            env: None,
        }
        .load()
        .unwrap();
        assert_eq!(format!("{secret:?}"), "Secret(***)");

        std::env::set_var("PROFPIPE_AUTH_TEST_PW", "pw");
        let b = AuthConfig::Basic {
            user: "user".into(),
            password_file: None,
            password_env: Some("PROFPIPE_AUTH_TEST_PW".into()),
        };
        assert_eq!(
            b.header().unwrap().1.to_str().unwrap(),
            "Basic dXNlcjpwdw=="
        );

        let missing = AuthConfig::Bearer {
            token_file: None,
            token_env: Some("PROFPIPE_AUTH_TEST_UNSET".into()),
        };
        let e = missing.header().unwrap_err().to_string();
        assert!(e.contains("PROFPIPE_AUTH_TEST_UNSET"), "{e}");
        std::fs::write(dir.path().join("empty"), "\n").unwrap();
        let e = SecretRef {
            file: Some(dir.path().join("empty")),
            env: None,
        }
        .load()
        .unwrap_err();
        assert!(e.to_string().ends_with("is empty"), "{e}");
    }
}
