//! A command's pipeline in two topologies joined by a link, so that a reload
//! which changes only where profiles go (the sinks) rebuilds only the delivery
//! half: the profilers, their children and the windows being folded keep running.
//!
//! ```text
//! profiling topology                                  delivery topology
//! perf → fold ┐                                       ┌──────────────┐
//! py_spy ─────┼→ classify → merge → [link sink] ══►══ │ [link source] → the config's sinks
//! rbspy ──────┘                       (bounded channel, LINK_CAPACITY events)
//! ```
//!
//! The two `control_link` component types exist only in the control plane's own
//! registry ([`registry`]): a config file cannot name them. The link sink forwards
//! events, and one watermark: the least of its upstream sources' (so the delivery
//! side closes a window once every profiler has passed it), under the link source's
//! id. When the delivery topology is stopped for a reload, its link source stops
//! reading and lets go of the channel; events wait there (the profiling side waits
//! when it is full: backpressure) for the next delivery topology's link source.
//! When the profiling topology ends, the channel closes and the delivery side
//! drains and ends on its own.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use serde::Deserialize;
use tokio::sync::mpsc;

use crate::component::{
    BuildError, Kind, SinkConfig, SinkContext, SourceConfig, SourceContext, Task,
};
use crate::config::Registry;
use crate::event::{ComponentId, DataTypes, Event, Watermark};

/// Events in flight between the two halves; they sit outside both memory budgets,
/// so the bound is small.
pub const LINK_CAPACITY: usize = 64;

/// The component type name of both ends.
pub const TYPE: &str = "control_link";

type Receiver = Arc<tokio::sync::Mutex<mpsc::Receiver<Event>>>;

struct Link {
    /// Taken by the link sink when it is built: then it holds the only sender.
    tx: Option<mpsc::Sender<Event>>,
    rx: Receiver,
}

fn links() -> &'static Mutex<HashMap<String, Link>> {
    static LINKS: OnceLock<Mutex<HashMap<String, Link>>> = OnceLock::new();
    LINKS.get_or_init(Mutex::default)
}

/// Creates the link `name` (before its topologies are built).
pub fn open(name: &str) {
    let (tx, rx) = mpsc::channel(LINK_CAPACITY);
    links().lock().unwrap().insert(
        name.to_string(),
        Link {
            tx: Some(tx),
            rx: Arc::new(tokio::sync::Mutex::new(rx)),
        },
    );
}

/// Forgets the link `name` (once both its topologies have ended).
pub fn close(name: &str) {
    links().lock().unwrap().remove(name);
}

/// The control plane's registry: every component type, plus the two link ends.
/// Built once and kept for the life of the process.
pub fn registry() -> Registry {
    struct Kinds {
        sources: &'static [Kind<dyn SourceConfig>],
        sinks: &'static [Kind<dyn SinkConfig>],
    }
    static KINDS: OnceLock<Kinds> = OnceLock::new();
    let k = KINDS.get_or_init(|| {
        let base = crate::registry::registry();
        let mut sources: Vec<Kind<dyn SourceConfig>> = base
            .sources
            .iter()
            .map(|k| Kind {
                name: k.name,
                parse: k.parse,
            })
            .collect();
        sources.push(Kind::source::<LinkSourceConfig>(TYPE));
        let mut sinks: Vec<Kind<dyn SinkConfig>> = base
            .sinks
            .iter()
            .map(|k| Kind {
                name: k.name,
                parse: k.parse,
            })
            .collect();
        sinks.push(Kind::sink::<LinkSinkConfig>(TYPE));
        Kinds {
            sources: Box::leak(sources.into_boxed_slice()),
            sinks: Box::leak(sinks.into_boxed_slice()),
        }
    });
    Registry {
        sources: k.sources,
        transforms: crate::registry::registry().transforms,
        sinks: k.sinks,
    }
}

/// The profiling half's end.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkSinkConfig {
    /// The link's name, unique per command pipeline.
    pub link: String,
}

impl SinkConfig for LinkSinkConfig {
    fn inputs(&self) -> DataTypes {
        DataTypes::PROFILES_AND_DIAGNOSTICS
    }

    fn build(&self, cx: SinkContext) -> Result<Task, BuildError> {
        let tx = links()
            .lock()
            .unwrap()
            .get_mut(&self.link)
            .and_then(|l| l.tx.take())
            .ok_or_else(|| BuildError(format!("no open link `{}`", self.link)))?;
        let SinkContext { cx, mut input } = cx;
        Ok(Box::pin(async move {
            let upstream = cx.upstream_sources.clone();
            let mut marks: HashMap<ComponentId, u64> = HashMap::new();
            let mut forwarded: Option<u64> = None;
            while let Some(event) = input.recv().await {
                let event = match event {
                    Event::Watermark(w) => {
                        marks.insert(w.source, w.complete_until_ms);
                        let least = upstream.iter().map(|s| marks.get(s).copied()).min();
                        match least.flatten() {
                            Some(m) if forwarded.is_none_or(|f| m > f) => {
                                forwarded = Some(m);
                                Event::Watermark(Watermark {
                                    source: cx.id.clone(),
                                    complete_until_ms: m,
                                })
                            }
                            _ => continue,
                        }
                    }
                    other => {
                        cx.metrics.sent(other.size_bytes());
                        other
                    }
                };
                if tx.send(event).await.is_err() {
                    // The delivery half is gone for good; the control plane stops
                    // this half too.
                    break;
                }
            }
            Ok(())
        }))
    }
}

/// The delivery half's start.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkSourceConfig {
    pub link: String,
}

impl SourceConfig for LinkSourceConfig {
    fn outputs(&self) -> DataTypes {
        DataTypes::PROFILES_AND_DIAGNOSTICS
    }

    fn build(&self, cx: SourceContext) -> Result<Task, BuildError> {
        let rx = links()
            .lock()
            .unwrap()
            .get(&self.link)
            .map(|l| l.rx.clone())
            .ok_or_else(|| BuildError(format!("no open link `{}`", self.link)))?;
        let SourceContext { cx, mut out } = cx;
        Ok(Box::pin(async move {
            let mut shutdown = cx.shutdown.clone();
            // A previous delivery half holds the channel until it has stopped.
            let mut rx = tokio::select! {
                rx = rx.lock_owned() => rx,
                _ = shutdown.recv() => return Ok(()),
            };
            loop {
                let event = tokio::select! {
                    biased;
                    _ = shutdown.recv() => break,
                    e = rx.recv() => match e {
                        Some(e) => e,
                        None => break,
                    },
                };
                let event = match event {
                    Event::Watermark(w) => Event::Watermark(Watermark {
                        source: cx.id.clone(),
                        complete_until_ms: w.complete_until_ms,
                    }),
                    other => other,
                };
                if out.send(event).await.is_err() {
                    break;
                }
            }
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
