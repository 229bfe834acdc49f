//! Child-process supervision and /proc discovery.
//!
//! Every process the agent starts goes through the [`Supervisor`]: it forks from one
//! long-lived thread (so `PR_SET_PDEATHSIG` holds), puts each child in its own
//! process group, keeps a bounded tail of its stderr, enforces its deadline with
//! SIGTERM then SIGKILL to the group, reaps it and closes its pipes, and caps how
//! many run at once. [`Restarter`] restarts long-running children with [`Backoff`].
//!
//! [`jvm_attach`] speaks HotSpot's dynamic attach protocol in-process (no child): it
//! makes a JVM write its perf map.
//!
//! [`Discovery`] scans `/proc` for processes worth profiling (Python, Ruby, JVMs,
//! Node.js),
//! recognises embedded Python (Envoy, Bazel-built tools) and [`select`] applies the
//! rules: minimum age, the agent's own tree, allow/deny lists and a busiest-first cap.
//!
//! ```ignore
//! let sup = Supervisor::new(SupervisorConfig::default(), &telemetry);
//! let mut child = sup
//!     .spawn(Spec::new("py-spy").args(["record", "-p", "1234"]).deadline(Duration::from_secs(70)).stdout(Stdout::Piped))
//!     .await?;
//! // read child.stdout() ...
//! let report = child.wait().await; // reaped, pipes closed
//! ```

pub mod app_id;
mod backoff;
mod bounded_map;
mod child;
pub mod discovery;
pub mod embedded_python;
pub mod jvm_attach;
mod metrics;
pub mod python_versions;
mod raw_child;
mod reap;
mod restart;
mod slot;
mod spawn_error;
mod spawner;
mod spec;
mod stderr_tail;
mod supervisor;

pub use backoff::{Backoff, BackoffState};
pub use bounded_map::BoundedMap;
pub use child::{Child, ChildStdin, ChildStdout, ExitOutcome, ExitReport, SignalError};
pub use discovery::{
    classify, container_id, pod_uid, select, skip_reason, Classification, Discovery,
    DiscoveryConfig, PodInfo, ProcessInfo, Rules, Runtime,
};
pub use nix::sys::signal::Signal;
pub use restart::Restarter;
pub use spawn_error::SpawnError;
pub use spec::{Spec, Stdout};
pub use stderr_tail::StderrTail;
pub use supervisor::{Supervisor, SupervisorConfig};
