//! The `http` sink's targets: what each server expects, and the one list of them.
//!
//! A target is its keys (a struct serde checks: unknown keys are refused), an
//! [`HttpTarget`] impl that says how the sink talks to that server, and a
//! [`Shape`] that turns windows into requests. Adding a target is one file and one
//! line in [`targets!`] below.

use std::fmt;

use reqwest::header::{HeaderName, HeaderValue};
use reqwest::Url;
use serde::Deserialize;

use super::service::{HttpRequest, Probe};
use crate::component::FieldError;
use crate::sinks::delivering::Refused;
use crate::sinks::pending::CompleteWindow;
use crate::telemetry::ComponentMetrics;

/// How the sink speaks to one kind of server.
pub trait HttpTarget: fmt::Debug + Send + Sync {
    /// Checks of the target's own keys, without I/O.
    fn validate(&self) -> Vec<FieldError> {
        Vec::new()
    }

    /// `max_request_bytes` when the config does not set it: the server's limit.
    fn default_max_request_bytes(&self) -> u64;

    /// Credential headers of the target's own (read now: a missing secret is a
    /// start-up error), sent with every request and the healthcheck.
    fn credentials(&self) -> Result<Vec<(HeaderName, HeaderValue)>, String> {
        Ok(Vec::new())
    }

    /// What the healthcheck fetches (`None`: nothing to check).
    fn probe(&self, endpoint: &Url) -> Result<Option<Probe>, String>;

    /// The request builder of a running sink.
    fn shape(&self, endpoint: &Url, max_request_bytes: usize) -> Box<dyn Shape>;
}

/// Turns windows into requests for one target.
pub trait Shape: Send {
    /// The window's requests (parts of a split window share its tokens), or why it
    /// cannot be sent. Counts what it changed on the way (truncated stacks, labels
    /// left out) in `metrics`.
    fn requests(
        &mut self,
        window: &CompleteWindow,
        metrics: &ComponentMetrics,
    ) -> Result<Vec<HttpRequest>, Refused>;
}

/// The list of targets: `Variant(KeysType) = "name",`. Makes the enum serde reads
/// (one variant per target, its keys checked by serde) and the dispatch to each
/// target's [`HttpTarget`].
macro_rules! targets {
    ($($variant:ident($keys:ty) = $name:literal,)*) => {
        /// `target = "..."` and the keys of that target.
        #[derive(Debug, Deserialize)]
        pub enum Target {
            $(#[serde(rename = $name)] $variant($keys),)*
        }

        impl Target {
            pub fn get(&self) -> &dyn HttpTarget {
                match self {
                    $(Target::$variant(t) => t,)*
                }
            }

            pub fn name(&self) -> &'static str {
                match self {
                    $(Target::$variant(_) => $name,)*
                }
            }

            /// Every target's name and the names of its keys.
            pub fn keys() -> Vec<(&'static str, &'static [&'static str])> {
                vec![$(($name, crate::component::struct_fields::<$keys>()),)*]
            }
        }
    };
}

targets! {
    Pyroscope(super::pyroscope::PyroscopeTarget) = "pyroscope",
    Gprofiler(super::gprofiler::GprofilerTarget) = "gprofiler",
    Generic(super::generic::GenericTarget) = "generic",
    Otlp(super::otlp::OtlpTarget) = "otlp",
}
