//! The perf source's task: start-up, then one rotation and one `perf script` per
//! window.
//!
//! ```text
//! start:  find perf ─ no → INFO "apt-get install linux-perf", FINISHED
//!         remove stale perf.data* from the scratch dir
//!         discover an event ─ none works → WARN + Diagnostic, FINISHED
//!         start perf record (the recorder task)
//! window: SIGUSR2 → wait ≤5 s for perf.data.<ts> → JVMs write their perf maps (≤
//!         jit.window_budget) → perf script, or read it in-process (`reader`)
//!         → chunks → delete file → diagnostics of the window → Watermark(window end)
//! end:    (shutdown or the last of max_windows) stop perf → script its last file
//!         → Watermark(FINISHED)
//! ```

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::buffer::OutputClosed;
use crate::component::{ComponentError, SourceContext};
use crate::event::{ComponentId, ProcessLabels, RunEnd, Watermark, Window};
use crate::formats::perf_data::{Converter, Symbolizer, SymbolizerLimits};
use crate::process::{SpawnError, Spec, Stdout, Supervisor};
use crate::sources::live::binary::{self, Search};
use crate::sources::live::emitter::Emitter;
use crate::telemetry::{ComponentMetrics, SymbolCacheFigures};
use crate::window_clock::{Tick, WindowClock};

use super::config::{CallGraph, PerfSourceConfig, Reader};
use super::events::{self, run_end, Discovered};
use super::jit::{Jit, JVM_ATTACH};
use super::recorder::{self, RecorderHandle, Settings};
use super::rotation;
use super::script::Script;

/// How long to wait for perf to rename its data file after SIGUSR2.
const ROTATE_TIMEOUT: Duration = Duration::from_secs(5);
/// How often SIGUSR2 is repeated while waiting for the rotated file.
const ROTATE_RESEND: Duration = Duration::from_secs(1);

pub async fn run(
    config: PerfSourceConfig,
    cx: SourceContext,
    scratch: PathBuf,
) -> Result<(), ComponentError> {
    let SourceContext { cx, out } = cx;
    let mut em = Emitter::new(out, &cx, "perf");
    let jit = Jit::new(
        config.jit.clone(),
        config.discovery.clone(),
        cx.metrics.clone(),
    );
    let mut task = PerfTask {
        config,
        scratch,
        supervisor: cx.supervisor.clone(),
        metrics: cx.metrics.clone(),
        binary: String::new(),
        jit,
        converter: None,
    };
    let mut shutdown = cx.shutdown.clone();
    // Whatever happens, the scratch directory is left empty and FINISHED is sent
    // (unless nothing reads any more).
    let _ = task.run(&mut em, &cx.id, cx.origin_ms, &mut shutdown).await;
    rotation::clean(&task.scratch);
    let _ = em.watermark(Watermark::FINISHED).await;
    Ok(())
}

struct PerfTask {
    config: PerfSourceConfig,
    scratch: PathBuf,
    supervisor: Supervisor,
    metrics: ComponentMetrics,
    /// The resolved perf program.
    binary: String,
    /// Perf maps of JVMs, labels of JIT runtimes.
    jit: Jit,
    /// The in-process reader and its symbol caches, kept across windows (None while
    /// a file is being read on a blocking thread, or before the first one).
    converter: Option<Converter>,
}

impl PerfTask {
    async fn run(
        &mut self,
        em: &mut Emitter,
        source: &ComponentId,
        origin_ms: u64,
        shutdown: &mut crate::shutdown::ShutdownSignal,
    ) -> Result<(), OutputClosed> {
        // Windows are counted from when perf can record: discovery takes seconds.
        let clock =
            || WindowClock::new(origin_ms, self.config.window.get(), self.config.max_windows);
        let Some(binary) = binary::find(&self.config.binary, Search::Path) else {
            not_found(source, &self.config.binary);
            return Ok(());
        };
        self.binary = binary.to_string_lossy().into_owned();
        let stale = rotation::clean(&self.scratch);
        if stale > 0 {
            tracing::info!(files = stale, dir = %self.scratch.display(), "removed stale perf data files");
        }

        let events: Vec<String> = match &self.config.events {
            Some(v) => v.clone(),
            None => match events::discover(&self.supervisor, &self.binary, &self.scratch).await {
                Discovered::Event(e) => e.into_iter().collect(),
                Discovered::NotFound => {
                    not_found(source, &self.config.binary);
                    return Ok(());
                }
                Discovered::ShuttingDown => return Ok(()),
                Discovered::NoneWorks { end, stderr } => {
                    tracing::warn!(
                        "perf works on no event here (tried the default, cpu-clock, task-clock); \
                         the perf source is disabled"
                    );
                    let window = clock().current().unwrap_or_default();
                    em.diagnostic(window, end, stderr).await?;
                    return Ok(());
                }
            },
        };
        tracing::info!(
            events = %if events.is_empty() { "default".to_string() } else { events.join(",") },
            frequency = self.config.frequency,
            window_s = self.config.window.get().as_secs_f64(),
            "perf recording system-wide"
        );

        let recorder = RecorderHandle::start(Settings {
            supervisor: self.supervisor.clone(),
            spec: self.record_spec(&events),
            scratch: self.scratch.clone(),
            restart_rss: self.config.restart_rss.get(),
            restart_after: self.config.restart_after.get(),
            max_data_bytes: self.config.max_data_bytes.get(),
            backoff: self.config.backoff.clone(),
        });
        let mut recorder = recorder;
        let mut clock = clock();
        let r = self.windows(em, &mut clock, shutdown, &mut recorder).await;
        recorder.stop().await;
        r
    }

