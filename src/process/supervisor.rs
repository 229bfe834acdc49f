//! The supervisor: the only way the agent starts a process.
//!
//! ```toml
//! [process]
//! max_children = 32        # live children at once; spawns beyond wait for a slot
//! kill_grace = "2s"        # SIGTERM -> SIGKILL delay at deadlines and cancellation
//! stderr_tail = "64KiB"    # stderr kept per child (the end of it)
//! core_dumps = false       # children start with RLIMIT_CORE 0 unless true
//! ```
//!
//! Guarantees, each enforced in one place:
//! - every child is reaped, and all its pipes are closed by then ([`super::child`]);
//! - every child is in its own process group, which is SIGTERMed then SIGKILLed at
//!   its deadline, on cancellation and at shutdown, and SIGKILLed when the child
//!   itself exits, so no helper it started outlives it ([`super::reap`]);
//! - every child dies with the agent, even on SIGKILL of the agent, through
//!   `PR_SET_PDEATHSIG` set from a thread that outlives the child ([`super::spawner`]);
//! - at most `max_children` are alive at once (a semaphore; callers wait);
//! - [`Supervisor::shutdown`] returns only when every child is reaped.
//!
//! Shutdown follows mini-redis: a watch flag every reaper listens to, and a count
//! of live children that shutdown waits to reach zero. A child's slot (semaphore
//! permit + live count + a reference to the supervisor, which keeps the spawner
//! thread alive) is released only after the child is reaped.

use std::sync::{Arc, Mutex};

use serde::Deserialize;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

use super::child::{self, Child, ReaperContext};
use super::metrics::ProcessMetrics;
use super::slot::{LiveSlot, SlotOwner};
use super::spawn_error::SpawnError;
use super::spawner::{SpawnOptions, Spawner};
use super::spec::Spec;
use crate::telemetry::Telemetry;
use crate::units::{ByteSize, DurationStr};

/// The supervisor's settings.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SupervisorConfig {
    /// Most children alive at once; a spawn beyond it waits for a child to be reaped.
    pub max_children: usize,
    /// Time between SIGTERM and SIGKILL when a child is stopped (deadline,
    /// cancellation, shutdown). A [`Spec`] may override it.
    pub kill_grace: DurationStr,
    /// How much of the end of each child's stderr is kept for its [`ExitReport`].
    ///
    /// [`ExitReport`]: super::ExitReport
    pub stderr_tail: ByteSize,
    /// Let children write core dumps. Off by default: a profiler crashing every
    /// minute must not fill the disk.
    pub core_dumps: bool,
}

impl Default for SupervisorConfig {
    fn default() -> Self {
        SupervisorConfig {
            max_children: 32,
            kill_grace: DurationStr::from_secs(2),
            stderr_tail: ByteSize(64 * 1024),
            core_dumps: false,
        }
    }
}

impl SupervisorConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.max_children == 0 {
            return Err("max_children must be at least 1".into());
        }
        if self.max_children > Semaphore::MAX_PERMITS {
            return Err(format!(
                "max_children must be at most {}",
                Semaphore::MAX_PERMITS
            ));
        }
        Ok(())
    }
}

/// Starts, watches and reaps every child of the agent. Cheap to clone; all clones
/// share one cap, one shutdown and one spawner thread.
#[derive(Clone)]
pub struct Supervisor {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    config: SupervisorConfig,
    permits: Arc<Semaphore>,
    spawner: Spawner,
    /// Set once; checked under this lock together with the live-count increment,
    /// so no child can be registered after shutdown has started counting.
    shutting_down: Mutex<bool>,
    shutdown_tx: watch::Sender<bool>,
    alive_tx: watch::Sender<usize>,
    pub(crate) metrics: Arc<ProcessMetrics>,
}

impl SlotOwner for Inner {
    fn release(&self) {
        self.metrics.alive.dec();
        self.alive_tx.send_modify(|n| *n -= 1);
    }
}

