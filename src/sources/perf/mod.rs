//! `type = "perf"`: system-wide CPU profiling with `perf record`.
//!
//! ```toml
//! [sources.host_cpu]
//! type = "perf"
//! frequency = 11             # Hz
//! window = "60s"             # one profile per window, aligned with every live source
//! call_graph = "fp"          # "fp" (frame pointers) or "dwarf"
//! restart_rss = "200MiB"     # restart perf when its RSS passes this
//! restart_after = "600s"     # ... or when it has run this long
//! max_data_bytes = "512MiB"  # ... or when its current perf.data passes this
//! jit = { java = true, node = true, attach_timeout = "3s", window_budget = "5s", max_concurrent = 4 }
//! discovery = { min_age = "10s" }   # which JVMs and Node.js processes `jit` looks at
//! reader = "perf_script"    # or "in_process": read perf.data without `perf script` (fp only)
//! symbol_cache = "128MiB"    # in_process: symbol tables kept between windows
//! ```
//!
//! One long-running `perf record -a --switch-output=signal` writes into the source's
//! scratch directory. At the end of every window the source sends it SIGUSR2, waits
//! for the rotated `perf.data.<timestamp>`; every JVM discovery finds is asked to
//! write its perf map, and Node.js processes are checked for theirs, so that JIT
//! frames are named ([`jit`]). Then the file is turned into `perf script -F +pid
//! --no-inline` text: by `perf script` under a deadline (`reader = "perf_script"`,
//! the default for now), or in-process (`reader = "in_process"`,
//! [`crate::formats::perf_data`], with symbol caches that live as long as the
//! source; frame pointers only: DWARF stacks always go through `perf script`). The
//! text is streamed on in whole-record chunks (for `fold`), the file deleted and the
//! window's watermark sent.
//!
//! What gProfiler got wrong, and what this source does instead
//! (`context/gprofiler-facts.md` §2):
//! - perf outliving the agent: perf runs under the supervisor, which puts it in its own
//!   process group, gives it `PR_SET_PDEATHSIG` and reaps it;
//! - perf growing to 948 MB: it is restarted when its RSS passes `restart_rss`, when
//!   it is older than `restart_after` (an age check that works: gProfiler read a field
//!   that was never set), or when its live data file passes `max_data_bytes` (the
//!   watchdog that replaces the `Ns,signal` rotation of gProfiler's perf fork); while
//!   rotated files waiting for `perf script` already hold `max_data_bytes` (a stalled
//!   pipeline), perf is not restarted, so disk use stays bounded;
//! - `perf script` segfaulting on GPU hosts and failing the whole cycle: the chunks
//!   read before the crash are kept, a [`Diagnostic`] is sent, the next window goes
//!   on;
//! - `perf record` dying: a [`Diagnostic`], a restart with backoff, later windows go on;
//! - no perf installed: one INFO line and the source finishes; other sources keep
//!   running.
//!
//! At shutdown, or after the last of `max_windows`, perf is stopped with SIGINT (it
//! writes its last data file), that file is scripted into the window in progress,
//! the scratch directory is emptied and the source sends `Watermark::FINISHED`.
//!
//! Event discovery (when `events` is not set) tries perf's default event, then
//! `cpu-clock`, then `task-clock`, each with a half-second system-wide recording that
//! must yield at least one sample. Virtual machines without hardware counters end up
//! on `cpu-clock`.
//!
//! [`Diagnostic`]: crate::event::Diagnostic

mod config;
mod events;
mod jit;
mod recorder;
mod rotation;
mod script;
mod source;

use std::time::Duration;

use crate::component::{BuildError, FieldError, SourceConfig, SourceContext, Task};
use crate::window_clock::override_fields;

use config::OWNED_ARGS;
pub use config::{
    CallGraph, JitConfig, PerfSourceConfig, Reader, MAX_CONCURRENT_ATTACHES, MAX_DWARF_FREQUENCY,
    MAX_DWARF_STACK_SIZE,
};

impl SourceConfig for PerfSourceConfig {
    fn outputs(&self) -> crate::event::DataTypes {
        crate::event::DataTypes::PERF_SCRIPT.with(crate::event::DataTypes::DIAGNOSTIC)
    }

    fn override_windows(&mut self, window: Option<Duration>, max_windows: Option<u64>) {
        override_fields(&mut self.window, &mut self.max_windows, window, max_windows);
    }

