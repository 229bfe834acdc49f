//! What a new config changes in a running topology, and whether it can be applied
//! without stopping what did not change.
//!
//! Components are compared by their tables as declared (after `${NAME}`
//! substitution). Applied in place ([`super::RunningTopology::reload`]):
//! - a changed, added or removed source or transform is rebuilt (or stopped)
//!   together with everything downstream of it, since a window downstream waits for
//!   the watermarks of the sources upstream; the old instances stop, deliver what
//!   they hold and end; everything else keeps running, with its children, windows
//!   and buffers;
//! - a changed sink with the same `inputs` and `buffer`, not downstream of a
//!   change, gets the same buffer, with what is in it ([`crate::buffer::Relay`]);
//! - any other changed sink gets a new memory buffer; the old one delivers what its
//!   buffer holds and ends; an added sink is attached, a removed one detached.
//!
//! The whole pipeline restarts (the old one drains first) when `[agent]` or
//! `[telemetry]` changes, when a sink behind a disk buffer would need a new buffer
//! (its directory cannot have two readers), or when buffers would be sized
//! otherwise against `memory_limit`.

use std::collections::HashSet;

use crate::buffer::{BufferConfig, BufferKind};
use crate::config::Config;
use crate::event::ComponentId;

use super::scale::{edge_scale, EdgeScale};

/// The parts of a running config a reload compares.
pub(super) struct Shape {
    /// `[agent]` and `[telemetry]`.
    globals: String,
    nodes: Vec<Node>,
    scale: EdgeScale,
}

struct Node {
    id: ComponentId,
    /// `None` for a source.
    buffer: Option<BufferConfig>,
    sink: bool,
    declared: String,
    inputs: Vec<ComponentId>,
}

/// How to go from the running config to the new one.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Plan {
    /// Components of the new config to build, each on a new input buffer.
    pub build: HashSet<ComponentId>,
    /// Sinks of the new config that read on from their predecessor's buffer.
    pub handover: HashSet<ComponentId>,
    /// Running components to stop (sources) or let drain and end.
    pub retire: HashSet<ComponentId>,
    /// Sources and transforms built.
    pub rebuilt: usize,
    /// Sinks replaced (built again or handed over), added, removed.
    pub replaced: usize,
    pub added: usize,
    pub removed: usize,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.build.is_empty() && self.handover.is_empty() && self.retire.is_empty()
    }
}

impl Shape {
    pub fn of(config: &Config) -> Shape {
        let sources = config.sources.iter().map(|s| Node {
            id: s.id.clone(),
            buffer: None,
            sink: false,
            declared: s.declared.clone(),
            inputs: Vec::new(),
        });
        let transforms = config.transforms.iter().map(|t| Node {
            id: t.id.clone(),
            buffer: Some(t.buffer),
            sink: false,
            declared: t.declared.clone(),
            inputs: t.inputs.clone(),
        });
        let sinks = config.sinks.iter().map(|s| Node {
            id: s.id.clone(),
            buffer: Some(s.buffer),
            sink: true,
            declared: s.declared.clone(),
            inputs: s.inputs.clone(),
        });
        Shape {
            globals: format!("{:?}\n{:?}", config.agent, config.telemetry),
            nodes: sources.chain(transforms).chain(sinks).collect(),
            scale: edge_scale(config),
        }
    }

    pub fn scale(&self) -> EdgeScale {
        self.scale
    }

    fn get(&self, id: &ComponentId) -> Option<&Node> {
        self.nodes.iter().find(|n| &n.id == id)
    }

    /// `seeds` and every component downstream of one.
    fn downstream(&self, seeds: &HashSet<ComponentId>) -> HashSet<ComponentId> {
        let mut reached: HashSet<ComponentId> = seeds
            .iter()
            .filter(|id| self.get(id).is_some())
            .cloned()
            .collect();
        loop {
            let more: Vec<ComponentId> = self
                .nodes
                .iter()
                .filter(|n| {
                    !reached.contains(&n.id) && n.inputs.iter().any(|i| reached.contains(i))
                })
                .map(|n| n.id.clone())
                .collect();
            if more.is_empty() {
                return reached;
            }
            reached.extend(more);
        }
    }