impl Supervisor {
    /// A supervisor with its metrics registered in `telemetry` (one per agent). No
    /// thread or process is started until the first spawn.
    pub fn new(config: SupervisorConfig, telemetry: &Telemetry) -> Supervisor {
        let max = config.max_children.clamp(1, Semaphore::MAX_PERMITS);
        Supervisor {
            inner: Arc::new(Inner {
                permits: Arc::new(Semaphore::new(max)),
                spawner: Spawner::default(),
                shutting_down: Mutex::new(false),
                shutdown_tx: watch::Sender::new(false),
                alive_tx: watch::Sender::new(0),
                metrics: Arc::new(ProcessMetrics::register(telemetry)),
                config,
            }),
        }
    }

    pub fn config(&self) -> &SupervisorConfig {
        &self.inner.config
    }

    /// Starts `spec`, waiting for a slot under `max_children` first. Must be called
    /// inside a tokio runtime (the child's reaper task runs on it).
    ///
    /// If this future is dropped while waiting, nothing is left behind: a child
    /// already forked is terminated and reaped.
    pub async fn spawn(&self, spec: Spec) -> Result<Child, SpawnError> {
        let inner = &self.inner;
        let mut shutdown = inner.shutdown_tx.subscribe();
        let permit = tokio::select! {
            permit = inner.permits.clone().acquire_owned() => {
                permit.map_err(|_| SpawnError::ShuttingDown)?
            }
            _ = shutdown.wait_for(|down| *down) => return Err(SpawnError::ShuttingDown),
        };
        let slot = self.register(permit)?;
        let label = spec.label.clone();
        let deadline = spec.deadline;
        let opts = SpawnOptions {
            grace: spec.kill_grace.unwrap_or(inner.config.kill_grace.get()),
            core_dumps: inner.config.core_dumps,
        };
        let raw = match inner.spawner.spawn(spec, slot, opts).await {
            Ok(raw) => raw,
            Err(e) => {
                inner
                    .metrics
                    .spawn_failures
                    .get_or_create(&ProcessMetrics::reason(&label, e.reason()))
                    .inc();
                tracing::debug!(program = %label, error = %e, "spawn failed");
                return Err(e);
            }
        };
        inner
            .metrics
            .started
            .get_or_create(&ProcessMetrics::program(&label))
            .inc();
        tracing::debug!(pid = raw.proc.pid(), program = %label, "child started");
        let child = child::start(
            raw,
            ReaperContext {
                label,
                deadline,
                tail_bytes: inner.config.stderr_tail.get().min(usize::MAX as u64) as usize,
                shutdown: inner.shutdown_tx.subscribe(),
                metrics: inner.metrics.clone(),
            },
        );
        if *inner.shutdown_tx.borrow() {
            // Shutdown began while we were forking: the reaper has seen it already.
            drop(child);
            return Err(SpawnError::ShuttingDown);
        }
        Ok(child)
    }

    fn register(&self, permit: OwnedSemaphorePermit) -> Result<LiveSlot, SpawnError> {
        let down = self
            .inner
            .shutting_down
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if *down {
            return Err(SpawnError::ShuttingDown);
        }
        self.inner.alive_tx.send_modify(|n| *n += 1);
        self.inner.metrics.alive.inc();
        Ok(LiveSlot::new(self.inner.clone(), permit))
    }

    /// Children started and not yet reaped.
    pub fn alive(&self) -> usize {
        *self.inner.alive_tx.borrow()
    }

    /// Waits until no child is alive (they all ended or were reaped).
    pub async fn idle(&self) {
        let mut rx = self.inner.alive_tx.subscribe();
        let _ = rx.wait_for(|n| *n == 0).await;
    }

    /// Terminates every live child (SIGTERM to each group, SIGKILL after the grace),
    /// refuses new spawns, and returns once all children are reaped. Idempotent.
    pub async fn shutdown(&self) {
        {
            let mut down = self
                .inner
                .shutting_down
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            *down = true;
        }
        self.inner.shutdown_tx.send_replace(true);
        let alive = self.alive();
        if alive > 0 {
            tracing::info!(alive, "stopping child processes");
        }
        self.idle().await;
    }

    pub(crate) fn metrics(&self) -> &ProcessMetrics {
        &self.inner.metrics
    }

    pub(crate) fn is_shutting_down(&self) -> bool {
        *self.inner.shutdown_tx.borrow()
    }

    pub(crate) async fn shutdown_started(&self) {
        let mut rx = self.inner.shutdown_tx.subscribe();
        let _ = rx.wait_for(|down| *down).await;
    }
}
