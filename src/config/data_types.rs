//! Typed edges: every component says what kinds of data it takes and emits
//! (`perf_script` text, profiles, diagnostics), so a wiring that cannot work — a
//! `perf` source straight into a `file` sink, whose raw text nothing would fold — is
//! a validation error at the input that names it, with the fix, instead of a
//! pipeline that runs and writes nothing.
//!
//! Runs after the graph checks pass (no cycles, every input exists), on components
//! whose config could be read; one that could not is skipped (its own error is
//! reported already).

use std::collections::HashMap;
use std::ops::Range;

use super::declared::{Built, Declared};
use crate::event::{DataType, DataTypes};

/// What one component takes, and what it emits given what it is fed.
enum Shape<'a> {
    Source(DataTypes),
    Transform(&'a dyn crate::component::TransformConfig),
    Sink(DataTypes),
}

/// Every input whose producer emits something its consumer does not take, as
/// (span of the input, message).
pub(super) fn check(declared: &[Declared<'_>]) -> Vec<(Range<usize>, String)> {
    let by_id: HashMap<&str, &Declared<'_>> = declared.iter().map(|d| (d.id, d)).collect();
    let mut outputs: HashMap<&str, Option<DataTypes>> = HashMap::new();
    let mut problems = Vec::new();
    for d in declared {
        let Some(shape) = shape(d) else { continue };
        let takes = match shape {
            Shape::Source(_) => continue,
            Shape::Transform(t) => t.inputs(),
            Shape::Sink(t) => t,
        };
        for (input, span) in &d.inputs {
            let Some(producer) = by_id.get(input) else {
                continue;
            };
            let Some(produces) = output_of(producer, &by_id, &mut outputs) else {
                continue;
            };
            let missing = produces.without(takes);
            if !missing.is_empty() {
                problems.push((span.clone(), message(d, takes, producer, missing)));
            }
        }
    }
    problems
}

fn shape<'a>(d: &'a Declared<'_>) -> Option<Shape<'a>> {
    Some(match d.built.as_ref()? {
        Built::Source(_, c) => Shape::Source(c.outputs()),
        Built::Transform(_, c) => Shape::Transform(c.as_ref()),
        Built::Sink(_, c) => Shape::Sink(c.inputs()),
    })
}

/// What `d` emits; None when unknown (its config, or an upstream one, could not be
/// read). Memoised; the graph has no cycles by now.
fn output_of<'d>(
    d: &Declared<'d>,
    by_id: &HashMap<&'d str, &Declared<'d>>,
    memo: &mut HashMap<&'d str, Option<DataTypes>>,
) -> Option<DataTypes> {
    if let Some(known) = memo.get(d.id) {
        return *known;
    }
    let out = match shape(d)? {
        Shape::Source(out) => Some(out),
        Shape::Sink(_) => None,
        Shape::Transform(t) => {
            let mut fed = DataTypes::NONE;
            let mut known = true;
            for (input, _) in &d.inputs {
                match by_id.get(input).and_then(|p| output_of(p, by_id, memo)) {
                    Some(o) => fed = fed.with(o),
                    None => known = false,
                }
            }
            // What it cannot take is reported at its own input; what it emits comes
            // from what it takes.
            known.then(|| t.outputs(fed.intersect(t.inputs())))
        }
    };
    memo.insert(d.id, out);
    out
}

fn message(
    consumer: &Declared<'_>,
    takes: DataTypes,
    producer: &Declared<'_>,
    missing: DataTypes,
) -> String {
    let fix = if missing.contains(DataType::PerfScript) {
        "put a `fold` between them".to_string()
    } else if missing.contains(DataType::Diagnostic) {
        "put a `classify` between them".to_string()
    } else {
        format!("put a transform that turns {missing} into {takes} between them")
    };
    format!(
        "{} `{}` takes {takes}; {} `{}` produces {missing}: {fix}",
        consumer.role, consumer.id, producer.role, producer.id,
    )
}
