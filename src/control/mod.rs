//! The control plane: profiling turned on and off by a central server, as
//! gProfiler's heartbeat mode does with Performance Studio, without its production
//! failures (`gprofiler-facts.md` §5; the journey doc's 1.2, 4.4, 4.7, 4.8).
//!
//! With a `[control]` table, `profpipe run` starts only the heartbeat client: no
//! profiler, no discovery, no buffer, no sink exists until a start command arrives.
//! A command becomes the TOML of a pipeline, loaded and validated by the same
//! loader as any config, then built and run; it is reported when its work has
//! ended. What the agent acted on is persisted in the state directory, so no
//! command runs twice across restarts.
//!
//! Assembly layer, beside [`crate::topology`]: it uses config, topology and
//! telemetry; nothing below imports it. One job per file:
//! - `config.rs`: the `[control]` table; `file.rs`: a control-mode config file,
//!   checked whole;
//! - `client.rs`: heartbeats and completion reports over HTTP(S); `reply.rs`:
//!   reading a reply within size and depth caps; `error.rs`: typed errors;
//! - `command.rs`: a reply's command through the allow-list; `plan.rs`: a command
//!   → a pipeline config; `running.rs`: one running command pipeline, which a
//!   reload leaves profiling where it did not change;
//! - `agent.rs`: the loop and the commands' semantics; `state.rs`: the persisted
//!   history (one agent per state directory: [`crate::state_dir::claim`]);
//! - `trim.rs`: giving back start-up's pages when idle;
//! - `host.rs`: what a heartbeat says about the host; `metrics.rs` and
//!   `exposition.rs`: its metrics, and one `/metrics` page for all registries.

mod agent;
mod client;
pub mod command;
pub mod config;
mod error;
mod exposition;
mod file;
mod host;
mod metrics;
pub mod plan;
mod reply;
mod running;
pub mod state;
mod trim;

use std::future::Future;
use std::sync::Arc;

pub use config::{ControlConfig, ControlTls};
pub use error::{ControlError, ExchangeError};
pub use file::{is_control_mode, ControlFile};

use crate::shutdown::ShutdownTrigger;
use crate::telemetry::{server, Telemetry};

/// Runs the control plane of `file` until `stop` completes; SIGHUP reloads `file`.
/// Takes the state directory's lock first: a second agent on it fails here.
pub async fn run(file: ControlFile, stop: impl Future<Output = ()>) -> Result<(), ControlError> {
    let state_dir = file.agent.state_dir.clone();
    let _lock = crate::state_dir::claim(&state_dir)?;
    let telemetry = Telemetry::new();
    let metrics = metrics::ControlMetrics::register(&telemetry);
    let exposition = exposition::Exposition::new(telemetry);
    let agent = agent::Agent::new(file.clone(), &state_dir, metrics, exposition.clone())?;

    let (trigger, signal) = ShutdownTrigger::new();
    if let Some(addr) = file.listen {
        let page = exposition.clone();
        let render: server::Render = Arc::new(move || page.render());
        let (bound, _task) = server::serve_with(addr, render, signal)
            .await
            .map_err(|e| ControlError::Config(format!("cannot serve metrics on {addr}: {e}")))?;
        tracing::info!(%bound, "serving metrics on /metrics");
    }
    let (hup_tx, hup_rx) = tokio::sync::mpsc::channel(1);
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .map_err(|e| ControlError::Config(format!("cannot handle SIGHUP: {e}")))?;
    let hup_task = tokio::spawn(async move {
        while hup.recv().await.is_some() {
            tracing::info!("received SIGHUP: reloading the configuration");
            // A reload already waiting covers this one too.
            let _ = hup_tx.try_send(());
        }
    });
    tracing::info!(
        server = %file.template.control.server,
        interval = ?file.template.control.interval.get(),
        state_dir = %state_dir.display(),
        "control mode: idle until the server sends a command"
    );
    agent.run(stop, hup_rx).await;
    hup_task.abort();
    trigger.trigger();
    Ok(())
}

/// For the fuzz targets (`fuzz/`) and tests: a heartbeat reply's bytes as the agent
/// reads them (the client caps their size before), through the command's
/// allow-list and, for a start command, into the pipeline it becomes in each slot.
/// A reply that is refused is fine (`Ok`); `Err` is a bug: a command the
/// allow-list took that does not make a valid pipeline.
#[cfg(any(test, fuzzing))]
#[doc(hidden)]
pub fn read_heartbeat_reply(
    bytes: &[u8],
    registry: &crate::config::Registry,
) -> Result<(), String> {
    use std::sync::OnceLock;
    static TEMPLATE: OnceLock<plan::Template> = OnceLock::new();
    let template = TEMPLATE.get_or_init(|| plan::Template {
        control: toml::from_str(
            "server = \"http://127.0.0.1:1\"\ntoken = { env = \"T\" }\nservice = \"svc\"\n",
        )
        .expect("a valid [control] table"),
        agent: Some(toml::from_str("state_dir = \"/nonexistent/profpipe-fuzz\"").expect("a table")),
        // A local sink: the default one reads its token from the environment.
        sinks: Some(
            toml::from_str("[local]\ntype = \"file\"\npath = \"/nonexistent/profiles\"\n")
                .expect("a table"),
        ),
    });
    let Ok(reply) = reply::parse::<client::HeartbeatReply>(bytes) else {
        return Ok(());
    };
    let Ok(Some(command)) =
        command::from_reply(reply.profiling_command.as_ref(), reply.command_id.as_ref())
    else {
        return Ok(());
    };
    if let Ok(command::Action::Start(request)) = &command.action {
        for slot in [None, Some(plan::Slot::Continuous), Some(plan::Slot::AdHoc)] {
            template
                .plan(std::path::Path::new("<command>"), request, slot, registry)
                .map_err(|e| {
                    format!(
                        "command {:?} ({request:?}) makes no valid pipeline: {e}",
                        command.id
                    )
                })?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    /// The fuzz target's checks (`fuzz/fuzz_targets/control_reply.rs`) on its seeds:
    /// every start command the allow-list takes plans a valid pipeline.
    #[test]
    fn replies_become_commands_that_plan_valid_pipelines() {
        let registry = crate::registry::registry();
        let seeds = std::fs::read_dir(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fuzz/seeds/control_reply"
        ))
        .unwrap();
        let mut n = 0;
        for seed in seeds {
            let path = seed.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            super::read_heartbeat_reply(&bytes, &registry)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            n += 1;
        }
        assert!(n >= 5);
        assert!(super::read_heartbeat_reply(b"[[[[", &registry).is_ok());
    }
}
