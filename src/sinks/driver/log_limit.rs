//! Rate limit for the driver's WARN lines: a destination that rejects every
//! request (a revoked token, a full disk) must not write a line per request.
//! The first occurrence of each (kind, reason) is logged; later ones are counted
//! and summarised at most once per interval.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// How often a recurring reason is logged again, with the count it suppressed.
pub const INTERVAL: Duration = Duration::from_secs(600);

#[derive(Debug, Default)]
pub struct LogLimiter {
    seen: Mutex<HashMap<(&'static str, &'static str), Seen>>,
}

#[derive(Debug)]
struct Seen {
    logged_at: Instant,
    suppressed: u64,
}

impl LogLimiter {
    /// `Some(n)` if this occurrence should be logged, `n` being how many of the
    /// same (kind, reason) were suppressed since the last line; `None` to stay quiet.
    pub fn check(&self, kind: &'static str, reason: &'static str) -> Option<u64> {
        let now = Instant::now();
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        match seen.get_mut(&(kind, reason)) {
            None => {
                seen.insert(
                    (kind, reason),
                    Seen {
                        logged_at: now,
                        suppressed: 0,
                    },
                );
                Some(0)
            }
            Some(s) if now.duration_since(s.logged_at) >= INTERVAL => {
                s.logged_at = now;
                Some(std::mem::take(&mut s.suppressed))
            }
            Some(s) => {
                s.suppressed += 1;
                None
            }
        }
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
