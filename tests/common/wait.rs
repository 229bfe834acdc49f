//! Polling a condition with a generous deadline. Only for conditions on the outside
//! world (a real process exec'ing, a file appearing) that send no signal: everything
//! inside the test process waits for an explicit signal instead.

use std::time::{Duration, Instant};

const POLL: Duration = Duration::from_millis(20);

/// Polls `cond` until it holds; panics with `what` after `within`.
pub fn until(what: &str, within: Duration, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + within;
    while !cond() {
        assert!(Instant::now() < end, "timed out after {within:?}: {what}");
        std::thread::sleep(POLL);
    }
}

/// Polls `f` until it gives `Some`; panics with `what` after `within`.
pub fn until_some<T>(what: &str, within: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < end, "timed out after {within:?}: {what}");
        std::thread::sleep(POLL);
    }
}

/// `until` for async tests: polls without blocking the runtime's thread.
pub async fn until_async(what: &str, within: Duration, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + within;
    while !cond() {
        assert!(Instant::now() < end, "timed out after {within:?}: {what}");
        tokio::time::sleep(POLL).await;
    }
}

/// `until_some` for async tests.
pub async fn until_some_async<T>(
    what: &str,
    within: Duration,
    mut f: impl FnMut() -> Option<T>,
) -> T {
    let end = Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < end, "timed out after {within:?}: {what}");
        tokio::time::sleep(POLL).await;
    }
}

/// On a runtime whose clock is paused (`start_paused = true`, current-thread), lets
/// every task run until none can make progress: the clock only auto-advances to this
/// sleep's end once the runtime is idle and no blocking task (file I/O) is running.
/// So after `settle().await`, a task that is still waiting is waiting for something
/// only the test can give it.
pub async fn settle() {
    assert!(
        is_paused(),
        "settle() needs a paused clock: #[tokio::test(start_paused = true)]"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
}

fn is_paused() -> bool {
    // With the clock paused, a zero-length advance of `Instant::now` is observable:
    // tokio's clock does not move on its own.
    let a = tokio::time::Instant::now();
    std::thread::sleep(Duration::from_millis(2));
    tokio::time::Instant::now() == a
}
