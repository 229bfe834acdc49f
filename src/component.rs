//! What a component is: a config struct plus a `build` that returns a running task.
//!
//! Each source, transform and sink lives in one file that defines its config struct
//! (serde, every field documented) and implements one of the traits below. The
//! registries in `sources/mod.rs`, `transforms/mod.rs` and `sinks/mod.rs` map the
//! `type = "..."` of a config table to that struct: adding a component is one file and
//! one registry line.

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde::de::DeserializeOwned;

use crate::buffer::{Input, MemoryBudget, Output};
use crate::event::{ComponentId, DataTypes};
use crate::process::Supervisor;
use crate::shutdown::ShutdownSignal;
use crate::telemetry::{ComponentMetrics, Telemetry};

/// A running component. It returns when its input is exhausted (transforms, sinks)
/// or when its work is done or shutdown was signalled (sources).
pub type Task = Pin<Box<dyn Future<Output = Result<(), ComponentError>> + Send>>;

/// A problem with one field of a component's table, found without running anything.
/// `path` is relative to the component's table, e.g. `["buffer", "max_bytes"]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    pub path: Vec<String>,
    pub message: String,
}

impl FieldError {
    pub fn new(path: &[&str], message: impl Into<String>) -> Self {
        FieldError {
            path: path.iter().map(|s| s.to_string()).collect(),
            message: message.into(),
        }
    }
}

/// The check every count limit shares: `None` when `value` (an unsigned count) is
/// at least 1, else "`<last part of path>` must be at least 1" on that field. One
/// place, so the wording stays one.
pub fn at_least_one<N: Default + PartialEq>(path: &[&str], value: N) -> Option<FieldError> {
    let field = path.last().copied().unwrap_or_default();
    (value == N::default()).then(|| FieldError::new(path, format!("{field} must be at least 1")))
}

/// Failure to start a component (e.g. its output directory cannot be created).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BuildError(pub String);

/// Failure of a running component.
#[derive(Debug, thiserror::Error)]
pub enum ComponentError {
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Other(String),
}

/// What every component gets when it is built.
#[derive(Clone)]
pub struct ComponentContext {
    /// The component's id (its table key).
    pub id: ComponentId,
    /// Host name, for labels.
    pub host: Arc<str>,
    /// Counters of this component, already labelled with its id and kind.
    pub metrics: ComponentMetrics,
    /// The agent-wide telemetry, for components that register metrics of their own.
    pub telemetry: Telemetry,
    /// Fires when the agent shuts down.
    pub shutdown: ShutdownSignal,
    /// Ids of every source upstream of this component, so a stateful component knows
    /// whose watermarks it must see before a window is complete.
    pub upstream_sources: Vec<ComponentId>,
    /// The agent's one process supervisor: every child process goes through it.
    pub supervisor: Supervisor,
    /// The agent's scratch directory (mode 0700); components use a subdirectory
    /// named after their id.
    pub state_dir: std::path::PathBuf,
    /// When the agent started, in Unix ms rounded down to the second: live sources
    /// cut windows at `origin_ms + k * window`, so windows of all sources line up.
    pub origin_ms: u64,
    /// The agent-wide memory budget; a component's window store charges it.
    pub budget: MemoryBudget,
    /// `[agent] shutdown_timeout`: how long a sink may spend delivering what it
    /// holds once its input has ended.
    pub shutdown_timeout: std::time::Duration,
}

impl ComponentContext {
    /// A context for running one component outside a topology (tests, tools): its own
    /// supervisor, scratch space under the system temp dir, shutdown never signalled.
    pub fn standalone(id: &str, kind: &str, ty: &str, telemetry: &Telemetry) -> ComponentContext {
        ComponentContext {
            id: id.into(),
            host: "localhost".into(),
            metrics: telemetry.component(id, kind, ty),
            telemetry: telemetry.clone(),
            shutdown: ShutdownSignal::never(),
            upstream_sources: Vec::new(),
            supervisor: Supervisor::new(Default::default(), telemetry),
            state_dir: std::env::temp_dir().join(format!("profpipe-{}", std::process::id())),
            origin_ms: crate::window_clock::now_ms() / 1000 * 1000,
            budget: MemoryBudget::new(64 << 20),
            shutdown_timeout: std::time::Duration::from_secs(30),
        }
    }

