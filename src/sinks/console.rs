//! `type = "console"`: prints each complete window to standard output.
//!
//! ```toml
//! [sinks.debug]
//! type = "console"
//! inputs = ["fold"]
//! format = "folded"        # or "collapsed"
//! ```
//!
//! `folded` prints `frames count` lines sorted by frames (containers merged), which
//! pipe straight into `inferno-flamegraph`; `collapsed` prints a gProfiler file per
//! window (its `# {json}` header, then `0;container;frames count` lines).

use std::io::{self, Write};
use std::sync::{Arc, Mutex};

use serde::Deserialize;

use super::local::{self, Local, LocalSink, LocalWriter};
use super::pending::CompleteWindow;
use crate::component::{parse_table, BuildError, ComponentContext, FieldError, SinkContext, Task};
use crate::event::EventStatus;
use crate::event::Stack;
use crate::formats::{collapsed, folded};
use crate::telemetry::ComponentMetrics;

/// How the console sink prints a window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConsoleFormat {
    /// `frames count` lines.
    #[default]
    Folded,
    /// gProfiler collapsed: header line, then `0;container;frames count` lines.
    Collapsed,
}

/// `[sinks.ID] type = "console"`: its own keys and the pending-window keys.
pub type ConsoleSinkConfig = Local<ConsoleSink>;

/// The console sink's own keys.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleSink {
    /// "folded" (default) or "collapsed".
    #[serde(default)]
    pub format: ConsoleFormat,
}

/// Where the console sink writes: standard output, or a buffer in tests.
pub type ConsoleTarget = Arc<Mutex<dyn Write + Send>>;

impl LocalSink for ConsoleSink {
    type Writer = ConsoleWriter;

    fn parse(table: toml::Table) -> Result<Self, Vec<FieldError>> {
        parse_table(toml::Value::Table(table))
    }

    fn validate(&self) -> Vec<FieldError> {
        Vec::new()
    }

    fn writer(&self, cx: &ComponentContext) -> Result<ConsoleWriter, BuildError> {
        Ok(self.writer_to(cx, Arc::new(Mutex::new(io::stdout()))))
    }
}

impl ConsoleSink {
    fn writer_to(&self, cx: &ComponentContext, target: ConsoleTarget) -> ConsoleWriter {
        ConsoleWriter {
            format: self.format,
            target,
            metrics: cx.metrics.clone(),
            warned: false,
        }
    }
}

impl ConsoleSinkConfig {
    /// The sink, writing to `target` instead of standard output.
    pub fn build_with_target(&self, cx: SinkContext, target: ConsoleTarget) -> Task {
        let writer = self.sink.writer_to(&cx.cx, target);
        local::run(cx, self.pending, writer)
    }
}

/// The console sink's writer.
pub struct ConsoleWriter {
    format: ConsoleFormat,
    target: ConsoleTarget,
    metrics: ComponentMetrics,
    warned: bool,
}

impl ConsoleWriter {
    fn render(&self, w: &CompleteWindow) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        match self.format {
            ConsoleFormat::Folded => {
                // Containers are not printed: merge stacks that differ only by them.
                let mut merged: Vec<Stack> = Vec::with_capacity(w.stacks.len());
                for s in &w.stacks {
                    match merged.last_mut() {
                        Some(last) if last.frames == s.frames => {
                            last.count = last.count.saturating_add(s.count)
                        }
                        _ => merged.push(Stack::new(s.frames.clone(), s.count)),
                    }
                }
                folded::write(&mut out, &merged)?;
            }
            ConsoleFormat::Collapsed => {
                let info = collapsed::HeaderInfo {
                    hostname: &w.host,
                    window: w.window,
                };
                collapsed::write(&mut out, &info, &w.labels, &w.stacks)?;
            }
        }
        Ok(out)
    }
}

