//! One `/metrics` page for the control plane and the command pipelines running now.
//!
//! Each pipeline has its own [`Telemetry`] (a pipeline is built fresh for each
//! command, and a registry cannot drop what was registered), so the page is the
//! merge of several renders: samples of a family from every render go under one
//! `# HELP`/`# TYPE` (Prometheus refuses a family declared twice), and a
//! pipeline half's samples get a `pipeline` label (`continuous`, `continuous_delivery`,
//! `adhoc`, `adhoc_delivery`). The
//! agent-wide families every render has (RSS, fds, unresolved tokens) come from
//! the control plane's render only.

use std::sync::{Arc, Mutex};

use crate::telemetry::Telemetry;

/// Families that describe the whole process, shown once.
const PROCESS_WIDE: &[&str] = &[
    "profpipe_process_resident_memory_bytes",
    "profpipe_process_open_fds",
    "profpipe_delivery_tokens_unresolved",
];

/// The telemetry of the control plane and of each running pipeline.
#[derive(Clone)]
pub struct Exposition {
    control: Telemetry,
    pipelines: Arc<Mutex<Vec<(&'static str, Telemetry)>>>,
}

impl Exposition {
    pub fn new(control: Telemetry) -> Exposition {
        Exposition {
            control,
            pipelines: Arc::default(),
        }
    }

    pub fn add(&self, slot: &'static str, t: Telemetry) {
        let mut p = self.pipelines.lock().unwrap();
        p.retain(|(s, _)| *s != slot);
        p.push((slot, t));
    }

    pub fn remove(&self, slot: &'static str) {
        self.pipelines.lock().unwrap().retain(|(s, _)| *s != slot);
    }

    pub fn render(&self) -> String {
        let mut families: Vec<Family> = Vec::new();
        merge(&mut families, &self.control.render(), None);
        let pipelines = self.pipelines.lock().unwrap().clone();
        for (slot, t) in pipelines {
            merge(&mut families, &t.render(), Some(slot));
        }
        let mut out = String::new();
        for f in families {
            for l in f.head.iter().chain(&f.samples) {
                out.push_str(l);
                out.push('\n');
            }
        }
        out.push_str("# EOF\n");
        out
    }
}

struct Family {
    name: String,
    head: Vec<String>,
    samples: Vec<String>,
}

/// Adds the families of one OpenMetrics text render to `into`.
fn merge(into: &mut Vec<Family>, text: &str, pipeline: Option<&str>) {
    let mut current: Option<usize> = None;
    for line in text.lines() {
        if line == "# EOF" || line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            // `# HELP name ...`, `# TYPE name ...`, `# UNIT name ...`
            let name = rest.split_whitespace().nth(1).unwrap_or("").to_string();
            let idx = match into.iter().position(|f| f.name == name) {
                Some(i) => i,
                None => {
                    into.push(Family {
                        name: name.clone(),
                        head: Vec::new(),
                        samples: Vec::new(),
                    });
                    into.len() - 1
                }
            };
            let fresh = into[idx].samples.is_empty() && !into[idx].head.contains(&line.to_string());
            if fresh {
                into[idx].head.push(line.to_string());
            }
            current = Some(idx);
            continue;
        }
        let Some(i) = current else { continue };
        match pipeline {
            None => into[i].samples.push(line.to_string()),
            Some(_) if PROCESS_WIDE.contains(&into[i].name.as_str()) => {}
            Some(p) => into[i].samples.push(with_label(line, p)),
        }
    }
}

/// `name{a="b"} 1` → `name{pipeline="p",a="b"} 1`; `name 1` → `name{pipeline="p"} 1`.
fn with_label(sample: &str, pipeline: &str) -> String {
    let label = format!("pipeline=\"{pipeline}\"");
    match sample.find(['{', ' ']) {
        Some(i) if sample.as_bytes()[i] == b'{' => {
            let sep = if sample[i + 1..].starts_with('}') {
                ""
            } else {
                ","
            };
            format!("{}{{{label}{sep}{}", &sample[..i], &sample[i + 1..])
        }
        Some(i) => format!("{}{{{label}}}{}", &sample[..i], &sample[i..]),
        None => sample.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_are_declared_once_and_pipeline_samples_labelled() {
        let mut f = Vec::new();
        merge(
            &mut f,
            "# HELP x_total X.\n# TYPE x_total counter\nx_total 1\n# EOF\n",
            None,
        );
        merge(
            &mut f,
            "# HELP x_total X.\n# TYPE x_total counter\nx_total{a=\"b\"} 2\n# HELP y Y.\n# TYPE y gauge\ny 3\n# EOF\n",
            Some("adhoc"),
        );
        let names: Vec<_> = f.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["x_total", "y"]);
        assert_eq!(f[0].head.len(), 2);
        assert_eq!(
            f[0].samples,
            ["x_total 1", "x_total{pipeline=\"adhoc\",a=\"b\"} 2"]
        );
        assert_eq!(f[1].samples, ["y{pipeline=\"adhoc\"} 3"]);
    }
}
