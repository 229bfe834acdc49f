//! `type = "labels"`: change the open labels (`labels.extra`) of every data event.
//!
//! ```toml
//! [transforms.tag]
//! type = "labels"
//! inputs = ["cpu"]
//! rename = { k8s_ns = "namespace" }       # 1. old name = new name
//! drop = ["pod_uid"]                      # 2. remove these
//! keep = ["service", "env", "namespace"]  # 3. remove every other label
//! set_if_missing = { service = "unknown" } # 4. add where absent
//! set = { env = "prod" }                  # 5. add or overwrite
//! ```
//!
//! The rules are applied in the order numbered above, whatever order the keys are
//! written in; each is optional. They touch only the open set: `host`, `source` and
//! `profiler` are fields of every profile and cannot be named. Profiles, perf script
//! chunks and diagnostics are relabelled in place (their delivery tokens stay with
//! them); watermarks pass unchanged. A label that would take a set past
//! [`MAX_LABELS`] is left out and counted as
//! `component_errors_total{reason="label_limit"}`.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::component::{BuildError, FieldError, Task, TransformConfig, TransformContext};
use crate::event::{check_name, DataTypes, Event, LabelSet, MAX_LABELS, RESERVED};

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LabelsConfig {
    /// Labels renamed, `old = "new"`; a label already named `new` is replaced. Applied
    /// first.
    pub rename: BTreeMap<String, String>,
    /// Labels removed. Applied after `rename`.
    pub drop: Vec<String>,
    /// When set, every label not listed is removed (`keep = []` removes all).
    /// Applied after `drop`.
    pub keep: Option<Vec<String>>,
    /// Labels added where the event has none of that name. Applied after `keep`.
    pub set_if_missing: LabelSet,
    /// Labels added or overwritten. Applied last.
    pub set: LabelSet,
}

impl LabelsConfig {
    /// The labels `extra` becomes, and how many were refused at the bound.
    pub fn apply(&self, extra: &LabelSet) -> (LabelSet, u64) {
        let mut out = extra.clone();
        let mut refused = 0;
        let mut put = |out: &mut LabelSet, name: &str, value: &str| match out.with(name, value) {
            Ok(s) => *out = s,
            Err(_) => refused += 1,
        };
        for (old, new) in &self.rename {
            if let Some(value) = out.get(old).map(str::to_string) {
                out = out.without(old);
                put(&mut out, new, &value);
            }
        }
        for name in &self.drop {
            out = out.without(name);
        }
        if let Some(keep) = &self.keep {
            let gone: Vec<String> = out
                .iter()
                .filter(|(k, _)| !keep.iter().any(|n| n == k))
                .map(|(k, _)| k.to_string())
                .collect();
            for name in gone {
                out = out.without(&name);
            }
        }
        let (out, missing_refused) = out.with_defaults(&self.set_if_missing);
        let (out, set_refused) = out.merged(&self.set);
        (out, refused + (missing_refused + set_refused) as u64)
    }

    /// Relabels a data event in place; watermarks are left alone. Returns the
    /// number of labels refused at the bound.
    pub fn apply_event(&self, event: &mut Event) -> u64 {
        let Some(extra) = event.extra_labels_mut() else {
            return 0;
        };
        let (labels, refused) = self.apply(extra);
        *extra = labels;
        refused
    }
}

/// A label name in `field` (path `path`), checked.
fn check(errors: &mut Vec<FieldError>, path: &[&str], name: &str) {
    if let Err(e) = check_name(name) {
        errors.push(FieldError::new(path, e.to_string()));
    } else if RESERVED.contains(&name) {
        errors.push(FieldError::new(
            path,
            format!("label `{name}` is set by the agent itself and cannot be changed here"),
        ));
    }
}

impl TransformConfig for LabelsConfig {
    fn validate(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        for (old, new) in &self.rename {
            check(&mut errors, &["rename", old], old);
            check(&mut errors, &["rename", old], new);
        }
        for (i, name) in self.drop.iter().enumerate() {
            check(&mut errors, &["drop", &i.to_string()], name);
        }
        for (i, name) in self.keep.iter().flatten().enumerate() {
            check(&mut errors, &["keep", &i.to_string()], name);
        }
        if self.keep.as_ref().is_some_and(|k| k.len() > MAX_LABELS) {
            errors.push(FieldError::new(
                &["keep"],
                format!("lists more than {MAX_LABELS} labels, more than a profile can have"),
            ));
        }
        // `set` and `set_if_missing` were checked label by label as they were read.
        if self.rename.is_empty()
            && self.drop.is_empty()
            && self.keep.is_none()
            && self.set_if_missing.is_empty()
            && self.set.is_empty()
        {
            errors.push(FieldError::new(
                &[],
                "has no rules: set one of `rename`, `drop`, `keep`, `set_if_missing`, `set`",
            ));
        }
        errors
    }

    fn inputs(&self) -> DataTypes {
        DataTypes::ALL
    }

