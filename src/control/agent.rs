//! The control loop: heartbeat, act on the command the server answers with, keep
//! the two pipelines (continuous, ad-hoc) as the commands want them, report each
//! command once its work has ended.
//!
//! Semantics (gProfiler's, with its production bugs fixed):
//! - A command id is acted on once, ever: the server re-sends the current command
//!   on every heartbeat, and ids acted on are persisted before the work starts
//!   (`state.rs`).
//! - Ad-hoc (`continuous: false`): one window of `duration`, then `completed` (or
//!   `failed` with the reason), reported when the pipeline has ended, never at its
//!   start. One runs at a time; others wait in order (at most
//!   [`state::MAX_INFLIGHT`]).
//! - Continuous: desired state. It runs until a `stop` or another continuous
//!   command replaces it, and is resumed after a restart without being reported
//!   again; it is reported `completed` when stopped, `failed` if its pipeline fails.
//! - Both run side by side when their profilers differ; an ad-hoc command needing a
//!   profiler the continuous one uses pauses the continuous pipeline until it ends.
//! - `stop` ends both (every child reaped), and is itself reported `completed` once
//!   they are down. Unknown or invalid commands are reported `failed`.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;

use super::client::{Client, Heartbeat};
use super::command::{self, Action, Command, CommandId, ProfilingRequest};
use super::error::{ControlError, ExchangeError};
use super::exposition::Exposition;
use super::file::ControlFile;
use super::host;
use super::metrics::ControlMetrics;
use super::plan::Slot;
use super::running::RunningPipeline;
use super::state::{self, Completion, Continuous, State};
use crate::config::Registry;
use crate::topology::{Outcome, Reloaded};

/// Ids received (reported back as `received_command_ids`), newest kept.
const MAX_RECEIVED: usize = 1000;

pub struct Agent {
    file: ControlFile,
    registry: Registry,
    client: Client,
    state: State,
    host: Arc<str>,
    address: String,
    perf_events: Vec<String>,
    metrics: ControlMetrics,
    exposition: Exposition,
    continuous: Option<RunningPipeline>,
    adhoc: Option<RunningPipeline>,
    queue: VecDeque<(CommandId, ProfilingRequest)>,
    received: VecDeque<CommandId>,
    last_command: Option<CommandId>,
    /// The class of the failure streak in progress, per request kind: a streak is
    /// logged once, when it starts or changes class.
    failing: [Option<&'static str>; 2],
}

/// What woke the loop.
enum Wake {
    Tick,
    AdHocEnded(Outcome),
    ContinuousEnded(Outcome),
    Reload,
    Stop,
}

impl Agent {
    /// Reads the state directory (`state_dir` must be locked by the caller) and
    /// reports ad-hoc commands a previous run left unfinished as failed.
    pub fn new(
        file: ControlFile,
        state_dir: &std::path::Path,
        metrics: ControlMetrics,
        exposition: Exposition,
    ) -> Result<Agent, ControlError> {
        let client = Client::new(&file.template.control)?;
        let mut state = State::open(state_dir)?;
        let cut: Vec<CommandId> = std::mem::take(&mut state.data.inflight);
        for id in cut {
            tracing::info!(command = %id, "an ad-hoc command was cut short by the agent's restart; reporting it failed");
            metrics.command("failed");
            state.push_outbox(Completion::failed(
                &id,
                0,
                "the agent restarted before the command finished",
            ));
        }
        state.data.starts += 1;
        state.save().map_err(|source| ControlError::StateDir {
            path: state.path(),
            source,
        })?;
        metrics.agent_starts.set(state.data.starts as i64);
        let host: Arc<str> = file
            .agent
            .hostname
            .clone()
            .unwrap_or_else(host::hostname)
            .into();
        Ok(Agent {
            file,
            registry: crate::registry::registry(),
            client,
            state,
            host,
            address: String::new(),
            perf_events: host::perf_events(),
            metrics,
            exposition,
            continuous: None,
            adhoc: None,
            queue: VecDeque::new(),
            received: VecDeque::new(),
            last_command: None,
            failing: [None, None],
        })
    }