    /// A window store for this component, charged to the agent's budget.
    pub fn window_store<S: crate::window::WindowState>(
        &self,
        scope: crate::window::Scope,
        limits: crate::window::StoreLimits,
    ) -> crate::window::WindowStore<S> {
        crate::window::WindowStore::new(
            scope,
            limits,
            self.upstream_sources.clone(),
            self.budget.window_charge(),
        )
    }

    /// A [`Scope::PerSource`](crate::window::Scope::PerSource) window store of at
    /// most `max_bytes` and [`DEFAULT_MAX_WINDOWS`](crate::window::DEFAULT_MAX_WINDOWS)
    /// windows (dedup, fold).
    pub fn per_source_store<S: crate::window::WindowState>(
        &self,
        max_bytes: u64,
    ) -> crate::window::WindowStore<S> {
        let limits = crate::window::StoreLimits {
            max_bytes,
            max_windows: crate::window::DEFAULT_MAX_WINDOWS,
        };
        self.window_store(crate::window::Scope::PerSource, limits)
    }

    /// This component's own scratch directory, `state_dir/<id>`, created if needed.
    /// Both directories are made mode 0700 so no other user can plant files where
    /// the agent (root) reads and deletes them.
    pub fn scratch_dir(&self) -> std::io::Result<std::path::PathBuf> {
        let dir = self.state_dir.join(&*self.id);
        for d in [&self.state_dir, &dir] {
            crate::state_dir::create(d)?;
        }
        Ok(dir)
    }
}

pub struct SourceContext {
    pub cx: ComponentContext,
    pub out: Output,
}

pub struct TransformContext {
    pub cx: ComponentContext,
    pub input: Input,
    pub out: Output,
}

impl TransformContext {
    /// The three parts, for a task that moves them into its `async` block.
    pub fn into_parts(self) -> (ComponentContext, Input, Output) {
        (self.cx, self.input, self.out)
    }
}

pub struct SinkContext {
    pub cx: ComponentContext,
    pub input: Input,
}

pub trait SourceConfig: Debug + Send + Sync + 'static {
    /// Checks that need more than types (ranges, combinations). No I/O.
    fn validate(&self) -> Vec<FieldError> {
        Vec::new()
    }
    /// What kinds of data events it emits (watermarks aside).
    fn outputs(&self) -> DataTypes;
    /// True for sources that end by themselves (a file read once).
    fn is_finite(&self) -> bool {
        false
    }
    /// Live sources: replace the window length and/or the number of windows (what
    /// `profpipe run --duration D --once` does). Sources without windows ignore it.
    fn override_windows(
        &mut self,
        _window: Option<std::time::Duration>,
        _max_windows: Option<u64>,
    ) {
    }
    fn build(&self, cx: SourceContext) -> Result<Task, BuildError>;
}

pub trait TransformConfig: Debug + Send + Sync + 'static {
    fn validate(&self) -> Vec<FieldError> {
        Vec::new()
    }
    /// What kinds of data it takes. A wiring that feeds it anything else is a
    /// validation error.
    fn inputs(&self) -> DataTypes;
    /// What it emits when fed `inputs` (a subset of what it takes). Most
    /// transforms pass their data through: what they are fed.
    fn outputs(&self, inputs: DataTypes) -> DataTypes {
        inputs
    }
    /// Most bytes its window store may hold (its `max_*` bound), charged to `[agent]
    /// memory_limit`; 0 for components that hold no windows.
    fn memory_bound(&self) -> u64 {
        0
    }
    fn build(&self, cx: TransformContext) -> Result<Task, BuildError>;
}

pub trait SinkConfig: Debug + Send + Sync + 'static {
    fn validate(&self) -> Vec<FieldError> {
        Vec::new()
    }
    /// What kinds of data it takes.
    fn inputs(&self) -> DataTypes;
    /// Most bytes its window store may hold (its `max_*` bound), charged to `[agent]
    /// memory_limit`; 0 for components that hold no windows.
    fn memory_bound(&self) -> u64 {
        0
    }
    fn build(&self, cx: SinkContext) -> Result<Task, BuildError>;
    /// A check that the destination is reachable and accepts us (credentials, the
    /// bucket or topic exists), sending no data; run by `profpipe validate
    /// --healthcheck` and at agent start. `None`: nothing to check (local sinks).
    /// Network sinks build their service and return `sinks::driver::healthcheck`
    /// of it.
    fn healthcheck(&self) -> Option<crate::buffer::BoxFuture<'static, Result<(), Unhealthy>>> {
        None
    }
}

