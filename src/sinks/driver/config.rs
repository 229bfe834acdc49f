//! The `request` table every delivering sink embeds:
//!
//! ```toml
//! request = { concurrency = 4, timeout = "30s", retry_initial_backoff = "1s", retry_max_backoff = "60s", retry_max_elapsed = "30m", retry_after_max = "5m" }
//! ```

use std::time::Duration;

use serde::Deserialize;

use super::retry::{Jitter, RetryPolicy};
use crate::component::FieldError;
use crate::units::DurationStr;

/// How a sink sends its requests: how many at once, how long one attempt may take
/// and how failed ones are retried.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RequestConfig {
    /// Requests in flight at once (attempting or waiting to retry). When all are
    /// taken the sink stops reading its input: this is its backpressure.
    pub concurrency: usize,
    /// Longest one attempt may take; a slower one is abandoned and retried
    /// (reason "timeout").
    pub timeout: DurationStr,
    /// Backoff before the first retry; later ones grow exponentially.
    pub retry_initial_backoff: DurationStr,
    /// Longest backoff between two attempts.
    pub retry_max_backoff: DurationStr,
    /// A request that has not been delivered this long after its first attempt is
    /// given up (its events count as dropped, reason "retries_exhausted").
    pub retry_max_elapsed: DurationStr,
    /// Longest wait we accept from a destination's `Retry-After`; longer asks are
    /// cut to this.
    pub retry_after_max: DurationStr,
    /// How backoffs are randomised: "full" (0 to the exponential ceiling) or
    /// "decorrelated" (initial backoff to 3x the previous one).
    pub retry_jitter: Jitter,
}

impl Default for RequestConfig {
    fn default() -> Self {
        RequestConfig {
            concurrency: 4,
            timeout: DurationStr::from_secs(30),
            retry_initial_backoff: DurationStr::from_secs(1),
            retry_max_backoff: DurationStr::from_secs(60),
            retry_max_elapsed: DurationStr::from_secs(30 * 60),
            retry_after_max: DurationStr::from_secs(5 * 60),
            retry_jitter: Jitter::Full,
        }
    }
}

/// More requests in flight than this is a typo, not a tuning.
const MAX_CONCURRENCY: usize = 1024;

impl RequestConfig {
    /// Checks, with paths under `request` (where sinks embed this table).
    pub fn validate(&self) -> Vec<FieldError> {
        self.validate_at(&["request"])
    }

    /// Checks, with paths under `prefix` (for a sink that embeds it elsewhere).
    pub fn validate_at(&self, prefix: &[&str]) -> Vec<FieldError> {
        let mut errors = Vec::new();
        let mut err = |field: &str, message: String| {
            let mut path: Vec<&str> = prefix.to_vec();
            path.push(field);
            errors.push(FieldError::new(&path, message));
        };
        if self.concurrency == 0 {
            err("concurrency", "must be at least 1".into());
        } else if self.concurrency > MAX_CONCURRENCY {
            err(
                "concurrency",
                format!(
                    "must be at most {MAX_CONCURRENCY}, got {}",
                    self.concurrency
                ),
            );
        }
        for (field, value) in [
            ("timeout", self.timeout),
            ("retry_initial_backoff", self.retry_initial_backoff),
            ("retry_max_elapsed", self.retry_max_elapsed),
        ] {
            if value.get().is_zero() {
                err(field, "must be greater than zero".into());
            }
        }
        if self.retry_max_backoff < self.retry_initial_backoff {
            err(
                "retry_max_backoff",
                format!(
                    "{} is less than retry_initial_backoff ({})",
                    self.retry_max_backoff, self.retry_initial_backoff
                ),
            );
        }
        errors
    }

    pub fn timeout(&self) -> Duration {
        self.timeout.get()
    }

    pub fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            initial_backoff: self.retry_initial_backoff.get(),
            max_backoff: self.retry_max_backoff.get(),
            max_elapsed: self.retry_max_elapsed.get(),
            retry_after_max: self.retry_after_max.get(),
            jitter: self.retry_jitter,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Sink {
        #[serde(default)]
        request: RequestConfig,
    }

    fn parse(s: &str) -> Result<RequestConfig, String> {
        toml::from_str::<Sink>(s)
            .map(|s| s.request)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn the_documented_table_parses_and_equals_the_defaults() {
        let c = parse(
            r#"request = { concurrency = 4, timeout = "30s", retry_initial_backoff = "1s", retry_max_backoff = "60s", retry_max_elapsed = "30m", retry_after_max = "5m" }"#,
        )
        .unwrap();
        assert_eq!(c, RequestConfig::default());
        assert_eq!(parse("").unwrap(), RequestConfig::default());
        assert!(c.validate().is_empty());
    }

    #[test]
    fn fields_can_be_given_alone_and_unknown_ones_are_refused() {
        let c = parse(r#"request = { concurrency = 16, retry_jitter = "decorrelated" }"#).unwrap();
        assert_eq!(c.concurrency, 16);
        assert_eq!(c.retry_jitter, Jitter::Decorrelated);
        assert_eq!(c.timeout, DurationStr::from_secs(30));
        let e = parse(r#"request = { concurency = 4 }"#).unwrap_err();
        assert!(e.contains("concurency"), "{e}");
        let e = parse(r#"request = { timeout = "soon" }"#).unwrap_err();
        assert!(e.contains("invalid duration"), "{e}");
    }

    #[test]
    fn validate_names_each_bad_field() {
        let c = RequestConfig {
            concurrency: 0,
            timeout: DurationStr(Duration::ZERO),
            retry_initial_backoff: DurationStr::from_secs(10),
            retry_max_backoff: DurationStr::from_secs(5),
            ..RequestConfig::default()
        };
        let paths: Vec<String> = c.validate().iter().map(|e| e.path.join(".")).collect();
        assert_eq!(
            paths,
            [
                "request.concurrency",
                "request.timeout",
                "request.retry_max_backoff"
            ]
        );
        let c = RequestConfig {
            concurrency: 5000,
            retry_max_elapsed: DurationStr(Duration::ZERO),
            ..RequestConfig::default()
        };
        let errors = c.validate_at(&["out", "request"]);
        assert_eq!(errors[0].path, ["out", "request", "concurrency"]);
        assert_eq!(errors[1].path, ["out", "request", "retry_max_elapsed"]);
    }
}
