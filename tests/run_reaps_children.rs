//! `RunningTopology::run_until` returns only once every child process that the
//! components started through the supervisor is reaped, even a child whose source
//! was aborted at the drain deadline and that ignores SIGTERM.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::collect::Collect;
use common::proc::{is_dead, our_zombies};
use common::run;
use profpipe::component::{BuildError, ComponentError, SourceConfig, SourceContext, Task};
use profpipe::process::{Spec, SupervisorConfig};
use profpipe::telemetry::Telemetry;
use profpipe::units::DurationStr;

/// Starts one child that ignores SIGTERM, reports its pid, and then holds it and
/// ignores the agent's shutdown, so the run has to abort it at the drain deadline.
#[derive(Debug)]
struct HoldsAChild {
    pid: tokio::sync::mpsc::UnboundedSender<u32>,
}

impl SourceConfig for HoldsAChild {
    fn outputs(&self) -> profpipe::event::DataTypes {
        profpipe::event::DataTypes::PROFILE
    }
    fn build(&self, cx: SourceContext) -> Result<Task, BuildError> {
        let pid = self.pid.clone();
        let sup = cx.cx.supervisor;
        Ok(Box::pin(async move {
            let child = sup
                .spawn(Spec::new("sh").args(["-c", "trap '' TERM; exec sleep 100"]))
                .await
                .map_err(|e| ComponentError::Other(e.to_string()))?;
            let _ = pid.send(child.pid());
            std::future::pending::<()>().await;
            drop(child);
            Ok(())
        }))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_until_returns_once_every_child_is_reaped() {
    let state_dir = tempfile::tempdir().unwrap();
    let (pid_tx, mut pid_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut agent = run::agent_with_state(state_dir.path());
    agent.supervisor = SupervisorConfig {
        kill_grace: DurationStr(Duration::from_millis(300)),
        ..SupervisorConfig::default()
    };
    let config = run::config(
        agent,
        vec![run::source("holds", "holds", HoldsAChild { pid: pid_tx })],
        vec![],
        vec![run::sink("collect", "collect", &["holds"], Collect::new())],
    );
    let running = run::start(&config, &Telemetry::new());
    let supervisor = running.supervisor().clone();
    // Stop the run once the child is up, keeping its pid for the checks below.
    let pid_seen = Arc::new(Mutex::new(None));
    let seen = pid_seen.clone();
    let stop = async move {
        *seen.lock().unwrap() = pid_rx.recv().await;
    };
    let outcome = tokio::time::timeout(
        Duration::from_secs(20),
        running.run_until(stop, Duration::from_millis(100)),
    )
    .await
    .expect("the run ended");
    assert_eq!(outcome.aborted, 1, "{outcome:?}");
    // No waiting here: run_until itself waited out the TERM, the grace and the KILL.
    assert_eq!(supervisor.alive(), 0, "a child outlived the run");
    let pid = pid_seen.lock().unwrap().expect("the child's pid");
    assert!(is_dead(pid, "sleep"), "the child {pid} still runs");
    assert!(our_zombies().is_empty());
}
