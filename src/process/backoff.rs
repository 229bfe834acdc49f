//! Restart delays for long-running children (perf, PyPerf): exponential backoff with
//! jitter, reset once a child has stayed up long enough.
//!
//! ```toml
//! backoff = { initial = "1s", max = "5m", multiplier = 2.0, jitter = 0.2, reset_after = "60s" }
//! ```
//!
//! Limits, checked by [`Backoff::validate`]:
//! - `initial` > 0 and `initial` <= `max`;
//! - `multiplier` is finite and in `[1, 10]` (1 = constant delay);
//! - `jitter` is in `[0, 1]`: each delay is the current base times a uniform factor
//!   in `[1 - jitter, 1 + jitter]`, so a fleet of agents that failed together does
//!   not restart together;
//! - a delay never exceeds `max`, jitter included;
//! - the base grows `initial, initial*m, initial*m^2, ...` up to `max` and goes back
//!   to `initial` after a run that lasted at least `reset_after`.

use std::time::Duration;

use serde::Deserialize;

use crate::units::DurationStr;

/// A backoff policy.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Backoff {
    /// Delay before the first restart.
    pub initial: DurationStr,
    /// Longest delay between restarts.
    pub max: DurationStr,
    /// Factor applied to the delay after each restart that followed a short run.
    pub multiplier: f64,
    /// Relative random spread of each delay, in [0, 1].
    pub jitter: f64,
    /// A child that ran at least this long resets the delay to `initial`.
    pub reset_after: DurationStr,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: DurationStr::from_secs(1),
            max: DurationStr::from_secs(300),
            multiplier: 2.0,
            jitter: 0.2,
            reset_after: DurationStr::from_secs(60),
        }
    }
}

impl Backoff {
    /// Checks the limits listed in the module documentation.
    pub fn validate(&self) -> Result<(), String> {
        if self.initial.get().is_zero() {
            return Err("initial must be greater than zero".into());
        }
        if self.initial > self.max {
            return Err(format!(
                "initial ({}) must not exceed max ({})",
                self.initial, self.max
            ));
        }
        if !self.multiplier.is_finite() || !(1.0..=10.0).contains(&self.multiplier) {
            return Err(format!(
                "multiplier must be between 1 and 10, not {}",
                self.multiplier
            ));
        }
        if !self.jitter.is_finite() || !(0.0..=1.0).contains(&self.jitter) {
            return Err(format!(
                "jitter must be between 0 and 1, not {}",
                self.jitter
            ));
        }
        Ok(())
    }

    /// A fresh state for one restarted child.
    pub fn state(&self) -> BackoffState {
        BackoffState {
            policy: self.clone(),
            base: self.initial.get(),
        }
    }
}

/// Where one child is in its backoff sequence.
#[derive(Clone, Debug)]
pub struct BackoffState {
    policy: Backoff,
    base: Duration,
}

impl BackoffState {
    /// The delay to wait before the next restart; advances the sequence.
    pub fn next_delay(&mut self) -> Duration {
        self.next_delay_with(fastrand::f64())
    }

    /// [`next_delay`](Self::next_delay) with the random draw `u` in `[0, 1)` given.
    pub fn next_delay_with(&mut self, u: f64) -> Duration {
        let p = &self.policy;
        let factor = 1.0 + p.jitter * (2.0 * u.clamp(0.0, 1.0) - 1.0);
        let delay = self.base.mul_f64(factor.max(0.0)).min(p.max.get());
        self.base = self.base.mul_f64(p.multiplier).min(p.max.get());
        delay
    }

    /// Records how long the last run lasted: a long enough run resets the sequence.
    pub fn observe_run(&mut self, ran_for: Duration) {
        if ran_for >= self.policy.reset_after.get() {
            self.reset();
        }
    }

    /// Back to `initial`.
    pub fn reset(&mut self) {
        self.base = self.policy.initial.get();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn grows_to_max_and_resets_after_a_long_run() {
        let mut s = Backoff {
            jitter: 0.0,
            ..Backoff::default()
        }
        .state();
        let delays: Vec<_> = (0..12).map(|_| s.next_delay()).collect();
        assert_eq!(&delays[..4], &[secs(1.0), secs(2.0), secs(4.0), secs(8.0)]);
        assert!(delays.iter().all(|d| *d <= secs(300.0)));
        assert_eq!(delays[11], secs(300.0));

        s.observe_run(secs(5.0)); // short run: keeps growing
        assert_eq!(s.next_delay(), secs(300.0));
        s.observe_run(secs(60.0));
        assert_eq!(s.next_delay(), secs(1.0));
    }

    #[test]
    fn jitter_stays_within_its_band_and_below_max() {
        let policy = Backoff {
            initial: DurationStr(secs(10.0)),
            max: DurationStr(secs(11.0)),
            jitter: 0.5,
            ..Backoff::default()
        };
        let mut s = policy.state();
        assert_eq!(s.next_delay_with(0.0), secs(5.0));
        let mut s = policy.state();
        assert_eq!(s.next_delay_with(1.0), secs(11.0), "capped at max");
        for _ in 0..1000 {
            let d = s.next_delay();
            assert!(d >= secs(5.5) && d <= secs(11.0), "{d:?}");
        }
    }

    #[test]
    fn validation_enforces_limits() {
        assert!(Backoff::default().validate().is_ok());
        let bad = |b: Backoff| b.validate().unwrap_err();
        assert!(bad(Backoff {
            multiplier: 0.5,
            ..Backoff::default()
        })
        .contains("multiplier"));
        assert!(bad(Backoff {
            jitter: 1.5,
            ..Backoff::default()
        })
        .contains("jitter"));
        assert!(bad(Backoff {
            initial: DurationStr::from_secs(0),
            ..Backoff::default()
        })
        .contains("initial"));
        assert!(bad(Backoff {
            initial: DurationStr::from_secs(600),
            ..Backoff::default()
        })
        .contains("max"));
    }

    #[test]
    fn deserializes_with_defaults() {
        let b: Backoff = toml::from_str("initial = \"500ms\"\njitter = 0.1").unwrap();
        assert_eq!(b.initial.get(), Duration::from_millis(500));
        assert_eq!(b.max, Backoff::default().max);
        assert!(toml::from_str::<Backoff>("initail = \"1s\"").is_err());
    }
}