    fn validate(&self) -> Vec<FieldError> {
        let mut e = Vec::new();
        if self.frequency == 0 || self.frequency > 10_000 {
            e.push(FieldError::new(
                &["frequency"],
                "frequency must be between 1 and 10000 Hz",
            ));
        }
        if self.call_graph == CallGraph::Dwarf && self.frequency > MAX_DWARF_FREQUENCY {
            e.push(FieldError::new(
                &["frequency"],
                format!("with call_graph = \"dwarf\" frequency must be at most {MAX_DWARF_FREQUENCY} Hz"),
            ));
        }
        if self.window.get() < Duration::from_secs(1) {
            e.push(FieldError::new(&["window"], "window must be at least 1s"));
        }
        if self.max_windows == Some(0) {
            e.push(FieldError::new(
                &["max_windows"],
                "max_windows must be at least 1 (leave it unset to run until shutdown)",
            ));
        }
        if self.dwarf_stack_size == 0
            || self.dwarf_stack_size > MAX_DWARF_STACK_SIZE
            || self.dwarf_stack_size % 8 != 0
        {
            e.push(FieldError::new(
                &["dwarf_stack_size"],
                format!(
                    "dwarf_stack_size must be a multiple of 8 between 8 and {MAX_DWARF_STACK_SIZE}"
                ),
            ));
        }
        match &self.events {
            Some(v) if v.is_empty() => e.push(FieldError::new(
                &["events"],
                "events must name at least one event (leave it unset to discover one)",
            )),
            Some(v) => {
                for (i, ev) in v.iter().enumerate() {
                    if ev.trim().is_empty() || ev.starts_with('-') {
                        e.push(FieldError::new(
                            &["events", &i.to_string()],
                            format!("invalid perf event {ev:?}"),
                        ));
                    }
                }
            }
            None => {}
        }
        if self.mmap_pages == Some(0) {
            e.push(FieldError::new(
                &["mmap_pages"],
                "mmap_pages must be positive",
            ));
        }
        for (field, d) in [
            ("restart_after", self.restart_after),
            ("script_timeout", self.script_timeout),
        ] {
            if d.get().is_zero() {
                e.push(FieldError::new(
                    &[field],
                    format!("{field} must be positive"),
                ));
            }
        }
        for (field, b) in [
            ("restart_rss", self.restart_rss),
            ("max_data_bytes", self.max_data_bytes),
            ("symbol_cache", self.symbol_cache),
        ] {
            if b.get() < 1024 * 1024 {
                e.push(FieldError::new(
                    &[field],
                    format!("{field} must be at least 1MiB"),
                ));
            }
        }
        if self.binary.trim().is_empty() {
            e.push(FieldError::new(&["binary"], "binary must not be empty"));
        }
        for (i, a) in self.extra_args.iter().enumerate() {
            let name = a.split('=').next().unwrap_or(a);
            if OWNED_ARGS.contains(&name) || (a.starts_with("-o") && !a.starts_with("--")) {
                e.push(FieldError::new(
                    &["extra_args", &i.to_string()],
                    format!("{a:?} is set by the perf source itself"),
                ));
            }
        }
        if let Err(msg) = self.backoff.validate() {
            e.push(FieldError::new(&["backoff"], msg));
        }
        for (field, d) in [
            ("attach_timeout", self.jit.attach_timeout),
            ("window_budget", self.jit.window_budget),
        ] {
            if d.get().is_zero() {
                e.push(FieldError::new(
                    &["jit", field],
                    format!("jit.{field} must be positive"),
                ));
            }
        }
        if self.jit.max_concurrent == 0 || self.jit.max_concurrent > MAX_CONCURRENT_ATTACHES {
            e.push(FieldError::new(
                &["jit", "max_concurrent"],
                format!("jit.max_concurrent must be between 1 and {MAX_CONCURRENT_ATTACHES}"),
            ));
        }
        if self.discovery.max_processes == 0 {
            e.push(FieldError::new(
                &["discovery", "max_processes"],
                "discovery.max_processes must be at least 1",
            ));
        }
        e
    }

    /// With `max_windows` the source ends by itself after its last window.
    fn is_finite(&self) -> bool {
        self.max_windows.is_some()
    }

    fn build(&self, cx: SourceContext) -> Result<Task, BuildError> {
        let scratch = cx
            .cx
            .scratch_dir()
            .map_err(|e| BuildError(format!("cannot create the scratch directory: {e}")))?;
        Ok(Box::pin(source::run(self.clone(), cx, scratch)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::component::parse_table;
    use crate::units::ByteSize;

    fn parse(text: &str) -> Result<PerfSourceConfig, Vec<FieldError>> {
        parse_table(toml::from_str::<toml::Value>(text).unwrap())
    }

    #[test]
    fn defaults_follow_gprofiler_pinterest() {
        let c = parse("").unwrap();
        assert_eq!(c.frequency, 11);
        assert_eq!(c.window.get(), Duration::from_secs(60));
        assert_eq!(c.mmap_pages(), 129);
        assert_eq!(c.restart_rss, ByteSize::mib(200));
        assert_eq!(c.restart_after.get(), Duration::from_secs(600));
        assert!(c.validate().is_empty());
        assert!(c.jit.java && c.jit.node);
        assert!(parse("jit = { jav = true }").is_err());
        let d = parse("call_graph = \"dwarf\"").unwrap();
        assert_eq!(d.mmap_pages(), 257);
        assert_eq!(d.call_graph_args(), ["--call-graph", "dwarf,8192"]);
    }

    #[test]
    fn unknown_fields_and_bad_values_are_reported() {
        assert!(parse("frequncy = 11").is_err());
        let c = parse(
            "frequency = 499\ncall_graph = \"dwarf\"\ndwarf_stack_size = 70000\nevents = []\n\
             max_windows = 0\nextra_args = [\"-o\", \"/tmp/x\", \"--switch-output=1s\"]\n\
             jit = { attach_timeout = \"0s\", max_concurrent = 0 }",
        )
        .unwrap();
        let paths: Vec<String> = c.validate().into_iter().map(|e| e.path.join(".")).collect();
        assert_eq!(
            paths,
            [
                "frequency",
                "max_windows",
                "dwarf_stack_size",
                "events",
                "extra_args.0",
                "extra_args.2",
                "jit.attach_timeout",
                "jit.max_concurrent"
            ]
        );
    }
}