impl LocalWriter for ConsoleWriter {
    async fn write(&mut self, window: CompleteWindow) -> EventStatus {
        // Window stacks are sorted by frames, so equal frames are adjacent.
        let result = match self.render(&window) {
            Ok(bytes) => {
                let target = self.target.clone();
                tokio::task::spawn_blocking(move || {
                    let mut t = target.lock().unwrap_or_else(|e| e.into_inner());
                    t.write_all(&bytes)?;
                    t.flush()
                })
                .await
                .unwrap_or_else(|e| Err(io::Error::other(e.to_string())))
            }
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => {
                self.metrics.sent_many(window.events, window.bytes);
                EventStatus::Delivered
            }
            Err(e) => {
                self.metrics.errors("write_failed", 1);
                if !std::mem::replace(&mut self.warned, true) {
                    tracing::warn!(
                        component = self.metrics.id(),
                        "cannot write to standard output: {e} (further failures are only counted)"
                    );
                }
                EventStatus::Errored
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Event, Profile, Watermark, Window};
    use crate::sinks::test_context::sink_context;

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    async fn run(format: ConsoleFormat, events: Vec<Event>) -> (String, ComponentMetrics) {
        let (tx, cx, metrics) = sink_context("console", "out", "h1", &["src"]);
        let buf = Shared::default();
        let config = ConsoleSinkConfig {
            sink: ConsoleSink { format },
            pending: crate::sinks::pending::PendingConfig {
                max_pending_stacks: 100,
                max_pending_bytes: crate::units::ByteSize::mib(1),
            },
        };
        let task = tokio::spawn(config.build_with_target(cx, Arc::new(Mutex::new(buf.clone()))));
        for e in events {
            tx.send(e).await.unwrap();
        }
        drop(tx);
        task.await.unwrap().unwrap();
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        (text, metrics)
    }

    fn profile(end: u64, stacks: &[(&str, Option<&str>, u64)]) -> Event {
        Event::Profile(Profile {
            window: Window::new(end - 60_000, end),
            stacks: stacks
                .iter()
                .map(|(f, c, n)| {
                    let mut s = Stack::new(*f, *n);
                    s.container = c.map(Arc::from);
                    s
                })
                .collect(),
            ..Default::default()
        })
    }

    fn watermark(until: u64) -> Event {
        Event::Watermark(Watermark {
            source: "src".into(),
            complete_until_ms: until,
        })
    }

    #[tokio::test]
    async fn prints_sorted_folded_lines_per_window() {
        let events = vec![
            profile(60_000, &[("b;c", None, 2), ("a", Some("web"), 1)]),
            profile(60_000, &[("a", None, 4)]),
            profile(120_000, &[("z", None, 9)]),
            watermark(60_000),
            Event::PerfScript(crate::event::PerfScriptChunk {
                process_labels: Default::default(),
                finalizers: Default::default(),
                window: Window::default(),
                labels: Default::default(),
                data: Default::default(),
            }),
        ];
        let (text, metrics) = run(ConsoleFormat::Folded, events).await;
        assert_eq!(text, "a 5\nb;c 2\nz 9\n");
        assert_eq!(metrics.sent_events(), 3);
        assert_eq!(metrics.error_count("unexpected_event"), 1);
    }

    #[tokio::test]
    async fn windows_without_watermarks_are_bounded() {
        let n = crate::sinks::pending::MAX_PENDING_WINDOWS as u64 + 5;
        let events: Vec<Event> = (1..=n)
            .map(|i| profile(i * 60_000, &[("a", None, i)]))
            .collect();
        let (text, metrics) = run(ConsoleFormat::Folded, events).await;
        assert_eq!(metrics.error_count("pending_windows_limit"), 5);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len() as u64, n);
        // Oldest windows were written first, and all of them exactly once.
        assert_eq!(lines[0], "a 1");
        assert_eq!(lines[lines.len() - 1], format!("a {n}"));
    }

    #[tokio::test]
    async fn prints_collapsed_files() {
        let events = vec![
            profile(60_000, &[("a;b", Some("web"), 3)]),
            watermark(u64::MAX),
        ];
        let (text, _) = run(ConsoleFormat::Collapsed, events).await;
        let mut lines = text.lines();
        assert!(lines.next().unwrap().starts_with("# {"));
        assert_eq!(lines.next(), Some("0;web;a;b 3"));
        assert_eq!(lines.next(), None);
    }
}