    fn record_spec(&self, events: &[String]) -> Spec {
        let c = &self.config;
        let mut spec = Spec::new(&self.binary)
            .args(["record", "-F", &c.frequency.to_string(), "-a"])
            .args(c.call_graph_args())
            .args(["-m", &c.mmap_pages().to_string()]);
        for e in events {
            spec = spec.args(["-e", e]);
        }
        spec.arg("-o")
            .arg(self.scratch.join(rotation::LIVE))
            .arg("--switch-output=signal")
            .args(&c.extra_args)
            .stdout(Stdout::Null)
            .kill_grace(recorder::STOP_GRACE)
            .label("perf")
    }

    async fn windows(
        &mut self,
        em: &mut Emitter,
        clock: &mut WindowClock,
        shutdown: &mut crate::shutdown::ShutdownSignal,
        recorder: &mut RecorderHandle,
    ) -> Result<(), OutputClosed> {
        while let Some(tick) = clock.tick(shutdown).await {
            let (window, last) = match tick {
                Tick::Ended(w) => (w, clock.current().is_none()),
                Tick::Shutdown(w) => (w, true),
            };
            if last {
                // perf writes its last data file as it stops.
                recorder.stop().await;
            } else {
                if !self.rotate(recorder).await {
                    tracing::warn!(
                        timeout_s = ROTATE_TIMEOUT.as_secs(),
                        "perf did not rotate its data file in time; its samples go to the next window"
                    );
                    self.metrics.errors("rotation_timeout", 1);
                }
            }
            // Before perf script reads them: the JVMs' perf maps of now.
            let jit = self.jit.prepare().await;
            self.deliver(em, window, &jit.process_labels).await?;
            for p in jit.problems {
                em.side_diagnostic(window, JVM_ATTACH, &p.comm, p.end, p.text)
                    .await?;
            }
            while let Ok(f) = recorder.failures.try_recv() {
                em.diagnostic(window, f.end, f.stderr).await?;
            }
            em.watermark(window.end_ms).await?;
            if last {
                break;
            }
        }
        Ok(())
    }

    /// Asks perf to rotate and waits for the new file. perf ignores SIGUSR2 until it
    /// has opened its events and synthesized the running processes (hundreds of ms
    /// after a start on a busy host), so the signal is repeated every
    /// [`ROTATE_RESEND`] while waiting; a second rotation only adds a small file.
    /// False if perf is running but no file appeared within [`ROTATE_TIMEOUT`].
    async fn rotate(&self, recorder: &RecorderHandle) -> bool {
        let before = rotation::snapshot(&self.scratch);
        let until = Instant::now() + ROTATE_TIMEOUT;
        while recorder.rotate().await {
            if rotation::wait_for_new(&self.scratch, &before, ROTATE_RESEND).await {
                return true;
            }
            if Instant::now() >= until {
                return false;
            }
        }
        // No perf is recording (it died, or is being restarted): nothing to wait for.
        true
    }

    /// Turns every rotated file into chunks of `window`, deleting each at once.
    async fn deliver(
        &mut self,
        em: &mut Emitter,
        window: Window,
        process_labels: &ProcessLabels,
    ) -> Result<(), OutputClosed> {
        for file in rotation::rotated(&self.scratch) {
            let r = match (self.config.reader, self.config.call_graph) {
                (Reader::InProcess, CallGraph::Fp) => {
                    self.read_in_process(em, window, &file, process_labels)
                        .await
                }
                _ => self.script(em, window, &file, process_labels).await,
            };
            rotation::remove(&file);
            r?;
        }
        Ok(())
    }

