//! `profpipe run`: run a pipeline until it finishes or the agent is told to stop.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use std::time::Instant;

use anyhow::Context;
use tokio::signal::unix::{signal, SignalKind};

use profpipe::config::{self, Config};
use profpipe::control::{self, ControlFile};
use profpipe::shutdown::ShutdownTrigger;
use profpipe::state_dir::{self, ClaimError};
use profpipe::telemetry::{server, Telemetry};
use profpipe::topology::{self, Reloaded, RunningTopology};

/// The pipeline `profpipe run` runs without `--config`.
pub const DEFAULT_PIPELINE: &str = include_str!("../../pipelines/default.toml");
const DEFAULT_NAME: &str = "<embedded default pipeline>";

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
                return run_control(path, &text, &args);
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
    apply_overrides(&mut config, args.duration, args.once);
    let reload = args.config.clone().map(|path| Reload {
        path,
        duration: args.duration,
        once: args.once,
    });
    runtime()?.block_on(run_config(config, reload))
}

/// The agent's runtime: two workers (it shares the host with what it profiles), a
/// few threads for blocking file work.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(8)
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// Runs `config` until SIGINT/SIGTERM or until its finite sources end. With a config
/// file, SIGHUP reloads it: the new file is loaded, validated and healthchecked
/// first, and a bad one is logged while the running pipeline keeps going. A good
/// one is applied in place where it can be: what changed is replaced, with what is
/// downstream of it, and the rest keeps running with its children and buffers
/// (`topology::RunningTopology::reload`). Otherwise the pipeline restarts (the old
/// one drains within `shutdown_timeout` first).
async fn run_config(mut config: Config, reload: Option<Reload>) -> anyhow::Result<ExitCode> {
    let host: Arc<str> = config
        .agent
        .hostname
        .clone()
        .unwrap_or_else(hostname)
        .into();
    let _claim = match state_dir::claim(&config.agent.state_dir) {
        Ok(lock) => lock,
        Err(e @ ClaimError::AlreadyRunning(_)) => {
            eprintln!("profpipe: {e}");
            return Ok(ExitCode::from(3));
        }
        Err(e) => return Err(e.into()),
    };
    // A wrong endpoint or a revoked credential is a clear error now, not retries
    // later (an unreachable one behind a disk buffer is not: see `gate`).
    if let Err(failures) =
        topology::healthcheck::gate(&config, topology::healthcheck::START_TIMEOUT).await
    {
        for f in failures {
            tracing::error!("{f}");
        }
        return Ok(ExitCode::from(1));
    }
    // A restarted pipeline gets its own registry (a registry cannot forget a
    // metric); the endpoint shows the current one.
    let current = Arc::new(std::sync::Mutex::new(Telemetry::new()));
    let (server_stop, server_signal) = ShutdownTrigger::new();
    if let Some(addr) = config.telemetry.listen {
        let page = current.clone();
        let render: server::Render = Arc::new(move || page.lock().unwrap().render());
        let (bound, _task) = server::serve_with(addr, render, server_signal)
            .await
            .with_context(|| format!("binding the metrics endpoint on {addr}"))?;
        tracing::info!(%bound, "serving metrics on /metrics");
    }
    let mut hup = signal(SignalKind::hangup()).context("installing a SIGHUP handler")?;
    let mut stop = Box::pin(stop_signal());
    let mut running = start(&config, &current, &host)?;
    loop {
        let signal = running
            .until(async {
                tokio::select! {
                    _ = &mut stop => Signal::Stop,
                    _ = hup.recv() => Signal::Reload,
                }
            })
            .await;
        if matches!(signal, None | Some(Signal::Stop)) {
            let outcome = running.stop().await;
            server_stop.trigger();
            return Ok(if outcome.is_clean() {
                tracing::info!("pipeline finished");
                ExitCode::SUCCESS
            } else {
                for f in &outcome.failed {
                    tracing::error!("{f}");
                }
                ExitCode::from(1)
            });
        }
        let Some(r) = &reload else {
            tracing::info!("received SIGHUP: the embedded pipeline has nothing to reload");
            continue;
        };
        tracing::info!("received SIGHUP: reloading {}", r.path.display());
        let started = Instant::now();
        let new = match r.load(&config).await {
            Ok(c) => c,
            Err(why) => {
                tracing::error!("reload refused, the running pipeline keeps going:\n{why}");
                continue;
            }
        };
        let millis = || started.elapsed().as_millis() as u64;
        match running.reload(&new).await {
            Ok(Reloaded::Unchanged) => {
                tracing::info!(millis = millis(), "configuration reloaded: nothing changed")
            }
            Ok(Reloaded::InPlace {
                rebuilt,
                replaced,
                added,
                removed,
            }) => tracing::info!(
                millis = millis(),
                rebuilt,
                replaced,
                added,
                removed,
                "configuration reloaded in place: what did not change kept running"
            ),
            Ok(Reloaded::NeedsRestart(why)) => {
                let outcome = running.stop().await;
                for f in &outcome.failed {
                    tracing::error!("{f}");
                }
                running = match start(&new, &current, &host) {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::error!(
                            "reload failed, the previous configuration starts again: {e:#}"
                        );
                        running = start(&config, &current, &host)?;
                        continue;
                    }
                };
                tracing::info!(
                    millis = millis(),
                    because = %why,
                    "configuration reloaded: the pipeline restarted"
                );
            }
            Err(e) => {
                tracing::error!("reload refused, the running pipeline keeps going:\n{e}");
                continue;
            }
        }
        config = new;
    }
}

