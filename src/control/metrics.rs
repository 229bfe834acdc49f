//! The control plane's metrics (prefix `profpipe_`), for the journey doc's alerts:
//! command history size (alert past 1,200), commands by outcome, failed exchanges
//! by class, pipeline starts and their success (alert on a failure rate past 10%),
//! reloads, and the agent's starts on this state directory (restarts).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use crate::telemetry::Telemetry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabels {
    /// `heartbeat` or `completion`.
    pub request: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SlotLabels {
    pub slot: String,
    pub outcome: String,
}

#[derive(Clone, Default)]
pub struct ControlMetrics {
    pub heartbeats: Counter,
    pub failures: Family<FailureLabels, Counter>,
    pub commands: Family<OutcomeLabels, Counter>,
    pub history_size: Gauge,
    pub outbox_size: Gauge,
    pub pipeline_starts: Family<SlotLabels, Counter>,
    pub pipelines_running: Gauge,
    pub reloads: Family<OutcomeLabels, Counter>,
    pub agent_starts: Gauge,
}

impl ControlMetrics {
    pub fn register(t: &Telemetry) -> ControlMetrics {
        let m = ControlMetrics::default();
        t.register(
            "control_heartbeats",
            "Heartbeats the control server answered",
            m.heartbeats.clone(),
        );
        t.register(
            "control_request_failures",
            "Heartbeats and completion reports that failed, by request and reason class",
            m.failures.clone(),
        );
        t.register(
            "control_commands",
            "Commands by outcome: started, completed, failed, rejected (refused before running)",
            m.commands.clone(),
        );
        t.register(
            "control_command_history_size",
            "Command ids remembered (capped at 1000)",
            m.history_size.clone(),
        );
        t.register(
            "control_completion_outbox_size",
            "Completion reports waiting to be accepted by the server",
            m.outbox_size.clone(),
        );
        t.register(
            "control_pipeline_starts",
            "Pipelines started for commands (and restarted at reload or resume), by slot and outcome",
            m.pipeline_starts.clone(),
        );
        t.register(
            "control_pipelines_running",
            "Command pipelines running now (0 when idle)",
            m.pipelines_running.clone(),
        );
        t.register(
            "control_reloads",
            "SIGHUP reloads by outcome (applied, rejected)",
            m.reloads.clone(),
        );
        t.register(
            "control_agent_starts",
            "Times an agent has started on this state directory (restarts + 1)",
            m.agent_starts.clone(),
        );
        m
    }

    pub fn failure(&self, request: &str, reason: &str) {
        self.failures
            .get_or_create(&FailureLabels {
                request: request.into(),
                reason: reason.into(),
            })
            .inc();
    }

    pub fn command(&self, outcome: &str) {
        self.commands
            .get_or_create(&OutcomeLabels {
                outcome: outcome.into(),
            })
            .inc();
    }

    pub fn pipeline_start(&self, slot: &str, ok: bool) {
        let outcome = if ok { "success" } else { "failure" };
        self.pipeline_starts
            .get_or_create(&SlotLabels {
                slot: slot.into(),
                outcome: outcome.into(),
            })
            .inc();
    }

    pub fn reload(&self, outcome: &str) {
        self.reloads
            .get_or_create(&OutcomeLabels {
                outcome: outcome.into(),
            })
            .inc();
    }
}
