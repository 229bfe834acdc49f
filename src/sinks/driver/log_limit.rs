//! Rate limit for the driver's WARN lines: a destination that rejects every
//! request (a revoked token, a full disk) must not write a line per request.
//! The first occurrence of each (kind, reason) is logged; later ones are counted
//! and summarised at most once per interval.

use std::sync::Mutex;
use std::time::Duration;

use crate::telemetry::RateLimited;

/// How often a recurring reason is logged again, with the count it suppressed.
pub const INTERVAL: Duration = Duration::from_secs(600);

/// Shared by the driver's request tasks, hence the lock.
#[derive(Debug)]
pub struct LogLimiter {
    seen: Mutex<RateLimited<(&'static str, &'static str)>>,
}

impl Default for LogLimiter {
    fn default() -> Self {
        LogLimiter {
            seen: Mutex::new(RateLimited::new(INTERVAL)),
        }
    }
}

impl LogLimiter {
    /// `Some(n)` if this occurrence should be logged, `n` being how many of the
    /// same (kind, reason) were suppressed since the last line; `None` to stay quiet.
    pub fn check(&self, kind: &'static str, reason: &'static str) -> Option<u64> {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.allow((kind, reason))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn first_of_each_reason_then_one_summary_per_interval() {
        let l = LogLimiter::default();
        assert_eq!(l.check("rejected", "http_400"), Some(0));
        assert_eq!(l.check("rejected", "auth"), Some(0), "another reason logs");
        assert_eq!(l.check("dropped", "http_400"), Some(0), "another kind logs");
        for _ in 0..1000 {
            assert_eq!(l.check("rejected", "http_400"), None);
        }
        tokio::time::advance(INTERVAL).await;
        assert_eq!(l.check("rejected", "http_400"), Some(1000));
        assert_eq!(l.check("rejected", "http_400"), None);
    }
}
