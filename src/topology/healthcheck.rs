//! Sink healthchecks: before data flows (at `profpipe run` start, or on demand with
//! `profpipe validate --healthcheck`), ask each sink that can whether its
//! destination is reachable and accepts us, so a wrong endpoint or a revoked
//! credential shows up at once rather than as retries an hour later.

use std::time::Duration;

use crate::buffer::BufferKind;
use crate::component::Unhealthy;
use crate::config::Config;
use crate::event::ComponentId;

/// How long each sink's healthcheck may take before a pipeline starts (or a
/// reload or a command's pipeline is applied).
pub const START_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs every sink's healthcheck at once, each bounded by `timeout`; returns the
/// failures, in the config's sink order. Sinks without a check are skipped.
pub async fn run_healthchecks(config: &Config, timeout: Duration) -> Vec<(ComponentId, Unhealthy)> {
    // Spawned so slow checks overlap and a panicking one is a failure, not a crash.
    let checks: Vec<_> = config
        .sinks
        .iter()
        .filter_map(|sink| {
            let check = sink.config.healthcheck()?;
            Some((
                sink.id.clone(),
                tokio::spawn(tokio::time::timeout(timeout, check)),
            ))
        })
        .collect();
    let mut failures = Vec::new();
    for (id, handle) in checks {
        let failure = match handle.await {
            Ok(Ok(Ok(()))) => continue,
            Ok(Ok(Err(unhealthy))) => unhealthy,
            Ok(Err(_)) => Unhealthy::retryable(format!(
                "no answer within {}",
                humantime::format_duration(timeout)
            )),
            Err(e) => Unhealthy::from(format!("the check failed: {e}")),
        };
        failures.push((id, failure));
    }
    failures
}

/// Whether a pipeline may start: every sink's healthcheck. A failure stops the
/// start, except a retryable one (the destination is unreachable, not refusing us)
/// of a sink behind a disk buffer: riding out outages, and restarts during them,
/// is what that buffer is for, so it starts with a WARN. Returns the failures that
/// stop it, one line each, for the caller to report once (a refused start, a
/// refused reload, a failed command).
pub async fn gate(config: &Config, timeout: Duration) -> Result<(), Vec<String>> {
    let mut fatal = Vec::new();
    for (id, why) in run_healthchecks(config, timeout).await {
        let buffered = config
            .sinks
            .iter()
            .any(|s| s.id == id && s.buffer.kind == BufferKind::Disk);
        if why.retryable && buffered {
            tracing::warn!(sink = %id, "healthcheck failed: {why}; starting anyway, the disk buffer keeps what cannot be delivered yet");
        } else {
            fatal.push(format!("sink `{id}`: healthcheck failed: {why}"));
        }
    }
    if fatal.is_empty() {
        Ok(())
    } else {
        Err(fatal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buffer::{BoxFuture, BufferConfig};
    use crate::component::{BuildError, SinkConfig, SinkContext, Task};
    use crate::config::SinkEntry;
    use crate::event::DataTypes;

    #[derive(Debug)]
    enum Check {
        None,
        Passes,
        Fails,
        Hangs,
        Panics,
    }

    #[derive(Debug)]
    struct TestSink(Check);

    impl SinkConfig for TestSink {
        fn inputs(&self) -> DataTypes {
            DataTypes::ALL
        }
        fn build(&self, _: SinkContext) -> Result<Task, BuildError> {
            Err(BuildError("not built".into()))
        }
        fn healthcheck(&self) -> Option<BoxFuture<'static, Result<(), Unhealthy>>> {
            Some(match self.0 {
                Check::None => return None,
                Check::Passes => Box::pin(async { Ok(()) }),
                Check::Fails => Box::pin(async { Err("auth: 403 Forbidden".to_string().into()) }),
                Check::Hangs => Box::pin(std::future::pending()),
                Check::Panics => Box::pin(async { panic!("broken check") }),
            })
        }
    }

    fn config(sinks: Vec<(&str, Check)>) -> Config {
        Config {
            agent: Default::default(),
            telemetry: Default::default(),
            sources: Vec::new(),
            transforms: Vec::new(),
            sinks: sinks
                .into_iter()
                .map(|(id, check)| SinkEntry {
                    id: id.into(),
                    type_name: "test",
                    inputs: Vec::new(),
                    buffer: BufferConfig::default(),
                    declared: String::new(),
                    config: Box::new(TestSink(check)),
                })
                .collect(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn failures_are_reported_by_sink_in_config_order() {
        let c = config(vec![
            ("local", Check::None),
            ("hung", Check::Hangs),
            ("good", Check::Passes),
            ("denied", Check::Fails),
            ("buggy", Check::Panics),
        ]);
        let started = tokio::time::Instant::now();
        let failures = run_healthchecks(&c, Duration::from_secs(5)).await;
        assert_eq!(
            started.elapsed(),
            Duration::from_secs(5),
            "checks ran at once"
        );
        let ids: Vec<&str> = failures.iter().map(|(id, _)| &**id).collect();
        assert_eq!(ids, ["hung", "denied", "buggy"]);
        assert_eq!(failures[0].1, Unhealthy::retryable("no answer within 5s"));
        assert_eq!(failures[1].1.message, "auth: 403 Forbidden");
        assert!(!failures[1].1.retryable, "a refusal is not retryable");
        assert!(
            failures[2].1.message.contains("panicked"),
            "{}",
            failures[2].1
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_gate_lets_an_unreachable_sink_start_only_behind_a_disk_buffer() {
        let mut c = config(vec![("down", Check::Hangs), ("denied", Check::Fails)]);
        let errors = gate(&c, Duration::from_secs(1)).await.unwrap_err();
        assert_eq!(errors.len(), 2, "{errors:?}");
        for s in &mut c.sinks {
            s.buffer.kind = crate::buffer::BufferKind::Disk;
        }
        let errors = gate(&c, Duration::from_secs(1)).await.unwrap_err();
        assert_eq!(errors.len(), 1, "a refusal still stops it: {errors:?}");
        assert!(errors[0].contains("denied"), "{errors:?}");
    }

    #[tokio::test]
    async fn no_checks_no_failures() {
        let c = config(vec![("local", Check::None), ("good", Check::Passes)]);
        assert!(run_healthchecks(&c, Duration::from_secs(1))
            .await
            .is_empty());
    }
}
