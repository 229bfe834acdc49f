//! How long a sink waits before trying a request again, and when it stops.
//!
//! Exponential backoff with jitter, after "Exponential Backoff And Jitter" (AWS
//! Architecture Blog): jitter spreads the retries of many agents that failed at the
//! same moment (a collector restarting) so they do not come back in lockstep.
//! This is separate from `process::backoff`, which paces profiler restarts: a
//! sink's retries also honour the destination's `Retry-After` and are bounded per
//! request by `max_elapsed`.

use std::time::Duration;

use serde::Deserialize;
use tokio::time::Instant;

/// How the delay is drawn.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Jitter {
    /// Uniform in `[0, min(max, initial * 2^attempt)]`.
    #[default]
    Full,
    /// Uniform in `[initial, min(max, 3 * previous delay)]`: grows like the
    /// exponential but never collapses to zero.
    Decorrelated,
}

/// The bounds of one request's retries (from [`RequestConfig`](super::RequestConfig)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// From the first attempt: once the next retry would start later than this,
    /// the request gives up.
    pub max_elapsed: Duration,
    /// The longest `Retry-After` we obey; longer requests are cut to this, so a
    /// hostile or broken server cannot park a request for a day.
    pub retry_after_max: Duration,
    pub jitter: Jitter,
}

/// The retry state of one request: made when its first attempt starts.
#[derive(Debug)]
pub struct Backoff {
    policy: RetryPolicy,
    rng: fastrand::Rng,
    started: Instant,
    attempts: u32,
    previous: Duration,
}

impl Backoff {
    /// Starts the clock now (tokio's clock, so tests can pause it). The rng is
    /// passed in so tests can seed it.
    pub fn new(policy: RetryPolicy, rng: fastrand::Rng) -> Self {
        Backoff {
            policy,
            rng,
            started: Instant::now(),
            attempts: 0,
            previous: policy.initial_backoff,
        }
    }

    /// Retries granted so far.
    pub fn retries(&self) -> u32 {
        self.attempts
    }

    /// The wait before the next attempt, or `None` if the request should give up
    /// (it would start past `max_elapsed`). `retry_after` is what the destination
    /// asked for: we wait at least that (capped), and at least the backoff.
    pub fn next_delay(&mut self, retry_after: Option<Duration>) -> Option<Duration> {
        let backoff = self.draw();
        self.attempts = self.attempts.saturating_add(1);
        let asked = retry_after.map_or(Duration::ZERO, |d| d.min(self.policy.retry_after_max));
        let delay = backoff.max(asked);
        let retry_at = self.started.elapsed().saturating_add(delay);
        (retry_at <= self.policy.max_elapsed).then_some(delay)
    }

    fn draw(&mut self) -> Duration {
        let p = &self.policy;
        let max = p.max_backoff.max(p.initial_backoff);
        let delay = match p.jitter {
            Jitter::Full => {
                let ceiling = p
                    .initial_backoff
                    .saturating_mul(1u32.checked_shl(self.attempts.min(31)).unwrap_or(u32::MAX))
                    .min(max);
                uniform(&mut self.rng, Duration::ZERO, ceiling)
            }
            Jitter::Decorrelated => {
                let ceiling = self.previous.saturating_mul(3).min(max);
                uniform(&mut self.rng, p.initial_backoff.min(ceiling), ceiling)
            }
        };
        self.previous = delay.max(p.initial_backoff);
        delay
    }
}

/// Uniform in `[lo, hi]`, at nanosecond resolution.
fn uniform(rng: &mut fastrand::Rng, lo: Duration, hi: Duration) -> Duration {
    let (lo, hi) = (nanos(lo), nanos(hi.max(lo)));
    Duration::from_nanos(rng.u64(lo..=hi))
}

fn nanos(d: Duration) -> u64 {
    d.as_nanos().min(u64::MAX as u128) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(jitter: Jitter) -> RetryPolicy {
        RetryPolicy {
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            max_elapsed: Duration::from_secs(30 * 60),
            retry_after_max: Duration::from_secs(300),
            jitter,
        }
    }

    fn delays(jitter: Jitter, seed: u64, n: usize) -> Vec<Duration> {
        let mut b = Backoff::new(policy(jitter), fastrand::Rng::with_seed(seed));
        (0..n).map(|_| b.next_delay(None).unwrap()).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn full_jitter_stays_under_the_exponential_ceiling() {
        for seed in 0..50 {
            for (i, d) in delays(Jitter::Full, seed, 12).into_iter().enumerate() {
                let ceiling = Duration::from_secs(1 << i.min(6)).min(Duration::from_secs(60));
                assert!(d <= ceiling, "seed {seed} retry {i}: {d:?} > {ceiling:?}");
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn decorrelated_jitter_grows_within_bounds() {
        for seed in 0..50 {
            let mut previous = Duration::from_secs(1);
            for d in delays(Jitter::Decorrelated, seed, 12) {
                assert!(d >= Duration::from_secs(1), "never below initial: {d:?}");
                assert!(d <= (previous * 3).min(Duration::from_secs(60)), "{d:?}");
                previous = d;
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_seed_gives_one_sequence() {
        for jitter in [Jitter::Full, Jitter::Decorrelated] {
            assert_eq!(delays(jitter, 7, 10), delays(jitter, 7, 10));
            assert_ne!(delays(jitter, 7, 10), delays(jitter, 8, 10));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_is_a_floor_capped_by_retry_after_max() {
        let mut b = Backoff::new(policy(Jitter::Full), fastrand::Rng::with_seed(1));
        let d = b.next_delay(Some(Duration::from_secs(7))).unwrap();
        assert_eq!(
            d,
            Duration::from_secs(7),
            "backoff (<= 1s) is below what was asked"
        );
        let d = b.next_delay(Some(Duration::from_secs(86_400))).unwrap();
        assert_eq!(
            d,
            Duration::from_secs(300),
            "a day is cut to retry_after_max"
        );
        let d = b.next_delay(Some(Duration::from_millis(1))).unwrap();
        assert!(
            d <= Duration::from_secs(4),
            "a tiny Retry-After leaves the backoff"
        );
        assert_eq!(b.retries(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_gives_up_past_max_elapsed() {
        let mut p = policy(Jitter::Decorrelated);
        p.max_elapsed = Duration::from_secs(120);
        let mut b = Backoff::new(p, fastrand::Rng::with_seed(3));
        let mut waited = Duration::ZERO;
        while let Some(d) = b.next_delay(None) {
            tokio::time::sleep(d).await;
            waited += d;
            assert!(waited <= p.max_elapsed, "retried at {waited:?}");
        }
        assert!(
            b.retries() > 2,
            "it did retry first ({} retries)",
            b.retries()
        );

        // A Retry-After that would land past the bound gives up at once.
        let mut b = Backoff::new(p, fastrand::Rng::with_seed(3));
        tokio::time::advance(Duration::from_secs(100)).await;
        assert_eq!(b.next_delay(Some(Duration::from_secs(60))), None);
    }
}