    /// How to go from this shape to `new`'s, or why the whole pipeline restarts.
    pub fn plan(&self, new: &Shape) -> Result<Plan, String> {
        if self.globals != new.globals {
            return Err("[agent] or [telemetry] changed".into());
        }
        if !self.scale.same_sizes(&new.scale) {
            return Err("memory buffers would be sized otherwise against memory_limit".into());
        }
        let declared = |shape: &Shape, id: &ComponentId| shape.get(id).map(|n| n.declared.clone());
        let changed: HashSet<ComponentId> = self
            .nodes
            .iter()
            .chain(&new.nodes)
            .filter(|n| !n.sink && declared(self, &n.id) != declared(new, &n.id))
            .map(|n| n.id.clone())
            .collect();
        let (after, before) = (new.downstream(&changed), self.downstream(&changed));

        let mut plan = Plan::default();
        for n in &new.nodes {
            let old = self.get(&n.id);
            let affected = after.contains(&n.id) || before.contains(&n.id);
            if !n.sink {
                if affected {
                    plan.build.insert(n.id.clone());
                    plan.rebuilt += 1;
                }
                continue;
            }
            let Some(o) = old else {
                plan.build.insert(n.id.clone());
                plan.added += 1;
                continue;
            };
            if !affected && o.declared == n.declared {
                continue;
            }
            plan.retire.insert(n.id.clone());
            plan.replaced += 1;
            if !affected && o.inputs == n.inputs && o.buffer == n.buffer {
                plan.handover.insert(n.id.clone());
            } else if [o, n]
                .iter()
                .any(|x| x.buffer.is_some_and(|b| b.kind == BufferKind::Disk))
            {
                return Err(format!(
                    "sink `{}` would need a new disk buffer (its inputs or settings change, or what it reads changed)",
                    n.id
                ));
            } else {
                plan.build.insert(n.id.clone());
            }
        }
        for o in &self.nodes {
            let gone = new.get(&o.id).is_none();
            if gone || (!o.sink && before.contains(&o.id)) {
                plan.retire.insert(o.id.clone());
            }
            if gone && o.sink {
                plan.removed += 1;
            }
        }
        Ok(plan)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_str;

    fn shape(text: &str) -> Shape {
        let config = load_str(
            std::path::Path::new("test.toml"),
            text,
            &crate::registry::registry(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        Shape::of(&config)
    }

    const SOURCE: &str = r#"
[sources.in]
type = "file"
paths = ["/dev/null"]
format = "collapsed"
"#;

    fn ids(v: &[&str]) -> HashSet<ComponentId> {
        v.iter().map(|s| ComponentId::from(*s)).collect()
    }

    fn with_sinks(sinks: &str) -> Shape {
        shape(&format!("{SOURCE}\n{sinks}"))
    }

    fn sink(id: &str, dir: &str, buffer: &str) -> String {
        format!("[sinks.{id}]\ntype = \"file\"\ninputs = [\"in\"]\npath = \"{dir}\"\n{buffer}\n")
    }

    #[test]
    fn sink_changes_leave_the_rest_running() {
        let old = with_sinks(&(sink("a", "/tmp/a", "") + &sink("b", "/tmp/b", "")));
        assert!(old.plan(&old).unwrap().is_empty());

        let new = with_sinks(
            &(sink("a", "/tmp/a2", "")
                + &sink("b", "/tmp/b", "buffer = { max_bytes = \"2MiB\" }")
                + &sink("c", "/tmp/c", "")),
        );
        let plan = old.plan(&new).unwrap();
        assert_eq!(plan.handover, ids(&["a"]));
        assert_eq!(plan.build, ids(&["b", "c"]));
        assert_eq!(plan.retire, ids(&["a", "b"]));
        assert_eq!(
            (plan.rebuilt, plan.replaced, plan.added, plan.removed),
            (0, 2, 1, 0)
        );

        let fewer = with_sinks(&sink("a", "/tmp/a", ""));
        let plan = old.plan(&fewer).unwrap();
        assert_eq!(plan.retire, ids(&["b"]));
        assert_eq!(plan.removed, 1);
    }

    #[test]
    fn a_changed_source_is_rebuilt_with_what_is_downstream() {
        let old = with_sinks(&sink("a", "/tmp/a", ""));
        let source = shape(&format!(
            "{}\n{}",
            SOURCE.replace("/dev/null", "/dev/zero"),
            sink("a", "/tmp/a", "")
        ));
        let plan = old.plan(&source).unwrap();
        assert_eq!(plan.build, ids(&["in", "a"]));
        assert_eq!(plan.retire, ids(&["in", "a"]));
        assert!(plan.handover.is_empty());
        assert_eq!((plan.rebuilt, plan.replaced), (1, 1));
    }

    #[test]
    fn a_disk_buffer_that_would_need_replacing_restarts_the_pipeline() {
        let old = with_sinks(&sink("a", "/tmp/a", ""));
        let disk = "buffer = { type = \"disk\", max_bytes = \"1GiB\" }";
        let on_disk = with_sinks(&sink("a", "/tmp/a", disk));
        assert!(old.plan(&on_disk).unwrap_err().contains("disk buffer"));
        // The same disk buffer under a changed sink is handed over.
        let moved = with_sinks(&sink("a", "/tmp/a2", disk));
        assert_eq!(on_disk.plan(&moved).unwrap().handover, ids(&["a"]));
        // A disk-buffered sink downstream of a changed source cannot be rebuilt.
        let source = shape(&format!(
            "{}\n{}",
            SOURCE.replace("/dev/null", "/dev/zero"),
            sink("a", "/tmp/a", disk)
        ));
        assert!(on_disk.plan(&source).unwrap_err().contains("disk buffer"));
    }
}
