//! `type = "kafka"`: each complete window as one Kafka message (or several, when it
//! is larger than a message may be), through librdkafka.
//!
//! ```toml
//! [sinks.kafka]
//! type = "kafka"
//! inputs = ["fold"]
//! brokers = "kafka-1:9092,kafka-2:9092"   # or a list: ["kafka-1:9092", "kafka-2:9092"]
//! topic = "profiles"
//! key = "{host}"                 # a template over host and labels
//! encoding = "json"              # json | collapsed | pprof | otlp_proto
//! compression = "zstd"           # none | gzip | lz4 | zstd (Kafka's batch codec)
//! message_max_bytes = 1000000
//! librdkafka_options = { "linger.ms" = 20 }
//! ```
//!
//! - **Parts.** A window whose encoding is larger than `message_max_bytes` (less
//!   [`config::HEADROOM`] for key and headers) is split by the shared encoder into
//!   parts, each a complete document of its encoding; every message carries the
//!   headers `profile_id`, `part`, `parts`, `encoding`, `content-type` and
//!   `content-encoding` (and json bodies say the same). All parts have the same key,
//!   so they land in one partition, in order.
//! - **Delivery.** One window is one driver request. A message counts as sent only
//!   when its delivery report (librdkafka's, after the broker's ack) says so; the
//!   window's tokens are resolved `Delivered` once every part is confirmed. A
//!   failed part is retried by the driver (parts already confirmed are not sent
//!   again). librdkafka retries internally for `message_timeout` first.
//! - **Shutdown.** When the input ends, the driver is flushed within the agent's
//!   `shutdown_timeout`, then the producer; what librdkafka still holds after that
//!   is purged when the producer is dropped, and counted
//!   (`component_errors_total{reason="purged_messages"}`).
//! - **Healthcheck.** The topic's metadata is fetched: unreachable brokers, refused
//!   credentials and a missing topic are clear errors at start.

pub mod config;
pub mod service;

use std::time::Duration;

use rdkafka::producer::Producer;

use super::delivering::{DeliveringSink, Refused, RequestBuilder};
use super::driver::RequestConfig;
use super::encoding::{Encoder, Encoding, PartLimits};
use super::pending::CompleteWindow;
use super::template::{Template, Values};
use crate::buffer::BoxFuture;
use crate::component::{parse_table, BuildError, FieldError};
use crate::telemetry::ComponentMetrics;

pub use config::{KafkaCompression, KafkaSink, KafkaSinkConfig};
use service::{KafkaRequest, KafkaService, Message};

/// Bound of the healthcheck's metadata request; the agent's own bound of a
/// healthcheck is 10 s, so this one answers first, with the broker's error.
const METADATA_TIMEOUT: Duration = Duration::from_secs(8);

impl DeliveringSink for KafkaSink {
    type Service = KafkaService;
    type Builder = Messages;

    fn parse(table: toml::Table) -> Result<Self, Vec<FieldError>> {
        parse_table(toml::Value::Table(table))
    }

    fn validate(&self, request: &RequestConfig) -> Vec<FieldError> {
        self.check(request)
    }

    /// The producer (librdkafka starts connecting in the background) and topic.
    fn service(
        &self,
        component: &str,
        _: &RequestConfig,
        _: Option<&ComponentMetrics>,
    ) -> Result<KafkaService, BuildError> {
        KafkaService::new(
            self.client_config(),
            component.to_string(),
            self.topic.clone(),
            self.brokers.join(","),
            METADATA_TIMEOUT,
        )
        .map_err(|e| BuildError(format!("cannot create the Kafka producer: {}", redact(&e))))
    }

    fn builder(&self, _: &ComponentMetrics) -> Result<Messages, BuildError> {
        let key = Template::parse(&self.key).map_err(|e| BuildError(format!("key: {e}")))?;
        Ok(Messages {
            encoder: Encoder {
                encoding: self.encoding,
                sample_rate_hz: self.sample_rate,
            },
            key,
            part_limits: PartLimits {
                max_bytes: self.payload_limit(),
                max_stacks: usize::MAX,
            },
        })
    }

