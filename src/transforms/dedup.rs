//! `type = "dedup"`: merges identical stacks within a window, in bounded memory.
//!
//! ```toml
//! [transforms.merge]
//! type = "dedup"
//! inputs = ["collapsed_files"]
//! max_unique_stacks = 100000
//! ```
//!
//! Stacks are identical when pid, container and frames are equal. Windows are kept
//! in the component's window store, per source: a window holds at most
//! `max_unique_stacks` distinct stacks, and all open windows together at most
//! `max_bytes` (charged to `[agent] memory_limit`); past either bound, counts of new
//! stacks go to one overflow stack (`overflow_frame`) so the window's total stays
//! exact. Merged-into-overflow stacks are counted in
//! `profpipe_component_dropped_stacks_total{reason="overflow"}`.

use serde::Deserialize;

use crate::component::{
    at_least_one, BuildError, FieldError, Task, TransformConfig, TransformContext,
};
use crate::event::Event;
use crate::units::ByteSize;
use crate::window::{profile_batches, send_all, send_each, Done, StackCounts};

#[derive(Clone, Debug, Deserialize)]
#[serde(default)]
#[serde(deny_unknown_fields)]
pub struct DedupConfig {
    /// Most distinct stacks kept per window (per source).
    pub max_unique_stacks: usize,
    /// Most bytes of distinct stacks kept in all open windows together.
    pub max_bytes: ByteSize,
    /// The frame of the overflow stack.
    pub overflow_frame: String,
}

impl Default for DedupConfig {
    fn default() -> Self {
        DedupConfig {
            max_unique_stacks: 100_000,
            max_bytes: ByteSize(crate::window::DEFAULT_STORE_BYTES),
            overflow_frame: "[overflow]".into(),
        }
    }
}

impl TransformConfig for DedupConfig {
    fn memory_bound(&self) -> u64 {
        self.max_bytes.get()
    }

    fn inputs(&self) -> crate::event::DataTypes {
        crate::event::DataTypes::PROFILES_AND_DIAGNOSTICS
    }

    fn validate(&self) -> Vec<FieldError> {
        let mut e = Vec::new();
        e.extend(at_least_one(&["max_unique_stacks"], self.max_unique_stacks));
        if self.overflow_frame.is_empty() || self.overflow_frame.contains(';') {
            e.push(FieldError::new(
                &["overflow_frame"],
                "overflow_frame must be non-empty and contain no ';'",
            ));
        }
        e
    }

    fn build(&self, cx: TransformContext) -> Result<Task, BuildError> {
        let c = self.clone();
        let (cx, mut input, mut out) = cx.into_parts();
        Ok(Box::pin(async move {
            let mut windows = cx.per_source_store::<StackCounts>(c.max_bytes.get());
            let emit_window = |done: Done<StackCounts>| {
                let (window, state, finalizers) = done.release();
                cx.metrics.dropped_stacks("overflow", state.overflowed);
                let labels = state.labels.clone().unwrap_or_default();
                profile_batches(
                    window,
                    &labels,
                    state.into_stacks(&c.overflow_frame),
                    finalizers,
                )
            };
            while let Some(ev) = input.recv().await {
                let emit = match ev {
                    Event::Profile(mut p) => {
                        let bytes = p.size_bytes();
                        let finalizers = p.finalizers.take();
                        let max_unique = c.max_unique_stacks;
                        windows.update(
                            p.window,
                            &p.labels.source,
                            finalizers,
                            bytes,
                            || StackCounts::new(true, max_unique),
                            |m, room| m.add_all(&p.labels, p.stacks, room),
                        );
                        let mut evs = Vec::new();
                        while windows.over_limit() {
                            let Some(done) = windows.take_oldest() else {
                                break;
                            };
                            cx.metrics.errors("early_flush", 1);
                            evs.extend(emit_window(done));
                        }
                        evs
                    }
                    Event::Watermark(w) => {
                        let mut evs: Vec<Event> = windows
                            .observe(&w)
                            .into_iter()
                            .flat_map(emit_window)
                            .collect();
                        evs.push(Event::Watermark(w));
                        evs
                    }
                    other => vec![other],
                };
                if send_all(&mut out, emit).await.is_err() {
                    return Ok(());
                }
            }
            let _ = send_each(&mut out, windows.drain(), emit_window).await;
            Ok(())
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::component::ComponentContext;
    use crate::event::{Profile, Stack, Watermark};
    use crate::telemetry::Telemetry;

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn overflow_keeps_totals_exact() {
        let c = DedupConfig {
            max_unique_stacks: 2,
            ..Default::default()
        };
        let t = Telemetry::new();
        let cx = ComponentContext::standalone("dedup", "transform", "dedup", &t);
        let (tx, input) =
            crate::buffer::edge(Default::default(), cx.budget.clone(), cx.metrics.clone());
        let sink_metrics = t.component("sink", "sink", "test");
        let (out_tx, mut out_rx) =
            crate::buffer::edge(Default::default(), cx.budget.clone(), sink_metrics);
        let out = crate::buffer::Output::new(vec![out_tx], cx.metrics.clone());
        let task = c.build(TransformContext { cx, input, out }).unwrap();
        let handle = tokio::spawn(task);
        let stacks = [("a;x", 1), ("a;y", 2), ("a;x", 3), ("a;z", 4), ("a;w", 5)]
            .into_iter()
            .map(|(f, n)| Stack::new(f, n))
            .collect();
        let mut p = Profile::new(Default::default(), Default::default(), stacks);
        p.labels.source = "src".into();
        tx.send(Event::Profile(p)).await.unwrap();
        let wm = Watermark {
            source: "src".into(),
            complete_until_ms: Watermark::FINISHED,
        };
        tx.send(Event::Watermark(wm)).await.unwrap();
        drop(tx);
        let Some(Event::Profile(p)) = out_rx.recv().await else {
            panic!()
        };
        assert_eq!(p.total_count(), 15);
        let got: Vec<(&str, u64)> = p.stacks.iter().map(|s| (&*s.frames, s.count)).collect();
        assert_eq!(got, vec![("[overflow]", 9), ("a;x", 4), ("a;y", 2)]);
        handle.await.unwrap().unwrap();
    }
}