/// What ends a wait of the running pipeline.
enum Signal {
    Stop,
    Reload,
}

/// Builds `config` with a new registry (made the endpoint's) and starts it.
fn start(
    config: &Config,
    current: &std::sync::Mutex<Telemetry>,
    host: &Arc<str>,
) -> anyhow::Result<RunningTopology> {
    let telemetry = Telemetry::new();
    *current.lock().unwrap() = telemetry.clone();
    let built =
        topology::build(config, &telemetry, host.clone()).context("building the pipeline")?;
    let running = RunningTopology::start(built);
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
    Ok(running)
}

/// Where a SIGHUP reloads the config from, and the command line's overrides.
struct Reload {
    path: PathBuf,
    duration: Option<std::time::Duration>,
    once: bool,
}

impl Reload {
    /// The file, loaded, overridden as at start, and healthchecked. The state
    /// directory is the agent's for its life (it holds the directory's lock).
    async fn load(&self, running: &Config) -> Result<Config, String> {
        let registry = profpipe::registry::registry();
        let mut config = config::load_file(&self.path, &registry).map_err(|e| e.to_string())?;
        apply_overrides(&mut config, self.duration, self.once);
        if config.agent.state_dir != running.agent.state_dir {
            return Err(format!(
                "[agent] state_dir cannot change while the agent runs (it is {}); restart the agent to move it",
                running.agent.state_dir.display()
            ));
        }
        topology::healthcheck::gate(&config, topology::healthcheck::START_TIMEOUT)
            .await
            .map_err(|failures| failures.join("\n"))?;
        Ok(config)
    }
}

fn apply_overrides(config: &mut Config, duration: Option<std::time::Duration>, once: bool) {
    if duration.is_some() || once {
        let max_windows = once.then_some(1);
        for s in &mut config.sources {
            s.config.override_windows(duration, max_windows);
        }
    }
}

/// `profpipe run` with a `[control]` table: only the heartbeat client runs until
/// the server sends a command (see `profpipe::control`).
fn run_control(path: &std::path::Path, text: &str, args: &RunArgs) -> anyhow::Result<ExitCode> {
    if args.duration.is_some() || args.once {
        anyhow::bail!("--duration and --once do not apply with [control]: commands set them");
    }
    let file = match ControlFile::parse(path, text) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("profpipe: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    // The same runtime as a plain run: the command pipelines run on it.
    match runtime()?.block_on(control::run(file, stop_signal())) {
        Ok(()) => {
            tracing::info!("control plane stopped");
            Ok(ExitCode::SUCCESS)
        }
        Err(e @ control::ControlError::Claim(ClaimError::AlreadyRunning(_))) => {
            eprintln!("profpipe: {e}");
            Ok(ExitCode::from(3))
        }
        Err(e) => Err(e.into()),
    }
}

/// Completes on SIGINT or SIGTERM.
async fn stop_signal() {
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
