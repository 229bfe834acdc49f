//! One command's pipeline, running: its two halves (`link.rs`), each started as
//! `profpipe run` starts a pipeline (build, run; the sinks' healthchecks first).
//!
//! Stopping stops the profiling half (its sources stop, what is in flight drains
//! within `[agent] shutdown_timeout`, its children are reaped); the link then
//! closes and the delivery half writes what it holds and ends. A reload that
//! changes only the sinks replaces the delivery half alone.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::command::{CommandId, ProfilingRequest};
use super::link;
use super::plan::{Planned, Slot};
use crate::config::Config;
use crate::telemetry::Telemetry;
use crate::topology::{self, Outcome, RunningTopology};

/// How long the sinks' healthchecks may take before a command's pipeline starts.
const HEALTHCHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// One running topology.
struct Half {
    telemetry: Telemetry,
    drain: Duration,
    stop: Option<oneshot::Sender<()>>,
    done: Option<JoinHandle<Outcome>>,
}

impl Half {
    fn start(config: &Config, host: Arc<str>) -> Result<Half, String> {
        let telemetry = Telemetry::new();
        let built = topology::build(config, &telemetry, host).map_err(|e| e.to_string())?;
        let running = RunningTopology::start(built);
        let (stop, stopped) = oneshot::channel::<()>();
        let drain = config.agent.shutdown_timeout.get();
        let done = tokio::spawn(running.run_until(
            async move {
                // A dropped sender stops it too.
                let _ = stopped.await;
            },
            drain,
        ));
        Ok(Half {
            telemetry,
            drain,
            stop: Some(stop),
            done: Some(done),
        })
    }

    fn signal_stop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }

    /// Its outcome once it has ended (pending forever once taken).
    async fn ended(&mut self) -> Outcome {
        match self.done.as_mut() {
            Some(h) => {
                let r = h.await;
                self.done = None;
                joined(r)
            }
            None => std::future::pending().await,
        }
    }

    /// Stops it and waits for it.
    async fn finish(mut self) -> Outcome {
        self.signal_stop();
        match self.done.take() {
            Some(h) => joined(h.await),
            None => Outcome::default(),
        }
    }

    /// Waits for it to end by itself for at most its drain time (plus a margin for
    /// its children), then stops it.
    async fn finish_within(mut self) -> Outcome {
        let Some(h) = self.done.as_mut() else {
            return Outcome::default();
        };
        match tokio::time::timeout(self.drain + Duration::from_secs(5), h).await {
            Ok(r) => {
                self.done = None;
                joined(r)
            }
            Err(_) => self.finish().await,
        }
    }
}

pub struct RunningPipeline {
    pub command_id: CommandId,
    pub request: ProfilingRequest,
    pub link: String,
    /// The texts they were built from: a reload that yields the same text keeps a half.
    pub profiling_text: String,
    pub delivery_text: String,
    pub started: Instant,
    profiling: Half,
    delivery: Half,
}

impl RunningPipeline {
    /// Healthchecks the sinks, opens the link, builds and spawns both halves.
    pub async fn start(
        planned: Planned,
        host: Arc<str>,
        command_id: CommandId,
        request: ProfilingRequest,
    ) -> Result<RunningPipeline, String> {
        healthcheck(&planned.delivery).await?;
        link::open(&planned.link);
        let profiling = match Half::start(&planned.profiling, host.clone()) {
            Ok(h) => h,
            Err(e) => {
                link::close(&planned.link);
                return Err(e);
            }
        };
        let delivery = match Half::start(&planned.delivery, host) {
            Ok(h) => h,
            Err(e) => {
                profiling.finish().await;
                link::close(&planned.link);
                return Err(e);
            }
        };
        Ok(RunningPipeline {
            command_id,
            request,
            link: planned.link,
            profiling_text: planned.profiling_text,
            delivery_text: planned.delivery_text,
            started: Instant::now(),
            profiling,
            delivery,
        })
    }

