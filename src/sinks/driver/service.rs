//! What a delivering sink implements: one attempt to deliver one request.
//!
//! A sink turns events into requests (a Kafka produce, an S3 put, an HTTP POST) and
//! hands them to the [`Driver`](super::Driver); the driver owns everything around
//! the attempt (concurrency, timeouts, retries, tokens, metrics). The service only
//! says what one attempt did, and whether trying again could help.

use std::time::Duration;

use crate::buffer::BoxFuture;
use crate::telemetry::ComponentMetrics;

/// Why an attempt did not deliver.
///
/// `reason` is a short, bounded metric label ("timeout", "http_503", "auth"):
/// never put a server's message in it, that goes in `message`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    /// Trying again may work (a timeout, a 5xx, a 429, a refused connection).
    #[error("{reason}: {message}")]
    Retryable {
        reason: &'static str,
        message: String,
        /// What the destination asked us to wait (e.g. HTTP `Retry-After`). The
        /// driver waits at least this long, capped by `retry_after_max`.
        retry_after: Option<Duration>,
    },
    /// Trying again will not work (a 4xx, a record the destination cannot take).
    #[error("{reason}: {message}")]
    Permanent {
        reason: &'static str,
        message: String,
    },
}

impl DeliveryError {
    pub fn retryable(reason: &'static str, message: impl Into<String>) -> Self {
        DeliveryError::Retryable {
            reason,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn permanent(reason: &'static str, message: impl Into<String>) -> Self {
        DeliveryError::Permanent {
            reason,
            message: message.into(),
        }
    }

    /// The metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            DeliveryError::Retryable { reason, .. } | DeliveryError::Permanent { reason, .. } => {
                reason
            }
        }
    }

    pub fn is_retryable(&self) -> bool {
        matches!(self, DeliveryError::Retryable { .. })
    }
}

/// One attempt to deliver one request. Implementations hold their client
/// (connection pool, credentials); the driver calls `call` from several tasks at
/// once, up to the configured concurrency, and may call it again with the same
/// request after a retryable failure, so an attempt must not consume the request.
///
/// An attempt may be cancelled (dropped) at any await point: on timeout or when a
/// flush deadline passes.
pub trait Service: Send + Sync + 'static {
    type Request: Send + Sync + 'static;

    fn call<'a>(&'a self, req: &'a Self::Request) -> BoxFuture<'a, Result<(), DeliveryError>>;

    /// Checks the destination is reachable and accepts us, without sending data.
    /// The default has nothing to check.
    fn healthcheck(&self) -> BoxFuture<'_, Result<(), DeliveryError>> {
        Box::pin(std::future::ready(Ok(())))
    }

    /// Called once at shutdown, after the driver's requests have ended, with what
    /// is left of the shutdown timeout: a service that queues below the driver
    /// (librdkafka's producer) delivers or counts what it still holds here.
    fn close(self, _left: Duration, _metrics: &ComponentMetrics) -> BoxFuture<'static, ()>
    where
        Self: Sized,
    {
        Box::pin(std::future::ready(()))
    }
}

impl From<DeliveryError> for crate::component::Unhealthy {
    fn from(e: DeliveryError) -> Self {
        crate::component::Unhealthy {
            retryable: e.is_retryable(),
            message: e.to_string(),
        }
    }
}

/// Runs `service`'s healthcheck, bounded by `timeout` (a timeout is a retryable
/// "timeout" error, like an attempt's).
pub async fn healthcheck<S: Service>(service: &S, timeout: Duration) -> Result<(), DeliveryError> {
    match tokio::time::timeout(timeout, service.healthcheck()).await {
        Ok(result) => result,
        Err(_) => Err(DeliveryError::Retryable {
            reason: "timeout",
            message: format!("no answer within {}", humantime::format_duration(timeout)),
            retry_after: None,
        }),
    }
}
