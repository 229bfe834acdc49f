//! `type = "kafka"`: each complete window as one Kafka message (or several, when it
//! is larger than a message may be), through librdkafka.
//!
//! ```toml
//! [sinks.kafka]
//! type = "kafka"
//! inputs = ["fold"]
//! brokers = ["kafka-1:9092", "kafka-2:9092"]
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

use super::driver::{self, Driver};
use super::encoding::{Encoder, Encoding, PartLimits};
use super::pending::{run_windows, CompleteWindow, PendingLimits, WindowWriter};
use super::template::{Template, Values};
use crate::component::{BuildError, FieldError, SinkConfig, SinkContext, Task};
use crate::event::{EventFinalizers, EventStatus};
use crate::telemetry::ComponentMetrics;

pub use config::{KafkaCompression, KafkaSinkConfig};
use service::{KafkaRequest, KafkaService, Message};

/// Bound of the healthcheck's metadata request; the agent's own bound of a
/// healthcheck is 10 s, so this one answers first, with the broker's error.
const METADATA_TIMEOUT: Duration = Duration::from_secs(8);

impl SinkConfig for KafkaSinkConfig {
    fn memory_bound(&self) -> u64 {
        self.max_pending_bytes.get()
    }

    fn inputs(&self) -> crate::event::DataTypes {
        crate::event::DataTypes::PROFILES_AND_DIAGNOSTICS
    }

    fn validate(&self) -> Vec<FieldError> {
        self.check()
    }

    fn build(&self, cx: SinkContext) -> Result<Task, BuildError> {
        let key = Template::parse(&self.key).map_err(|e| BuildError(format!("key: {e}")))?;
        let SinkContext { cx, input } = cx;
        let service = self.service(cx.id.to_string())?;
        let limits = PendingLimits {
            max_stacks: self.max_pending_stacks,
            max_bytes: self.max_pending_bytes.get(),
        };
        let writer = KafkaWriter {
            driver: Driver::new(service, &self.request, cx.metrics.clone()),
            messages: Messages {
                encoder: Encoder {
                    encoding: self.encoding,
                    sample_rate_hz: self.sample_rate,
                },
                key,
                part_limits: PartLimits {
                    max_bytes: self.payload_limit(),
                    max_stacks: usize::MAX,
                },
            },
            metrics: cx.metrics.clone(),
        };
        Ok(Box::pin(async move {
            let mut writer = writer;
            run_windows(input, &cx, limits, &mut writer).await;
            shutdown(writer, &cx.metrics, cx.shutdown_timeout).await;
            Ok(())
        }))
    }

    fn healthcheck(
        &self,
    ) -> Option<crate::buffer::BoxFuture<'static, Result<(), crate::component::Unhealthy>>> {
        let service = self.service("healthcheck".into());
        Some(Box::pin(async move {
            let service = service.map_err(|e| e.0)?;
            driver::healthcheck(&service, METADATA_TIMEOUT + Duration::from_secs(1))
                .await
                .map_err(|e| {
                    let retryable = e.is_retryable();
                    let (driver::DeliveryError::Retryable { message, .. }
                    | driver::DeliveryError::Permanent { message, .. }) = e;
                    crate::component::Unhealthy { message, retryable }
                })
        }))
    }
}

impl KafkaSinkConfig {
    /// The producer (librdkafka starts connecting in the background) and topic.
    fn service(&self, component: String) -> Result<KafkaService, BuildError> {
        KafkaService::new(
            self.client_config(),
            component,
            self.topic.clone(),
            self.brokers.join(","),
            METADATA_TIMEOUT,
        )
        .map_err(|e| BuildError(format!("cannot create the Kafka producer: {}", redact(&e))))
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

/// Turns complete windows into requests for the driver.
struct KafkaWriter {
    driver: Driver<KafkaService>,
    messages: Messages,
    metrics: ComponentMetrics,
}

/// How a window becomes messages.
struct Messages {
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

impl WindowWriter for KafkaWriter {
    /// Unused: [`deliver`](Self::deliver) hands windows to the driver.
    async fn write(&mut self, _window: CompleteWindow) -> EventStatus {
        unreachable!("the kafka sink overrides deliver")
    }

    async fn deliver(&mut self, window: CompleteWindow, finalizers: EventFinalizers) {
        let (events, bytes) = (window.events, window.bytes);
        match self.messages.of(&window) {
            Ok(messages) => {
                let req = KafkaRequest::new(messages);
                self.driver.submit(req, finalizers, events, bytes).await;
            }
            Err(e) => {
                // One stack larger than a message: nothing can carry it. Refused
                // for good, counted and logged, rather than truncated.
                finalizers.resolve(EventStatus::Rejected);
                self.metrics.rejected("stack_too_large", events);
                tracing::warn!(
                    component = self.metrics.id(),
                    window_end_ms = window.window.end_ms,
                    "window refused: {e}; raise message_max_bytes (and the broker's max.message.bytes)"
                );
            }
        }
    }
}

/// Flushes the driver, then the producer, within `timeout` together; counts what
/// the producer still held (dropping it purges that).
async fn shutdown(writer: KafkaWriter, metrics: &ComponentMetrics, timeout: Duration) {
    let started = tokio::time::Instant::now();
    let (_, producer) = writer.driver.service().producer();
    let report = writer.driver.flush(timeout).await;
    report.warn_if_undelivered(metrics.id());
    let left = timeout.saturating_sub(started.elapsed());
    // `flush` blocks its thread while librdkafka sends, and so does dropping the
    // producer (it purges and joins librdkafka's threads): both off the runtime.
    let queued = tokio::task::spawn_blocking(move || {
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
}

#[cfg(test)]
mod tests;
