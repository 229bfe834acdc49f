//! One command's pipeline, running: started from its validated config as
//! `profpipe run` starts one (sink healthchecks, build, run), stopped on request.
//! Stopping tells its sources to stop, lets what is in flight drain within `[agent]
//! shutdown_timeout`, and completes once every child process it started is reaped.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::command::{CommandId, Profilers};
use super::plan::{Planned, Slot};
use crate::telemetry::Telemetry;
use crate::topology::{self, Outcome, RunningTopology};

/// How long the sinks' healthchecks may take before a command's pipeline starts.
const HEALTHCHECK_TIMEOUT: Duration = Duration::from_secs(10);

pub struct RunningPipeline {
    pub command_id: CommandId,
    pub profilers: Profilers,
    /// The TOML it was built from: a reload that yields the same text keeps it.
    pub text: String,
    pub telemetry: Telemetry,
    pub started: Instant,
    stop: Option<oneshot::Sender<()>>,
    done: Option<JoinHandle<Outcome>>,
}

impl RunningPipeline {
    /// Healthchecks, builds and spawns `planned`. `Err`: why it could not start.
    pub async fn start(
        planned: Planned,
        host: Arc<str>,
        slot: Slot,
        command_id: CommandId,
        profilers: Profilers,
    ) -> Result<RunningPipeline, String> {
        let Planned { text, config } = planned;
        let failures = topology::run_healthchecks(&config, HEALTHCHECK_TIMEOUT).await;
        if !failures.is_empty() {
            let why: Vec<String> = failures
                .iter()
                .map(|(id, why)| format!("sink {id}: healthcheck failed: {why}"))
                .collect();
            return Err(why.join("; "));
        }
        let telemetry = Telemetry::new();
        let built = topology::build(&config, &telemetry, host).map_err(|e| e.to_string())?;
        let running = RunningTopology::start(built);
        let (stop, stopped) = oneshot::channel::<()>();
        let drain = config.agent.shutdown_timeout.get();
        let done = tokio::spawn(running.run_until(
            async move {
                // A dropped sender stops the pipeline too.
                let _ = stopped.await;
            },
            drain,
        ));
        tracing::debug!(slot = slot.name(), "command pipeline built");
        Ok(RunningPipeline {
            command_id,
            profilers,
            text,
            telemetry,
            started: Instant::now(),
            stop: Some(stop),
            done: Some(done),
        })
    }

    /// Seconds since it started.
    pub fn elapsed_secs(&self) -> u64 {
        self.started.elapsed().as_secs()
    }

    /// Completes when the pipeline has ended by itself (finite sources done, or a
    /// component failed). Pending forever once [`RunningPipeline::finish`] took it.
    pub async fn ended(&mut self) -> Outcome {
        match self.done.as_mut() {
            Some(h) => {
                let r = h.await;
                self.done = None;
                joined(r)
            }
            None => std::future::pending().await,
        }
    }

    /// Stops it and waits until it has drained and every child is reaped.
    pub async fn finish(mut self) -> Outcome {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        match self.done.take() {
            Some(h) => joined(h.await),
            None => Outcome::default(),
        }
    }
}

fn joined(r: Result<Outcome, tokio::task::JoinError>) -> Outcome {
    r.unwrap_or_else(|e| Outcome {
        failed: vec![format!("pipeline task: {e}")],
        aborted: 0,
    })
}
