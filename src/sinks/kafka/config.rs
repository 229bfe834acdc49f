//! The `kafka` sink's table, its checks, and the librdkafka configuration it
//! makes. See the [module documentation](super) for the keys.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use rdkafka::ClientConfig;
use serde::Deserialize;

use crate::component::{at_least_one, FieldError};
use crate::sinks::delivering::Delivering;
use crate::sinks::driver::RequestConfig;
use crate::sinks::encoding::Encoding;
use crate::sinks::template::Template;
use crate::units::{ByteSize, DurationStr};

/// Kafka's own batch codec (`compression.type`): the broker and every consumer
/// understand all four, so it is chosen for CPU versus bytes, not compatibility.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KafkaCompression {
    None,
    Gzip,
    Lz4,
    #[default]
    Zstd,
}

impl KafkaCompression {
    pub fn name(self) -> &'static str {
        match self {
            KafkaCompression::None => "none",
            KafkaCompression::Gzip => "gzip",
            KafkaCompression::Lz4 => "lz4",
            KafkaCompression::Zstd => "zstd",
        }
    }
}

/// One value of `librdkafka_options`: librdkafka takes strings, TOML users write
/// numbers and booleans too.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum OptionValue {
    Text(String),
    Integer(i64),
    Bool(bool),
}

impl fmt::Display for OptionValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OptionValue::Text(s) => f.write_str(s),
            OptionValue::Integer(n) => write!(f, "{n}"),
            OptionValue::Bool(b) => write!(f, "{b}"),
        }
    }
}

/// `[sinks.ID] type = "kafka"`: the keys of its own (`request` and the pending
/// windows are the spine's, see `sinks::delivering`).
pub type KafkaSinkConfig = Delivering<KafkaSink>;

/// The kafka sink's own keys.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSink {
    /// Bootstrap brokers, `host:port` each (`bootstrap.servers`): a list, or one
    /// string of them separated by commas (`"k1:9092,k2:9092"`, as librdkafka
    /// writes it).
    #[serde(deserialize_with = "crate::units::deserialize_list")]
    pub brokers: Vec<String>,
    /// Topic every message goes to. It must exist (the healthcheck says so).
    pub topic: String,
    /// Message key, a [`Template`] (default `{host}`): the key picks the
    /// partition, so all parts of a profile land in one partition, in order.
    #[serde(default = "default_key")]
    pub key: String,
    /// "json" (default), "collapsed", "pprof" or "otlp_proto" (OpenTelemetry
    /// profiles, as the Collector's Kafka receiver reads them).
    #[serde(default = "default_encoding")]
    pub encoding: Encoding,
    /// Kafka batch compression: "none", "gzip", "lz4", "zstd" (default).
    #[serde(default)]
    pub compression: KafkaCompression,
    /// Largest message (`message.max.bytes`, key and headers included). A profile
    /// larger than this is split into several messages.
    #[serde(default = "default_message_max_bytes")]
    pub message_max_bytes: ByteSize,
    /// How long librdkafka keeps trying one message (`message.timeout.ms`) before
    /// its delivery report says it failed; the sink then retries the request.
    /// Must be shorter than `request.timeout`.
    #[serde(default = "default_message_timeout")]
    pub message_timeout: DurationStr,
    /// Idempotent producer (`enable.idempotence`): librdkafka's own retries never
    /// duplicate or reorder a message.
    #[serde(default = "default_true")]
    pub idempotence: bool,
    /// The profilers' sampling frequency, for pprof's `period`.
    #[serde(default = "default_sample_rate")]
    pub sample_rate: u32,
    /// Any other librdkafka setting, passed through last (e.g. `security.protocol`,
    /// `sasl.mechanism`, `sasl.username`, `sasl.password`, `linger.ms`). Settings
    /// this table has keys for are refused here, so there is one place for each.
    #[serde(default)]
    pub librdkafka_options: BTreeMap<String, OptionValue>,
}

fn default_key() -> String {
    "{host}".into()
}
fn default_encoding() -> Encoding {
    Encoding::Json
}
fn default_message_max_bytes() -> ByteSize {
    // librdkafka's and the broker's default.
    ByteSize(1_000_000)
}
fn default_message_timeout() -> DurationStr {
    DurationStr::from_secs(25)
}
fn default_true() -> bool {
    true
}
fn default_sample_rate() -> u32 {
    crate::sinks::encoding::DEFAULT_SAMPLE_RATE
}

