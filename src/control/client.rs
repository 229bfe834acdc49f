//! The HTTP side of the control plane, wire-compatible with Performance Studio:
//! `POST {server}/api/metrics/heartbeat` and `POST {server}/api/metrics/command_completion`,
//! JSON bodies, `Authorization: Bearer <token>` (gProfiler's heartbeat header).
//!
//! Every exchange is bounded: the whole request, reply body included, within
//! `[control] timeout` (a reply that never ends is cut off there), the body within
//! `max_response_bytes` (read chunk by chunk; a 50 MB reply costs at most that),
//! its JSON within [`reply::MAX_DEPTH`] levels. One connection pool for the life of
//! the client; no redirects.

use std::time::Duration;

use reqwest::header::{HeaderValue, AUTHORIZATION};
use reqwest::Url;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::config::ControlConfig;
use super::error::{ControlError, ExchangeError};
use super::reply;
use super::state::Completion;

/// A heartbeat, as gProfiler's agent sends it (`gprofiler-facts.md` §5).
#[derive(Debug, Serialize)]
pub struct Heartbeat<'a> {
    pub ip_address: String,
    pub hostname: &'a str,
    pub service_name: &'a str,
    pub last_command_id: Option<&'a str>,
    pub status: &'static str,
    pub timestamp: String,
    pub received_command_ids: Vec<&'a str>,
    pub executed_command_ids: Vec<&'a str>,
    pub perf_supported_events: &'a [String],
    pub agent_version: &'static str,
    pub run_mode: &'static str,
}

/// The server's answer. Fields are optional: the server answers `success: true`
/// with no command when it has none (or had an internal error).
#[derive(Debug, Default, Deserialize)]
pub struct HeartbeatReply {
    #[serde(default)]
    pub success: Option<bool>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub profiling_command: Option<Value>,
    #[serde(default)]
    pub command_id: Option<Value>,
}

/// `command_completion`'s body.
#[derive(Debug, Serialize)]
struct CompletionBody<'a> {
    command_id: &'a str,
    hostname: &'a str,
    status: &'a str,
    execution_time: u64,
    error_message: Option<&'a str>,
    results_path: Option<&'a str>,
}

#[derive(Debug, Default, Deserialize)]
struct CompletionReply {
    #[serde(default)]
    success: Option<bool>,
    #[serde(default)]
    message: Option<String>,
}

pub struct Client {
    http: reqwest::Client,
    heartbeat: Url,
    completion: Url,
    /// `Bearer <token>`, marked sensitive (never in logs or `Debug`).
    auth: HeaderValue,
    timeout: Duration,
    max_body: u64,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("heartbeat", &self.heartbeat.as_str())
            .field("auth", &"***")
            .finish()
    }
}

