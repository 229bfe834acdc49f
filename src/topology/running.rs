//! Running a built topology until it finishes or is told to stop, then draining.

use std::future::Future;
use std::time::Duration;

use tokio::task::JoinSet;

use super::builder::Built;
use crate::buffer::MemoryBudget;
use crate::component::ComponentError;
use crate::event::ComponentId;
use crate::process::Supervisor;
use crate::shutdown::{ShutdownSignal, ShutdownTrigger};

type Finished = (ComponentId, &'static str, Result<(), ComponentError>);

pub struct RunningTopology {
    tasks: JoinSet<Finished>,
    trigger: ShutdownTrigger,
    supervisor: Supervisor,
    budget: MemoryBudget,
    all_sources_finite: bool,
}

/// How a run ended.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Components that returned an error or panicked: `kind id: error`.
    pub failed: Vec<String>,
    /// Components still running when the shutdown timeout expired, then aborted.
    pub aborted: usize,
}

impl Outcome {
    pub fn is_clean(&self) -> bool {
        self.failed.is_empty() && self.aborted == 0
    }
}

impl RunningTopology {
    /// Spawns every component on the current tokio runtime.
    pub fn start(built: Built) -> Self {
        let mut tasks = JoinSet::new();
        for t in built.tasks {
            let (id, kind, task) = (t.id, t.kind, t.task);
            tasks.spawn(async move { (id, kind, task.await) });
        }
        RunningTopology {
            tasks,
            trigger: built.trigger,
            supervisor: built.supervisor,
            budget: built.budget,
            all_sources_finite: built.all_sources_finite,
        }
    }

    pub fn all_sources_finite(&self) -> bool {
        self.all_sources_finite
    }

    pub fn shutdown_signal(&self) -> ShutdownSignal {
        self.trigger.signal()
    }

    pub fn supervisor(&self) -> &Supervisor {
        &self.supervisor
    }

    pub fn memory_budget(&self) -> &MemoryBudget {
        &self.budget
    }

    /// Runs until every component has returned, or until `stop` completes. In the
    /// second case sources are told to stop, and what is in flight drains into the
    /// sinks for at most `drain_timeout`; components still running then are aborted.
    /// Returns only once every child process the components started is reaped.
    pub async fn run_until(
        mut self,
        stop: impl Future<Output = ()>,
        drain_timeout: Duration,
    ) -> Outcome {
        let outcome = self.drive(stop, drain_timeout).await;
        // A child outlives the task that started it (an aborted task drops its
        // handle; the reaper then TERMs and KILLs it): shut the supervisor down only
        // now, once no source can still be flushing its profiler, and wait for it.
        self.supervisor.shutdown().await;
        outcome
    }

    /// The components' part of [`run_until`](Self::run_until): until every task
    /// has returned or been aborted.
    async fn drive(&mut self, stop: impl Future<Output = ()>, drain_timeout: Duration) -> Outcome {
        let mut outcome = Outcome::default();
        if self.join_until(stop, &mut outcome).await {
            return outcome;
        }
        tracing::info!("shutting down: stopping sources and draining buffers");
        self.trigger.trigger();
        let deadline = tokio::time::sleep(drain_timeout);
        if self.join_until(deadline, &mut outcome).await {
            return outcome;
        }
        outcome.aborted = self.tasks.len();
        tracing::warn!(
            components = outcome.aborted,
            buffered_bytes = self.budget.in_use(),
            "drain timeout reached; stopping components with events still in flight"
        );
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
        outcome
    }

    /// Records tasks as they end: true once all have, false if `until` comes first.
    async fn join_until(&mut self, until: impl Future<Output = ()>, outcome: &mut Outcome) -> bool {
        tokio::pin!(until);
        loop {
            tokio::select! {
                next = self.tasks.join_next() => match next {
                    Some(r) => record(r, outcome),
                    None => return true,
                },
                _ = &mut until => return false,
            }
        }
    }
}

fn record(r: Result<Finished, tokio::task::JoinError>, outcome: &mut Outcome) {
    match r {
        Ok((id, kind, Ok(()))) => tracing::debug!(%id, kind, "component finished"),
        Ok((id, kind, Err(e))) => {
            tracing::error!(%id, kind, error = %e, "component failed");
            outcome.failed.push(format!("{kind} {id}: {e}"));
        }
        Err(e) => {
            tracing::error!(error = %e, "component panicked");
            outcome.failed.push(format!("panic: {e}"));
        }
    }
}
