//! Building and running topologies, and running the `profpipe` binary.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use profpipe::buffer::BufferConfig;
use profpipe::component::{SinkConfig, SourceConfig, TransformConfig};
use profpipe::config::{
    AgentConfig, Config, SinkEntry, SourceEntry, TelemetryConfig, TransformEntry,
};
use profpipe::telemetry::Telemetry;
use profpipe::topology::{self, Outcome, RunningTopology};

pub fn source(id: &str, type_name: &'static str, config: impl SourceConfig) -> SourceEntry {
    boxed_source(id, type_name, Box::new(config))
}

pub fn boxed_source(
    id: &str,
    type_name: &'static str,
    config: Box<dyn SourceConfig>,
) -> SourceEntry {
    SourceEntry {
        labels: Default::default(),
        id: id.into(),
        type_name,
        declared: String::new(),
        config,
    }
}

pub fn transform(
    id: &str,
    type_name: &'static str,
    inputs: &[&str],
    config: impl TransformConfig,
) -> TransformEntry {
    TransformEntry {
        id: id.into(),
        type_name,
        inputs: inputs.iter().map(|i| (*i).into()).collect(),
        buffer: BufferConfig::default(),
        declared: String::new(),
        config: Box::new(config),
    }
}

pub fn sink(
    id: &str,
    type_name: &'static str,
    inputs: &[&str],
    config: impl SinkConfig,
) -> SinkEntry {
    sink_with_buffer(id, type_name, inputs, BufferConfig::default(), config)
}

pub fn sink_with_buffer(
    id: &str,
    type_name: &'static str,
    inputs: &[&str],
    buffer: BufferConfig,
    config: impl SinkConfig,
) -> SinkEntry {
    SinkEntry {
        id: id.into(),
        type_name,
        inputs: inputs.iter().map(|i| (*i).into()).collect(),
        buffer,
        declared: String::new(),
        config: Box::new(config),
    }
}

/// Agent settings with the state (scratch) directory at `state_dir`.
pub fn agent_with_state(state_dir: &Path) -> AgentConfig {
    AgentConfig {
        state_dir: state_dir.to_path_buf(),
        ..AgentConfig::default()
    }
}

pub fn config(
    agent: AgentConfig,
    sources: Vec<SourceEntry>,
    transforms: Vec<TransformEntry>,
    sinks: Vec<SinkEntry>,
) -> Config {
    Config {
        agent,
        telemetry: TelemetryConfig::default(),
        sources,
        transforms,
        sinks,
    }
}

/// Builds and starts `config` on host `test-host`.
pub fn start(config: &Config, telemetry: &Telemetry) -> RunningTopology {
    let built = topology::build(config, telemetry, "test-host".into()).unwrap();
    RunningTopology::start(built)
}

/// Runs a topology of finite sources until they end (draining for up to 30 s), and
/// insists the run was clean.
pub async fn to_end(running: RunningTopology) -> Outcome {
    let outcome = running
        .run_until(std::future::pending(), Duration::from_secs(30))
        .await;
    assert!(outcome.is_clean(), "{outcome:?}");
    outcome
}

/// Writes a pipeline's TOML `text` to `dir/name` and returns the file's path.
pub fn write_config(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// The `profpipe` binary of this build.
pub fn profpipe() -> Command {
    Command::new(env!("CARGO_BIN_EXE_profpipe"))
}

/// `PATH` with the profilers `scripts/setup-test-env.sh` installs in front.
pub fn tools_path() -> String {
    let home = std::env::var("HOME").unwrap_or_default();
    format!(
        "{home}/.cache/profpipe-tools/bin:{}",
        std::env::var("PATH").unwrap_or_default()
    )
}

/// Waits for `child` to exit; kills it and panics after `limit`.
pub fn wait_with_timeout(child: &mut Child, limit: Duration) -> ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{child:?} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
