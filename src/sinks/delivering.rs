//! The spine of every delivering sink (`kafka`, `s3`, `http`): a sink is a
//! config ([`DeliveringSink`]), a request builder ([`RequestBuilder`]) and a
//! [`Service`]; this module owns everything else, once:
//!
//! - the keys every delivering sink has: `request` ([`RequestConfig`]) and the
//!   pending windows ([`PendingConfig`]), read beside the sink's own keys into
//!   [`Delivering`];
//! - the run loop: windows merged and completed by [`run_windows`], each turned
//!   into requests by the builder and handed to the [`Driver`] with the window's
//!   delivery tokens (a window split into several requests is delivered once every
//!   part is; its events and bytes are counted with the first part);
//! - a window the builder refuses (older than the destination takes, one stack
//!   larger than a request may be): counted in `component_discarded_events_total`
//!   with the builder's reason, its tokens resolved `Rejected`, one WARN per reason
//!   (then DEBUG);
//! - shutdown: the driver flushed within `[agent] shutdown_timeout`, what was left
//!   undelivered reported in one WARN, then the service closed with what is left of
//!   that time ([`Service::close`]);
//! - the healthcheck: the service's, bounded by `request.timeout`, its failure
//!   mapped to the agent's [`Unhealthy`].
//!
//! Adding a delivering sink is its config, builder and service in one file, and
//! one line `delivering::kind::<MySink>("name")` in `sinks::KINDS`.

use std::collections::HashSet;
use std::fmt;
use std::future::Future;
use std::ops::{Deref, DerefMut};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use super::driver::{self, Driver, RequestConfig, Service};
use super::local::one_message;
use super::pending::{run_windows, CompleteWindow, HandleWindow, PendingConfig};
use crate::buffer::BoxFuture;
use crate::component::{
    peel, BuildError, FieldError, Kind, SinkConfig, SinkContext, Task, Unhealthy,
};
use crate::event::{DataTypes, EventFinalizers, EventStatus};
use crate::telemetry::ComponentMetrics;

/// Turns one complete window into the requests that carry it.
pub trait RequestBuilder: Send + 'static {
    type Request: Send + Sync + 'static;

    /// The window's requests (one, or several parts that share its tokens), or why
    /// it cannot be sent at all.
    fn build(
        &mut self,
        window: CompleteWindow,
    ) -> impl Future<Output = Result<Vec<Self::Request>, Refused>> + Send;
}

/// A window refused before sending: counted as discarded with `reason` (a short,
/// fixed metric label) and logged with `message`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    pub reason: &'static str,
    pub message: String,
}

/// A delivering sink's own config: its keys (everything but `request` and the
/// pending-window keys), its checks, and what it builds.
pub trait DeliveringSink: fmt::Debug + Send + Sync + Sized + 'static {
    type Service: Service;
    type Builder: RequestBuilder<Request = <Self::Service as Service>::Request>;

    /// Reads the sink's own keys (usually `parse_table`, so unknown keys are
    /// refused with their places).
    fn parse(table: toml::Table) -> Result<Self, Vec<FieldError>>;

    /// Checks without I/O. `request` is the sink's `request` table, for checks
    /// that involve both (it is checked on its own by the spine).
    fn validate(&self, request: &RequestConfig) -> Vec<FieldError>;

    /// The client, with its credentials (read here: a missing secret is a start-up
    /// error). `component` names the sink in the client's own logs; `metrics` are
    /// the sink's (none for the healthcheck's service).
    fn service(
        &self,
        component: &str,
        request: &RequestConfig,
        metrics: Option<&ComponentMetrics>,
    ) -> Result<Self::Service, BuildError>;

    /// The request builder of a running sink.
    fn builder(&self, metrics: &ComponentMetrics) -> Result<Self::Builder, BuildError>;

    /// Bound of the healthcheck: default `request.timeout`.
    fn healthcheck_timeout(&self, request: &RequestConfig) -> Duration {
        request.timeout()
    }
}

/// `[sinks.ID]` of a delivering sink: the shared keys and the sink's own.
#[derive(Debug)]
pub struct Delivering<C> {
    pub sink: C,
    /// Concurrency, timeout and retries of requests (see `sinks::driver`).
    pub request: RequestConfig,
    pub pending: PendingConfig,
}

/// The `request` key, read on its own.
#[derive(Deserialize)]
struct RequestKey {
    #[serde(default)]
    request: RequestConfig,
}

impl<C> Delivering<C> {
    /// `sink` with the default `request` and pending-window settings.
    pub fn new(sink: C) -> Self {
        Delivering {
            sink,
            request: RequestConfig::default(),
            pending: PendingConfig::default(),
        }
    }
}

impl<C: DeliveringSink> Delivering<C> {
    /// Reads a sink table: the shared keys, then the sink's own from the rest.
    pub fn parse(value: toml::Value) -> Result<Self, Vec<FieldError>> {
        let toml::Value::Table(table) = value else {
            return Err(vec![FieldError::new(&[], "must be a table")]);
        };
        let (pending, rest) = peel::<PendingConfig>(table);
        let (request, rest) = peel::<RequestKey>(rest);
        let sink = C::parse(rest);
        match (sink, request, pending) {
            (Ok(sink), Ok(r), Ok(pending)) => Ok(Delivering {
                sink,
                request: r.request,
                pending,
            }),
            (sink, request, pending) => Err([sink.err(), request.err(), pending.err()]
                .into_iter()
                .flatten()
                .flatten()
                .collect()),
        }
    }
}

