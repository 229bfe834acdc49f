//! Turns a validated [`Config`] into running tasks joined by byte-budgeted edges.
//!
//! Every transform and sink gets one input edge sized by its `buffer`; every source
//! and transform gets an [`Output`] holding the senders of the edges of the
//! components that list it in `inputs`; a source's output also puts `[agent]
//! labels` and the source's own `labels` (which win) on every data event it emits.
//! The topology keeps no sender itself, so when
//! sources finish, edges close in cascade and every component drains and returns.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use std::path::PathBuf;
use std::time::Duration;

use crate::buffer::{
    disk, edge, BufferConfig, BufferKind, EdgeSender, Fanout, Input, MemoryBudget, Output, Relay,
};
use crate::component::{ComponentContext, SinkContext, SourceContext, Task, TransformContext};
use crate::config::Config;

use super::reload::Shape;
use super::scale::{consumers, edge_scale, EdgeScale};
use crate::event::ComponentId;
use crate::process::Supervisor;
use crate::telemetry::{ComponentMetrics, Telemetry};
use crate::units::ByteSize;

use crate::shutdown::{ShutdownSignal, ShutdownTrigger};

/// A built component, ready to spawn.
pub struct BuiltTask {
    pub id: ComponentId,
    pub kind: &'static str,
    pub task: Task,
}

/// Everything [`super::RunningTopology`] needs.
pub struct Built {
    pub tasks: Vec<BuiltTask>,
    /// Owns every child process the components start.
    pub supervisor: Supervisor,
    /// Fires when the topology stops (the signal of transforms and sinks; each
    /// source has its own, in [`Wiring::stops`]).
    pub trigger: ShutdownTrigger,
    pub budget: MemoryBudget,
    /// True when every source ends by itself (e.g. files read once).
    pub all_sources_finite: bool,
    /// What a reload needs to change the running graph.
    pub(super) wiring: Wiring,
}

/// The running graph's joints, kept so a reload can build components into it:
/// each producer's [`Fanout`], each sink's [`Relay`], each source's stop, and what
/// every component of this topology shares.
pub(super) struct Wiring {
    pub shared: Shared,
    pub fanouts: HashMap<ComponentId, Arc<Fanout>>,
    pub relays: HashMap<ComponentId, Relay>,
    /// One per source, so a reload can stop one; stopping the topology fires all.
    /// (Dropping one stops its source too.)
    pub stops: HashMap<ComponentId, ShutdownTrigger>,
    /// The config it was built from, as a reload compares it.
    pub shape: Shape,
    pub drain_timeout: Duration,
}

/// What every component of one topology shares.
#[derive(Clone)]
pub(super) struct Shared {
    host: Arc<str>,
    telemetry: Telemetry,
    /// The topology's stop, for transforms and sinks.
    shutdown: ShutdownSignal,
    supervisor: Supervisor,
    budget: MemoryBudget,
    origin_ms: u64,
    state_dir: PathBuf,
    shutdown_timeout: Duration,
}

/// Components built into a graph, not yet running: the whole graph at start, or
/// the part a reload replaces.
pub(super) struct Part {
    pub tasks: Vec<BuiltTask>,
    /// Of the sources and transforms built.
    pub fanouts: HashMap<ComponentId, Arc<Fanout>>,
    /// Of the sinks built on a new buffer.
    pub relays: HashMap<ComponentId, Relay>,
    pub stops: HashMap<ComponentId, ShutdownTrigger>,
    /// Edges that producers already running must feed: (producer, consumer, edge).
    pub attach: Vec<(ComponentId, ComponentId, EdgeSender)>,
}

impl Shared {
    fn context(
        &self,
        id: &ComponentId,
        metrics: &ComponentMetrics,
        shutdown: ShutdownSignal,
        upstream: &HashMap<ComponentId, Vec<ComponentId>>,
    ) -> ComponentContext {
        ComponentContext {
            id: id.clone(),
            host: self.host.clone(),
            metrics: metrics.clone(),
            telemetry: self.telemetry.clone(),
            shutdown,
            upstream_sources: upstream.get(id).cloned().unwrap_or_default(),
            supervisor: self.supervisor.clone(),
            state_dir: self.state_dir.clone(),
            origin_ms: self.origin_ms,
            budget: self.budget.clone(),
            shutdown_timeout: self.shutdown_timeout,
        }
    }