/// Why a sink's healthcheck failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Unhealthy {
    pub message: String,
    /// The destination may accept us later (unreachable, timed out, 5xx), as
    /// opposed to refusing us (credentials, a missing bucket or topic, a bad
    /// config). A sink with a disk buffer starts anyway on a retryable failure.
    pub retryable: bool,
}

impl Unhealthy {
    pub fn retryable(message: impl Into<String>) -> Self {
        Unhealthy {
            message: message.into(),
            retryable: true,
        }
    }
}

/// A failure to even build the check (a missing secret, a bad URL): permanent.
impl From<String> for Unhealthy {
    fn from(message: String) -> Self {
        Unhealthy {
            message,
            retryable: false,
        }
    }
}

/// One entry of a registry: the `type` name and how to read its table.
pub struct Kind<T: ?Sized> {
    pub name: &'static str,
    pub parse: fn(toml::Value) -> Result<Box<T>, Vec<FieldError>>,
}

// One line per registry entry: `Kind::source::<FileSourceConfig>("file")`.
impl Kind<dyn SourceConfig> {
    pub const fn source<C: SourceConfig + DeserializeOwned>(name: &'static str) -> Self {
        Kind {
            name,
            parse: parse_source::<C>,
        }
    }
}

impl Kind<dyn TransformConfig> {
    pub const fn transform<C: TransformConfig + DeserializeOwned>(name: &'static str) -> Self {
        Kind {
            name,
            parse: parse_transform::<C>,
        }
    }
}

impl Kind<dyn SinkConfig> {
    pub const fn sink<C: SinkConfig + DeserializeOwned>(name: &'static str) -> Self {
        Kind {
            name,
            parse: parse_sink::<C>,
        }
    }
}

/// Reads a component table into its config struct `C`, collecting every unknown
/// field (not only the first) and the first type error with its path.
pub fn parse_table<C: DeserializeOwned>(value: toml::Value) -> Result<C, Vec<FieldError>> {
    let (result, unknown) = parse_tracked::<C>(value);
    finish_parse(result, unknown)
}

/// Reads the keys of `table` that the struct `C` has fields for into `C`, and
/// hands back the other keys, untouched, for the next part of the table: how a
/// table made of shared keys (a sink's `request`, its pending windows) and a
/// component's own is read without `#[serde(flatten)]`, which would lose the paths
/// (and so the `line:column`) of errors in the flattened part.
pub fn peel<C: DeserializeOwned>(table: toml::Table) -> (Result<C, Vec<FieldError>>, toml::Table) {
    let fields = struct_fields::<C>();
    let (mine, rest): (toml::Table, toml::Table) = table
        .into_iter()
        .partition(|(k, _)| fields.contains(&k.as_str()));
    (parse_table::<C>(toml::Value::Table(mine)), rest)
}

/// The field names of a struct that derives `Deserialize`, as serde hands them to
/// `deserialize_struct`.
pub fn struct_fields<C: DeserializeOwned>() -> &'static [&'static str] {
    use serde::de::value::Error;
    use serde::de::{Error as _, Visitor};
    struct Fields<'a>(&'a mut &'static [&'static str]);
    impl<'de> serde::Deserializer<'de> for Fields<'_> {
        type Error = Error;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Error> {
            Err(Error::custom("not a struct"))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            fields: &'static [&'static str],
            _visitor: V,
        ) -> Result<V::Value, Error> {
            *self.0 = fields;
            Err(Error::custom("fields read"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map
            enum identifier ignored_any
        }
    }
    let mut fields: &'static [&'static str] = &[];
    let _ = C::deserialize(Fields(&mut fields));
    fields
}