    /// Runs until `stop`; then stops both pipelines (each drains within `[agent]
    /// shutdown_timeout`) and saves the state. `reload` receives SIGHUPs.
    pub async fn run(mut self, stop: impl Future<Output = ()>, mut reload: mpsc::Receiver<()>) {
        self.address = self.find_address().await;
        if let Some(c) = &self.state.data.continuous {
            tracing::info!(command = %c.id, "resuming the continuous command in force before the restart");
        }
        self.reconcile().await;
        self.publish();
        let mut tick = self.ticker();
        tokio::pin!(stop);
        loop {
            let wake = tokio::select! {
                _ = &mut stop => Wake::Stop,
                _ = tick.tick() => Wake::Tick,
                o = ended(&mut self.adhoc) => Wake::AdHocEnded(o),
                o = ended(&mut self.continuous) => Wake::ContinuousEnded(o),
                Some(()) = reload.recv() => Wake::Reload,
            };
            match wake {
                Wake::Stop => break,
                Wake::Tick => self.beat().await,
                Wake::AdHocEnded(o) => self.adhoc_ended(o).await,
                Wake::ContinuousEnded(o) => self.continuous_ended(o).await,
                Wake::Reload => {
                    if self.reload().await {
                        tick = self.ticker();
                    }
                }
            }
            self.publish();
        }
        self.shutdown().await;
    }

    fn ticker(&self) -> tokio::time::Interval {
        let mut t = tokio::time::interval(self.file.template.control.interval.get());
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        t
    }

    async fn find_address(&self) -> String {
        host::address_toward(self.client.heartbeat_url())
            .await
            .map_or_else(|| "0.0.0.0".to_string(), |a| a.to_string())
    }

    /// One heartbeat round: pending completions, then the heartbeat and its command.
    async fn beat(&mut self) {
        self.flush_outbox().await;
        let timestamp = crate::formats::timestamp::iso8601(now_ms());
        let reply = {
            let body = Heartbeat {
                ip_address: self.address.clone(),
                hostname: &self.host,
                service_name: &self.file.template.control.service,
                last_command_id: self.last_command.as_deref(),
                status: "active",
                timestamp,
                received_command_ids: self.received.iter().map(String::as_str).collect(),
                executed_command_ids: self
                    .state
                    .data
                    .executed
                    .iter()
                    .map(String::as_str)
                    .collect(),
                perf_supported_events: &self.perf_events,
                agent_version: env!("CARGO_PKG_VERSION"),
                run_mode: "profpipe",
            };
            self.client.heartbeat(&body).await
        };
        let reply = match reply {
            Ok(r) => {
                self.metrics.heartbeats.inc();
                if r.success == Some(false) {
                    tracing::debug!(
                        message = r.message.as_deref().unwrap_or(""),
                        "the server answered the heartbeat with success: false"
                    );
                }
                r
            }
            Err(e) => return self.failed(0, &e),
        };
        // A streak ends only with a reply that is usable whole: a server that keeps
        // sending a command without an id is logged once, not at every heartbeat.
        match command::from_reply(reply.profiling_command.as_ref(), reply.command_id.as_ref()) {
            Ok(Some(c)) => {
                self.succeeded(0);
                self.command(c).await
            }
            Ok(None) => self.succeeded(0),
            Err(why) => self.failed(0, &ExchangeError::BadShape(why)),
        }
    }

    async fn command(&mut self, c: Command) {
        if self.state.was_executed(&c.id) {
            tracing::trace!(command = %c.id, "already acted on; ignored");
            return;
        }
        self.received.push_back(c.id.clone());
        while self.received.len() > MAX_RECEIVED {
            self.received.pop_front();
        }
        self.last_command = Some(c.id.clone());
        match c.action {
            Err(why) => {
                tracing::warn!(command = %c.id, "command refused: {why}");
                self.refuse(&c.id, why);
            }
            Ok(Action::Stop) => self.stop_all(&c.id).await,
            Ok(Action::Start(r)) if r.continuous => self.start_continuous(c.id, r).await,
            Ok(Action::Start(r)) => self.accept_adhoc(c.id, r).await,
        }
        self.flush_outbox().await;
    }

