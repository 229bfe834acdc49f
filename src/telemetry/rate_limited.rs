//! Rate-limited logging: at most one log line per key per interval, and the number
//! of lines held back meanwhile, reported with the next one.
//!
//! ```ignore
//! let mut limit = RateLimited::new(Duration::from_secs(60));
//! if let Some(suppressed) = limit.allow(key) {
//!     tracing::warn!(suppressed, "...");
//! }
//! ```
//!
//! Used by live sources (PyPerf trouble), the `classify` transform (profiler
//! failures) and the sink driver (refused and dropped requests). It lives here, below `sources` and `transforms`, because both use it.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::Duration;

// tokio's clock (std's outside a runtime), so tests can move it with a paused clock.
use tokio::time::Instant;

/// One line per key per interval. Holds one entry per key ever seen: callers use
/// keys from a small fixed set (kinds of trouble, profiler × reason).
#[derive(Debug)]
pub struct RateLimited<K> {
    interval: Duration,
    last: HashMap<K, (Instant, u64)>,
}

impl<K: Hash + Eq> RateLimited<K> {
    pub fn new(interval: Duration) -> Self {
        RateLimited {
            interval,
            last: HashMap::new(),
        }
    }

    /// `Some(suppressed)` when a line for `key` may be logged now (`suppressed` lines
    /// were held back since the last one); `None` when it is held back.
    pub fn allow(&mut self, key: K) -> Option<u64> {
        let now = Instant::now();
        match self.last.get_mut(&key) {
            Some((at, held)) if now.duration_since(*at) < self.interval => {
                *held += 1;
                None
            }
            Some((at, held)) => {
                *at = now;
                Some(std::mem::take(held))
            }
            None => {
                self.last.insert(key, (now, 0));
                Some(0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn one_line_per_key_per_interval_then_the_count_held_back() {
        let mut l = RateLimited::new(Duration::from_millis(50));
        assert_eq!(l.allow("a"), Some(0));
        assert_eq!(l.allow("a"), None);
        assert_eq!(l.allow("a"), None);
        assert_eq!(l.allow("b"), Some(0));
        tokio::time::advance(Duration::from_millis(49)).await;
        assert_eq!(l.allow("a"), None, "not before the interval");
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(l.allow("a"), Some(3));
        assert_eq!(l.allow("a"), None);
    }
}