/// Reads a table whose `tag` key names one variant of `T`, an enum whose variants
/// are structs (serde's default, externally tagged representation), from the
/// other keys: `{ target = "pyroscope", app_name = "web" }` is read as
/// `{ pyroscope = { app_name = "web" } }`. serde checks each variant's fields
/// (give the variant structs `deny_unknown_fields`), and errors keep their paths,
/// which serde's internally tagged enums lose (they buffer the table).
pub fn parse_tagged<T: DeserializeOwned>(
    mut table: toml::Table,
    tag: &str,
) -> Result<T, Vec<FieldError>> {
    let name = match table.remove(tag) {
        Some(toml::Value::String(s)) => s,
        Some(other) => {
            return Err(vec![FieldError::new(
                &[tag],
                format!("must be a string, not {}", other.type_str()),
            )])
        }
        None => return Err(vec![FieldError::new(&[], format!("missing field `{tag}`"))]),
    };
    let mut outer = toml::Table::new();
    outer.insert(name.clone(), toml::Value::Table(table));
    // Paths inside the variant come without it (serde_path_to_error names the
    // variant in a segment `parse_table` leaves out).
    parse_table::<T>(toml::Value::Table(outer)).map_err(|errors| {
        errors
            .into_iter()
            .map(|mut e| {
                if e.path.is_empty() {
                    if e.message.starts_with("unknown variant `") {
                        // "unknown variant `loki`, expected one of ...": the tag's value.
                        e.path = vec![tag.to_string()];
                    } else if let Some(field) = unknown_field_name(&e.message) {
                        // serde names an unknown field in its message, not its path.
                        e.path = vec![field];
                    }
                }
                e
            })
            .collect()
    })
}

/// `x` of serde's "unknown field `x`, expected ...".
fn unknown_field_name(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    Some(rest.split_once('`')?.0.to_string())
}

/// Deserializes `C`, tracking the path of a type error and collecting the paths of
/// the fields `C` ignored.
fn parse_tracked<C: DeserializeOwned>(
    value: toml::Value,
) -> (
    Result<C, serde_path_to_error::Error<toml::de::Error>>,
    Vec<Vec<String>>,
) {
    let mut unknown: Vec<Vec<String>> = Vec::new();
    let result: Result<C, _> = {
        let mut on_unknown = |path: serde_ignored::Path<'_>| unknown.push(ignored_path(&path));
        let de = serde_ignored::Deserializer::new(value, &mut on_unknown);
        serde_path_to_error::deserialize(de)
    };
    (result, unknown)
}

/// [`FieldError`]s of a parse: each unknown field, then the type error if any.
fn finish_parse<C>(
    result: Result<C, serde_path_to_error::Error<toml::de::Error>>,
    unknown: Vec<Vec<String>>,
) -> Result<C, Vec<FieldError>> {
    let mut errors = Vec::new();
    for path in unknown {
        let name = path.last().cloned().unwrap_or_default();
        errors.push(FieldError {
            path,
            message: format!("unknown field `{name}`"),
        });
    }
    match result {
        Ok(c) if errors.is_empty() => Ok(c),
        Ok(_) => Err(errors),
        Err(e) => {
            let path: Vec<String> = e
                .path()
                .iter()
                .filter_map(|seg| match seg {
                    serde_path_to_error::Segment::Map { key } => Some(key.clone()),
                    serde_path_to_error::Segment::Seq { index } => Some(index.to_string()),
                    _ => None,
                })
                .collect();
            errors.push(FieldError {
                path,
                message: e.into_inner().to_string(),
            });
            Err(errors)
        }
    }
}

fn ignored_path(path: &serde_ignored::Path<'_>) -> Vec<String> {
    use serde_ignored::Path;
    let mut out = match path {
        Path::Root => return Vec::new(),
        Path::Seq { parent, .. }
        | Path::Map { parent, .. }
        | Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => ignored_path(parent),
    };
    match path {
        Path::Seq { index, .. } => out.push(index.to_string()),
        Path::Map { key, .. } => out.push(key.clone()),
        _ => {}
    }
    out
}

/// Reads a source table into `C`, boxed (what [`Kind::source`] registers).
pub fn parse_source<C: SourceConfig + DeserializeOwned>(
    v: toml::Value,
) -> Result<Box<dyn SourceConfig>, Vec<FieldError>> {
    parse_table::<C>(v).map(|c| Box::new(c) as Box<dyn SourceConfig>)
}

pub fn parse_transform<C: TransformConfig + DeserializeOwned>(
    v: toml::Value,
) -> Result<Box<dyn TransformConfig>, Vec<FieldError>> {
    parse_table::<C>(v).map(|c| Box::new(c) as Box<dyn TransformConfig>)
}

pub fn parse_sink<C: SinkConfig + DeserializeOwned>(
    v: toml::Value,
) -> Result<Box<dyn SinkConfig>, Vec<FieldError>> {
    parse_table::<C>(v).map(|c| Box::new(c) as Box<dyn SinkConfig>)
}