    /// Reports `id` failed without running anything.
    fn refuse(&mut self, id: &str, why: String) {
        self.metrics.command("rejected");
        self.state.mark_executed(id);
        self.state.push_outbox(Completion::failed(id, 0, why));
        self.save();
    }

    async fn start_continuous(&mut self, id: CommandId, r: ProfilingRequest) {
        if let Err(why) = self.plan(&r, Slot::Continuous) {
            tracing::warn!(command = %id, "command refused: {why}");
            return self.refuse(&id, why);
        }
        tracing::info!(command = %id, profilers = ?r.profilers.names(), frequency = r.frequency,
            window_secs = r.duration_secs, "continuous profiling requested");
        self.state.mark_executed(&id);
        let old = self.state.data.continuous.replace(Continuous {
            id: id.clone(),
            request: r,
        });
        self.save();
        if let Some(old) = old {
            let secs = self.stop_slot(Slot::Continuous).await.unwrap_or(0);
            self.report(Completion::completed(&old.id, secs), "completed");
        }
        self.reconcile().await;
    }

    async fn accept_adhoc(&mut self, id: CommandId, r: ProfilingRequest) {
        if let Err(why) = self.plan(&r, Slot::AdHoc) {
            tracing::warn!(command = %id, "command refused: {why}");
            return self.refuse(&id, why);
        }
        if self.state.data.inflight.len() >= state::MAX_INFLIGHT {
            return self.refuse(
                &id,
                format!(
                    "{} ad-hoc commands are waiting already",
                    state::MAX_INFLIGHT
                ),
            );
        }
        tracing::info!(command = %id, profilers = ?r.profilers.names(), frequency = r.frequency,
            duration_secs = r.duration_secs, "ad-hoc profiling requested");
        // Persisted before the work starts: a crash from here on never runs it again.
        self.state.mark_executed(&id);
        self.state.data.inflight.push(id.clone());
        self.save();
        self.queue.push_back((id, r));
        self.reconcile().await;
    }

    async fn stop_all(&mut self, id: &str) {
        tracing::info!(command = %id, "stop requested");
        let started = Instant::now();
        self.state.mark_executed(id);
        self.save();
        // Both pipelines stop at once: the time to no child is the slower one's.
        let adhoc = self.adhoc.take();
        let continuous = self.continuous.take();
        self.unpublish_slot(Slot::AdHoc);
        self.unpublish_slot(Slot::Continuous);
        let cut = adhoc
            .as_ref()
            .map(|p| (p.command_id.clone(), p.elapsed_secs()));
        let secs = continuous.as_ref().map_or(0, |p| p.elapsed_secs());
        tokio::join!(finish(adhoc), finish(continuous));
        if let Some((cut, secs)) = cut {
            self.report(
                Completion::failed(
                    &cut,
                    secs,
                    format!("stopped by command {id} before it finished"),
                ),
                "failed",
            );
        }
        while let Some((queued, _)) = self.queue.pop_front() {
            self.report(
                Completion::failed(
                    &queued,
                    0,
                    format!("stopped by command {id} before it started"),
                ),
                "failed",
            );
        }
        if let Some(c) = self.state.data.continuous.take() {
            self.report(Completion::completed(&c.id, secs), "completed");
        }
        self.report(
            Completion::completed(id, started.elapsed().as_secs()),
            "completed",
        );
        tracing::info!(command = %id, "profiling stopped; every profiler exited");
    }

    /// Stops the pipeline in `slot` if one runs; its run time in seconds.
    async fn stop_slot(&mut self, slot: Slot) -> Option<u64> {
        let p = match slot {
            Slot::Continuous => self.continuous.take(),
            Slot::AdHoc => self.adhoc.take(),
        }?;
        let secs = p.elapsed_secs();
        self.unpublish_slot(slot);
        let outcome = p.finish().await;
        if !outcome.is_clean() {
            tracing::info!(slot = slot.name(), failed = ?outcome.failed, aborted = outcome.aborted,
                "pipeline stopped with components that failed or had to be aborted");
        }
        Some(secs)
    }

