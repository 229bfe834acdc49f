//! Sending what a live source's window produced: profiles, `perf script` chunks,
//! diagnostics and watermarks, all labelled with the source's host, id and
//! profiler.
//!
//! Every send fails with [`OutputClosed`] once nothing downstream reads any more;
//! the source then stops.

use std::sync::Arc;

use bytes::Bytes;

use crate::buffer::{Output, OutputClosed};
use crate::component::ComponentContext;
use crate::event::{
    Diagnostic, Event, Labels, PerfScriptChunk, ProcessLabels, Profile, RunEnd, Stack, Watermark,
    Window,
};

/// The labels of everything a source emits for `profiler` ("perf", "py-spy", ...).
pub fn labels(cx: &ComponentContext, profiler: &str) -> Labels {
    Labels {
        extra: Default::default(),
        host: cx.host.clone(),
        source: cx.id.clone(),
        profiler: profiler.into(),
    }
}

/// A source's output and its labels.
pub struct Emitter {
    out: Output,
    labels: Labels,
}

impl Emitter {
    pub fn new(out: Output, cx: &ComponentContext, profiler: &str) -> Emitter {
        Emitter {
            out,
            labels: labels(cx, profiler),
        }
    }

    pub fn labels(&self) -> &Labels {
        &self.labels
    }

    /// Sends an event built elsewhere (a run's profile or diagnostic).
    pub async fn send(&mut self, ev: Event) -> Result<(), OutputClosed> {
        self.out.send(ev).await
    }

    /// The stacks of `window`, in events of at most `batch` stacks (none when
    /// there are no stacks).
    pub async fn profiles(
        &mut self,
        window: Window,
        stacks: Vec<Stack>,
        batch: usize,
    ) -> Result<(), OutputClosed> {
        let mut stacks = stacks.into_iter().peekable();
        while stacks.peek().is_some() {
            let batch: Vec<Stack> = stacks.by_ref().take(batch.max(1)).collect();
            self.send(Event::Profile(Profile {
                finalizers: Default::default(),
                window,
                labels: self.labels.clone(),
                stacks: batch.into(),
            }))
            .await?;
        }
        Ok(())
    }

    /// A piece of `perf script` text of `window`, with the labels of some of its
    /// processes; nothing when it is empty.
    pub async fn chunk(
        &mut self,
        window: Window,
        data: Bytes,
        process_labels: ProcessLabels,
    ) -> Result<(), OutputClosed> {
        if data.is_empty() {
            return Ok(());
        }
        let chunk = PerfScriptChunk {
            finalizers: Default::default(),
            window,
            labels: self.labels.clone(),
            data,
            process_labels,
        };
        self.send(Event::PerfScript(chunk)).await
    }

    /// A run of the source's own profiler (not one aimed at a process) that did not
    /// simply succeed.
    pub async fn diagnostic(
        &mut self,
        window: Window,
        end: RunEnd,
        stderr: String,
    ) -> Result<(), OutputClosed> {
        let d = Diagnostic {
            reason: None,
            finalizers: Default::default(),
            window,
            labels: self.labels.clone(),
            pid: 0,
            comm: None,
            end,
            stderr: Arc::from(stderr),
            target_alive: None,
        };
        self.send(Event::Diagnostic(d)).await
    }

    /// A problem of another profiler than the source's own (`profiler`), about the
    /// process `comm`; pid 0, so that it is counted and logged but marks no stack.
    pub async fn side_diagnostic(
        &mut self,
        window: Window,
        profiler: &str,
        comm: &str,
        end: RunEnd,
        text: String,
    ) -> Result<(), OutputClosed> {
        let mut labels = self.labels.clone();
        labels.profiler = profiler.into();
        let d = Diagnostic {
            reason: None,
            finalizers: Default::default(),
            window,
            labels,
            pid: 0,
            comm: Some(comm.into()),
            end,
            stderr: Arc::from(text),
            target_alive: None,
        };
        self.send(Event::Diagnostic(d)).await
    }

    /// Everything up to `complete_until_ms` (or [`Watermark::FINISHED`]) was sent.
    pub async fn watermark(&mut self, complete_until_ms: u64) -> Result<(), OutputClosed> {
        let w = Watermark {
            source: self.labels.source.clone(),
            complete_until_ms,
        };
        self.send(Event::Watermark(w)).await
    }
}