    /// Builds the components of `config` named in `which`. Each consumer built
    /// gets a new input edge, except the sinks in `handover`, which read the given
    /// input (a buffer they take over). A producer not in `which` is running
    /// already: the edges it must feed come back in [`Part::attach`].
    pub fn build_part(
        &self,
        config: &Config,
        which: &HashSet<ComponentId>,
        mut handover: HashMap<ComponentId, Input>,
        scale: &EdgeScale,
    ) -> Result<Part, Vec<String>> {
        let built = |id: &ComponentId| which.contains(id);
        let mut metrics: HashMap<ComponentId, ComponentMetrics> = HashMap::new();
        for (id, kind, ty) in config
            .sources
            .iter()
            .map(|s| (&s.id, "source", s.type_name))
            .chain(
                config
                    .transforms
                    .iter()
                    .map(|t| (&t.id, "transform", t.type_name)),
            )
            .chain(config.sinks.iter().map(|s| (&s.id, "sink", s.type_name)))
            .filter(|(id, _, _)| built(id))
        {
            metrics.insert(id.clone(), self.metrics(id, kind, ty));
        }

        // One input edge per consumer; its sender goes to every producer it reads.
        let mut inputs: HashMap<ComponentId, Input> = HashMap::new();
        let mut senders: HashMap<ComponentId, Vec<(ComponentId, EdgeSender)>> = HashMap::new();
        let mut attach = Vec::new();
        let mut relays = HashMap::new();
        let mut errors = Vec::new();
        for (id, ins, buffer) in consumers(config).filter(|(id, _, _)| built(id)) {
            if let Some(input) = handover.remove(id) {
                inputs.insert(id.clone(), input);
                continue;
            }
            let (tx, rx) = match self.input_edge(config, id, buffer, scale, &metrics[id]) {
                Ok(ends) => ends,
                Err(e) => {
                    errors.push(e);
                    continue;
                }
            };
            for producer in ins {
                let edge = (id.clone(), tx.clone());
                if built(producer) {
                    senders.entry(producer.clone()).or_default().push(edge);
                } else {
                    attach.push((producer.clone(), edge.0, edge.1));
                }
            }
            let rx = if config.sinks.iter().any(|s| &s.id == id) {
                let (relay, input) = Relay::wrap(rx);
                relays.insert(id.clone(), relay);
                input
            } else {
                rx
            };
            inputs.insert(id.clone(), rx);
        }
        if !errors.is_empty() {
            return Err(errors);
        }

        let upstream = upstream_sources(config);
        let mut fanouts = HashMap::new();
        let mut output = |id: &ComponentId| {
            let fanout = Fanout::new(senders.remove(id).unwrap_or_default());
            fanouts.insert(id.clone(), fanout.clone());
            Output::to(fanout, metrics[id].clone())
        };
        let mut tasks = Vec::new();
        let mut stops = HashMap::new();
        let mut record = |id: &ComponentId, kind: &'static str, r: Result<Task, _>| match r {
            Ok(task) => tasks.push(BuiltTask {
                id: id.clone(),
                kind,
                task,
            }),
            Err(e) => errors.push(format!("{kind} `{id}`: {e}")),
        };
        for s in config.sources.iter().filter(|s| built(&s.id)) {
            let (labels, refused) = config.agent.labels.merged(&s.labels);
            if refused > 0 {
                metrics[&s.id].errors("label_limit", refused as u64);
            }
            let (stop, signal) = ShutdownTrigger::new();
            stops.insert(s.id.clone(), stop);
            let cx = SourceContext {
                cx: self.context(&s.id, &metrics[&s.id], signal, &upstream),
                out: output(&s.id).with_labels(labels),
            };
            record(&s.id, "source", s.config.build(cx));
        }
        for t in config.transforms.iter().filter(|t| built(&t.id)) {
            let cx = TransformContext {
                cx: self.context(&t.id, &metrics[&t.id], self.shutdown.clone(), &upstream),
                input: inputs
                    .remove(&t.id)
                    .expect("every transform has an input edge"),
                out: output(&t.id),
            };
            record(&t.id, "transform", t.config.build(cx));
        }
        for s in config.sinks.iter().filter(|s| built(&s.id)) {
            let Some(input) = inputs.remove(&s.id) else {
                continue; // its edge could not be made: reported above
            };
            let cx = SinkContext {
                cx: self.context(&s.id, &metrics[&s.id], self.shutdown.clone(), &upstream),
                input,
            };
            record(&s.id, "sink", s.config.build(cx));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Part {
            tasks,
            fanouts,
            relays,
            stops,
            attach,
        })
    }

    pub fn metrics(&self, id: &ComponentId, kind: &str, type_name: &str) -> ComponentMetrics {
        self.telemetry.component(id, kind, type_name)
    }

    /// The input edge of consumer `id`, as its `buffer` says.
    fn input_edge(
        &self,
        config: &Config,
        id: &ComponentId,
        mut buffer: BufferConfig,
        scale: &EdgeScale,
        metrics: &ComponentMetrics,
    ) -> Result<(EdgeSender, Input), String> {
        match buffer.kind {
            BufferKind::Memory => {
                buffer.max_bytes = ByteSize(scale.apply(buffer.max_bytes.get()));
                Ok(edge(buffer, self.budget.clone(), metrics.clone()))
            }
            BufferKind::Disk => {
                let dir = config.agent.state_dir.join("buffers").join(&**id);
                disk::open(&dir, buffer, &self.budget, metrics.clone())
                    .map_err(|e| format!("sink `{id}`: disk buffer: {e}"))
            }
        }
    }
}