    /// Brings the pipelines to what the commands want: the next ad-hoc command if
    /// none runs (pausing an overlapping continuous one), the continuous one when
    /// it is wanted and nothing in its way runs.
    async fn reconcile(&mut self) {
        while self.adhoc.is_none() {
            let Some((id, r)) = self.queue.pop_front() else {
                break;
            };
            let overlaps = self
                .state
                .data
                .continuous
                .as_ref()
                .is_some_and(|c| c.request.profilers.overlaps(r.profilers));
            if overlaps && self.continuous.is_some() {
                tracing::info!(command = %id, "pausing continuous profiling while an ad-hoc command uses the same profilers");
                self.stop_slot(Slot::Continuous).await;
            }
            match self.launch(&id, &r, Slot::AdHoc).await {
                Ok(p) => {
                    self.metrics.command("started");
                    self.adhoc = Some(p);
                }
                Err(why) => self.report(Completion::failed(&id, 0, why), "failed"),
            }
        }
        let wanted = self.state.data.continuous.clone().filter(|c| {
            !self
                .adhoc
                .as_ref()
                .is_some_and(|a| a.request.profilers.overlaps(c.request.profilers))
        });
        match (&wanted, &self.continuous) {
            (Some(c), Some(p)) if p.command_id == c.id => {}
            (Some(c), _) => {
                self.stop_slot(Slot::Continuous).await;
                match self.launch(&c.id, &c.request, Slot::Continuous).await {
                    Ok(p) => {
                        self.metrics.command("started");
                        self.continuous = Some(p);
                    }
                    Err(why) => {
                        self.state.data.continuous = None;
                        self.report(Completion::failed(&c.id, 0, why), "failed");
                    }
                }
            }
            (None, Some(_)) => {
                self.stop_slot(Slot::Continuous).await;
            }
            (None, None) => {}
        }
    }

    /// `r`'s pipeline in `slot`.
    fn plan(&self, r: &ProfilingRequest, slot: Slot) -> Result<super::plan::Planned, String> {
        let name = std::path::PathBuf::from(format!("<{} command pipeline>", slot.name()));
        self.file
            .template
            .plan(&name, r, Some(slot), &self.registry)
    }

    fn publish_slot(&self, slot: Slot, p: &RunningPipeline) {
        self.exposition.add(slot.name(), p.telemetry());
    }

    fn unpublish_slot(&self, slot: Slot) {
        self.exposition.remove(slot.name());
    }

    async fn launch(
        &mut self,
        id: &str,
        r: &ProfilingRequest,
        slot: Slot,
    ) -> Result<RunningPipeline, String> {
        let planned = self.plan(r, slot)?;
        let started =
            RunningPipeline::start(planned, self.host.clone(), id.to_string(), r.clone()).await;
        self.metrics.pipeline_start(slot.name(), started.is_ok());
        match &started {
            Ok(p) => {
                self.publish_slot(slot, p);
                tracing::info!(command = %id, slot = slot.name(), "profiling started");
            }
            Err(why) => {
                tracing::warn!(command = %id, slot = slot.name(), "cannot start profiling: {why}")
            }
        }
        started
    }

    async fn adhoc_ended(&mut self, o: Outcome) {
        let Some(p) = self.adhoc.take() else { return };
        self.unpublish_slot(Slot::AdHoc);
        let secs = p.elapsed_secs();
        let p = Ended::of(p).await;
        if o.is_clean() {
            tracing::info!(command = %p.command_id, secs, "ad-hoc profiling finished");
            self.report(Completion::completed(&p.command_id, secs), "completed");
        } else {
            let why = failure_text(&o);
            tracing::warn!(command = %p.command_id, "ad-hoc profiling failed: {why}");
            self.report(Completion::failed(&p.command_id, secs, why), "failed");
        }
        self.reconcile().await;
        self.flush_outbox().await;
    }

