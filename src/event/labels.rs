//! The open label set of a profile beyond host, source and profiler: `service`,
//! `env`, `region`, `pod`, `namespace`, whatever an operator sets.
//!
//! Bounded: at most [`MAX_LABELS`] labels, names of at most [`MAX_NAME_BYTES`]
//! (`[A-Za-z_][A-Za-z0-9_]*`, what Prometheus and Pyroscope accept), values of at
//! most [`MAX_VALUE_BYTES`]. Cheap to clone (one `Arc`), kept sorted by name so equal
//! sets compare and hash equal whatever order they were built in.

use std::fmt;
use std::sync::Arc;

use serde::Deserialize as _;

/// Most labels in one set.
pub const MAX_LABELS: usize = 32;
/// Longest label name.
pub const MAX_NAME_BYTES: usize = 64;
/// Longest label value.
pub const MAX_VALUE_BYTES: usize = 256;

#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct LabelSet(Arc<[(Arc<str>, Arc<str>)]>);

/// Why a label was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LabelError {
    #[error("label name {0:?} is not a valid name (letters, digits and `_`, not starting with a digit, at most 64 bytes)")]
    BadName(String),
    #[error("value of label `{0}` is longer than {MAX_VALUE_BYTES} bytes")]
    ValueTooLong(String),
    #[error("more than {MAX_LABELS} labels")]
    TooMany,
}

/// Names that are fields of [`super::Labels`] itself, not part of the open set.
pub const RESERVED: [&str; 3] = ["host", "source", "profiler"];

pub fn check_name(name: &str) -> Result<(), LabelError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_BYTES
        && !name.as_bytes()[0].is_ascii_digit()
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(LabelError::BadName(name.to_string()))
    }
}

impl LabelSet {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .binary_search_by(|(k, _)| (**k).cmp(name))
            .ok()
            .map(|i| &*self.0[i].1)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (&**k, &**v))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The set with `name` set to `value` (replacing an earlier value).
    pub fn with(&self, name: &str, value: &str) -> Result<LabelSet, LabelError> {
        check_name(name)?;
        if value.len() > MAX_VALUE_BYTES {
            return Err(LabelError::ValueTooLong(name.to_string()));
        }
        let mut v: Vec<(Arc<str>, Arc<str>)> = self.0.to_vec();
        match v.binary_search_by(|(k, _)| (**k).cmp(name)) {
            Ok(i) => v[i].1 = value.into(),
            Err(i) => {
                if v.len() >= MAX_LABELS {
                    return Err(LabelError::TooMany);
                }
                v.insert(i, (name.into(), value.into()));
            }
        }
        Ok(LabelSet(v.into()))
    }

    /// The set without `name`.
    pub fn without(&self, name: &str) -> LabelSet {
        if self.get(name).is_none() {
            return self.clone();
        }
        LabelSet(
            self.0
                .iter()
                .filter(|(k, _)| &**k != name)
                .cloned()
                .collect(),
        )
    }

    /// `other`'s labels over this set's (other wins on equal names). Labels past the
    /// bound are left out and their number returned.
    pub fn merged(&self, other: &LabelSet) -> (LabelSet, usize) {
        self.overlay(other, true)
    }

    /// `defaults`' labels where this set has none of that name (this set wins).
    /// Defaults past the bound are left out and their number returned.
    pub fn with_defaults(&self, defaults: &LabelSet) -> (LabelSet, usize) {
        self.overlay(defaults, false)
    }

    fn overlay(&self, other: &LabelSet, replace: bool) -> (LabelSet, usize) {
        if self.is_empty() {
            return (other.clone(), 0);
        }
        let mut out = self.clone();
        let mut refused = 0;
        for (k, v) in other.iter() {
            if !replace && out.get(k).is_some() {
                continue;
            }
            match out.with(k, v) {
                Ok(s) => out = s,
                Err(_) => refused += 1,
            }
        }
        (out, refused)
    }

    /// The labels this set and `other` both have with the same value: what a file
    /// that merges profiles of several label sets can say of all of them.
    pub fn common(&self, other: &LabelSet) -> LabelSet {
        if self == other {
            return self.clone();
        }
        LabelSet(
            self.0
                .iter()
                .filter(|(k, v)| other.get(k) == Some(&**v))
                .cloned()
                .collect(),
        )
    }

    /// Bytes held, for memory budgets.
    pub fn size_bytes(&self) -> usize {
        self.0.iter().map(|(k, v)| k.len() + v.len() + 32).sum()
    }
}

