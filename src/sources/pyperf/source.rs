//! The `pyperf` source as a component: the checks of its settings, and building
//! its run. Apart from `config.rs` so that the settings do not import the run
//! that reads them.

use std::time::Duration;

use super::config::PyPerfSourceConfig;
use super::run;
use crate::component::{at_least_one, BuildError, FieldError, SourceConfig, SourceContext, Task};
use crate::window_clock::override_fields;

impl SourceConfig for PyPerfSourceConfig {
    fn outputs(&self) -> crate::event::DataTypes {
        crate::event::DataTypes::PROFILES_AND_DIAGNOSTICS
    }

    fn override_windows(&mut self, window: Option<Duration>, max_windows: Option<u64>) {
        override_fields(&mut self.window, &mut self.max_windows, window, max_windows);
    }

    fn validate(&self) -> Vec<FieldError> {
        let mut e = Vec::new();
        if self
            .binary
            .as_ref()
            .is_some_and(|b| b.as_os_str().is_empty())
        {
            e.push(FieldError::new(&["binary"], "binary must not be empty"));
        }
        e.extend(at_least_one(&["frequency"], self.frequency));
        if self.window.get() < Duration::from_secs(1) {
            e.push(FieldError::new(&["window"], "window must be at least 1s"));
        }
        e.extend(
            self.max_windows
                .and_then(|n| at_least_one(&["max_windows"], n)),
        );
        if self.rotate_timeout.get().is_zero() {
            e.push(FieldError::new(
                &["rotate_timeout"],
                "rotate_timeout must be positive",
            ));
        }
        e.extend(at_least_one(
            &["events_buffer_pages"],
            self.events_buffer_pages,
        ));
        e.extend(at_least_one(&["symbols_map_size"], self.symbols_map_size));
        if let Err(msg) = self.backoff.validate() {
            e.push(FieldError::new(&["backoff"], msg));
        }
        e
    }

    fn build(&self, cx: SourceContext) -> Result<Task, BuildError> {
        Ok(Box::pin(run::run(self.clone(), cx)))
    }
}