    async fn continuous_ended(&mut self, o: Outcome) {
        let Some(p) = self.continuous.take() else {
            return;
        };
        self.unpublish_slot(Slot::Continuous);
        let secs = p.elapsed_secs();
        let p = Ended::of(p).await;
        let why = if o.is_clean() {
            "its pipeline ended by itself".to_string()
        } else {
            failure_text(&o)
        };
        tracing::warn!(command = %p.command_id, "continuous profiling failed: {why}");
        if self
            .state
            .data
            .continuous
            .as_ref()
            .is_some_and(|c| c.id == p.command_id)
        {
            self.state.data.continuous = None;
        }
        self.report(Completion::failed(&p.command_id, secs, why), "failed");
        self.flush_outbox().await;
    }

    /// Queues a completion for the server and saves the state.
    fn report(&mut self, c: Completion, outcome: &str) {
        self.metrics.command(outcome);
        self.state.push_outbox(c);
        self.save();
    }

    async fn flush_outbox(&mut self) {
        while let Some(c) = self.state.data.outbox.front().cloned() {
            match self.client.complete(&c, &self.host).await {
                Ok(()) => {
                    self.succeeded(1);
                    tracing::debug!(command = %c.command_id, status = %c.status, "completion reported");
                    self.state.data.outbox.pop_front();
                    self.save();
                }
                Err(e) => return self.failed(1, &e),
            }
        }
    }

    /// SIGHUP: the file is read and checked whole first; a bad one changes nothing.
    /// The continuous pipeline is reloaded in place where it can be (restarted
    /// otherwise); an ad-hoc one finishes as it started. Returns whether the new
    /// config was applied.
    async fn reload(&mut self) -> bool {
        let started = Instant::now();
        let checked = ControlFile::read(&self.file.path)
            .map_err(|e| e.to_string())
            .and_then(|file| {
                if file.agent.state_dir != self.file.agent.state_dir {
                    return Err("[agent] state_dir cannot change without a restart".into());
                }
                let client = Client::new(&file.template.control).map_err(|e| e.to_string())?;
                Ok((file, client))
            });
        let (file, client) = match checked {
            Ok(checked) => checked,
            Err(why) => {
                self.metrics.reload("rejected");
                tracing::error!("reload refused, the running configuration stays: {why}");
                return false;
            }
        };
        self.file = file;
        self.client = client;
        self.address = self.find_address().await;
        let (mut restarted, mut in_place) = (0, 0);
        // An ad-hoc command is one window: it finishes as it started, sinks
        // included. The continuous pipeline takes the new config.
        if let Some(p) = self.continuous.as_ref() {
            let slot = Slot::Continuous;
            if self.file.template.text(&p.request, Some(slot)) != p.text {
                let request = p.request.clone();
                match self.plan(&request, slot) {
                    Err(why) => {
                        tracing::warn!(slot = slot.name(), "cannot plan the new pipeline: {why}")
                    }
                    Ok(planned) => {
                        let p = self.continuous.as_mut().expect("checked above");
                        match p.reload(planned).await {
                            Ok(Reloaded::Unchanged) => {}
                            // What did not change kept running.
                            Ok(Reloaded::InPlace { .. }) => in_place += 1,
                            // Restarted under the new config by `reconcile`.
                            Ok(Reloaded::NeedsRestart(why)) => {
                                tracing::info!(slot = slot.name(), "the pipeline restarts: {why}");
                                self.stop_slot(slot).await;
                                restarted += 1;
                            }
                            Err(why) => tracing::warn!(
                                slot = slot.name(),
                                "the new components cannot start ({why}); the pipeline stays as it was"
                            ),
                        }
                    }
                }
            }
        }
        self.reconcile().await;
        self.metrics.reload("applied");
        tracing::info!(
            restarted,
            in_place,
            millis = started.elapsed().as_millis() as u64,
            "configuration reloaded"
        );
        true
    }