/// For configs read outside the loader (tests, `toml::from_str`): the errors in
/// one message.
impl<'de, C: DeliveringSink> Deserialize<'de> for Delivering<C> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = toml::Value::deserialize(d)?;
        Delivering::parse(value).map_err(|e| serde::de::Error::custom(one_message(&e)))
    }
}

impl<C> Deref for Delivering<C> {
    type Target = C;
    fn deref(&self) -> &C {
        &self.sink
    }
}

impl<C> DerefMut for Delivering<C> {
    fn deref_mut(&mut self) -> &mut C {
        &mut self.sink
    }
}

/// The registry line of a delivering sink.
pub const fn kind<C: DeliveringSink>(name: &'static str) -> Kind<dyn SinkConfig> {
    Kind {
        name,
        parse: parse_boxed::<C>,
    }
}

fn parse_boxed<C: DeliveringSink>(v: toml::Value) -> Result<Box<dyn SinkConfig>, Vec<FieldError>> {
    Delivering::<C>::parse(v).map(|c| Box::new(c) as Box<dyn SinkConfig>)
}

impl<C: DeliveringSink> SinkConfig for Delivering<C> {
    fn memory_bound(&self) -> u64 {
        self.pending.max_pending_bytes.get()
    }

    fn inputs(&self) -> DataTypes {
        DataTypes::PROFILES_AND_DIAGNOSTICS
    }

    fn validate(&self) -> Vec<FieldError> {
        let mut errors = self.sink.validate(&self.request);
        errors.extend(self.request.validate());
        errors.extend(self.pending.validate());
        errors
    }

    fn build(&self, cx: SinkContext) -> Result<Task, BuildError> {
        let SinkContext { cx, input } = cx;
        let service = self
            .sink
            .service(&cx.id, &self.request, Some(&cx.metrics))?;
        let builder = self.sink.builder(&cx.metrics)?;
        let driver = Driver::new(service, &self.request, cx.metrics.clone());
        let limits = self.pending.limits();
        Ok(Box::pin(async move {
            let mut spine = Spine {
                builder,
                driver,
                metrics: cx.metrics.clone(),
                warned: HashSet::new(),
            };
            run_windows(input, &cx, limits, &mut spine).await;
            spine.shutdown(cx.shutdown_timeout).await;
            Ok(())
        }))
    }

    fn healthcheck(&self) -> Option<BoxFuture<'static, Result<(), Unhealthy>>> {
        let service = self.sink.service("healthcheck", &self.request, None);
        let timeout = self.sink.healthcheck_timeout(&self.request);
        Some(Box::pin(async move {
            let service = service.map_err(|e| Unhealthy {
                message: e.0,
                retryable: false,
            })?;
            Ok(driver::healthcheck(&service, timeout).await?)
        }))
    }
}

/// A running delivering sink: windows in, requests out.
struct Spine<B, S: Service> {
    builder: B,
    driver: Driver<S>,
    metrics: ComponentMetrics,
    /// Reasons of refused windows already logged at WARN.
    warned: HashSet<&'static str>,
}

impl<B, S> HandleWindow for Spine<B, S>
where
    B: RequestBuilder,
    S: Service<Request = B::Request>,
{
    async fn handle(&mut self, window: CompleteWindow, finalizers: EventFinalizers) {
        let (events, bytes) = (window.events, window.bytes);
        let requests = match self.builder.build(window).await {
            Ok(r) => r,
            Err(refused) => {
                self.metrics.discarded_many(refused.reason, events, bytes);
                finalizers.resolve(EventStatus::Rejected);
                let component = self.metrics.id();
                if self.warned.insert(refused.reason) {
                    tracing::warn!(
                        component,
                        reason = refused.reason,
                        "window dropped: {} (further ones are only counted)",
                        refused.message
                    );
                } else {
                    tracing::debug!(
                        component,
                        reason = refused.reason,
                        "window dropped: {}",
                        refused.message
                    );
                }
                return;
            }
        };
        if requests.is_empty() {
            // Nothing to send (no stacks): nothing can fail.
            self.metrics.sent_many(events, bytes);
            finalizers.resolve(EventStatus::Delivered);
            return;
        }
        let last = requests.len() - 1;
        let mut finalizers = Some(finalizers);
        for (i, req) in requests.into_iter().enumerate() {
            let tokens = if i == last {
                finalizers.take().unwrap_or_default()
            } else {
                finalizers.clone().unwrap_or_default()
            };
            let (events, bytes) = if i == 0 { (events, bytes) } else { (0, 0) };
            self.driver.submit(req, tokens, events, bytes).await;
        }
    }
}

impl<B, S: Service> Spine<B, S> {
    /// Flushes the driver, then closes the service, within `timeout` together.
    async fn shutdown(mut self, timeout: Duration) {
        let started = tokio::time::Instant::now();
        let report = self.driver.flush(timeout).await;
        report.warn_if_undelivered(self.metrics.id());
        let left = timeout.saturating_sub(started.elapsed());
        if let Some(service) = self.driver.into_service() {
            service.close(left, &self.metrics).await;
        }
    }
}
