//! `profpipe run`: run a pipeline until it finishes or the agent is told to stop.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;

use profpipe::config::{self, Config, Registry};
use profpipe::control::{self, ControlFile};
use profpipe::telemetry::{server, Telemetry};
use profpipe::topology::{self, RunningTopology};

/// The pipeline `profpipe run` runs without `--config`.
pub const DEFAULT_PIPELINE: &str = include_str!("../../pipelines/default.toml");
const DEFAULT_NAME: &str = "<embedded default pipeline>";
/// How long each sink's healthcheck may take at start.
const HEALTHCHECK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Pipeline config (TOML). Without it, the embedded default pipeline profiles
    /// this host (see pipelines/default.toml) and writes to ./profiles.
    #[arg(short, long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Window length of every live profiler source (e.g. "30s"), overriding the config.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub duration: Option<std::time::Duration>,

    /// Profile one window, deliver it, and exit.
    #[arg(long)]
    pub once: bool,
}

pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let registry = profpipe::registry::registry();
    if let Some(path) = &args.config {
        if let Ok(text) = std::fs::read_to_string(path) {
            if control::is_control_mode(&text) {
                return run_control(path, &text, registry, &args);
            }
        }
    }
    let (name, loaded) = match &args.config {
        Some(path) => (path.clone(), config::load_file(path, &registry)),
        None => {
            let name = PathBuf::from(DEFAULT_NAME);
            let loaded = config::load_str(&name, DEFAULT_PIPELINE, &registry);
            (name, loaded)
        }
    };
    let mut config = match loaded {
        Ok(c) => c,
        Err(errors) => {
            eprintln!("{errors}");
            eprintln!(
                "profpipe: {} error(s) in {}",
                errors.0.len(),
                name.display()
            );
            return Ok(ExitCode::from(2));
        }
    };
    if args.duration.is_some() || args.once {
        let max_windows = args.once.then_some(1);
        for s in &mut config.sources {
            s.config.override_windows(args.duration, max_windows);
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(8)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(run_config(config))
}

async fn run_config(config: Config) -> anyhow::Result<ExitCode> {
    let telemetry = Telemetry::new();
    let host: Arc<str> = config
        .agent
        .hostname
        .clone()
        .unwrap_or_else(hostname)
        .into();
    // A wrong endpoint or a revoked credential is a clear error now, not retries later.
    let failures = topology::run_healthchecks(&config, HEALTHCHECK_TIMEOUT).await;
    if !failures.is_empty() {
        for (id, why) in &failures {
            tracing::error!(sink = %id, "healthcheck failed: {why}");
        }
        return Ok(ExitCode::from(1));
    }
    let built = topology::build(&config, &telemetry, host).context("building the pipeline")?;
    let running = RunningTopology::start(built);
    if let Some(addr) = config.telemetry.listen {
        let (bound, _task) = server::serve(addr, telemetry.clone(), running.shutdown_signal())
            .await
            .with_context(|| format!("binding the metrics endpoint on {addr}"))?;
        tracing::info!(%bound, "serving metrics on /metrics");
    }
    let until = if running.all_sources_finite() {
        "its sources finish (or SIGINT/SIGTERM)"
    } else {
        "SIGINT/SIGTERM"
    };
    tracing::info!(
        sources = config.sources.len(),
        transforms = config.transforms.len(),
        sinks = config.sinks.len(),
        until,
        "pipeline running"
    );
    let outcome = running
        .run_until(stop_signal(), config.agent.shutdown_timeout.get())
        .await;
    if outcome.is_clean() {
        tracing::info!("pipeline finished");
        Ok(ExitCode::SUCCESS)
    } else {
        for f in &outcome.failed {
            tracing::error!("{f}");
        }
        Ok(ExitCode::from(1))
    }
}

/// `profpipe run` with a `[control]` table: only the heartbeat client runs until
/// the server sends a command (see `profpipe::control`).
fn run_control(
    path: &std::path::Path,
    text: &str,
    registry: Registry,
    args: &RunArgs,
) -> anyhow::Result<ExitCode> {
    if args.duration.is_some() || args.once {
        anyhow::bail!("--duration and --once do not apply with [control]: commands set them");
    }
    let file = match ControlFile::parse(path, text, &registry) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("profpipe: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    // The same runtime as a plain run: the command pipelines run on it.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(8)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    match rt.block_on(control::run(file, registry, stop_signal())) {
        Ok(()) => {
            tracing::info!("control plane stopped");
            Ok(ExitCode::SUCCESS)
        }
        Err(e @ control::ControlError::AlreadyRunning { .. }) => {
            eprintln!("profpipe: {e}");
            Ok(ExitCode::from(3))
        }
        Err(e) => Err(e.into()),
    }
}

/// Completes on SIGINT or SIGTERM.
async fn stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("received SIGINT"),
        _ = term.recv() => tracing::info!("received SIGTERM"),
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}