/// Problems met while building (e.g. an output directory that cannot be created).
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.join("\n"))]
pub struct BuildErrors(pub Vec<String>);

pub fn build(config: &Config, telemetry: &Telemetry, host: Arc<str>) -> Result<Built, BuildErrors> {
    let budget = MemoryBudget::new(config.agent.memory_limit.get());
    register_memory_gauges(telemetry, &budget);
    let supervisor = Supervisor::new(config.agent.supervisor.clone(), telemetry);
    let (trigger, _) = ShutdownTrigger::new();
    let origin_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() * 1000);
    let shared = Shared {
        host,
        telemetry: telemetry.clone(),
        shutdown: trigger.signal(),
        supervisor: supervisor.clone(),
        budget: budget.clone(),
        origin_ms,
        state_dir: config.agent.state_dir.clone(),
        shutdown_timeout: config.agent.shutdown_timeout.get(),
    };
    let scale = edge_scale(config);
    scale.say();
    let everything = config
        .sources
        .iter()
        .map(|s| s.id.clone())
        .chain(config.transforms.iter().map(|t| t.id.clone()))
        .chain(config.sinks.iter().map(|s| s.id.clone()))
        .collect();
    let part = shared
        .build_part(config, &everything, HashMap::new(), &scale)
        .map_err(BuildErrors)?;
    debug_assert!(part.attach.is_empty(), "every producer was built");
    Ok(Built {
        tasks: part.tasks,
        supervisor,
        trigger,
        budget,
        all_sources_finite: config.sources.iter().all(|s| s.config.is_finite()),
        wiring: Wiring {
            shared,
            fanouts: part.fanouts,
            relays: part.relays,
            stops: part.stops,
            shape: Shape::of(config),
            drain_timeout: config.agent.shutdown_timeout.get(),
        },
    })
}

/// For each component, the ids of the sources it (transitively) reads, in config order.
fn upstream_sources(config: &Config) -> HashMap<ComponentId, Vec<ComponentId>> {
    let inputs: HashMap<&ComponentId, &Vec<ComponentId>> = config
        .transforms
        .iter()
        .map(|t| (&t.id, &t.inputs))
        .chain(config.sinks.iter().map(|s| (&s.id, &s.inputs)))
        .collect();
    let sources: Vec<&ComponentId> = config.sources.iter().map(|s| &s.id).collect();
    let mut out = HashMap::new();
    for id in inputs.keys() {
        let mut found = Vec::new();
        let mut stack = vec![*id];
        let mut seen = std::collections::HashSet::new();
        while let Some(c) = stack.pop() {
            if !seen.insert(c) {
                continue; // the config loader rejects cycles; this only guards re-visits
            }
            if sources.contains(&c) {
                found.push(c.clone());
            } else if let Some(ins) = inputs.get(c) {
                stack.extend(ins.iter());
            }
        }
        found.sort_by_key(|s| sources.iter().position(|x| *x == s));
        found.dedup();
        out.insert((*id).clone(), found);
    }
    out
}

