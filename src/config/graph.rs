//! Checks on the shape of a pipeline: what reads what.
//!
//! They run on the components as declared, whatever else is wrong with them (a sink
//! whose `type` is unknown still reads its inputs), so one load reports both a bad
//! field and a dangling input. Nothing here knows about text: problems carry byte
//! spans that the loader turns into lines and columns.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::ops::Range;

use super::suggest::did_you_mean;

/// The three sections a component can be declared in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    Source,
    Transform,
    Sink,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Source => "source",
            Role::Transform => "transform",
            Role::Sink => "sink",
        })
    }
}

/// One component as declared.
#[derive(Clone, Debug)]
pub(crate) struct Node<'a> {
    pub id: &'a str,
    pub role: Role,
    /// Span of its table (for `[sinks.x]`, the header).
    pub header: Range<usize>,
    /// Each input id with the span of the string that names it.
    pub inputs: Vec<(&'a str, Range<usize>)>,
}

/// A problem with the graph. `span` is `None` when it has no single place (a
/// pipeline without sinks).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Problem {
    pub span: Option<Range<usize>>,
    pub message: String,
}

impl Problem {
    fn at(span: Range<usize>, message: String) -> Self {
        Problem {
            span: Some(span),
            message,
        }
    }
}

/// Checks the graph of `nodes`, given in file order: every input names an existing
/// source or transform other than the component itself, transforms form no cycle,
/// every source and transform is read by something, and there is at least one
/// source and one sink.
///
/// `claimed`: sections the file has (or misspells) even if no component in them
/// could be read; "the pipeline has no sinks" is not said of those, since another
/// error explains it. An id declared twice is the loader's error; here the first
/// declaration wins, and an input naming it names that one.
pub(crate) fn check(nodes: &[Node<'_>], claimed: &[Role]) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    for (i, n) in nodes.iter().enumerate() {
        index.entry(n.id).or_insert(i);
    }
    let readable: Vec<&str> = nodes
        .iter()
        .enumerate()
        .filter(|&(i, n)| n.role != Role::Sink && index[n.id] == i)
        .map(|(_, n)| n.id)
        .collect();

    let mut read = vec![false; nodes.len()];
    // For each transform, the transforms it reads, with the span of each input.
    let mut upstream: Vec<Vec<(usize, Range<usize>)>> = vec![Vec::new(); nodes.len()];
    for (i, n) in nodes.iter().enumerate() {
        for (input, span) in &n.inputs {
            let Some(&j) = index.get(input) else {
                let message = match did_you_mean(input, readable.iter().copied()) {
                    Some(s) => {
                        // The user meant `s`: do not also call it unread.
                        read[index[s]] = true;
                        format!(
                            "{} `{}`: unknown input `{input}`, did you mean `{s}`?",
                            n.role, n.id
                        )
                    }
                    None => format!("{} `{}`: unknown input `{input}`", n.role, n.id),
                };
                problems.push(Problem::at(span.clone(), message));
                continue;
            };
            if j == i {
                problems.push(Problem::at(
                    span.clone(),
                    format!("{} `{}` lists itself in `inputs`", n.role, n.id),
                ));
            } else if nodes[j].role == Role::Sink {
                problems.push(Problem::at(
                    span.clone(),
                    format!(
                        "{} `{}`: input `{input}` is a sink; only sources and transforms can be inputs",
                        n.role, n.id
                    ),
                ));
            } else {
                read[j] = true;
                if n.role == Role::Transform && nodes[j].role == Role::Transform {
                    upstream[i].push((j, span.clone()));
                }
            }
        }
    }

    problems.extend(cycles(nodes, &upstream));

    let has_sinks = nodes.iter().any(|n| n.role == Role::Sink);
    // Without any sink every leaf would be unread; "no sinks" says it once.
    if has_sinks {
        for (i, n) in nodes.iter().enumerate() {
            if n.role != Role::Sink && !read[i] && index[n.id] == i {
                problems.push(Problem::at(
                    n.header.clone(),
                    format!("{} `{}` is not read by any transform or sink", n.role, n.id),
                ));
            }
        }
    }
    if !nodes.iter().any(|n| n.role == Role::Source) && !claimed.contains(&Role::Source) {
        problems.push(Problem {
            span: None,
            message: "the pipeline has no sources: declare at least one [sources.<id>]".into(),
        });
    }
    if !has_sinks && !claimed.contains(&Role::Sink) {
        problems.push(Problem {
            span: None,
            message: "the pipeline has no sinks: declare at least one [sinks.<id>]".into(),
        });
    }
    problems
}