/// librdkafka settings that have a key of their own in the table.
const OWNED: &[(&str, &str)] = &[
    ("bootstrap.servers", "brokers"),
    ("metadata.broker.list", "brokers"),
    ("compression.type", "compression"),
    ("compression.codec", "compression"),
    ("message.max.bytes", "message_max_bytes"),
    ("message.timeout.ms", "message_timeout"),
    ("delivery.timeout.ms", "message_timeout"),
    ("enable.idempotence", "idempotence"),
];

/// Settings that would break delivery confirmation: every message must have a
/// delivery report, and the sink's buffer bound is the agent's, not a transaction.
const REFUSED: &[(&str, &str)] = &[
    (
        "delivery.report.only.error",
        "the sink counts a message as sent only on its delivery report",
    ),
    ("transactional.id", "the sink does not use transactions"),
];

/// Bytes of `message.max.bytes` kept for the key, the headers and the record's
/// framing; the rest is the payload limit given to the encoder.
pub const HEADROOM: usize = 1024;

/// Smallest `message_max_bytes` that leaves a useful payload after [`HEADROOM`].
const MIN_MESSAGE_MAX_BYTES: u64 = 4096;

/// librdkafka's range of `message.max.bytes`.
const MAX_MESSAGE_MAX_BYTES: u64 = 1_000_000_000;

/// Bound of the producer's local queue (`queue.buffering.max.kbytes`) unless set:
/// librdkafka's default (1 GiB) is far above what the agent's memory cap allows.
/// Requests in flight hold at most `request.concurrency` windows anyway.
pub const DEFAULT_QUEUE_KBYTES: u64 = 64 * 1024;

/// Keys whose values are secrets: never printed.
pub fn is_secret(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    k.contains("password")
        || k.contains("secret")
        || k.contains("oauthbearer.config")
        || k.ends_with(".pem")
        || k.ends_with("key.pem")
        || k == "ssl.key.password"
}

impl fmt::Debug for KafkaSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let options: BTreeMap<&str, String> = self
            .librdkafka_options
            .iter()
            .map(|(k, v)| {
                let shown = if is_secret(k) {
                    "<redacted>".to_string()
                } else {
                    v.to_string()
                };
                (k.as_str(), shown)
            })
            .collect();
        f.debug_struct("KafkaSink")
            .field("brokers", &self.brokers)
            .field("topic", &self.topic)
            .field("key", &self.key)
            .field("encoding", &self.encoding)
            .field("compression", &self.compression)
            .field("message_max_bytes", &self.message_max_bytes)
            .field("message_timeout", &self.message_timeout)
            .field("idempotence", &self.idempotence)
            .field("sample_rate", &self.sample_rate)
            .field("librdkafka_options", &options)
            .finish()
    }
}

impl KafkaSink {
    /// A config with the defaults, for tests and tools.
    pub fn new(brokers: Vec<String>, topic: impl Into<String>) -> Self {
        KafkaSink {
            brokers,
            topic: topic.into(),
            key: default_key(),
            encoding: default_encoding(),
            compression: KafkaCompression::default(),
            message_max_bytes: default_message_max_bytes(),
            message_timeout: default_message_timeout(),
            idempotence: true,
            sample_rate: default_sample_rate(),
            librdkafka_options: BTreeMap::new(),
        }
    }

