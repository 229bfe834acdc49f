//! The control plane's errors: at start (a config or a state directory that cannot
//! be used) and per exchange with the server (classified for metrics and logs).

use std::path::PathBuf;

/// Why the control plane cannot start (or a reload is refused).
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("{0}")]
    Config(String),
    #[error("cannot read the {place}: {why}")]
    Token { place: String, why: String },
    #[error("tls: {0}")]
    Tls(String),
    #[error("state directory {path}: {source}")]
    StateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Claim(#[from] crate::state_dir::ClaimError),
    #[error("the pipeline commands would build is not valid:\n{0}")]
    Pipeline(String),
}

/// Why one heartbeat or completion report failed. [`ExchangeError::class`] is the
/// `reason` label of `profpipe_control_heartbeat_failures_total`.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("no complete answer within {0:?}")]
    Timeout(std::time::Duration),
    #[error("transport error: {0}")]
    Transport(String),
    #[error("the server refused our token (HTTP {0})")]
    Auth(u16),
    #[error("the server answered HTTP {0}")]
    Status(u16),
    #[error("the reply is larger than {0} bytes; cut off")]
    TooLarge(u64),
    #[error("the reply nests deeper than {0} levels")]
    TooDeep(usize),
    #[error("the reply is not valid JSON: {0}")]
    BadJson(String),
    #[error("the reply does not have the expected shape: {0}")]
    BadShape(String),
}

impl ExchangeError {
    /// A fixed set of metric label values.
    pub fn class(&self) -> &'static str {
        match self {
            ExchangeError::Connect(_) => "connect",
            ExchangeError::Timeout(_) => "timeout",
            ExchangeError::Transport(_) => "transport",
            ExchangeError::Auth(_) => "auth",
            ExchangeError::Status(s) if *s >= 500 => "http_5xx",
            ExchangeError::Status(_) => "http_4xx",
            ExchangeError::TooLarge(_) => "too_large",
            ExchangeError::TooDeep(_) => "too_deep",
            ExchangeError::BadJson(_) => "bad_json",
            ExchangeError::BadShape(_) => "bad_shape",
        }
    }

    /// How loud a streak of this failure is: an unreachable or overloaded server is
    /// a normal fleet event (INFO); a server that answers nonsense is a WARN; a
    /// refused token needs the operator (ERROR).
    pub fn level(&self) -> tracing::Level {
        match self {
            ExchangeError::Connect(_) | ExchangeError::Timeout(_) | ExchangeError::Transport(_) => {
                tracing::Level::INFO
            }
            ExchangeError::Status(s) if *s >= 500 || *s == 429 || *s == 408 => tracing::Level::INFO,
            ExchangeError::Auth(_) => tracing::Level::ERROR,
            _ => tracing::Level::WARN,
        }
    }
}
