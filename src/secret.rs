//! A secret in a config (an API key, a token, a password, a storage key), the one
//! type every such key has:
//!
//! ```toml
//! api_key = "${GPROFILER_API_KEY}"          # a string; `${NAME}` is substituted when the config is read
//! api_key = { env = "GPROFILER_API_KEY" }   # read from the environment when the component starts
//! api_key = { file = "/etc/profpipe/key" }  # read from a file when the component starts
//! ```
//!
//! A value read from a file or the environment is trimmed of a trailing newline
//! (what editors and `echo` add); an unreadable or empty one is a start-up error
//! naming the file or variable, never the value. Neither [`Secret`]'s nor
//! [`SecretValue`]'s `Debug` shows a value, and secrets are never passed on a
//! command line.

use std::fmt;
use std::path::PathBuf;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

/// Where a secret comes from.
#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    /// Written in the config (usually as `${NAME}`).
    Value(SecretValue),
    /// `{ env = "NAME" }`.
    Env(String),
    /// `{ file = "/path" }`.
    File(PathBuf),
}

/// A secret's value. Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(String);

impl SecretValue {
    pub fn new(value: impl Into<String>) -> Self {
        SecretValue(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}

/// The source, not the value.
impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Secret::Value(v) => v.fmt(f),
            Secret::Env(name) => write!(f, "{{ env = {name:?} }}"),
            Secret::File(path) => write!(f, "{{ file = {:?} }}", path.display().to_string()),
        }
    }
}

/// Why a secret could not be read. Names where it was looked for, never its value.
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

impl Secret {
    /// A secret written in the config.
    pub fn value(value: impl Into<String>) -> Self {
        Secret::Value(SecretValue::new(value))
    }

    /// Reads the secret (the environment or the file, now).
    pub fn load(&self) -> Result<SecretValue, SecretError> {
        let (value, place) = match self {
            Secret::Value(v) => (v.0.clone(), "the value written in the config".to_string()),
            Secret::Env(name) => {
                let text = std::env::var(name).map_err(|_| SecretError::Env(name.clone()))?;
                (text, format!("environment variable {name}"))
            }
            Secret::File(path) => {
                let text = std::fs::read_to_string(path).map_err(|error| SecretError::File {
                    path: path.clone(),
                    error,
                })?;
                (text, path.display().to_string())
            }
        };
        let value = value.trim_end_matches(['\n', '\r']);
        if value.is_empty() {
            return Err(SecretError::Empty(place));
        }
        Ok(SecretValue(value.to_string()))
    }

    /// What can be checked without reading it: a value written in the config is
    /// not empty, a variable has a name, a file a path.
    pub fn check(&self) -> Result<(), String> {
        match self {
            Secret::Value(v) if v.0.is_empty() => Err("is empty".into()),
            Secret::Env(n) if n.is_empty() => Err("`env` needs a variable name".into()),
            Secret::File(p) if p.as_os_str().is_empty() => Err("`file` needs a path".into()),
            _ => Ok(()),
        }
    }
}

const EXPECTED: &str =
    "a secret: a string (e.g. \"${NAME}\"), { env = \"NAME\" } or { file = \"/path\" }";

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Secret;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(EXPECTED)
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Secret, E> {
                Ok(Secret::value(s))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Secret, A::Error> {
                let mut found: Option<Secret> = None;
                while let Some(key) = map.next_key::<String>()? {
                    let secret = match key.as_str() {
                        "env" => Secret::Env(map.next_value()?),
                        "file" => Secret::File(map.next_value()?),
                        _ => return Err(de::Error::unknown_field(&key, &["env", "file"])),
                    };
                    if found.is_some() {
                        return Err(de::Error::custom("give one of `env` and `file`, not both"));
                    }
                    found = Some(secret);
                }
                found.ok_or_else(|| de::Error::custom(format!("expected {EXPECTED}")))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct T {
        key: Secret,
    }

    fn parse(s: &str) -> Result<Secret, String> {
        toml::from_str::<T>(s)
            .map(|t| t.key)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn three_spellings_parse_and_none_shows_a_value() {
        let v = parse(r#"key = "hunter2""#).unwrap();
        assert_eq!(v, Secret::value("hunter2"));
        assert_eq!(format!("{v:?}"), "\"***\"");
        assert_eq!(v.load().unwrap().expose(), "hunter2");
        assert_eq!(format!("{:?}", v.load().unwrap()), "\"***\"");
        let e = parse(r#"key = { env = "K" }"#).unwrap();
        assert_eq!(e, Secret::Env("K".into()));
        assert_eq!(format!("{e:?}"), "{ env = \"K\" }");
        let f = parse(r#"key = { file = "/k" }"#).unwrap();
        assert_eq!(f, Secret::File("/k".into()));
    }

    #[test]
    fn wrong_shapes_say_what_a_secret_is() {
        let e = parse("key = 5").unwrap_err();
        assert!(e.contains("expected a secret: a string"), "{e}");
        assert!(!e.contains("Secret"), "{e}");
        let e = parse(r#"key = { env = "A", file = "/b" }"#).unwrap_err();
        assert!(e.contains("not both"), "{e}");
        let e = parse(r#"key = { path = "/b" }"#).unwrap_err();
        assert!(
            e.contains("unknown field `path`, expected `env` or `file`"),
            "{e}"
        );
        let e = parse("key = {}").unwrap_err();
        assert!(e.contains("{ env = \"NAME\" }"), "{e}");
    }

    #[test]
    fn files_and_env_are_read_trimmed_and_empty_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "s3cr3t\n").unwrap();
        assert_eq!(Secret::File(file).load().unwrap().expose(), "s3cr3t");
        std::fs::write(dir.path().join("empty"), "\n").unwrap();
        let e = Secret::File(dir.path().join("empty")).load().unwrap_err();
        assert!(e.to_string().ends_with("is empty"), "{e}");
        let e = Secret::Env("PROFPIPE_SECRET_TEST_UNSET".into())
            .load()
            .unwrap_err();
        assert!(e.to_string().contains("PROFPIPE_SECRET_TEST_UNSET"), "{e}");
        assert_eq!(Secret::value("").check().unwrap_err(), "is empty");
    }
}