    fn healthcheck_timeout(&self, _: &RequestConfig) -> Duration {
        METADATA_TIMEOUT + Duration::from_secs(1)
    }
}

/// A librdkafka config error names the key and its value: never show the value
/// of a secret.
fn redact(e: &rdkafka::error::KafkaError) -> String {
    match e {
        rdkafka::error::KafkaError::ClientConfig(_, desc, key, _) if config::is_secret(key) => {
            format!("invalid value for `{key}`: {desc}")
        }
        other => other.to_string(),
    }
}

/// How a window becomes messages: the kafka sink's request builder.
pub struct Messages {
    encoder: Encoder,
    key: Template,
    part_limits: PartLimits,
}

impl Messages {
    /// The window's messages, or why it cannot be sent.
    fn of(&self, w: &CompleteWindow) -> Result<Vec<Message>, super::encoding::Oversized> {
        let parts = self.encoder.parts(w, self.part_limits, |b| b)?;
        let encoding = self.encoder.encoding;
        // pprof's bytes are gzip by definition; Kafka's own codec is invisible to
        // consumers.
        let content_encoding = match encoding {
            Encoding::Pprof => "gzip",
            Encoding::Json | Encoding::Collapsed | Encoding::OtlpProto => "identity",
        };
        Ok(parts
            .into_iter()
            .map(|p| {
                let key = self.key.render(&Values {
                    host: &w.host,
                    window: w.window,
                    labels: &w.labels,
                    ext: encoding.extension(),
                    part: p.index,
                    profile_id: &p.profile_id,
                });
                Message {
                    key,
                    headers: vec![
                        ("profile_id", p.profile_id.clone()),
                        ("part", p.index.to_string()),
                        ("parts", p.count.to_string()),
                        ("encoding", encoding.name().to_string()),
                        ("content-type", encoding.content_type().to_string()),
                        ("content-encoding", content_encoding.to_string()),
                    ],
                    payload: p.bytes,
                    timestamp_ms: w.window.end_ms as i64,
                }
            })
            .collect())
    }
}

impl RequestBuilder for Messages {
    type Request = KafkaRequest;

    async fn build(&mut self, window: CompleteWindow) -> Result<Vec<KafkaRequest>, Refused> {
        match self.of(&window) {
            Ok(messages) => Ok(vec![KafkaRequest::new(messages)]),
            // One stack larger than a message: nothing can carry it. Refused for
            // good rather than truncated.
            Err(e) => Err(Refused {
                reason: "stack_too_large",
                message: format!(
                    "{e}; raise message_max_bytes (and the broker's max.message.bytes)"
                ),
            }),
        }
    }
}

/// What librdkafka still holds once the driver is flushed: delivered within what
/// is left of the shutdown timeout, else purged (when the producer is dropped)
/// and counted (`component_errors_total{reason="purged_messages"}`).
pub(super) fn close(
    service: KafkaService,
    left: Duration,
    metrics: &ComponentMetrics,
) -> BoxFuture<'static, ()> {
    let metrics = metrics.clone();
    Box::pin(async move {
        // `flush` blocks its thread while librdkafka sends, and so does dropping the
        // producer (it purges and joins librdkafka's threads): both off the runtime.
        let queued = tokio::task::spawn_blocking(move || {
            let (_, producer) = service.producer();
            drop(service);
            let _ = producer.flush(left);
            let queued = producer.in_flight_count().max(0) as u64;
            drop(producer);
            queued
        })
        .await
        .unwrap_or_default();
        if queued > 0 {
            metrics.errors("purged_messages", queued);
            tracing::warn!(
                component = metrics.id(),
                messages = queued,
                "messages still queued in the Kafka producer at the shutdown deadline are purged"
            );
        }
    })
}

#[cfg(test)]
mod tests;