/// `profpipe_memory_*_bytes`: what edges and window stores hold against
/// `[agent] memory_limit`, their sum and its high-water mark.
fn register_memory_gauges(telemetry: &Telemetry, budget: &MemoryBudget) {
    let g = budget.gauges();
    for (name, help, gauge) in [
        (
            "memory_edge_bytes",
            "Bytes of events buffered on edges",
            &g.edge_bytes,
        ),
        (
            "memory_window_bytes",
            "Bytes held by window stores",
            &g.window_bytes,
        ),
        (
            "memory_used_bytes",
            "Edges and window stores together",
            &g.used_bytes,
        ),
        (
            "memory_peak_bytes",
            "Highest memory_used_bytes so far",
            &g.peak_bytes,
        ),
        ("memory_limit_bytes", "[agent] memory_limit", &g.limit_bytes),
    ] {
        telemetry.register(name, help, gauge.clone());
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::component::{BuildError, SinkConfig, SourceConfig};
    use crate::config::{AgentConfig, SinkEntry, SourceEntry, TelemetryConfig, TransformEntry};
    use crate::event::{DataTypes, Event, LabelSet, Labels, Profile, Stack, Watermark, Window};

    fn set(pairs: &[(&str, &str)]) -> LabelSet {
        pairs
            .iter()
            .fold(LabelSet::default(), |s, (k, v)| s.with(k, v).unwrap())
    }

    /// Emits one profile with `own` labels, then finishes.
    #[derive(Debug)]
    struct One {
        own: LabelSet,
    }

    impl SourceConfig for One {
        fn outputs(&self) -> DataTypes {
            DataTypes::PROFILE
        }
        fn is_finite(&self) -> bool {
            true
        }
        fn build(&self, cx: SourceContext) -> Result<crate::component::Task, BuildError> {
            let SourceContext { cx, mut out } = cx;
            let labels = Labels {
                host: cx.host.clone(),
                source: cx.id.clone(),
                profiler: "test".into(),
                extra: self.own.clone(),
            };
            Ok(Box::pin(async move {
                let p = Profile::new(Window::new(0, 1000), labels, vec![Stack::new("a;b", 1)]);
                let _ = out.send(Event::Profile(p)).await;
                let _ = out
                    .send(Event::Watermark(Watermark {
                        source: cx.id.clone(),
                        complete_until_ms: Watermark::FINISHED,
                    }))
                    .await;
                Ok(())
            }))
        }
    }

    #[derive(Debug)]
    struct Collect(Arc<Mutex<Vec<String>>>);

    impl SinkConfig for Collect {
        fn inputs(&self) -> DataTypes {
            DataTypes::ALL
        }
        fn build(&self, cx: SinkContext) -> Result<crate::component::Task, BuildError> {
            let SinkContext { mut input, .. } = cx;
            let got = self.0.clone();
            Ok(Box::pin(async move {
                while let Some(ev) = input.recv().await {
                    if let Event::Profile(p) = ev {
                        got.lock().unwrap().push(p.labels.extra.to_string());
                    }
                }
                Ok(())
            }))
        }
    }

    #[tokio::test]
    async fn agent_then_source_then_own_labels_reach_the_sink() {
        let got = Arc::new(Mutex::new(Vec::new()));
        let config = Config {
            agent: AgentConfig {
                labels: set(&[("service", "checkout"), ("env", "prod")]),
                ..AgentConfig::default()
            },
            telemetry: TelemetryConfig::default(),
            sources: vec![SourceEntry {
                id: "py".into(),
                type_name: "one",
                labels: set(&[("env", "canary"), ("team", "payments")]),
                declared: String::new(),
                config: Box::new(One {
                    own: set(&[("pod", "web-1"), ("team", "search")]),
                }),
            }],
            transforms: vec![TransformEntry {
                id: "tag".into(),
                type_name: "labels",
                inputs: vec!["py".into()],
                buffer: Default::default(),
                declared: String::new(),
                config: Box::new(crate::transforms::labels::LabelsConfig {
                    drop: vec!["pod".into()],
                    ..Default::default()
                }),
            }],
            sinks: vec![SinkEntry {
                id: "out".into(),
                type_name: "collect",
                inputs: vec!["tag".into()],
                buffer: Default::default(),
                declared: String::new(),
                config: Box::new(Collect(got.clone())),
            }],
        };
        let telemetry = Telemetry::new();
        let built = build(&config, &telemetry, "host-1".into()).unwrap_or_else(|e| panic!("{e}"));
        let handles: Vec<_> = built
            .tasks
            .into_iter()
            .map(|t| tokio::spawn(t.task))
            .collect();
        for h in handles {
            h.await.unwrap().unwrap();
        }
        assert_eq!(
            *got.lock().unwrap(),
            vec!["env=canary,service=checkout,team=search".to_string()]
        );
    }
}
