//! Wall-clock windows shared by all live sources.
//!
//! Window `k` is `[origin + k*len, origin + (k+1)*len)`, where `origin` is the agent's
//! start time (`ComponentContext::origin_ms`; a plain name, not a link: this layer
//! sits below the component model). Every live source cuts the same
//! windows, so `merge` can match a runtime profiler's window with perf's, and the
//! first window is a whole one (`profpipe run --once --duration 30s` profiles 30 s).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::event::Window;
use crate::shutdown::ShutdownSignal;

/// What [`WindowClock::tick`] saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tick {
    /// The window ended; the clock moved to the next one.
    Ended(Window),
    /// Shutdown began during this window (it is cut short; what it holds should
    /// still be delivered). The clock is finished.
    Shutdown(Window),
}

pub struct WindowClock {
    origin_ms: u64,
    len_ms: u64,
    index: u64,
    max_windows: Option<u64>,
}

/// Applies `profpipe run --duration/--once` to a live source's `window` and
/// `max_windows` fields.
pub fn override_fields(
    window_field: &mut crate::units::DurationStr,
    max_windows_field: &mut Option<u64>,
    window: Option<Duration>,
    max_windows: Option<u64>,
) {
    if let Some(w) = window {
        window_field.0 = w;
    }
    if max_windows.is_some() {
        *max_windows_field = max_windows;
    }
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl WindowClock {
    /// A clock positioned on the window in progress now.
    pub fn new(origin_ms: u64, len: Duration, max_windows: Option<u64>) -> Self {
        let len_ms = (len.as_millis() as u64).max(1);
        let index = now_ms().saturating_sub(origin_ms) / len_ms;
        WindowClock {
            origin_ms,
            len_ms,
            index,
            max_windows: max_windows.map(|m| m + index),
        }
    }

    /// The window in progress, or None once `max_windows` have ended.
    pub fn current(&self) -> Option<Window> {
        if self.max_windows.is_some_and(|m| self.index >= m) {
            return None;
        }
        let start = self.origin_ms + self.index * self.len_ms;
        Some(Window::new(start, start + self.len_ms))
    }

    /// Time left in the current window.
    pub fn remaining(&self) -> Duration {
        self.current().map_or(Duration::ZERO, |w| {
            Duration::from_millis(w.end_ms.saturating_sub(now_ms()))
        })
    }

    /// Waits for the current window to end (or for shutdown). Returns None when the
    /// clock has no window left.
    pub async fn tick(&mut self, shutdown: &mut ShutdownSignal) -> Option<Tick> {
        let w = self.current()?;
        if shutdown.is_triggered() {
            self.max_windows = Some(self.index);
            return Some(Tick::Shutdown(w));
        }
        tokio::select! {
            _ = tokio::time::sleep(self.remaining()) => {
                self.index += 1;
                // A stalled agent (suspended VM, overloaded host) skips windows it
                // slept through rather than emitting a burst of empty ones; skipped
                // windows count against `max_windows`.
                let now_index = now_ms().saturating_sub(self.origin_ms) / self.len_ms;
                if now_index > self.index {
                    let skip = now_index - self.index;
                    self.index = now_index;
                    tracing::debug!(skipped = skip, "window clock skipped windows after a stall");
                }
                Some(Tick::Ended(w))
            }
            _ = shutdown.recv() => {
                self.max_windows = Some(self.index);
                Some(Tick::Shutdown(w))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shutdown::ShutdownTrigger;

    #[tokio::test]
    async fn windows_line_up_on_the_origin_and_stop_after_max() {
        let origin = now_ms() / 1000 * 1000;
        let mut clock = WindowClock::new(origin, Duration::from_millis(200), Some(2));
        let (_t, mut sig) = ShutdownTrigger::new();
        let first = clock.current().unwrap();
        assert_eq!((first.start_ms - origin) % 200, 0);
        assert_eq!(clock.tick(&mut sig).await, Some(Tick::Ended(first)));
        let second = clock.current().unwrap();
        assert_eq!(second.start_ms, first.end_ms);
        assert_eq!(clock.tick(&mut sig).await, Some(Tick::Ended(second)));
        assert_eq!(clock.current(), None);
        assert_eq!(clock.tick(&mut sig).await, None);
    }

    #[tokio::test]
    async fn shutdown_cuts_the_window_short() {
        let mut clock = WindowClock::new(now_ms(), Duration::from_secs(3600), None);
        let (trigger, mut sig) = ShutdownTrigger::new();
        let w = clock.current().unwrap();
        trigger.trigger();
        assert_eq!(clock.tick(&mut sig).await, Some(Tick::Shutdown(w)));
        assert_eq!(clock.tick(&mut sig).await, None);
    }
}
