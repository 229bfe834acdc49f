//! Restarting a long-running child (perf, PyPerf) with backoff.
//!
//! ```ignore
//! let mut restarter = Restarter::new(&supervisor, &backoff);
//! loop {
//!     let child = restarter.start(spec.clone()).await?;   // waits the backoff first, except the first time
//!     let report = read_until_it_ends(child).await;
//!     restarter.exited(&report);                          // a long run resets the backoff
//! }
//! ```

use std::time::Duration;

use super::backoff::{Backoff, BackoffState};
use super::child::{Child, ExitReport};
use super::metrics::ProcessMetrics;
use super::spawn_error::SpawnError;
use super::spec::Spec;
use super::supervisor::Supervisor;

/// Starts the same child again and again, waiting a growing, jittered delay between
/// starts. Counts `process_children_restarted_total`.
pub struct Restarter {
    supervisor: Supervisor,
    backoff: BackoffState,
    starts: u64,
}

impl Restarter {
    pub fn new(supervisor: &Supervisor, backoff: &Backoff) -> Restarter {
        Restarter {
            supervisor: supervisor.clone(),
            backoff: backoff.state(),
            starts: 0,
        }
    }

    /// Starts `spec`. Every call after the first waits the next backoff delay first
    /// (a failed spawn counts as a short run); the wait ends early with
    /// [`SpawnError::ShuttingDown`] when the supervisor shuts down.
    pub async fn start(&mut self, spec: Spec) -> Result<Child, SpawnError> {
        if self.starts > 0 {
            let delay = self.backoff.next_delay();
            tracing::info!(
                program = %spec.get_label(),
                delay_ms = delay.as_millis() as u64,
                restarts = self.starts,
                "restarting child after backoff"
            );
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = self.supervisor.shutdown_started() => return Err(SpawnError::ShuttingDown),
            }
            if self.supervisor.is_shutting_down() {
                return Err(SpawnError::ShuttingDown);
            }
            self.supervisor
                .metrics()
                .restarted
                .get_or_create(&ProcessMetrics::program(spec.get_label()))
                .inc();
        }
        self.starts += 1;
        self.supervisor.spawn(spec).await
    }

    /// Records how the last child ended: one that ran at least `reset_after` resets
    /// the backoff to its initial delay.
    pub fn exited(&mut self, report: &ExitReport) {
        self.observe_run(report.runtime);
    }

    /// [`exited`](Self::exited) for callers that only know the run time.
    pub fn observe_run(&mut self, ran_for: Duration) {
        self.backoff.observe_run(ran_for);
    }

    /// How many times [`start`](Self::start) was called.
    pub fn starts(&self) -> u64 {
        self.starts
    }
}
