//! Running a built topology until it finishes or is told to stop, then draining.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::time::Duration;

use tokio::task::{AbortHandle, Id, JoinSet};

use super::builder::{Built, BuiltTask, Wiring};
use super::reload::Shape;
use crate::buffer::{EdgeSender, MemoryBudget};
use crate::component::ComponentError;
use crate::config::Config;
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
    /// Its joints, and the config it runs (`shape`), for reloads.
    wiring: Wiring,
    /// Each component's task, so a reload can wait for (or abort) the ones it
    /// replaces.
    handles: HashMap<ComponentId, AbortHandle>,
    outcome: Outcome,
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

/// What [`RunningTopology::reload`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Reloaded {
    /// Nothing that runs changed.
    Unchanged,
    /// Applied in place: `rebuilt` sources and transforms (changed, added, or
    /// downstream of a change), sinks `replaced`, `added`, `removed`; everything
    /// else kept running.
    InPlace {
        rebuilt: usize,
        replaced: usize,
        added: usize,
        removed: usize,
    },
    /// The change cannot be applied in place (why): the caller restarts the
    /// pipeline. Nothing was changed.
    NeedsRestart(String),
}

/// A reload's new components could not be built; nothing was changed.
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.join("\n"))]
pub struct ReloadError(pub Vec<String>);