/// Reads a table of string labels, `{ service = "checkout", env = "prod" }`, each
/// checked as [`LabelSet::with`] checks it. A refused label is reported as an error
/// of its own value, so a config error points at it (path `labels.NAME`).
impl<'de> serde::Deserialize<'de> for LabelSet {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(SetVisitor)
    }
}

struct SetVisitor;

impl<'de> serde::de::Visitor<'de> for SetVisitor {
    type Value = LabelSet;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a table of labels, e.g. { service = \"checkout\", env = \"prod\" }")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<LabelSet, A::Error> {
        let mut set = LabelSet::default();
        while let Some(name) = map.next_key::<String>()? {
            // The value's seed checks the label, so that an error has the label's
            // name in its path.
            set = map.next_value_seed(Entry {
                set: &set,
                name: &name,
            })?;
        }
        Ok(set)
    }
}

/// One label's value, added to the set read so far.
struct Entry<'a> {
    set: &'a LabelSet,
    name: &'a str,
}

impl<'de> serde::de::DeserializeSeed<'de> for Entry<'_> {
    type Value = LabelSet;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<LabelSet, D::Error> {
        let value = String::deserialize(d)?;
        if RESERVED.contains(&self.name) {
            return Err(serde::de::Error::custom(format!(
                "label `{}` is set by the agent itself; choose another name",
                self.name
            )));
        }
        self.set
            .with(self.name, &value)
            .map_err(serde::de::Error::custom)
    }
}

impl serde::Serialize for LabelSet {
    /// As a JSON/TOML object, names in order.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.iter())
    }
}

impl fmt::Display for LabelSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (k, v)) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{k}={v}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorted_bounded_and_checked() {
        let a = LabelSet::default()
            .with("env", "prod")
            .unwrap()
            .with("service", "web")
            .unwrap();
        let b = LabelSet::default()
            .with("service", "web")
            .unwrap()
            .with("env", "prod")
            .unwrap();
        assert_eq!(a, b);
        assert_eq!(a.get("env"), Some("prod"));
        assert_eq!(a.to_string(), "env=prod,service=web");
        assert_eq!(a.with("env", "dev").unwrap().get("env"), Some("dev"));
        assert_eq!(a.without("env").len(), 1);
        assert!(matches!(a.with("1x", "v"), Err(LabelError::BadName(_))));
        assert!(matches!(a.with("a-b", "v"), Err(LabelError::BadName(_))));
        assert!(matches!(
            a.with("x", &"v".repeat(300)),
            Err(LabelError::ValueTooLong(_))
        ));
        let mut full = LabelSet::default();
        for i in 0..MAX_LABELS {
            full = full.with(&format!("l{i}"), "v").unwrap();
        }
        assert_eq!(full.with("one_more", "v"), Err(LabelError::TooMany));
        assert_eq!(full.merged(&a).1, 2);
        let c = a.with("env", "dev").unwrap().with("pod", "p").unwrap();
        assert_eq!(a.common(&c).to_string(), "service=web");
        assert_eq!(a.common(&a), a);
    }

    #[test]
    fn reads_a_table_checking_each_label() {
        let set: LabelSet =
            toml::from_str::<toml::Table>("l = { service = \"web\", env = \"prod\" }").unwrap()
                ["l"]
                .clone()
                .try_into()
                .unwrap();
        assert_eq!(set.to_string(), "env=prod,service=web");
        assert_eq!(
            serde_json::to_string(&set).unwrap(),
            r#"{"env":"prod","service":"web"}"#
        );
        let bad = |text: &str| {
            toml::from_str::<toml::Table>(text).unwrap()["l"]
                .clone()
                .try_into::<LabelSet>()
                .unwrap_err()
                .to_string()
        };
        assert!(bad("l = { bad-name = \"x\" }").contains("not a valid name"));
        assert!(bad("l = { n = 1 }").contains("invalid type"));
        assert!(bad("l = [\"x\"]").contains("table of labels"));
        assert!(bad("l = { host = \"x\" }").contains("set by the agent"));
    }
}
