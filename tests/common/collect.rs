//! The test sink, and every read of a component `Input` the tests make.
//!
//! This is deliberately the only place under `tests/` that calls `Input::recv`: the
//! engine's Input API is about to change (events will carry delivery tokens), and
//! then only this file has to follow.

use std::future::Future;
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use profpipe::buffer::Input;
use profpipe::component::{BuildError, SinkConfig, SinkContext, Task};
use profpipe::event::Event;
use tokio::sync::watch;

type Hook = Arc<dyn Fn(&Event) + Send + Sync>;

/// A sink that keeps every event it receives (in order), and counts every data event
/// it consumed as sent (so `sent_events` of a sink is what it really took in).
///
/// Clones share what they collected: keep one clone, give the other to the config.
#[derive(Clone)]
pub struct Collect {
    shared: Arc<Shared>,
    gate: Option<watch::Receiver<bool>>,
    hook: Option<Hook>,
}

struct Shared {
    events: Mutex<Vec<Event>>,
    /// How many events were already buffered when the gate opened.
    backlog: Mutex<Option<usize>>,
    /// Bumped after every event: what `wait_until` waits on.
    arrivals: watch::Sender<u64>,
}

impl std::fmt::Debug for Collect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Collect({} events)",
            self.shared.events.lock().unwrap().len()
        )
    }
}

impl Default for Collect {
    fn default() -> Self {
        Collect::new()
    }
}

impl Collect {
    pub fn new() -> Collect {
        Collect {
            shared: Arc::new(Shared {
                events: Mutex::new(Vec::new()),
                backlog: Mutex::new(None),
                arrivals: watch::channel(0).0,
            }),
            gate: None,
            hook: None,
        }
    }

    /// A sink that reads nothing until `gate` is true. When it opens, the sink first
    /// takes what is already buffered without yielding, and records how many events
    /// that was ([`Collect::backlog`]). On a current-thread runtime no producer can
    /// run in between, so that is exactly what the edge held at that moment.
    pub fn gated(gate: watch::Receiver<bool>) -> Collect {
        Collect {
            gate: Some(gate),
            ..Collect::new()
        }
    }

    /// Runs `f` on each event as it arrives (before it is stored).
    pub fn on_event(self, f: impl Fn(&Event) + Send + Sync + 'static) -> Collect {
        Collect {
            hook: Some(Arc::new(f)),
            ..self
        }
    }

    /// A copy of everything received so far.
    pub fn events(&self) -> Vec<Event> {
        self.shared.events.lock().unwrap().clone()
    }

    /// Everything received so far, leaving the sink empty.
    pub fn take(&self) -> Vec<Event> {
        std::mem::take(&mut *self.shared.events.lock().unwrap())
    }

    /// Looks at what was received so far without copying it.
    pub fn with<R>(&self, f: impl FnOnce(&[Event]) -> R) -> R {
        f(&self.shared.events.lock().unwrap())
    }

    /// For a gated sink whose gate has opened: the events that were buffered then.
    pub fn backlog(&self) -> Option<Vec<Event>> {
        let n = (*self.shared.backlog.lock().unwrap())?;
        Some(self.shared.events.lock().unwrap()[..n].to_vec())
    }

    /// Waits until `pred` holds for the events received so far (checked after each
    /// arrival). Panics with `what` after `within`.
    pub async fn wait_until(
        &self,
        what: &str,
        within: Duration,
        mut pred: impl FnMut(&[Event]) -> bool,
    ) {
        let mut arrivals = self.shared.arrivals.subscribe();
        let wait = async {
            loop {
                if self.with(&mut pred) {
                    return;
                }
                arrivals
                    .changed()
                    .await
                    .expect("the sink's state outlives it");
            }
        };
        tokio::time::timeout(within, wait)
            .await
            .unwrap_or_else(|_| panic!("timed out after {within:?}: {what}; got {self:?}"));
    }

    /// Keeps the event; it is delivered (into memory), so its tokens resolve
    /// `Delivered` now and a source waiting on them goes on.
    fn record(&self, cx: &profpipe::component::ComponentContext, mut ev: Event) {
        if !ev.is_watermark() {
            cx.metrics.sent(ev.size_bytes());
            ev.take_finalizers()
                .resolve(profpipe::event::EventStatus::Delivered);
        }
        if let Some(hook) = &self.hook {
            hook(&ev);
        }
        self.shared.events.lock().unwrap().push(ev);
        self.shared.arrivals.send_modify(|n| *n += 1);
    }
}

impl SinkConfig for Collect {
    fn inputs(&self) -> profpipe::event::DataTypes {
        profpipe::event::DataTypes::ALL
    }
    fn build(&self, cx: SinkContext) -> Result<Task, BuildError> {
        let this = self.clone();
        let SinkContext { cx, mut input } = cx;
        Ok(Box::pin(async move {
            if let Some(mut gate) = this.gate.clone() {
                let _ = gate.wait_for(|open| *open).await;
                let mut backlog = 0;
                let closed = loop {
                    match recv_now(&mut input) {
                        Poll::Ready(Some(ev)) => {
                            this.record(&cx, ev);
                            backlog += 1;
                        }
                        Poll::Ready(None) => break true,
                        Poll::Pending => break false,
                    }
                };
                *this.shared.backlog.lock().unwrap() = Some(backlog);
                if closed {
                    return Ok(());
                }
            }
            while let Some(ev) = input.recv().await {
                this.record(&cx, ev);
            }
            Ok(())
        }))
    }
}

/// The next event if one is buffered right now, without waiting or yielding (and
/// without tokio's cooperative budget cutting it short).
fn recv_now(input: &mut Input) -> Poll<Option<Event>> {
    let fut = pin!(tokio::task::unconstrained(input.recv()));
    fut.poll(&mut Context::from_waker(Waker::noop()))
}

/// The next event of a hand-driven component's output, or `None` once it ended.
/// Panics if nothing comes within `within`.
pub async fn next(input: &mut Input, within: Duration) -> Option<Event> {
    tokio::time::timeout(within, input.recv())
        .await
        .unwrap_or_else(|_| panic!("no event within {within:?}"))
}

/// Every event until the edge ends (all senders gone). Panics after `within`.
pub async fn all(input: &mut Input, within: Duration) -> Vec<Event> {
    let mut events = Vec::new();
    let collect = async {
        while let Some(ev) = input.recv().await {
            events.push(ev);
        }
    };
    tokio::time::timeout(within, collect)
        .await
        .unwrap_or_else(|_| panic!("the edge did not end within {within:?}"));
    events
}