impl Client {
    /// Reads the token and the TLS files; a missing one is an error now.
    pub fn new(c: &ControlConfig) -> Result<Client, ControlError> {
        let base = Url::parse(&c.server)
            .map_err(|e| ControlError::Config(format!("[control] server: {e}")))?;
        let join = |p: &str| {
            let mut u = base.clone();
            let path = format!("{}/{p}", u.path().trim_end_matches('/'));
            u.set_path(&path);
            u
        };
        let token = read_token(c)?;
        let mut auth =
            HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| ControlError::Token {
                place: "token".into(),
                why: "it has characters a header cannot carry".into(),
            })?;
        auth.set_sensitive(true);
        let mut b = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(c.timeout.get().min(Duration::from_secs(10)))
            .pool_max_idle_per_host(1)
            .user_agent(concat!("profpipe/", env!("CARGO_PKG_VERSION")));
        if let Some(tls) = &c.tls {
            if let Some(ca) = &tls.ca_file {
                let pem = read(ca)?;
                let certs = reqwest::Certificate::from_pem_bundle(&pem)
                    .map_err(|e| ControlError::Tls(format!("ca_file {}: {e}", ca.display())))?;
                if certs.is_empty() {
                    return Err(ControlError::Tls(format!(
                        "ca_file {}: no PEM certificate in it",
                        ca.display()
                    )));
                }
                b = b.tls_certs_merge(certs);
            }
            if let (Some(cert), Some(key)) = (&tls.cert_file, &tls.key_file) {
                let mut pem = read(cert)?;
                pem.push(b'\n');
                pem.extend(read(key)?);
                let id = reqwest::Identity::from_pem(&pem).map_err(|e| {
                    ControlError::Tls(format!("cert_file/key_file {}: {e}", cert.display()))
                })?;
                b = b.identity(id);
            }
        }
        let http = b
            .build()
            .map_err(|e| ControlError::Tls(format!("cannot set up the HTTP client: {e}")))?;
        Ok(Client {
            http,
            heartbeat: join("api/metrics/heartbeat"),
            completion: join("api/metrics/command_completion"),
            auth,
            timeout: c.timeout.get(),
            max_body: c.max_response_bytes.get(),
        })
    }

    pub fn heartbeat_url(&self) -> &Url {
        &self.heartbeat
    }

    pub async fn heartbeat(&self, body: &Heartbeat<'_>) -> Result<HeartbeatReply, ExchangeError> {
        let bytes = self.post(&self.heartbeat, body).await?;
        reply::parse(&bytes)
    }

    /// Reports a finished command. An answer of `success: false` (the server no
    /// longer wants it, e.g. the command was superseded) counts as delivered: sending
    /// it again cannot change that answer.
    pub async fn complete(&self, c: &Completion, hostname: &str) -> Result<(), ExchangeError> {
        let body = CompletionBody {
            command_id: &c.command_id,
            hostname,
            status: &c.status,
            execution_time: c.execution_time,
            error_message: c.error_message.as_deref(),
            results_path: None,
        };
        let bytes = self.post(&self.completion, &body).await?;
        let r: CompletionReply = if bytes.iter().all(u8::is_ascii_whitespace) {
            CompletionReply::default()
        } else {
            reply::parse(&bytes)?
        };
        if r.success == Some(false) {
            tracing::debug!(command = %c.command_id, message = r.message.as_deref().unwrap_or(""),
                "the server did not take the completion report");
        }
        Ok(())
    }

    /// POSTs `body` and reads the reply, all within the timeout.
    async fn post(&self, url: &Url, body: &impl Serialize) -> Result<Vec<u8>, ExchangeError> {
        let json = serde_json::to_vec(body).map_err(|e| ExchangeError::Transport(e.to_string()))?;
        let exchange = async {
            let response = self
                .http
                .post(url.clone())
                .header(AUTHORIZATION, self.auth.clone())
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(json)
                .send()
                .await
                .map_err(transport)?;
            let status = response.status();
            if status == 401 || status == 403 {
                return Err(ExchangeError::Auth(status.as_u16()));
            }
            if !status.is_success() {
                return Err(ExchangeError::Status(status.as_u16()));
            }
            reply::read_capped(response, self.max_body).await
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(r) => r,
            Err(_) => Err(ExchangeError::Timeout(self.timeout)),
        }
    }
}

fn transport(e: reqwest::Error) -> ExchangeError {
    // reqwest's Display of a connect error names the URL, never the headers.
    let mut why = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        why = format!("{why}: {s}");
        source = s.source();
    }
    if e.is_timeout() {
        ExchangeError::Timeout(Duration::ZERO)
    } else if e.is_connect() {
        ExchangeError::Connect(why)
    } else {
        ExchangeError::Transport(why)
    }
}

fn read(path: &std::path::Path) -> Result<Vec<u8>, ControlError> {
    std::fs::read(path).map_err(|e| ControlError::Tls(format!("{}: {e}", path.display())))
}

/// The token (from the config, its variable or its file); empty is an error.
fn read_token(c: &ControlConfig) -> Result<String, ControlError> {
    c.token
        .load()
        .map(|t| t.expose().to_string())
        .map_err(|e| ControlError::Token {
            place: "token".into(),
            why: e.to_string(),
        })
}