    /// Checks the sink's own keys (`request` for the timeouts' order).
    pub fn check(&self, request: &RequestConfig) -> Vec<FieldError> {
        let mut errors = Vec::new();
        if self.brokers.is_empty() {
            errors.push(FieldError::new(
                &["brokers"],
                "must list at least one broker, e.g. [\"kafka-1:9092\"]",
            ));
        }
        for (i, b) in self.brokers.iter().enumerate() {
            if let Err(why) = check_broker(b) {
                errors.push(FieldError::new(&["brokers", &i.to_string()], why));
            }
        }
        if let Err(why) = check_topic(&self.topic) {
            errors.push(FieldError::new(&["topic"], why));
        }
        if let Err(why) = Template::parse(&self.key) {
            errors.push(FieldError::new(&["key"], why));
        }
        let mmb = self.message_max_bytes.get();
        if !(MIN_MESSAGE_MAX_BYTES..=MAX_MESSAGE_MAX_BYTES).contains(&mmb) {
            errors.push(FieldError::new(
                &["message_max_bytes"],
                format!(
                    "must be between {MIN_MESSAGE_MAX_BYTES} and {MAX_MESSAGE_MAX_BYTES} bytes, got {mmb}"
                ),
            ));
        }
        let mt = self.message_timeout.get();
        if mt < Duration::from_millis(1) {
            errors.push(FieldError::new(
                &["message_timeout"],
                "must be greater than zero",
            ));
        } else if mt >= request.timeout() {
            // Else the driver would abandon an attempt whose messages librdkafka
            // still holds, and its retry would send them a second time.
            errors.push(FieldError::new(
                &["message_timeout"],
                format!(
                    "{} must be shorter than request.timeout ({})",
                    self.message_timeout, request.timeout
                ),
            ));
        }
        if self.sample_rate == 0 {
            errors.extend(at_least_one(&["sample_rate"], self.sample_rate));
        }
        for key in self.librdkafka_options.keys() {
            let k = key.as_str();
            if let Some((_, ours)) = OWNED.iter().find(|(o, _)| *o == k) {
                errors.push(FieldError::new(
                    &["librdkafka_options", k],
                    format!("set `{ours}` instead (one place for each setting)"),
                ));
            } else if let Some((_, why)) = REFUSED.iter().find(|(o, _)| *o == k) {
                errors.push(FieldError::new(
                    &["librdkafka_options", k],
                    format!("cannot be set: {why}"),
                ));
            }
        }
        errors
    }

    /// The payload limit of one message: `message_max_bytes` less the headroom
    /// for key, headers and framing.
    pub fn payload_limit(&self) -> usize {
        (self.message_max_bytes.get() as usize).saturating_sub(HEADROOM)
    }

    /// The librdkafka configuration: our keys first, then `librdkafka_options`.
    /// Never print it: it holds the secrets.
    pub fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", self.brokers.join(","))
            .set("compression.type", self.compression.name())
            .set(
                "message.max.bytes",
                self.message_max_bytes.get().to_string(),
            )
            .set(
                "message.timeout.ms",
                self.message_timeout.get().as_millis().to_string(),
            )
            .set("enable.idempotence", self.idempotence.to_string())
            .set(
                "queue.buffering.max.kbytes",
                DEFAULT_QUEUE_KBYTES.to_string(),
            );
        for (k, v) in &self.librdkafka_options {
            c.set(k, v.to_string());
        }
        c
    }
}

fn check_broker(b: &str) -> Result<(), String> {
    // `host:port`; librdkafka also takes `proto://host:port`.
    let rest = b.split_once("://").map_or(b, |(_, r)| r);
    match rest.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0) => {
            Ok(())
        }
        _ => Err(format!("`{b}` is not `host:port`")),
    }
}