    /// Reads one data file in-process on a blocking thread, streaming its text on
    /// as it comes (a full pipeline slows the reader down, as it did `perf script`).
    async fn read_in_process(
        &mut self,
        em: &mut Emitter,
        window: Window,
        file: &Path,
        process_labels: &ProcessLabels,
    ) -> Result<(), OutputClosed> {
        let started = Instant::now();
        let limits = SymbolizerLimits {
            max_bytes: usize::try_from(self.config.symbol_cache.get()).unwrap_or(usize::MAX),
            ..SymbolizerLimits::default()
        };
        let converter = self
            .converter
            .take()
            .unwrap_or_else(|| Converter::new(Symbolizer::new(limits)));
        let (mut rx, reader) =
            crate::formats::perf_data::convert_file(converter, file.to_path_buf());
        let mut sent = Ok(());
        while let Some(piece) = rx.recv().await {
            if let Err(e) = em.chunk(window, piece, process_labels.clone()).await {
                sent = Err(e);
                break;
            }
        }
        // Dropping the receiver stops a reader still sending.
        drop(rx);
        let Ok((converter, result)) = reader.await else {
            // The reader panicked: a bug, but the next window starts afresh.
            self.metrics.errors("perf_data_reader_panicked", 1);
            return sent;
        };
        let cache = converter.symbolizer.stats();
        self.converter = Some(converter);
        self.metrics.symbol_cache().report(&SymbolCacheFigures {
            bytes: cache.bytes,
            kernel_bytes: cache.kernel_bytes,
            files: cache.files,
            perf_maps: cache.perf_maps,
            hits: cache.hits,
            misses: cache.misses,
            evictions: cache.evictions,
            load_failures: cache.load_failures,
        });
        match result {
            Ok(stats) => {
                tracing::debug!(
                    samples = stats.samples,
                    unique_frames = stats.unique_frames,
                    lost = stats.lost_samples,
                    cache_bytes = cache.bytes,
                    cache_files = cache.files,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "perf data read"
                );
                self.metrics
                    .errors("perf_data_bad_records", stats.bad_records);
                if stats.truncated {
                    self.metrics.errors("perf_data_truncated", 1);
                }
            }
            Err(e) => {
                tracing::info!(error = %e, file = %file.display(), "cannot read a perf data file; its samples are lost");
                self.metrics.errors("perf_data_unreadable", 1);
            }
        }
        sent
    }

    async fn script(
        &mut self,
        em: &mut Emitter,
        window: Window,
        file: &Path,
        process_labels: &ProcessLabels,
    ) -> Result<(), OutputClosed> {
        let started = Instant::now();
        let data_bytes = std::fs::metadata(file).map_or(0, |m| m.len());
        let timeout = self.config.script_timeout.get();
        let mut script = match Script::start(&self.supervisor, &self.binary, file, timeout).await {
            Ok(s) => s,
            Err(SpawnError::ShuttingDown) => return Ok(()),
            Err(e) => {
                tracing::info!(error = %e, "cannot start perf script");
                return em
                    .diagnostic(window, RunEnd::SpawnFailed(e.to_string()), e.to_string())
                    .await;
            }
        };
        while let Some(piece) = script.next().await {
            em.chunk(window, piece, process_labels.clone()).await?;
        }
        let text_bytes = script.bytes;
        let report = script.finish().await;
        tracing::debug!(
            data_bytes,
            text_bytes,
            elapsed_ms = started.elapsed().as_millis() as u64,
            outcome = %report.outcome,
            "perf script done"
        );
        if report.outcome.success() {
            return Ok(());
        }
        tracing::info!(
            outcome = %report.outcome,
            text_bytes,
            "perf script failed; the samples it printed before are kept"
        );
        self.metrics.errors("perf_script_failed", 1);
        // The summary goes last: classify logs the last line.
        let stderr = format!(
            "{}\nperf script {}",
            report.stderr_tail.trim_end(),
            recorder::describe(report.outcome)
        );
        em.diagnostic(window, run_end(report.outcome), stderr).await
    }
}

fn not_found(source: &ComponentId, binary: &str) {
    binary::log_missing(
        source,
        &binary,
        format_args!(
            "perf not found; the perf source is disabled (install it with `apt-get install linux-perf`)"
        ),
    );
}
