//! `type = "http_server"`: a push gateway. Other hosts push profiles to it the way
//! they push to Pyroscope (`POST /ingest`, folded text) or to gProfiler's
//! Performance Studio (`POST /api/v2/profiles`, gzipped JSON), and it feeds them
//! into the pipeline like any source.
//!
//! ```toml
//! [sources.gateway]
//! type = "http_server"
//! address = "0.0.0.0:4040"               # default 127.0.0.1:4040
//! auth = { token = { file = "/etc/profpipe/push-token" } }   # or "${PUSH_TOKEN}"
//! ```
//!
//! A push is answered 2xx only once every sink it feeds confirmed delivery: the
//! request's events carry the tokens of one [`Batch`](crate::event::Batch), and the
//! handler waits for its outcome. `Rejected` is answered 422, `Errored` or no
//! outcome within `ack_timeout` 503 with `Retry-After` (the data may still arrive
//! later, so a retry can duplicate it: at-least-once). See `respond.rs` for every
//! status.
//!
//! Files, one concept each: `config` (the table), `auth` (the bearer token),
//! `pyroscope` and `gprofiler` (the two payloads → [`Push`]), `handler` (routing,
//! limits, waiting for delivery), `server` (connections, the emitter that sends
//! events and watermarks, shutdown), `respond` (status codes and bodies).

mod auth;
mod config;
mod gprofiler;
mod handler;
mod pyroscope;
mod respond;
mod server;

use crate::component::{BuildError, FieldError, SourceConfig, SourceContext, Task};
use crate::event::{LabelSet, Stack, Window};

pub use auth::{Token, TokenError};
pub use config::{AuthConfig, HttpServerConfig, DEFAULT_PORT, MAX_CONCURRENT_REQUESTS};
#[cfg(any(test, fuzzing))]
#[doc(hidden)]
pub use handler::parse_request;

/// One pushed profile, whichever protocol brought it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Push {
    /// `[from, until)` of a Pyroscope push; `[start_time, end_time)` of an upload.
    pub window: Window,
    /// The host the client named; the peer's address when it named none.
    pub host: Option<String>,
    /// The `profiler` label: Pyroscope's `spyName`, or `gprofiler`.
    pub profiler: String,
    pub labels: LabelSet,
    pub stacks: Vec<Stack>,
}

impl SourceConfig for HttpServerConfig {
    fn outputs(&self) -> crate::event::DataTypes {
        crate::event::DataTypes::PROFILE
    }

    fn validate(&self) -> Vec<FieldError> {
        self.check()
    }

    fn build(&self, cx: SourceContext) -> Result<Task, BuildError> {
        let token = match &self.auth {
            Some(a) => Some(Token::load(a).map_err(|e| BuildError(format!("auth: {e}")))?),
            None => None,
        };
        // Bound now, so a taken port is a start-up error, not a task failure later.
        let listener = std::net::TcpListener::bind(self.address)
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .map_err(|e| BuildError(format!("cannot listen on {}: {e}", self.address)))?;
        Ok(server::run(self.clone(), token, listener, cx))
    }
}
