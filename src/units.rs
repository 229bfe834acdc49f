//! Value types that configs write as strings: durations ("60s"), sizes ("64MiB")
//! and regular expressions. Each parses during deserialization so a bad value is
//! reported with the field's place, like any other config error.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer};

/// A duration written as a string: "500ms", "60s", "5m", "1h 30m".
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DurationStr(pub Duration);

impl DurationStr {
    pub fn from_secs(s: u64) -> Self {
        DurationStr(Duration::from_secs(s))
    }
    pub fn get(self) -> Duration {
        self.0
    }
}

impl FromStr for DurationStr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        humantime::parse_duration(s.trim())
            .map(DurationStr)
            .map_err(|e| {
                format!("invalid duration {s:?}: {e} (write e.g. \"500ms\", \"60s\", \"5m\")")
            })
    }
}

impl fmt::Display for DurationStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl<'de> Deserialize<'de> for DurationStr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = DurationStr;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as \"500ms\", \"60s\" or \"5m\"")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<DurationStr, E> {
                s.parse().map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<DurationStr, E> {
                Err(E::custom(format!(
                    "a duration needs a unit: write \"{n}s\" or \"{n}ms\" (a quoted string)"
                )))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<DurationStr, E> {
                self.visit_i64(n as i64)
            }
        }
        d.deserialize_any(V)
    }
}

/// A size in bytes written as a string: "64MiB", "1 GiB", "500KB", "4096".
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteSize(pub u64);

impl ByteSize {
    pub const fn mib(n: u64) -> Self {
        ByteSize(n * 1024 * 1024)
    }
    pub fn get(self) -> u64 {
        self.0
    }
}

impl FromStr for ByteSize {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        s.trim()
            .parse::<bytesize::ByteSize>()
            .map(|b| ByteSize(b.as_u64()))
            .map_err(|e| {
                format!("invalid size {s:?}: {e} (write e.g. \"64MiB\", \"1GiB\", \"500KB\")")
            })
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", bytesize::ByteSize(self.0).display().iec())
    }
}

/// A string with a unit, or a plain number of bytes.
impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size such as \"64MiB\", \"1GiB\" or a number of bytes")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<ByteSize, E> {
                s.parse().map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(n))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<ByteSize, E> {
                u64::try_from(n)
                    .map(ByteSize)
                    .map_err(|_| E::custom(format!("a size cannot be negative, got {n}")))
            }
        }
        d.deserialize_any(V)
    }
}

/// A list of strings written as a list or as one string of items separated by
/// commas (`brokers = "k1:9092,k2:9092"`, as librdkafka's `bootstrap.servers`).
/// Items are trimmed; empty ones (a trailing comma) are left out.
pub fn deserialize_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Vec<String>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a list of strings, or one string of items separated by commas")
        }
        fn visit_str<E: de::Error>(self, s: &str) -> Result<Vec<String>, E> {
            Ok(s.split(',')
                .map(str::trim)
                .filter(|i| !i.is_empty())
                .map(str::to_string)
                .collect())
        }
        fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<String>, A::Error> {
            let mut out = Vec::new();
            while let Some(item) = seq.next_element::<String>()? {
                out.push(item);
            }
            Ok(out)
        }
    }
    d.deserialize_any(V)
}

/// A regular expression, compiled when the config is read.
#[derive(Clone, Debug)]
pub struct RegexStr(pub regex::Regex);

impl RegexStr {
    pub fn as_regex(&self) -> &regex::Regex {
        &self.0
    }
}

impl PartialEq for RegexStr {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

impl<'de> Deserialize<'de> for RegexStr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        regex::Regex::new(&s).map(RegexStr).map_err(|e| {
            // regex's syntax errors draw a multi-line diagram; keep its last line,
            // which says what is wrong, so the error fits on one config-error line.
            let text = e.to_string();
            let what = text
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("");
            let what = what.trim().trim_start_matches("error: ");
            serde::de::Error::custom(format!("invalid regex {s:?}: {what}"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_durations_and_sizes() {
        assert_eq!(
            "60s".parse::<DurationStr>().unwrap().get(),
            Duration::from_secs(60)
        );
        assert_eq!(
            "500ms".parse::<DurationStr>().unwrap().get(),
            Duration::from_millis(500)
        );
        assert!("sixty".parse::<DurationStr>().is_err());
        assert_eq!("64MiB".parse::<ByteSize>().unwrap().get(), 64 * 1024 * 1024);
        assert_eq!("1 KiB".parse::<ByteSize>().unwrap().get(), 1024);
        assert!("lots".parse::<ByteSize>().is_err());
    }
}
