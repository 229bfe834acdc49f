//! Local sinks (`file`, `console`): they write each complete window themselves,
//! on this host, and its outcome resolves the window's delivery tokens. No
//! requests, no retries: a failure is counted and logged, and the sink goes on.
//!
//! A local sink is its config ([`LocalSink`]) and its writer ([`LocalWriter`]);
//! [`Local`] adds the pending-window keys every window-writing sink has
//! ([`PendingConfig`]) and runs the receive loop ([`run_windows`]).

use std::fmt;
use std::future::Future;
use std::ops::{Deref, DerefMut};

use serde::{Deserialize, Deserializer};

use super::pending::{run_windows, CompleteWindow, HandleWindow, PendingConfig};
use crate::component::{
    peel, BuildError, ComponentContext, FieldError, Kind, SinkConfig, SinkContext, Task,
};
use crate::event::{DataTypes, EventFinalizers, EventStatus};

/// Writes complete windows.
pub trait LocalWriter: Send + 'static {
    /// Writes one window, counting `sent` or errors itself; failures must not end
    /// the sink. The outcome resolves the delivery tokens of the window's events.
    fn write(&mut self, window: CompleteWindow) -> impl Future<Output = EventStatus> + Send;
}

/// A local sink's own config.
pub trait LocalSink: fmt::Debug + Send + Sync + Sized + 'static {
    type Writer: LocalWriter;

    /// Reads the sink's own keys (usually `parse_table`).
    fn parse(table: toml::Table) -> Result<Self, Vec<FieldError>>;

    /// Checks without I/O.
    fn validate(&self) -> Vec<FieldError>;

    /// The writer of a running sink (creating what it writes into).
    fn writer(&self, cx: &ComponentContext) -> Result<Self::Writer, BuildError>;
}

/// `[sinks.ID]` of a local sink: its own keys and the pending-window keys.
#[derive(Debug)]
pub struct Local<C> {
    pub sink: C,
    pub pending: PendingConfig,
}

impl<C> Local<C> {
    /// `sink` with the default pending-window settings.
    pub fn new(sink: C) -> Self {
        Local {
            sink,
            pending: PendingConfig::default(),
        }
    }
}

impl<C: LocalSink> Local<C> {
    pub fn parse(value: toml::Value) -> Result<Self, Vec<FieldError>> {
        let toml::Value::Table(table) = value else {
            return Err(vec![FieldError::new(&[], "must be a table")]);
        };
        let (pending, rest) = peel::<PendingConfig>(table);
        match (C::parse(rest), pending) {
            (Ok(sink), Ok(pending)) => Ok(Local { sink, pending }),
            (sink, pending) => Err([sink.err(), pending.err()]
                .into_iter()
                .flatten()
                .flatten()
                .collect()),
        }
    }
}

/// For configs read outside the loader (tests, `toml::from_str`).
impl<'de, C: LocalSink> Deserialize<'de> for Local<C> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = toml::Value::deserialize(d)?;
        Local::parse(value).map_err(|e| serde::de::Error::custom(one_message(&e)))
    }
}

/// Field errors as one message, for serde.
pub(crate) fn one_message(errors: &[FieldError]) -> String {
    let text: Vec<String> = errors
        .iter()
        .map(|e| match e.path.is_empty() {
            true => e.message.clone(),
            false => format!("{}: {}", e.path.join("."), e.message),
        })
        .collect();
    text.join("; ")
}

impl<C> Deref for Local<C> {
    type Target = C;
    fn deref(&self) -> &C {
        &self.sink
    }
}

impl<C> DerefMut for Local<C> {
    fn deref_mut(&mut self) -> &mut C {
        &mut self.sink
    }
}

/// The registry line of a local sink.
pub const fn kind<C: LocalSink>(name: &'static str) -> Kind<dyn SinkConfig> {
    Kind {
        name,
        parse: parse_boxed::<C>,
    }
}

fn parse_boxed<C: LocalSink>(v: toml::Value) -> Result<Box<dyn SinkConfig>, Vec<FieldError>> {
    Local::<C>::parse(v).map(|c| Box::new(c) as Box<dyn SinkConfig>)
}

impl<C: LocalSink> SinkConfig for Local<C> {
    fn memory_bound(&self) -> u64 {
        self.pending.max_pending_bytes.get()
    }

    fn inputs(&self) -> DataTypes {
        DataTypes::PROFILES_AND_DIAGNOSTICS
    }

    fn validate(&self) -> Vec<FieldError> {
        let mut errors = self.sink.validate();
        errors.extend(self.pending.validate());
        errors
    }

    fn build(&self, cx: SinkContext) -> Result<Task, BuildError> {
        let writer = self.sink.writer(&cx.cx)?;
        Ok(run(cx, self.pending, writer))
    }
}

/// The task of a local sink writing with `writer`.
pub fn run<W: LocalWriter>(cx: SinkContext, pending: PendingConfig, mut writer: W) -> Task {
    let SinkContext { cx, input } = cx;
    Box::pin(async move {
        run_windows(input, &cx, pending.limits(), &mut Writes(&mut writer)).await;
        Ok(())
    })
}

/// A [`LocalWriter`] as the receive loop's window handler.
struct Writes<'w, W>(&'w mut W);

impl<W: LocalWriter> HandleWindow for Writes<'_, W> {
    async fn handle(&mut self, window: CompleteWindow, finalizers: EventFinalizers) {
        let status = self.0.write(window).await;
        finalizers.resolve(status);
    }
}
