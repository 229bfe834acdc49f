//! What a new config changes in a running topology, and whether it can be applied
//! without stopping the profilers.
//!
//! Components are compared by their tables as declared (after `${NAME}`
//! substitution). A reload that changes only sinks (added, removed, changed) is
//! applied while sources and transforms keep running, with their children, their
//! windows and their buffers ([`super::RunningTopology::reload`]):
//! - a changed sink with the same `inputs` and `buffer` gets the same buffer, with
//!   what is in it ([`crate::buffer::Relay`]);
//! - a changed sink whose `inputs` or memory buffer changed gets a new memory
//!   buffer; the old sink delivers what its buffer holds and ends;
//! - an added sink is attached to its inputs; a removed one is detached, delivers
//!   what it holds and ends.
//!
//! Anything else restarts the whole pipeline (the old one drains first): a changed
//! source, transform, `[agent]` or `[telemetry]`; a disk buffer whose settings or
//! inputs change (its directory cannot be held by two sinks at once); buffers that
//! would be sized otherwise against `memory_limit`.

use crate::buffer::{BufferConfig, BufferKind};
use crate::config::Config;
use crate::event::ComponentId;

use super::scale::{edge_scale, EdgeScale};

/// The parts of a running config a reload compares.
pub(super) struct Shape {
    /// Everything but the sinks.
    rest: String,
    sinks: Vec<SinkShape>,
    scale: EdgeScale,
}

struct SinkShape {
    id: ComponentId,
    declared: String,
    inputs: Vec<ComponentId>,
    buffer: BufferConfig,
}

/// How the sinks change.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Plan {
    /// Same buffer: the new sink reads on from the old one's buffer.
    pub handover: Vec<ComponentId>,
    /// New memory buffer: producers switch to it; the old sink drains its own.
    pub swap: Vec<ComponentId>,
    pub add: Vec<ComponentId>,
    pub remove: Vec<ComponentId>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.handover.is_empty()
            && self.swap.is_empty()
            && self.add.is_empty()
            && self.remove.is_empty()
    }
}

impl Shape {
    pub fn of(config: &Config) -> Shape {
        let mut rest = format!("{:?}\n{:?}\n", config.agent, config.telemetry);
        for s in &config.sources {
            rest.push_str(&format!("source {} {}\n", s.id, s.declared));
        }
        for t in &config.transforms {
            rest.push_str(&format!("transform {} {}\n", t.id, t.declared));
        }
        Shape {
            rest,
            sinks: config
                .sinks
                .iter()
                .map(|s| SinkShape {
                    id: s.id.clone(),
                    declared: s.declared.clone(),
                    inputs: s.inputs.clone(),
                    buffer: s.buffer,
                })
                .collect(),
            scale: edge_scale(config),
        }
    }

    pub fn scale(&self) -> EdgeScale {
        self.scale
    }

    /// How to go from this shape to `new`'s, or why the whole pipeline restarts.
    pub fn plan(&self, new: &Shape) -> Result<Plan, String> {
        if self.rest != new.rest {
            return Err("a source, a transform, [agent] or [telemetry] changed".into());
        }
        if !self.scale.same_sizes(&new.scale) {
            return Err("memory buffers would be sized otherwise against memory_limit".into());
        }
        let mut plan = Plan::default();
        for n in &new.sinks {
            let Some(o) = self.sinks.iter().find(|o| o.id == n.id) else {
                plan.add.push(n.id.clone());
                continue;
            };
            if o.declared == n.declared {
                continue;
            }
            if o.inputs == n.inputs && o.buffer == n.buffer {
                plan.handover.push(n.id.clone());
            } else if o.buffer.kind == BufferKind::Memory && n.buffer.kind == BufferKind::Memory {
                plan.swap.push(n.id.clone());
            } else {
                return Err(format!(
                    "sink `{}` changes the inputs or settings of a disk buffer",
                    n.id
                ));
            }
        }
        for o in &self.sinks {
            if !new.sinks.iter().any(|n| n.id == o.id) {
                plan.remove.push(o.id.clone());
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

    fn with_sinks(sinks: &str) -> Shape {
        shape(&format!("{SOURCE}\n{sinks}"))
    }

    fn sink(id: &str, dir: &str, buffer: &str) -> String {
        format!("[sinks.{id}]\ntype = \"file\"\ninputs = [\"in\"]\npath = \"{dir}\"\n{buffer}\n")
    }

    #[test]
    fn only_sink_changes_are_applied_in_place() {
        let old = with_sinks(&(sink("a", "/tmp/a", "") + &sink("b", "/tmp/b", "")));
        assert_eq!(old.plan(&old), Ok(Plan::default()));

        let new = with_sinks(
            &(sink("a", "/tmp/a2", "")
                + &sink("b", "/tmp/b", "buffer = { max_bytes = \"2MiB\" }")
                + &sink("c", "/tmp/c", "")),
        );
        let plan = old.plan(&new).unwrap();
        assert_eq!(plan.handover, vec![ComponentId::from("a")]);
        assert_eq!(plan.swap, vec![ComponentId::from("b")]);
        assert_eq!(plan.add, vec![ComponentId::from("c")]);
        assert!(plan.remove.is_empty());

        let fewer = with_sinks(&sink("a", "/tmp/a", ""));
        assert_eq!(
            old.plan(&fewer).unwrap().remove,
            vec![ComponentId::from("b")]
        );
    }

    #[test]
    fn a_changed_source_or_disk_buffer_restarts_the_pipeline() {
        let old = with_sinks(&sink("a", "/tmp/a", ""));
        let source = shape(&format!(
            "{}\n{}",
            SOURCE.replace("/dev/null", "/dev/zero"),
            sink("a", "/tmp/a", "")
        ));
        assert!(old.plan(&source).unwrap_err().contains("source"));

        let disk = "buffer = { type = \"disk\", max_bytes = \"1GiB\" }";
        let on_disk = with_sinks(&sink("a", "/tmp/a", disk));
        assert!(old.plan(&on_disk).unwrap_err().contains("disk buffer"));
        // The same disk buffer under a changed sink is handed over.
        let moved = with_sinks(&sink("a", "/tmp/a2", disk));
        assert_eq!(
            on_disk.plan(&moved).unwrap().handover,
            vec![ComponentId::from("a")]
        );
    }
}