impl RunningTopology {
    /// Spawns every component on the current tokio runtime.
    pub fn start(built: Built) -> Self {
        let mut tasks = JoinSet::new();
        let mut handles = HashMap::new();
        for t in built.tasks {
            spawn(&mut tasks, &mut handles, t);
        }
        RunningTopology {
            tasks,
            trigger: built.trigger,
            supervisor: built.supervisor,
            budget: built.budget,
            all_sources_finite: built.all_sources_finite,
            wiring: built.wiring,
            handles,
            outcome: Outcome::default(),
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
        self.wiring.drain_timeout = drain_timeout;
        self.until(stop).await;
        self.stop().await
    }

    /// Runs until `until` completes (its output) or every component has returned
    /// (`None`).
    pub async fn until<T>(&mut self, until: impl Future<Output = T>) -> Option<T> {
        tokio::pin!(until);
        loop {
            tokio::select! {
                next = self.tasks.join_next_with_id() => match next {
                    Some(r) => self.finished(r),
                    None => return None,
                },
                out = &mut until => return Some(out),
            }
        }
    }

    /// Stops it: sources are told to stop, what is in flight drains into the sinks
    /// within `[agent] shutdown_timeout`, components still running then are aborted,
    /// and every child process is reaped. Returns how the run went.
    pub async fn stop(mut self) -> Outcome {
        self.drive().await;
        // A child outlives the task that started it (an aborted task drops its
        // handle; the reaper then TERMs and KILLs it): shut the supervisor down only
        // now, once no source can still be flushing its profiler, and wait for it.
        self.supervisor.shutdown().await;
        self.outcome
    }

    /// The components' part of [`stop`](Self::stop): until every task has returned
    /// or been aborted.
    async fn drive(&mut self) {
        if self.tasks.is_empty() {
            return;
        }
        tracing::info!("shutting down: stopping sources and draining buffers");
        self.trigger.trigger();
        for stop in self.wiring.stops.values() {
            stop.trigger();
        }
        let deadline = tokio::time::sleep(self.wiring.drain_timeout);
        if self.until(deadline).await.is_none() {
            return;
        }
        self.outcome.aborted = self.tasks.len();
        tracing::warn!(
            components = self.outcome.aborted,
            buffered_bytes = self.budget.in_use(),
            "drain timeout reached; stopping components with events still in flight"
        );
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
    }

    /// Applies `new`, a config for this same pipeline, in place where it can (see
    /// [`super::reload`]): what changed is built first (if anything cannot be,
    /// nothing changes); then the running producers switch to the new components'
    /// buffers, replaced sources are stopped, and every replaced or removed
    /// component delivers what it holds and ends, within `[agent]
    /// shutdown_timeout` (then it is aborted). Everything else keeps running.
    pub async fn reload(&mut self, new: &Config) -> Result<Reloaded, ReloadError> {
        let shape = Shape::of(new);
        let plan = match self.wiring.shape.plan(&shape) {
            Ok(plan) => plan,
            Err(why) => return Ok(Reloaded::NeedsRestart(why)),
        };
        if let Some(id) = plan
            .handover
            .iter()
            .find(|id| !self.wiring.relays.contains_key(*id))
        {
            return Ok(Reloaded::NeedsRestart(format!("sink `{id}` has ended")));
        }
        if plan.is_empty() {
            self.wiring.shape = shape;
            return Ok(Reloaded::Unchanged);
        }

        // Build: nothing running changes yet.
        let handover = plan
            .handover
            .iter()
            .map(|id| (id.clone(), self.wiring.relays[id].successor()))
            .collect();
        let which: HashSet<ComponentId> = plan.build.union(&plan.handover).cloned().collect();
        let part = self
            .wiring
            .shared
            .build_part(new, &which, handover, &self.wiring.shape.scale())
            .map_err(ReloadError)?;

        // Switch over: each running producer at once, from the edges of what
        // retires to those of what replaces it.
        // (A sink handed over keeps its buffer: its producers keep feeding it.)
        let retiring: Vec<ComponentId> = plan.retire.difference(&plan.handover).cloned().collect();
        let mut attach: HashMap<ComponentId, Vec<(ComponentId, EdgeSender)>> = HashMap::new();
        for (producer, consumer, edge) in part.attach {
            attach.entry(producer).or_default().push((consumer, edge));
        }
        for (producer, fanout) in &self.wiring.fanouts {
            if !plan.retire.contains(producer) {
                fanout.rewire(&retiring, attach.remove(producer).unwrap_or_default());
            }
        }
        for id in &plan.retire {
            if let Some(stop) = self.wiring.stops.remove(id) {
                stop.trigger();
            }
            self.wiring.fanouts.remove(id);
            if !plan.handover.contains(id) {
                self.wiring.relays.remove(id);
            }
        }
        for id in &plan.handover {
            self.wiring.relays[id].switch();
        }
        self.wiring.fanouts.extend(part.fanouts);
        self.wiring.relays.extend(part.relays);
        self.wiring.stops.extend(part.stops);
        let leaving: Vec<AbortHandle> = plan
            .retire
            .iter()
            .filter_map(|id| self.handles.remove(id))
            .collect();
        for task in part.tasks {
            spawn(&mut self.tasks, &mut self.handles, task);
        }
        self.wiring.shape = shape;
        self.wait_for(leaving).await;
        Ok(Reloaded::InPlace {
            rebuilt: plan.rebuilt,
            replaced: plan.replaced,
            added: plan.added,
            removed: plan.removed,
        })
    }

    /// Waits for the tasks of `leaving` to end, aborting those still running after
    /// the drain timeout; other components' ends are recorded meanwhile.
    async fn wait_for(&mut self, leaving: Vec<AbortHandle>) {
        let mut waiting: HashMap<Id, AbortHandle> =
            leaving.into_iter().map(|h| (h.id(), h)).collect();
        let deadline = tokio::time::sleep(self.wiring.drain_timeout);
        tokio::pin!(deadline);
        while !waiting.is_empty() {
            tokio::select! {
                next = self.tasks.join_next_with_id() => match next {
                    Some(Err(e)) if e.is_cancelled() && waiting.remove(&e.id()).is_some() => {}
                    Some(r) => {
                        waiting.remove(&r.as_ref().map_or_else(|e| e.id(), |(id, _)| *id));
                        self.finished(r);
                    }
                    None => return,
                },
                _ = &mut deadline => {
                    tracing::warn!(
                        components = waiting.len(),
                        "a replaced component did not deliver what it held within the shutdown timeout; it is stopped"
                    );
                    for h in waiting.values() {
                        h.abort();
                    }
                    deadline.as_mut().reset(tokio::time::Instant::now() + Duration::from_secs(3600));
                }
            }
        }
    }

    /// Records a component's end. A sink that ended by itself (not one a reload
    /// replaced) lets go of its buffer, so its producers see it gone, as they would
    /// without reloads.
    fn finished(&mut self, r: Result<(Id, Finished), tokio::task::JoinError>) {
        let task = r.as_ref().map_or_else(|e| e.id(), |(id, _)| *id);
        let ended = self
            .handles
            .iter()
            .find(|(_, h)| h.id() == task)
            .map(|(id, _)| id.clone());
        if let Some(id) = ended {
            self.handles.remove(&id);
            self.wiring.relays.remove(&id);
        }
        record(r.map(|(_, finished)| finished), &mut self.outcome);
    }
}

fn spawn(
    tasks: &mut JoinSet<Finished>,
    handles: &mut HashMap<ComponentId, AbortHandle>,
    t: BuiltTask,
) {
    let (id, kind, task) = (t.id, t.kind, t.task);
    let handle = tasks.spawn({
        let id = id.clone();
        async move { (id, kind, task.await) }
    });
    handles.insert(id, handle);
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
