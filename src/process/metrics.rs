//! The supervisor's metric families (names get the `profpipe_` prefix, counters the
//! `_total` suffix):
//! - `process_children_alive`: children started and not yet reaped;
//! - `process_children_started_total{program}`;
//! - `process_children_restarted_total{program}`: starts by a [`Restarter`] after
//!   the first one;
//! - `process_children_exits_total{program, reason}`, reason one of `exited_ok`,
//!   `exited_error`, `signal`, `timeout`, `cancelled`;
//! - `process_spawn_failures_total{program, reason}`, reason one of `not_found`,
//!   `permission_denied`, `stdout`, `io`.
//!
//! [`Restarter`]: super::Restarter

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use crate::telemetry::Telemetry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ProgramLabels {
    pub(crate) program: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ReasonLabels {
    pub(crate) program: String,
    pub(crate) reason: &'static str,
}

#[derive(Default)]
pub(crate) struct ProcessMetrics {
    pub(crate) alive: Gauge,
    pub(crate) started: Family<ProgramLabels, Counter>,
    pub(crate) restarted: Family<ProgramLabels, Counter>,
    pub(crate) exits: Family<ReasonLabels, Counter>,
    pub(crate) spawn_failures: Family<ReasonLabels, Counter>,
}

impl ProcessMetrics {
    /// Creates the families and registers them. One supervisor per agent: a second
    /// one on the same telemetry would register the names twice.
    pub(crate) fn register(telemetry: &Telemetry) -> ProcessMetrics {
        let m = ProcessMetrics::default();
        telemetry.register(
            "process_children_alive",
            "Child processes started by the supervisor and not yet reaped",
            m.alive.clone(),
        );
        telemetry.register(
            "process_children_started",
            "Child processes started, by program",
            m.started.clone(),
        );
        telemetry.register(
            "process_children_restarted",
            "Restarts of long-running children after they ended, by program",
            m.restarted.clone(),
        );
        telemetry.register(
            "process_children_exits",
            "Child processes reaped, by program and reason (exited_ok, exited_error, signal, timeout, cancelled)",
            m.exits.clone(),
        );
        telemetry.register(
            "process_spawn_failures",
            "Child processes that could not be started, by program and reason",
            m.spawn_failures.clone(),
        );
        m
    }

    pub(crate) fn program(program: &str) -> ProgramLabels {
        ProgramLabels {
            program: program.to_string(),
        }
    }

    pub(crate) fn reason(program: &str, reason: &'static str) -> ReasonLabels {
        ReasonLabels {
            program: program.to_string(),
            reason,
        }
    }
}
