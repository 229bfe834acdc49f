//! One attempt to deliver one window's messages through librdkafka, and the
//! classification of what went wrong.
//!
//! A request is every part of one window. An attempt enqueues the parts not yet
//! confirmed, then waits for each one's delivery report (the `FutureProducer`'s
//! delivery future); the request is delivered once every part has been confirmed.
//! A part confirmed in a failed attempt is remembered and not sent again when the
//! driver retries, so a retry does not duplicate what already arrived (and the
//! idempotent producer keeps librdkafka's own retries from duplicating).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::ClientConfig;

use crate::buffer::BoxFuture;
use crate::sinks::driver::{DeliveryError, Service};
use crate::telemetry::ComponentMetrics;

/// Forwards librdkafka's logs and errors to tracing at DEBUG: a broker that is
/// down or restarting is a normal fleet condition, and the driver's retries and
/// metrics are where it shows.
#[derive(Clone, Debug)]
pub struct Logs {
    pub component: String,
}

impl ClientContext for Logs {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        tracing::debug!(component = %self.component, ?level, fac, "librdkafka: {log_message}");
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::debug!(component = %self.component, "librdkafka: {error}: {reason}");
    }
}

pub type KafkaProducer = FutureProducer<Logs>;

/// One message of a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub key: String,
    pub payload: Vec<u8>,
    /// `(name, value)` Kafka headers.
    pub headers: Vec<(&'static str, String)>,
    /// Record timestamp, Unix ms (the window's end).
    pub timestamp_ms: i64,
}

/// All parts of one window.
#[derive(Debug)]
pub struct KafkaRequest {
    pub messages: Vec<Message>,
    /// Which messages a delivery report has confirmed (by any attempt).
    confirmed: Vec<AtomicBool>,
}

impl KafkaRequest {
    pub fn new(messages: Vec<Message>) -> Self {
        let confirmed = messages.iter().map(|_| AtomicBool::new(false)).collect();
        KafkaRequest {
            messages,
            confirmed,
        }
    }

    /// Messages confirmed so far.
    pub fn confirmed(&self) -> usize {
        self.confirmed
            .iter()
            .filter(|c| c.load(Ordering::Acquire))
            .count()
    }

    pub fn payload_bytes(&self) -> u64 {
        self.messages.iter().map(|m| m.payload.len() as u64).sum()
    }
}

/// The producer and the topic it writes to.
///
/// An idempotent producer whose messages timed out (an outage longer than
/// `message_timeout`) must take a new epoch; a broker may then fence it
/// (`ProducerFenced`) or librdkafka may raise a fatal error, after which that
/// producer never sends again. The service then replaces it with a fresh one made
/// from the same settings, and the driver's retry goes through the new one.
pub struct KafkaService {
    producer: Mutex<(u64, KafkaProducer)>,
    settings: ClientConfig,
    component: String,
    pub topic: String,
    /// Bound of one healthcheck's metadata request.
    pub metadata_timeout: Duration,
    pub brokers: String,
}

impl KafkaService {
    /// A service writing to `topic` through a producer made from `settings`.
    pub fn new(
        settings: ClientConfig,
        component: String,
        topic: String,
        brokers: String,
        metadata_timeout: Duration,
    ) -> Result<Self, KafkaError> {
        let producer = settings.create_with_context(Logs {
            component: component.clone(),
        })?;
        Ok(KafkaService {
            producer: Mutex::new((0, producer)),
            settings,
            component,
            topic,
            metadata_timeout,
            brokers,
        })
    }

    /// The current producer and its generation.
    pub fn producer(&self) -> (u64, KafkaProducer) {
        let p = self.producer.lock().unwrap_or_else(|e| e.into_inner());
        (p.0, p.1.clone())
    }

    /// Replaces generation `generation` (if still current) with a new producer.
    /// The old one is dropped off the runtime (dropping purges and joins threads).
    fn replace(&self, generation: u64) {
        let new: KafkaProducer = match self.settings.create_with_context(Logs {
            component: self.component.clone(),
        }) {
            Ok(p) => p,
            Err(e) => {
                tracing::debug!(component = %self.component, "cannot recreate the producer: {e}");
                return;
            }
        };
        let old = {
            let mut p = self.producer.lock().unwrap_or_else(|e| e.into_inner());
            if p.0 != generation {
                return;
            }
            std::mem::replace(&mut *p, (generation + 1, new))
        };
        tracing::info!(
            component = %self.component,
            generation = generation + 1,
            "Kafka producer replaced after it was fenced or failed fatally"
        );
        tokio::task::spawn_blocking(move || drop(old));
    }
}