    /// The registries of the two halves, for the `/metrics` page.
    pub fn telemetry(&self) -> (Telemetry, Telemetry) {
        (
            self.profiling.telemetry.clone(),
            self.delivery.telemetry.clone(),
        )
    }

    /// Seconds since it started.
    pub fn elapsed_secs(&self) -> u64 {
        self.started.elapsed().as_secs()
    }

    /// Completes when the pipeline has ended by itself: the profiling half
    /// finished (finite sources) and the delivery half delivered what it got, or
    /// either half failed. Pending forever once it has completed.
    pub async fn ended(&mut self) -> Outcome {
        let early_delivery_end = tokio::select! {
            o = self.profiling.ended() => {
                let mut d = self.delivery.ended().await;
                d.failed.extend(o.failed);
                d.aborted += o.aborted;
                return d;
            }
            d = self.delivery.ended() => d,
        };
        // The delivery half ends right after the profiling half when that one
        // finished (its link closed); then the profiling half's task is only
        // reaping its children and completes in a moment.
        if let Ok(mut o) =
            tokio::time::timeout(Duration::from_secs(5), self.profiling.ended()).await
        {
            o.failed.extend(early_delivery_end.failed);
            o.aborted += early_delivery_end.aborted;
            return o;
        }
        // The delivery half ended while profiling went on: nothing would deliver.
        self.profiling.signal_stop();
        let mut o = self.profiling.ended().await;
        o.failed.extend(early_delivery_end.failed);
        if o.failed.is_empty() {
            o.failed
                .push("the delivery half of the pipeline ended early".into());
        }
        o
    }

    /// Stops it and waits until both halves have drained and every child is reaped.
    pub async fn finish(mut self) -> Outcome {
        let mut o = std::mem::replace(
            &mut self.profiling,
            Half {
                telemetry: Telemetry::new(),
                drain: Duration::ZERO,
                stop: None,
                done: None,
            },
        )
        .finish()
        .await;
        let d = std::mem::replace(
            &mut self.delivery,
            Half {
                telemetry: Telemetry::new(),
                drain: Duration::ZERO,
                stop: None,
                done: None,
            },
        )
        .finish_within()
        .await;
        link::close(&self.link);
        o.failed.extend(d.failed);
        o.aborted += d.aborted;
        o
    }

    /// Replaces the delivery half with one built from `planned` (same link): the
    /// profiling half, its children and its windows keep running; events wait in
    /// the link meanwhile. `Err`: the new half could not start; the old one was
    /// stopped, so the caller restarts the whole pipeline.
    pub async fn replace_delivery(
        &mut self,
        planned: Planned,
        host: Arc<str>,
    ) -> Result<(), String> {
        healthcheck(&planned.delivery).await?;
        let old = std::mem::replace(
            &mut self.delivery,
            Half {
                telemetry: Telemetry::new(),
                drain: Duration::ZERO,
                stop: None,
                done: None,
            },
        );
        let outcome = old.finish().await;
        if !outcome.is_clean() {
            tracing::info!(failed = ?outcome.failed, "the old delivery half stopped with failures");
        }
        self.delivery = Half::start(&planned.delivery, host)?;
        self.delivery_text = planned.delivery_text;
        Ok(())
    }
}

async fn healthcheck(config: &Config) -> Result<(), String> {
    topology::healthcheck::gate(config, HEALTHCHECK_TIMEOUT)
        .await
        .map_err(|failures| failures.join("; "))
}

fn joined(r: Result<Outcome, tokio::task::JoinError>) -> Outcome {
    r.unwrap_or_else(|e| Outcome {
        failed: vec![format!("pipeline task: {e}")],
        aborted: 0,
    })
}

/// Names of the two halves' metrics on the `/metrics` page.
pub fn exposition_names(slot: Slot) -> (&'static str, &'static str) {
    match slot {
        Slot::Continuous => ("continuous", "continuous_delivery"),
        Slot::AdHoc => ("adhoc", "adhoc_delivery"),
    }
}
