//! One command's pipeline, running: started as `profpipe run` starts a pipeline
//! (the sinks' healthchecks first, then build and run) in a task of its own, which
//! also applies reloads to it.
//!
//! Stopping stops its sources; what is in flight drains within `[agent]
//! shutdown_timeout` and its children are reaped. A reload replaces what changed
//! in place; the profilers that did not change, their children and their windows
//! keep running ([`RunningTopology::reload`]).

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::command::{CommandId, ProfilingRequest};
use super::plan::Planned;
use crate::config::Config;
use crate::telemetry::Telemetry;
use crate::topology::{self, Outcome, Reloaded, RunningTopology};

/// A reload handed to the pipeline's task, and where its answer goes.
type Reload = (Config, oneshot::Sender<Result<Reloaded, String>>);

pub struct RunningPipeline {
    pub command_id: CommandId,
    pub request: ProfilingRequest,
    /// The text it was built from: a reload that yields the same text changes nothing.
    pub text: String,
    pub started: Instant,
    telemetry: Telemetry,
    stop: Option<oneshot::Sender<()>>,
    reloads: mpsc::Sender<Reload>,
    done: Option<JoinHandle<Outcome>>,
}

impl RunningPipeline {
    /// Healthchecks the sinks, builds the pipeline and spawns its task.
    pub async fn start(
        planned: Planned,
        host: Arc<str>,
        command_id: CommandId,
        request: ProfilingRequest,
    ) -> Result<RunningPipeline, String> {
        healthcheck(&planned.config).await?;
        let telemetry = Telemetry::new();
        let built =
            topology::build(&planned.config, &telemetry, host).map_err(|e| e.to_string())?;
        let running = RunningTopology::start(built);
        let (stop, stopped) = oneshot::channel();
        let (reloads, requests) = mpsc::channel(1);
        let done = tokio::spawn(drive(running, stopped, requests));
        Ok(RunningPipeline {
            command_id,
            request,
            text: planned.text,
            started: Instant::now(),
            telemetry,
            stop: Some(stop),
            reloads,
            done: Some(done),
        })
    }

    /// Its registry, for the `/metrics` page.
    pub fn telemetry(&self) -> Telemetry {
        self.telemetry.clone()
    }

    /// Seconds since it started.
    pub fn elapsed_secs(&self) -> u64 {
        self.started.elapsed().as_secs()
    }

    /// Completes when the pipeline has ended by itself (finite sources, delivered)
    /// or failed. Pending forever once it has completed.
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

    /// Applies `planned`, this command's pipeline under a new config, in place
    /// where it can. `NeedsRestart`: nothing was changed, the caller restarts it.
    /// `Err`: what is new cannot start; nothing was changed.
    pub async fn reload(&mut self, planned: Planned) -> Result<Reloaded, String> {
        healthcheck(&planned.config).await?;
        let (reply, answer) = oneshot::channel();
        if self.reloads.send((planned.config, reply)).await.is_err() {
            return Err("the pipeline has ended".into());
        }
        let reloaded = answer
            .await
            .unwrap_or_else(|_| Err("the pipeline has ended".into()))?;
        if !matches!(reloaded, Reloaded::NeedsRestart(_)) {
            self.text = planned.text;
        }
        Ok(reloaded)
    }
}

/// The pipeline's task: runs it, applies reloads, and stops it when told to (or
/// when its handle is dropped).
async fn drive(
    mut running: RunningTopology,
    mut stop: oneshot::Receiver<()>,
    mut reloads: mpsc::Receiver<Reload>,
) -> Outcome {
    loop {
        let next = running
            .until(async {
                tokio::select! {
                    _ = &mut stop => None,
                    r = reloads.recv() => r,
                }
            })
            .await;
        match next {
            Some(Some((config, reply))) => {
                let r = running.reload(&config).await.map_err(|e| e.to_string());
                let _ = reply.send(r);
            }
            // Told to stop, or every component has returned.
            Some(None) | None => return running.stop().await,
        }
    }
}

async fn healthcheck(config: &Config) -> Result<(), String> {
    topology::healthcheck::gate(config, topology::healthcheck::START_TIMEOUT)
        .await
        .map_err(|failures| failures.join("; "))
}

fn joined(r: Result<Outcome, tokio::task::JoinError>) -> Outcome {
    r.unwrap_or_else(|e| Outcome {
        failed: vec![format!("pipeline task: {e}")],
        aborted: 0,
    })
}