/// Errors after which this producer instance cannot send again.
fn is_fatal(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::ProducerFenced
                | RDKafkaErrorCode::InvalidProducerEpoch
                | RDKafkaErrorCode::Fatal
        )
    )
}

impl Service for KafkaService {
    type Request = KafkaRequest;

    fn close(self, left: Duration, metrics: &ComponentMetrics) -> BoxFuture<'static, ()> {
        super::close(self, left, metrics)
    }

    fn call<'a>(&'a self, req: &'a KafkaRequest) -> BoxFuture<'a, Result<(), DeliveryError>> {
        Box::pin(async move {
            let (generation, producer) = self.producer();
            let mut fatal = producer.client().fatal_error().is_some();
            let mut pending = Vec::new();
            let mut enqueue_error = None;
            for (i, m) in req.messages.iter().enumerate() {
                if req.confirmed[i].load(Ordering::Acquire) {
                    continue;
                }
                let mut headers = OwnedHeaders::new_with_capacity(m.headers.len());
                for (name, value) in &m.headers {
                    headers = headers.insert(Header {
                        key: name,
                        value: Some(value.as_str()),
                    });
                }
                let record = FutureRecord::to(&self.topic)
                    .key(m.key.as_str())
                    .payload(m.payload.as_slice())
                    .headers(headers)
                    .timestamp(m.timestamp_ms);
                match producer.send_result(record) {
                    Ok(delivery) => pending.push((i, delivery)),
                    Err((e, _)) => {
                        fatal |= is_fatal(&e);
                        // Not enqueued (queue full, message too large): wait for what
                        // was, then report this.
                        enqueue_error = Some(classify(&e));
                        break;
                    }
                }
            }
            let mut report_error = None;
            for (i, delivery) in pending {
                match delivery.await {
                    Ok(Ok(_)) => req.confirmed[i].store(true, Ordering::Release),
                    Ok(Err((e, _))) => {
                        fatal |= is_fatal(&e);
                        let e = classify(&e);
                        // A permanent failure wins: retrying cannot fix it.
                        if report_error
                            .as_ref()
                            .is_none_or(|r: &DeliveryError| r.is_retryable())
                        {
                            report_error = Some(e);
                        }
                    }
                    Err(_canceled) => {
                        report_error.get_or_insert(DeliveryError::retryable(
                            "canceled",
                            "the producer went away before the delivery report",
                        ));
                    }
                }
            }
            if fatal || producer.client().fatal_error().is_some() {
                self.replace(generation);
            }
            match (enqueue_error, report_error) {
                (Some(e), _) if !e.is_retryable() => Err(e),
                (_, Some(e)) if !e.is_retryable() => Err(e),
                (Some(e), _) | (_, Some(e)) => Err(e),
                (None, None) => Ok(()),
            }
        })
    }

    fn healthcheck(&self) -> BoxFuture<'_, Result<(), DeliveryError>> {
        let (_, producer) = self.producer();
        let topic = self.topic.clone();
        let timeout = self.metadata_timeout;
        let brokers = self.brokers.clone();
        Box::pin(async move {
            // librdkafka's metadata call blocks its thread.
            let result = tokio::task::spawn_blocking(move || {
                check_topic(&producer, &topic, timeout, &brokers)
            })
            .await;
            match result {
                Ok(r) => r,
                Err(e) => Err(DeliveryError::retryable(
                    "healthcheck_failed",
                    format!("the metadata check failed: {e}"),
                )),
            }
        })
    }
}

