//! A component's output: the input edges of every component that reads it.

use std::sync::Arc;

use super::ends::{Closed, EdgeSender};
use super::fanout::Fanout;
use crate::event::{Event, LabelSet};
use crate::telemetry::ComponentMetrics;

/// Every downstream component has stopped; the producer should stop too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no downstream component is running")]
pub struct OutputClosed;

pub struct Output {
    edges: Arc<Fanout>,
    metrics: ComponentMetrics,
    /// Static labels put on every data event sent (a source's `[agent]` and own
    /// `labels`); empty for transforms.
    labels: LabelSet,
}

impl Output {
    /// An output to `edges`, fixed for its life.
    pub fn new(edges: Vec<EdgeSender>, metrics: ComponentMetrics) -> Self {
        let named = edges.into_iter().map(|e| ("".into(), e)).collect();
        Output::to(Fanout::new(named), metrics)
    }

    /// An output to the edges of `fanout`, which the topology may change while it
    /// runs (a reload attaching and detaching sinks).
    pub fn to(edges: Arc<Fanout>, metrics: ComponentMetrics) -> Self {
        Output {
            edges,
            metrics,
            labels: LabelSet::default(),
        }
    }

    /// Puts `labels` into `labels.extra` of every Profile, PerfScript chunk and
    /// Diagnostic sent, under the labels the event already has (those the source
    /// found itself, e.g. a process's `pod`, are more specific and win). Labels past
    /// the bound are left out and counted as `component_errors_total{reason=
    /// "label_limit"}`. Watermarks pass unchanged.
    pub fn with_labels(mut self, labels: LabelSet) -> Self {
        self.labels = labels;
        self
    }

    fn label(&self, event: &mut Event) {
        if self.labels.is_empty() {
            return;
        }
        let Some(extra) = event.extra_labels_mut() else {
            return;
        };
        let (merged, refused) = extra.with_defaults(&self.labels);
        if refused > 0 {
            self.metrics.errors("label_limit", refused as u64);
        }
        *extra = merged;
    }

    /// Sends an event to every downstream edge (cloning it for all but the last: a
    /// profile's stacks are shared by the clones, not copied, see
    /// [`Stacks`](crate::event::Stacks); perf text is `Bytes`). Counts it once as
    /// sent.
    pub async fn send(&mut self, mut event: Event) -> Result<(), OutputClosed> {
        self.label(&mut event);
        if !event.is_watermark() {
            self.metrics.sent(event.size_bytes());
        }
        let mut open = 0;
        let edges = self.edges.snapshot();
        if let Some(((_, last), rest)) = edges.split_last() {
            for (_, e) in rest {
                if e.send(event.clone()).await != Err(Closed) {
                    open += 1;
                }
            }
            if last.send(event).await != Err(Closed) {
                open += 1;
            }
        }
        if open == 0 {
            Err(OutputClosed)
        } else {
            Ok(())
        }
    }
}

impl Drop for Output {
    fn drop(&mut self) {
        self.edges.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Labels, Profile, Watermark, Window, MAX_LABELS};
    use crate::telemetry::Telemetry;

    struct Keep(std::sync::Mutex<Vec<Event>>);

    impl super::super::BufferWriter for std::sync::Arc<Keep> {
        fn send(&self, event: Event) -> super::super::BoxFuture<'_, Result<(), Closed>> {
            self.0.lock().unwrap().push(event);
            Box::pin(async { Ok(()) })
        }
    }

    fn set(pairs: &[(&str, &str)]) -> LabelSet {
        pairs
            .iter()
            .fold(LabelSet::default(), |s, (k, v)| s.with(k, v).unwrap())
    }

    #[tokio::test]
    async fn labels_every_data_event_under_its_own() {
        let telemetry = Telemetry::new();
        let metrics = telemetry.component("src", "source", "test");
        let keep = std::sync::Arc::new(Keep(Default::default()));
        let mut out = Output::new(vec![EdgeSender::new(keep.clone())], metrics.clone())
            .with_labels(set(&[("service", "checkout"), ("env", "prod")]));
        let profile = |extra: LabelSet| {
            Event::Profile(Profile::new(
                Window::new(0, 1),
                Labels {
                    extra,
                    ..Labels::default()
                },
                Vec::new(),
            ))
        };
        out.send(profile(LabelSet::default())).await.unwrap();
        out.send(profile(set(&[("env", "dev"), ("pod", "web-1")])))
            .await
            .unwrap();
        let mut full = LabelSet::default();
        for i in 0..MAX_LABELS {
            full = full.with(&format!("l{i}"), "v").unwrap();
        }
        out.send(profile(full)).await.unwrap();
        let mark = Event::Watermark(Watermark {
            source: "src".into(),
            complete_until_ms: 5,
        });
        out.send(mark.clone()).await.unwrap();
        let got = keep.0.lock().unwrap().clone();
        let extra = |e: &Event| match e {
            Event::Profile(p) => p.labels.extra.to_string(),
            _ => unreachable!(),
        };
        assert_eq!(extra(&got[0]), "env=prod,service=checkout");
        assert_eq!(extra(&got[1]), "env=dev,pod=web-1,service=checkout");
        assert_eq!(got[3], mark);
        assert_eq!(got[2].data_type(), Some(crate::event::DataType::Profile));
        assert_eq!(metrics.error_count("label_limit"), 2);
    }
}
