//! What the configs of per-process profiler sources (`py_spy`, `rbspy`) share: the
//! [`SourceConfig`] glue around [`runtime_runs`](super::runtime_runs).
//!
//! Each config keeps its own fields and `#[serde(deny_unknown_fields)]` (a shared
//! struct flattened into both would lose that check: serde rejects the two
//! together), and implements [`RuntimeSourceConfig`]; the [`SourceConfig`] impl
//! comes from here.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use super::runtime_runs::{self, Mode, RunSettings, RuntimeProfiler};
use super::runtime_sampler::{self, SamplerSettings};
use crate::component::{BuildError, FieldError, SourceConfig, SourceContext, Task};
use crate::units::DurationStr;

/// A per-process profiler source's config.
pub trait RuntimeSourceConfig: Debug + Send + Sync + 'static {
    /// Samples per second per process, as configured (before any cap).
    fn frequency(&self) -> u32;
    /// The driver's settings.
    fn settings(&self) -> RunSettings;
    /// The `window` and `max_windows` fields, for `--duration` and `--once`.
    fn window_fields(&mut self) -> (&mut DurationStr, &mut Option<u64>);
    /// The profiler the driver runs.
    fn profiler(&self) -> Arc<dyn RuntimeProfiler>;
}

impl<C: RuntimeSourceConfig> SourceConfig for C {
    fn outputs(&self) -> crate::event::DataTypes {
        crate::event::DataTypes::PROFILES_AND_DIAGNOSTICS
    }

    fn override_windows(&mut self, window: Option<Duration>, max_windows: Option<u64>) {
        let (window_field, max_windows_field) = self.window_fields();
        crate::window_clock::override_fields(window_field, max_windows_field, window, max_windows);
    }

    fn validate(&self) -> Vec<FieldError> {
        runtime_runs::validate(self.frequency(), &self.settings())
    }

    fn is_finite(&self) -> bool {
        self.settings().max_windows.is_some()
    }

    fn build(&self, cx: SourceContext) -> Result<Task, BuildError> {
        let settings = self.settings();
        let profiler = self.profiler();
        Ok(match settings.mode {
            Mode::PerWindow => Box::pin(runtime_runs::drive(profiler, settings, cx)),
            Mode::Attached => {
                let (kind, mut options, style) = profiler.sampler();
                options.max_targets = settings.discovery.max_processes;
                let sampler = SamplerSettings {
                    kind,
                    style,
                    options,
                    skip_idle_targets: settings.skip_idle_targets,
                    binary: settings.sampler_binary.clone(),
                };
                Box::pin(runtime_sampler::drive(profiler, settings, sampler, cx))
            }
        })
    }
}