/// Kafka's topic name rule: 1 to 249 of `[a-zA-Z0-9._-]`, not `.` or `..`.
fn check_topic(t: &str) -> Result<(), String> {
    if t.is_empty() || t.len() > 249 || t == "." || t == ".." {
        return Err(format!(
            "`{t}` is not a Kafka topic name (1 to 249 characters, not `.` or `..`)"
        ));
    }
    if let Some(c) = t
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "`{t}` is not a Kafka topic name: `{c}` is not one of a-z A-Z 0-9 . _ -"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::component::SinkConfig;

    fn parse(text: &str) -> Result<KafkaSinkConfig, Vec<FieldError>> {
        KafkaSinkConfig::parse(toml::from_str(text).unwrap())
    }

    fn paths(errors: &[FieldError]) -> Vec<String> {
        errors.iter().map(|e| e.path.join(".")).collect()
    }

    fn get(c: &ClientConfig, k: &str) -> Option<String> {
        c.get(k).map(str::to_string)
    }

    #[test]
    fn defaults_and_their_librdkafka_settings() {
        let c = parse("brokers = [\"k1:9092\", \"k2:9092\"]\ntopic = \"profiles\"").unwrap();
        assert!(c.validate().is_empty(), "{:?}", c.validate());
        assert_eq!(c.key, "{host}");
        assert_eq!(c.encoding, Encoding::Json);
        assert_eq!(c.compression, KafkaCompression::Zstd);
        assert!(c.idempotence);
        assert_eq!(c.payload_limit(), 1_000_000 - HEADROOM);
        let rd = c.client_config();
        assert_eq!(
            get(&rd, "bootstrap.servers").as_deref(),
            Some("k1:9092,k2:9092")
        );
        assert_eq!(get(&rd, "compression.type").as_deref(), Some("zstd"));
        assert_eq!(get(&rd, "enable.idempotence").as_deref(), Some("true"));
        assert_eq!(get(&rd, "message.max.bytes").as_deref(), Some("1000000"));
        assert_eq!(get(&rd, "message.timeout.ms").as_deref(), Some("25000"));
        assert_eq!(
            get(&rd, "queue.buffering.max.kbytes").as_deref(),
            Some("65536")
        );
    }

    #[test]
    fn options_pass_through_last_and_typed_values_become_text() {
        let c = parse(
            r#"
            brokers = ["k:9092"]
            topic = "p"
            compression = "lz4"
            idempotence = false
            librdkafka_options = { "linger.ms" = 50, "socket.keepalive.enable" = true, "queue.buffering.max.kbytes" = "1024", "client.id" = "agent" }
            "#,
        )
        .unwrap();
        assert!(c.validate().is_empty());
        let rd = c.client_config();
        assert_eq!(get(&rd, "compression.type").as_deref(), Some("lz4"));
        assert_eq!(get(&rd, "enable.idempotence").as_deref(), Some("false"));
        assert_eq!(get(&rd, "linger.ms").as_deref(), Some("50"));
        assert_eq!(get(&rd, "socket.keepalive.enable").as_deref(), Some("true"));
        assert_eq!(
            get(&rd, "queue.buffering.max.kbytes").as_deref(),
            Some("1024")
        );
        assert_eq!(get(&rd, "client.id").as_deref(), Some("agent"));
    }

    #[test]
    fn options_with_a_key_of_their_own_are_refused_with_the_key_to_use() {
        let c = parse(
            r#"
            brokers = ["k:9092"]
            topic = "p"
            librdkafka_options = { "bootstrap.servers" = "other:9092", "compression.type" = "gzip", "delivery.report.only.error" = true }
            "#,
        )
        .unwrap();
        let errors = c.validate();
        assert_eq!(
            paths(&errors),
            [
                "librdkafka_options.bootstrap.servers",
                "librdkafka_options.compression.type",
                "librdkafka_options.delivery.report.only.error"
            ]
        );
        assert!(errors[0].message.contains("`brokers`"), "{errors:?}");
        assert!(errors[1].message.contains("`compression`"), "{errors:?}");
        assert!(errors[2].message.contains("delivery report"), "{errors:?}");
    }

    #[test]
    fn bad_values_are_named() {
        let c = parse(
            r#"
            brokers = ["nohost", "k:0"]
            topic = "a topic"
            key = "{host"
            message_max_bytes = "100"
            message_timeout = "40s"
            "#,
        )
        .unwrap();
        assert_eq!(
            paths(&c.validate()),
            [
                "brokers.0",
                "brokers.1",
                "topic",
                "key",
                "message_max_bytes",
                "message_timeout"
            ]
        );
        let c = parse("brokers = []\ntopic = \"\"").unwrap();
        assert_eq!(paths(&c.validate()), ["brokers", "topic"]);
        let e = parse("brokers = [\"k:1\"]\ntopic = \"t\"\ncompression = \"snappy\"")
            .err()
            .unwrap();
        assert!(e[0].message.contains("snappy"), "{e:?}");
        let e = parse("brokers = [\"k:1\"]\ntopic = \"t\"\ntopics = \"t\"")
            .err()
            .unwrap();
        assert_eq!(paths(&e), ["topics"]);
    }

    #[test]
    fn secrets_never_appear_in_debug() {
        let c = parse(
            r#"
            brokers = ["k:9092"]
            topic = "p"
            librdkafka_options = { "sasl.username" = "agent", "sasl.password" = "hunter2-secret-value", "ssl.key.password" = "kp-value" }
            "#,
        )
        .unwrap();
        let shown = format!("{c:?}");
        assert!(!shown.contains("hunter2-secret-value"), "{shown}");
        assert!(!shown.contains("kp-value"), "{shown}");
        assert!(shown.contains("agent"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
    }
}