    fn build(&self, cx: TransformContext) -> Result<Task, BuildError> {
        let rules = self.clone();
        let (cx, mut input, mut out) = cx.into_parts();
        Ok(Box::pin(async move {
            while let Some(mut ev) = input.recv().await {
                let refused = rules.apply_event(&mut ev);
                cx.metrics.errors("label_limit", refused);
                if out.send(ev).await.is_err() {
                    break;
                }
            }
            Ok(())
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buffer::{edge, BufferConfig, MemoryBudget, Output};
    use crate::component::ComponentContext;
    use crate::event::{Batch, EventStatus, Labels, Profile, Watermark, Window};
    use crate::telemetry::Telemetry;

    fn cfg(text: &str) -> LabelsConfig {
        crate::component::parse_table(toml::from_str::<toml::Value>(text).unwrap()).unwrap()
    }

    fn set(pairs: &[(&str, &str)]) -> LabelSet {
        pairs
            .iter()
            .fold(LabelSet::default(), |s, (k, v)| s.with(k, v).unwrap())
    }

    #[test]
    fn rules_apply_in_their_order() {
        let c = cfg(r#"
            rename = { k8s_ns = "namespace", team = "owner" }
            drop = ["pod_uid"]
            keep = ["service", "env", "namespace", "pod", "owner"]
            set_if_missing = { service = "unknown", env = "dev" }
            set = { env = "prod" }
        "#);
        assert!(c.validate().is_empty());
        let before = set(&[
            ("k8s_ns", "shop"),
            ("pod_uid", "123"),
            ("pod", "web-1"),
            ("zone", "a"),
            ("service", "checkout"),
        ]);
        let (after, refused) = c.apply(&before);
        assert_eq!(refused, 0);
        assert_eq!(
            after.to_string(),
            "env=prod,namespace=shop,pod=web-1,service=checkout"
        );
        let (after, _) = c.apply(&LabelSet::default());
        assert_eq!(after.to_string(), "env=prod,service=unknown");
    }

    #[test]
    fn rename_replaces_and_keep_empty_clears() {
        let c = cfg(r#"rename = { a = "b" }"#);
        let (after, _) = c.apply(&set(&[("a", "1"), ("b", "2")]));
        assert_eq!(after.to_string(), "b=1");
        let c = cfg("keep = []");
        assert!(c.apply(&set(&[("a", "1")])).0.is_empty());
    }

    #[test]
    fn bound_is_counted_not_exceeded() {
        let c = cfg(r#"set = { one_more = "x", l0 = "y" }"#);
        let mut full = LabelSet::default();
        for i in 0..MAX_LABELS {
            full = full.with(&format!("l{i}"), "v").unwrap();
        }
        let (after, refused) = c.apply(&full);
        assert_eq!(refused, 1);
        assert_eq!(after.len(), MAX_LABELS);
        assert_eq!(after.get("l0"), Some("y"));
    }

    #[test]
    fn validation_checks_names() {
        let c = cfg(r#"
            rename = { "a-b" = "ok", good = "1bad" }
            drop = ["host"]
            keep = ["fine", "no way"]
        "#);
        let paths: Vec<String> = c
            .validate()
            .iter()
            .map(|e| format!("{}: {}", e.path.join("."), e.message))
            .collect();
        assert_eq!(paths.len(), 4, "{paths:?}");
        assert!(paths[0].starts_with("rename.a-b: label name \"a-b\""));
        assert!(paths[1].starts_with("rename.good: label name \"1bad\""));
        assert!(paths[2].starts_with("drop.0: label `host` is set by the agent"));
        assert!(paths[3].starts_with("keep.1: label name \"no way\""));
        assert_eq!(cfg("").validate().len(), 1, "no rules");
        let bad = crate::component::parse_table::<LabelsConfig>(
            toml::from_str::<toml::Value>("sett = { a = \"b\" }").unwrap(),
        );
        assert!(bad.is_err());
        let bad = crate::component::parse_table::<LabelsConfig>(
            toml::from_str::<toml::Value>("set = { \"x y\" = \"b\" }").unwrap(),
        )
        .unwrap_err();
        assert_eq!(bad[0].path, vec!["set", "x y"]);
        assert_eq!(c.inputs(), DataTypes::ALL);
        assert_eq!(c.outputs(DataTypes::PROFILE), DataTypes::PROFILE);
    }

    #[tokio::test]
    async fn relabels_events_keeping_tokens_and_watermarks() {
        let telemetry = Telemetry::new();
        let cx = ComponentContext::standalone("tag", "transform", "labels", &telemetry);
        let budget = MemoryBudget::new(1 << 20);
        let (in_tx, input) = edge(BufferConfig::default(), budget.clone(), cx.metrics.clone());
        let sink_metrics = telemetry.component("sink", "sink", "test");
        let (out_tx, mut sink) = edge(BufferConfig::default(), budget, sink_metrics);
        let metrics = cx.metrics.clone();
        let task = cfg(r#"set = { env = "prod" }"#)
            .build(TransformContext {
                out: Output::new(vec![out_tx], cx.metrics.clone()),
                cx,
                input,
            })
            .unwrap();
        let run = tokio::spawn(task);

        let (batch, mut status) = Batch::new();
        let mut p = Profile::new(
            Window::new(0, 1000),
            Labels {
                extra: set(&[("pod", "web-1")]),
                ..Labels::default()
            },
            vec![crate::event::Stack::new("a;b", 1)],
        );
        p.finalizers = batch.finalizers();
        drop(batch);
        let mark = Event::Watermark(Watermark {
            source: "cpu".into(),
            complete_until_ms: 1000,
        });
        in_tx.send(Event::Profile(p)).await.unwrap();
        in_tx.send(mark.clone()).await.unwrap();
        drop(in_tx);

        let Some(Event::Profile(mut got)) = sink.recv().await else {
            panic!("expected the profile");
        };
        assert_eq!(got.labels.extra.to_string(), "env=prod,pod=web-1");
        assert_eq!(got.finalizers.len(), 1, "the token travels with the event");
        assert_eq!(status.try_status(), None);
        got.finalizers.take().resolve(EventStatus::Delivered);
        assert_eq!(sink.recv().await, Some(mark));
        assert_eq!(sink.recv().await, None);
        run.await.unwrap().unwrap();
        assert_eq!(status.wait().await, EventStatus::Delivered);
        assert_eq!(metrics.error_count("label_limit"), 0);
    }
}
