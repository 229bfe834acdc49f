//! `profpipe run`: run a pipeline until it finishes or the agent is told to stop.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;

use profpipe::config::{self, Config};
use profpipe::telemetry::{server, Telemetry};
use profpipe::topology::{self, RunningTopology};

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Pipeline config (TOML). See `pipelines/` for examples.
    #[arg(short, long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let Some(path) = args.config else {
        anyhow::bail!("no --config given (try `profpipe run --config pipelines/fold-capture.toml`)");
    };
    let config = match config::load_file(&path, &config::registry()) {
        Ok(c) => c,
        Err(errors) => {
            eprintln!("{errors}");
            eprintln!("profpipe: {} error(s) in {}", errors.0.len(), path.display());
            return Ok(ExitCode::from(2));
        }
    };
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
    let host: Arc<str> = config.agent.hostname.clone().unwrap_or_else(hostname).into();
    let built = topology::build(&config, &telemetry, host).context("building the pipeline")?;
    let running = RunningTopology::start(built);
    if let Some(addr) = config.telemetry.listen {
        let (bound, _task) = server::serve(addr, telemetry.clone(), running.shutdown_signal())
            .await
            .with_context(|| format!("binding the metrics endpoint on {addr}"))?;
        tracing::info!(%bound, "serving metrics on /metrics");
    }
    tracing::info!(
        sources = config.sources.len(),
        transforms = config.transforms.len(),
        sinks = config.sinks.len(),
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