    async fn shutdown(mut self) {
        tracing::info!("shutting down: stopping profiling and draining deliveries");
        let adhoc = self.adhoc.take();
        let continuous = self.continuous.take();
        let (a, _) = tokio::join!(
            async {
                match adhoc {
                    Some(p) => Some((p.command_id.clone(), p.elapsed_secs(), p.finish().await)),
                    None => None,
                }
            },
            async {
                if let Some(p) = continuous {
                    p.finish().await;
                }
            }
        );
        if let Some((id, secs, _)) = a {
            self.report(
                Completion::failed(
                    &id,
                    secs,
                    "the agent was stopped before the command finished",
                ),
                "failed",
            );
        }
        // One bounded attempt to deliver what is pending; the rest waits for the
        // next start (it is saved).
        let flush = self.flush_outbox();
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), flush).await;
        self.save();
    }

    /// Writes the state, then shows it in the gauges (so a gauge never shows what a
    /// crash could still undo).
    fn save(&mut self) {
        if let Err(e) = self.state.save() {
            tracing::error!(path = %self.state.path().display(), error = %e,
                "cannot save the command history; a restart may repeat a command");
        }
        self.metrics
            .history_size
            .set(self.state.data.executed.len() as i64);
        self.metrics
            .outbox_size
            .set(self.state.data.outbox.len() as i64);
    }

    /// Updates the gauge; when idle, after each wake (a heartbeat, the end of the
    /// last pipeline, a reload), gives back the code pages that work left resident,
    /// so between heartbeats the agent holds only its own memory (see `trim.rs`).
    fn publish(&mut self) {
        let n = self.adhoc.is_some() as i64 + self.continuous.is_some() as i64;
        self.metrics.pipelines_running.set(n);
        if n == 0 {
            let started = Instant::now();
            let released = super::trim::release_idle_pages();
            tracing::trace!(
                released,
                micros = started.elapsed().as_micros() as u64,
                "idle: released clean read-only pages"
            );
        }
    }

    /// `kind`: 0 heartbeat, 1 completion.
    fn succeeded(&mut self, kind: usize) {
        if self.failing[kind].take().is_some() {
            tracing::info!(request = KINDS[kind], "the control server answers again");
        }
    }

    fn failed(&mut self, kind: usize, e: &ExchangeError) {
        let class = e.class();
        self.metrics.failure(KINDS[kind], class);
        if self.failing[kind] == Some(class) {
            tracing::debug!(request = KINDS[kind], reason = class, "{e}");
            return;
        }
        self.failing[kind] = Some(class);
        let url = self.client.heartbeat_url().origin().ascii_serialization();
        match e.level() {
            tracing::Level::ERROR => {
                tracing::error!(request = KINDS[kind], reason = class, server = %url,
                    "control request failed: {e} (logged once until it changes or recovers)")
            }
            tracing::Level::WARN => {
                tracing::warn!(request = KINDS[kind], reason = class, server = %url,
                    "control request failed: {e} (logged once until it changes or recovers)")
            }
            _ => tracing::info!(request = KINDS[kind], reason = class, server = %url,
                "control request failed: {e} (logged once until it changes or recovers)"),
        }
    }
}

const KINDS: [&str; 2] = ["heartbeat", "completion"];

/// What is left of a pipeline that has ended: its command.
struct Ended {
    command_id: CommandId,
}

impl Ended {
    async fn of(p: RunningPipeline) -> Ended {
        let command_id = p.command_id.clone();
        p.finish().await;
        Ended { command_id }
    }
}

async fn finish(p: Option<RunningPipeline>) {
    if let Some(p) = p {
        let outcome = p.finish().await;
        if !outcome.is_clean() {
            tracing::info!(failed = ?outcome.failed, aborted = outcome.aborted,
                "pipeline stopped with components that failed or had to be aborted");
        }
    }
}

async fn ended(p: &mut Option<RunningPipeline>) -> Outcome {
    match p {
        Some(p) => p.ended().await,
        None => std::future::pending().await,
    }
}

fn failure_text(o: &Outcome) -> String {
    let mut parts = o.failed.clone();
    if o.aborted > 0 {
        parts.push(format!(
            "{} components aborted at the drain deadline",
            o.aborted
        ));
    }
    parts.join("; ")
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