/// One problem per group of transforms that read each other in a circle (a
/// strongly connected component of more than one transform; reading oneself is
/// reported apart). The message names the transforms along one cycle, in the
/// direction events would flow, starting at the one declared first, and points at
/// the input of that first transform that closes the cycle.
fn cycles(nodes: &[Node<'_>], upstream: &[Vec<(usize, Range<usize>)>]) -> Vec<Problem> {
    let mut downstream: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
    for (i, ups) in upstream.iter().enumerate() {
        for &(j, _) in ups {
            downstream[j].push(i);
        }
    }
    let mut problems = Vec::new();
    for group in strongly_connected(&downstream) {
        if group.len() < 2 {
            continue;
        }
        let in_group = |i: usize| group.contains(&i);
        let start = *group.iter().min().expect("non-empty group");
        // Shortest path start -> ... -> last along the flow, where `last` is read by
        // `start`; breadth-first so the message is as short as can be.
        let mut came_from = vec![None; nodes.len()];
        let mut queue = VecDeque::from([start]);
        let mut closing = None;
        while let Some(u) = queue.pop_front() {
            if let Some((_, span)) = upstream[start].iter().find(|(j, _)| *j == u) {
                closing = Some((u, span.clone()));
                break;
            }
            for &v in &downstream[u] {
                if in_group(v) && v != start && came_from[v].is_none() {
                    came_from[v] = Some(u);
                    queue.push_back(v);
                }
            }
        }
        let (last, span) =
            closing.expect("a strongly connected group has a cycle through each member");
        let mut path = vec![last];
        while let Some(prev) = came_from[*path.last().expect("non-empty")] {
            path.push(prev);
        }
        path.reverse();
        path.push(start);
        let names: Vec<String> = path.iter().map(|&i| format!("`{}`", nodes[i].id)).collect();
        problems.push(Problem::at(
            span,
            format!(
                "transforms read each other in a cycle: {}",
                names.join(" -> ")
            ),
        ));
    }
    problems
}

/// Tarjan's algorithm: the strongly connected components of a graph given as
/// successor lists.
fn strongly_connected(succ: &[Vec<usize>]) -> Vec<Vec<usize>> {
    struct State<'g> {
        succ: &'g [Vec<usize>],
        next: usize,
        index: Vec<Option<usize>>,
        low: Vec<usize>,
        stack: Vec<usize>,
        on_stack: Vec<bool>,
        out: Vec<Vec<usize>>,
    }
    fn visit(s: &mut State<'_>, v: usize) {
        s.index[v] = Some(s.next);
        s.low[v] = s.next;
        s.next += 1;
        s.stack.push(v);
        s.on_stack[v] = true;
        for k in 0..s.succ[v].len() {
            let w = s.succ[v][k];
            match s.index[w] {
                None => {
                    visit(s, w);
                    s.low[v] = s.low[v].min(s.low[w]);
                }
                Some(iw) if s.on_stack[w] => s.low[v] = s.low[v].min(iw),
                Some(_) => {}
            }
        }
        if Some(s.low[v]) == s.index[v] {
            let mut group = Vec::new();
            loop {
                let w = s.stack.pop().expect("v is on the stack");
                s.on_stack[w] = false;
                group.push(w);
                if w == v {
                    break;
                }
            }
            s.out.push(group);
        }
    }
    let n = succ.len();
    let mut s = State {
        succ,
        next: 0,
        index: vec![None; n],
        low: vec![0; n],
        stack: Vec::new(),
        on_stack: vec![false; n],
        out: Vec::new(),
    };
    for v in 0..n {
        if s.index[v].is_none() {
            visit(&mut s, v);
        }
    }
    s.out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds nodes whose spans are their position: header `i*100..i*100+1`, input
    /// `k` of node `i` at `i*100+10+k`.
    fn nodes<'a>(spec: &[(&'a str, Role, &[&'a str])]) -> Vec<Node<'a>> {
        spec.iter()
            .enumerate()
            .map(|(i, (id, role, inputs))| Node {
                id,
                role: *role,
                header: i * 100..i * 100 + 1,
                inputs: inputs
                    .iter()
                    .enumerate()
                    .map(|(k, s)| (*s, i * 100 + 10 + k..i * 100 + 11 + k))
                    .collect(),
            })
            .collect()
    }

    fn messages(problems: &[Problem]) -> Vec<(Option<usize>, &str)> {
        problems
            .iter()
            .map(|p| (p.span.as_ref().map(|s| s.start), p.message.as_str()))
            .collect()
    }

    use Role::*;

    #[test]
    fn valid_graph_has_no_problems() {
        let n = nodes(&[
            ("a", Source, &[]),
            ("b", Source, &[]),
            ("t", Transform, &["a", "b"]),
            ("u", Transform, &["t"]),
            ("out", Sink, &["u", "a"]),
        ]);
        assert_eq!(check(&n, &[]), vec![]);
    }

    #[test]
    fn unknown_self_and_sink_inputs() {
        let n = nodes(&[
            ("cpu", Source, &[]),
            ("fold", Transform, &["cpu", "fold"]),
            ("out", Sink, &["fodl", "zzz"]),
            ("other", Sink, &["out", "fold"]),
        ]);
        assert_eq!(
            messages(&check(&n, &[])),
            vec![
                (Some(111), "transform `fold` lists itself in `inputs`"),
                (Some(210), "sink `out`: unknown input `fodl`, did you mean `fold`?"),
                (Some(211), "sink `out`: unknown input `zzz`"),
                (
                    Some(310),
                    "sink `other`: input `out` is a sink; only sources and transforms can be inputs"
                ),
            ]
        );
    }

    #[test]
    fn a_suggested_input_is_not_also_unread() {
        let n = nodes(&[("cpu", Source, &[]), ("out", Sink, &["cpux"])]);
        assert_eq!(
            messages(&check(&n, &[])),
            vec![(
                Some(110),
                "sink `out`: unknown input `cpux`, did you mean `cpu`?"
            )]
        );
    }

    #[test]
    fn cycles_are_named_once_in_flow_order() {
        let n = nodes(&[
            ("src", Source, &[]),
            ("a", Transform, &["src", "c"]),
            ("b", Transform, &["a"]),
            ("c", Transform, &["b"]),
            ("x", Transform, &["y"]),
            ("y", Transform, &["x"]),
            ("out", Sink, &["c", "y"]),
        ]);
        assert_eq!(
            messages(&check(&n, &[])),
            vec![
                // At `a`'s input "c", which closes a -> b -> c -> a.
                (
                    Some(111),
                    "transforms read each other in a cycle: `a` -> `b` -> `c` -> `a`"
                ),
                (
                    Some(410),
                    "transforms read each other in a cycle: `x` -> `y` -> `x`"
                ),
            ]
        );
    }

    #[test]
    fn shortest_cycle_through_the_first_member() {
        // a -> b -> a and a -> b -> c -> a: one group, reported once, shortest path.
        let n = nodes(&[
            ("s", Source, &[]),
            ("a", Transform, &["s", "c", "b"]),
            ("b", Transform, &["a"]),
            ("c", Transform, &["b"]),
            ("out", Sink, &["c"]),
        ]);
        assert_eq!(
            messages(&check(&n, &[])),
            vec![(
                Some(112),
                "transforms read each other in a cycle: `a` -> `b` -> `a`"
            )]
        );
    }

    #[test]
    fn unread_components_and_missing_ends() {
        let n = nodes(&[
            ("cpu", Source, &[]),
            ("idle", Source, &[]),
            ("t", Transform, &["cpu"]),
            ("u", Transform, &["cpu"]),
            ("out", Sink, &["t"]),
        ]);
        assert_eq!(
            messages(&check(&n, &[])),
            vec![
                (
                    Some(100),
                    "source `idle` is not read by any transform or sink"
                ),
                (
                    Some(300),
                    "transform `u` is not read by any transform or sink"
                ),
            ]
        );

        let n = nodes(&[("cpu", Source, &[]), ("t", Transform, &["cpu"])]);
        assert_eq!(
            messages(&check(&n, &[])),
            vec![(
                None,
                "the pipeline has no sinks: declare at least one [sinks.<id>]"
            )]
        );
        assert_eq!(
            messages(&check(&[], &[])),
            vec![
                (
                    None,
                    "the pipeline has no sources: declare at least one [sources.<id>]"
                ),
                (
                    None,
                    "the pipeline has no sinks: declare at least one [sinks.<id>]"
                ),
            ]
        );
        assert_eq!(check(&[], &[Source, Sink]), vec![]);
    }

    #[test]
    fn a_duplicate_id_names_the_first_declaration() {
        // The loader reports the duplicate; `fold` the sink reads `fold` the source.
        let n = nodes(&[("fold", Source, &[]), ("fold", Sink, &["fold"])]);
        assert_eq!(check(&n, &[]), vec![]);
    }
}