/// Fetches the topic's metadata: the brokers answer, accept us, and know the topic.
pub fn check_topic(
    producer: &KafkaProducer,
    topic: &str,
    timeout: Duration,
    brokers: &str,
) -> Result<(), DeliveryError> {
    let md = producer
        .client()
        .fetch_metadata(Some(topic), timeout)
        .map_err(|e| {
            let mut d = classify(&e);
            let what = match e.rdkafka_error_code() {
                Some(RDKafkaErrorCode::Authentication)
                | Some(RDKafkaErrorCode::SaslAuthenticationFailed) => {
                    format!("brokers {brokers} refused our credentials: {e}")
                }
                _ => format!(
                    "cannot fetch metadata from brokers {brokers} within {}: {e}",
                    humantime::format_duration(timeout)
                ),
            };
            match &mut d {
                DeliveryError::Retryable { message, .. }
                | DeliveryError::Permanent { message, .. } => *message = what,
            }
            d
        })?;
    let Some(t) = md.topics().iter().find(|t| t.name() == topic) else {
        return Err(DeliveryError::permanent(
            "unknown_topic",
            format!("brokers {brokers} do not know topic `{topic}`"),
        ));
    };
    if let Some(err) = t.error() {
        let code = RDKafkaErrorCode::from(err);
        let reason = match code {
            RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic => {
                "unknown_topic"
            }
            RDKafkaErrorCode::TopicAuthorizationFailed => "auth",
            _ => "metadata_error",
        };
        return Err(DeliveryError::permanent(
            reason,
            format!("topic `{topic}` on brokers {brokers}: {code} (create it, or check the ACLs)"),
        ));
    }
    if t.partitions().is_empty() {
        return Err(DeliveryError::permanent(
            "unknown_topic",
            format!("topic `{topic}` on brokers {brokers} has no partitions"),
        ));
    }
    Ok(())
}

/// Whether retrying a Kafka failure can help, and its metric label.
pub fn classify(e: &KafkaError) -> DeliveryError {
    use RDKafkaErrorCode as C;
    let message = e.to_string();
    let Some(code) = e.rdkafka_error_code() else {
        return DeliveryError::retryable("kafka_error", message);
    };
    let permanent = |reason| DeliveryError::permanent(reason, message.clone());
    let retryable = |reason| DeliveryError::retryable(reason, message.clone());
    match code {
        // The message cannot be taken whatever we do; the sink splits profiles so
        // this only happens when the broker's limit is below `message_max_bytes`.
        C::MessageSizeTooLarge | C::InvalidMessageSize => permanent("message_too_large"),
        C::InvalidMessage | C::InvalidRecord | C::BadMessage => permanent("invalid_message"),
        C::TopicAuthorizationFailed
        | C::ClusterAuthorizationFailed
        | C::SaslAuthenticationFailed
        | C::Authentication => permanent("auth"),
        C::InvalidTopic | C::PolicyViolation | C::UnsupportedCompressionType => {
            permanent("refused")
        }
        C::QueueFull => retryable("queue_full"),
        C::ProducerFenced | C::InvalidProducerEpoch | C::Fatal => retryable("producer_fenced"),
        C::MessageTimedOut | C::RequestTimedOut | C::OperationTimedOut => retryable("timeout"),
        C::BrokerTransportFailure | C::AllBrokersDown => retryable("broker_down"),
        C::UnknownTopicOrPartition | C::UnknownTopic => retryable("unknown_topic"),
        _ => retryable("kafka_error"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_and_auth_failures_are_permanent_the_rest_retryable() {
        let p = |c| classify(&KafkaError::MessageProduction(c));
        assert_eq!(
            p(RDKafkaErrorCode::MessageSizeTooLarge).reason(),
            "message_too_large"
        );
        assert!(!p(RDKafkaErrorCode::MessageSizeTooLarge).is_retryable());
        assert!(!p(RDKafkaErrorCode::TopicAuthorizationFailed).is_retryable());
        assert!(!p(RDKafkaErrorCode::SaslAuthenticationFailed).is_retryable());
        for (code, reason) in [
            (RDKafkaErrorCode::QueueFull, "queue_full"),
            (RDKafkaErrorCode::MessageTimedOut, "timeout"),
            (RDKafkaErrorCode::RequestTimedOut, "timeout"),
            (RDKafkaErrorCode::AllBrokersDown, "broker_down"),
            (RDKafkaErrorCode::NotLeaderForPartition, "kafka_error"),
        ] {
            let e = p(code);
            assert!(e.is_retryable(), "{code:?}");
            assert_eq!(e.reason(), reason, "{code:?}");
        }
        let e = classify(&KafkaError::Canceled);
        assert!(e.is_retryable());
    }

    #[test]
    fn a_request_starts_with_nothing_confirmed() {
        let m = Message {
            key: "h".into(),
            payload: vec![1, 2, 3],
            headers: vec![],
            timestamp_ms: 0,
        };
        let r = KafkaRequest::new(vec![m.clone(), m]);
        assert_eq!(r.confirmed(), 0);
        assert_eq!(r.payload_bytes(), 6);
    }
}
