//! `type = "file"`: reads profiler output from files or standard input.
//!
//! ```toml
//! [sources.capture]
//! type = "file"
//! paths = ["captures/*.perf.txt"]   # globs; "-" is standard input
//! format = "perf_script"            # perf_script | perf_data | collapsed | py_spy_raw | pyperf
//! follow = false                    # true: tail growing files / directories of rotated files
//! ```
//!
//! Without `follow`, each file is one window and the source ends after the last file.
//! With `follow`, files are polled every `poll_interval` and data is cut into windows
//! of `window` wall-clock time.
//!
//! `perf_script` input is forwarded as whole-record chunks for the `fold` transform;
//! `perf_data` files (`perf record` output, either layout) are read and symbolized
//! in-process into the same text ([`crate::formats::perf_data`]), one window per
//! file (not with `follow`); the line formats are parsed here into stacks.
//!
//! In follow mode every piece read carries a delivery token, and read positions are
//! kept in the state directory and advanced only past delivered bytes
//! ([`checkpoint`]): a restart, even after `kill -9`, goes on where delivery stopped.

mod checkpoint;
pub(crate) mod chunker;
mod lines;
mod tracker;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeekExt};

use crate::buffer::{Output, OutputClosed};
use crate::component::{BuildError, ComponentError, FieldError, SourceConfig, SourceContext, Task};
use crate::event::{
    Batch, Event, EventFinalizers, EventStatus, Labels, PerfScriptChunk, Profile, Stack, Watermark,
    Window,
};
use crate::shutdown::ShutdownSignal;
use crate::units::{ByteSize, DurationStr};

use checkpoint::{Checkpoints, MAX_PENDING_PIECES};
use chunker::{Chunker, Unit};
use lines::LineDecoder;
use tracker::Tracker;

/// The longest unfinished `perf script` record carried between reads; past it the
/// record is handed on in pieces (the folder joins them).
pub const MAX_RECORD_CARRY: usize = 1 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InputFormat {
    /// `perf script -F +pid` text; needs a `fold` transform downstream.
    PerfScript,
    /// perf.data files, read in-process into `perf script` text; needs a `fold`
    /// transform downstream.
    PerfData,
    /// Folded lines `a;b;c 12`, with or without gProfiler's `# {json}` header and
    /// `idx;container;` prefix.
    Collapsed,
    /// `py-spy record --format raw` output (no process name in the lines).
    PySpyRaw,
    /// PyPerf output: `comm-PID/TID;frames count`.
    Pyperf,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ReadFrom {
    /// Read files that already exist from their start.
    #[default]
    Beginning,
    /// In follow mode, skip what existing files hold when the agent starts.
    End,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default)]
#[serde(deny_unknown_fields)]
pub struct FileSourceConfig {
    /// Files to read: paths or glob patterns. "-" reads standard input.
    pub paths: Vec<String>,
    /// What the files hold.
    pub format: InputFormat,
    /// Keep reading as files grow and new files appear (rotation-aware).
    pub follow: bool,
    /// Follow mode: length of a window; windows are aligned to the wall clock.
    pub window: DurationStr,
    /// Follow mode: how often files are checked for new data.
    pub poll_interval: DurationStr,
    /// Follow mode: where to start in files that exist at start-up.
    pub read_from: ReadFrom,
    /// Follow mode: most files whose read offsets are remembered.
    pub max_tracked_files: usize,
    /// Bytes read at a time (and the largest chunk of perf text sent on).
    pub read_size: ByteSize,
    /// Most stacks in one event for the line formats.
    pub batch_stacks: usize,
    /// py_spy_raw: process name put in front of every stack.
    pub comm: Option<String>,
    /// py_spy_raw: append gProfiler's `_[p]` to Python frames.
    pub annotate: bool,
    /// Value of the `profiler` label; defaults from the format.
    pub profiler: Option<String>,
}

impl Default for FileSourceConfig {
    fn default() -> Self {
        FileSourceConfig {
            paths: Vec::new(),
            format: InputFormat::PerfScript,
            follow: false,
            window: DurationStr::from_secs(60),
            poll_interval: DurationStr::from_secs(1),
            read_from: ReadFrom::Beginning,
            max_tracked_files: 10_000,
            read_size: ByteSize::mib(1),
            batch_stacks: 10_000,
            comm: None,
            annotate: true,
            profiler: None,
        }
    }
}

impl SourceConfig for FileSourceConfig {
    fn outputs(&self) -> crate::event::DataTypes {
        match self.format {
            InputFormat::PerfScript | InputFormat::PerfData => crate::event::DataTypes::PERF_SCRIPT,
            _ => crate::event::DataTypes::PROFILE,
        }
    }

    fn validate(&self) -> Vec<FieldError> {
        let mut e = Vec::new();
        if self.paths.is_empty() {
            e.push(FieldError::new(&["paths"], "at least one path is required"));
        }
        if self.format == InputFormat::PerfData && self.follow {
            e.push(FieldError::new(
                &["follow"],
                "perf_data files cannot be followed (each file is read whole, as one window)",
            ));
        }
        if self.format == InputFormat::PerfData && self.paths.iter().any(|p| p == "-") {
            e.push(FieldError::new(
                &["paths"],
                "perf_data cannot be read from standard input (\"-\"); give the file's path",
            ));
        }
        if self.follow && self.paths.iter().any(|p| p == "-") {
            e.push(FieldError::new(
                &["follow"],
                "standard input (\"-\") cannot be followed",
            ));
        }
        for (i, p) in self.paths.iter().enumerate() {
            if p != "-" {
                if let Err(err) = glob::Pattern::new(p) {
                    e.push(FieldError::new(
                        &["paths", &i.to_string()],
                        format!("invalid glob: {err}"),
                    ));
                }
            }
        }
        if self.window.get() < Duration::from_secs(1) {
            e.push(FieldError::new(&["window"], "window must be at least 1s"));
        }
        if self.poll_interval.get().is_zero() {
            e.push(FieldError::new(
                &["poll_interval"],
                "poll_interval must be positive",
            ));
        }
        if self.read_size.get() < 4096 || self.read_size.get() > 64 << 20 {
            e.push(FieldError::new(
                &["read_size"],
                "read_size must be between 4KiB and 64MiB",
            ));
        }
        if self.batch_stacks == 0 {
            e.push(FieldError::new(
                &["batch_stacks"],
                "batch_stacks must be positive",
            ));
        }
        if self.max_tracked_files == 0 {
            e.push(FieldError::new(
                &["max_tracked_files"],
                "max_tracked_files must be positive",
            ));
        }
        e
    }

    fn is_finite(&self) -> bool {
        !self.follow
    }

    fn build(&self, cx: SourceContext) -> Result<Task, BuildError> {
        let profiler = self.profiler.clone().unwrap_or_else(|| {
            match self.format {
                InputFormat::PerfScript | InputFormat::PerfData => "perf",
                InputFormat::PySpyRaw => "py-spy",
                InputFormat::Pyperf => "pyperf",
                InputFormat::Collapsed => "file",
            }
            .to_string()
        });
        let labels = Labels {
            extra: Default::default(),
            host: cx.cx.host.clone(),
            source: cx.cx.id.clone(),
            profiler: profiler.into(),
        };
        let reader = Reader {
            emitter: Emitter {
                out: cx.out,
                labels,
                batch: Vec::new(),
                batch_max: self.batch_stacks,
                pending: EventFinalizers::default(),
            },
            checkpoint_file: if self.follow {
                Some(
                    cx.cx
                        .scratch_dir()
                        .map_err(|e| BuildError(format!("cannot create the state directory: {e}")))?
                        .join("checkpoints"),
                )
            } else {
                None
            },
            decoder: LineDecoder::new(self.format, self.comm.clone(), self.annotate),
            metrics: cx.cx.metrics.clone(),
            shutdown: cx.cx.shutdown.clone(),
            config: self.clone(),
            converter: None,
        };
        Ok(Box::pin(async move {
            match reader.run().await {
                Ok(()) | Err(Stop::Downstream) => Ok(()),
                Err(Stop::Io(e)) => Err(ComponentError::Io(e)),
            }
        }))
    }
}

enum Stop {
    /// Nothing downstream is running any more.
    Downstream,
    Io(std::io::Error),
}

impl From<OutputClosed> for Stop {
    fn from(_: OutputClosed) -> Self {
        Stop::Downstream
    }
}

/// Sends stacks in batches and perf text in chunks, all tagged with a window.
/// Stacks of a batch come from several pieces and a piece's stacks may span two
/// batches: a batch carries the tokens of every piece that put a stack in it.
struct Emitter {
    out: Output,
    labels: Labels,
    batch: Vec<Stack>,
    batch_max: usize,
    /// Tokens of the pieces whose stacks wait in `batch`.
    pending: EventFinalizers,
}

impl Emitter {
    async fn perf(
        &mut self,
        window: Window,
        data: Bytes,
        finalizers: EventFinalizers,
    ) -> Result<(), Stop> {
        let empty = data.is_empty();
        self.deliver(empty, finalizers, |finalizers, labels| {
            Event::PerfScript(PerfScriptChunk {
                process_labels: Default::default(),
                finalizers,
                window,
                labels,
                data,
            })
        })
        .await
    }

    /// Sends the event `make` builds from `finalizers` and the source's labels; when
    /// there is nothing to deliver (`empty`), resolves the tokens `Delivered` instead.
    async fn deliver(
        &mut self,
        empty: bool,
        finalizers: EventFinalizers,
        make: impl FnOnce(EventFinalizers, Labels) -> Event,
    ) -> Result<(), Stop> {
        if empty {
            finalizers.resolve(EventStatus::Delivered);
            return Ok(());
        }
        let event = make(finalizers, self.labels.clone());
        Ok(self.out.send(event).await?)
    }

    async fn stack(
        &mut self,
        window: Window,
        s: Stack,
        piece: &EventFinalizers,
    ) -> Result<(), Stop> {
        self.batch.push(s);
        if self.batch.len() >= self.batch_max {
            self.pending.merge(piece.clone());
            self.flush(window).await?;
        }
        Ok(())
    }

    /// The piece's stacks are all in `batch` (or sent): its token waits with them.
    fn piece_done(&mut self, piece: EventFinalizers) {
        self.pending.merge(piece);
    }

    async fn flush(&mut self, window: Window) -> Result<(), Stop> {
        let finalizers = self.pending.take();
        // No stack when the pieces held none (comments, bad lines): nothing to deliver.
        let empty = self.batch.is_empty();
        let stacks = std::mem::take(&mut self.batch);
        self.deliver(empty, finalizers, |finalizers, labels| {
            Event::Profile(Profile {
                finalizers,
                window,
                labels,
                stacks: stacks.into(),
            })
        })
        .await
    }

    async fn watermark(&mut self, complete_until_ms: u64) -> Result<(), Stop> {
        let w = Watermark {
            source: self.labels.source.clone(),
            complete_until_ms,
        };
        Ok(self.out.send(Event::Watermark(w)).await?)
    }
}

struct Reader {
    emitter: Emitter,
    /// Follow mode: where read positions are kept.
    checkpoint_file: Option<std::path::PathBuf>,
    decoder: LineDecoder,
    metrics: crate::telemetry::ComponentMetrics,
    shutdown: ShutdownSignal,
    config: FileSourceConfig,
    /// `perf_data`: the reader, whose symbol caches serve every file.
    converter: Option<crate::formats::perf_data::Converter>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Reader {
    fn unit(&self) -> Unit {
        match self.config.format {
            InputFormat::PerfScript | InputFormat::PerfData => Unit::Record,
            _ => Unit::Line,
        }
    }

    fn max_carry(&self) -> usize {
        match self.config.format {
            InputFormat::PerfScript | InputFormat::PerfData => MAX_RECORD_CARRY,
            f => lines::max_carry(f),
        }
    }

    async fn run(mut self) -> Result<(), Stop> {
        let r = if self.config.follow {
            self.follow().await
        } else {
            self.read_all().await
        };
        self.report_problems();
        r?;
        self.emitter.watermark(Watermark::FINISHED).await
    }

    /// Hands a piece of whole units to the right place for its format, with the
    /// delivery tokens of the piece.
    async fn consume(
        &mut self,
        window: Window,
        piece: Bytes,
        finalizers: EventFinalizers,
    ) -> Result<(), Stop> {
        if self.config.format == InputFormat::PerfScript {
            return self.emitter.perf(window, piece, finalizers).await;
        }
        for line in piece.split(|&b| b == b'\n') {
            if let Some(stack) = self.decoder.decode(line) {
                self.emitter.stack(window, stack, &finalizers).await?;
            }
        }
        self.emitter.piece_done(finalizers);
        Ok(())
    }

    /// Reads each file once, one window per file.
    async fn read_all(&mut self) -> Result<(), Stop> {
        let mut last_end = 0u64;
        let paths = self.config.paths.clone();
        for pattern in &paths {
            let files: Vec<String> = if pattern == "-" {
                vec!["-".into()]
            } else {
                let mut v: Vec<String> = glob::glob(pattern)
                    .map(|g| g.flatten().map(|p| p.display().to_string()).collect())
                    .unwrap_or_default();
                v.sort();
                if v.is_empty() {
                    tracing::warn!(pattern = %pattern, "no file matches");
                    self.metrics.errors("no_match", 1);
                }
                v
            };
            for path in files {
                if self.shutdown.is_triggered() {
                    return Ok(());
                }
                // A unique, increasing window per file, so files never share one.
                let start = now_ms().max(last_end);
                let window = Window::new(start, start + 1);
                last_end = window.end_ms;
                self.decoder.start_file();
                let res = if self.config.format == InputFormat::PerfData {
                    self.read_perf_data(&path, window).await
                } else if path == "-" {
                    self.read_stream(tokio::io::stdin(), window).await
                } else {
                    match tokio::fs::File::open(&path).await {
                        Ok(f) => self.read_stream(f, window).await,
                        Err(e) => Err(Stop::Io(e)),
                    }
                };
                match res {
                    Err(Stop::Io(e)) => {
                        tracing::warn!(path = %path, error = %e, "cannot read file");
                        self.metrics.errors("read_failed", 1);
                    }
                    other => other?,
                }
                self.emitter.flush(window).await?;
                self.emitter.watermark(window.end_ms).await?;
            }
        }
        Ok(())
    }

    /// Reads one perf.data file in-process on a blocking thread, sending its text on
    /// as it comes.
    async fn read_perf_data(&mut self, path: &str, window: Window) -> Result<(), Stop> {
        use crate::formats::perf_data::{Converter, Symbolizer};
        let converter = self
            .converter
            .take()
            .unwrap_or_else(|| Converter::new(Symbolizer::default()));
        let (mut rx, reader) =
            crate::formats::perf_data::convert_file(converter, std::path::PathBuf::from(path));
        let mut sent = Ok(());
        while let Some(piece) = rx.recv().await {
            if let Err(e) = self
                .emitter
                .perf(window, piece, EventFinalizers::default())
                .await
            {
                sent = Err(e);
                break;
            }
        }
        drop(rx);
        let (converter, result) = reader
            .await
            .map_err(|e| Stop::Io(std::io::Error::other(e.to_string())))?;
        self.converter = Some(converter);
        sent?;
        match result {
            Ok(stats) => {
                self.metrics
                    .errors("perf_data_bad_records", stats.bad_records);
                if stats.truncated {
                    tracing::warn!(path = %path, "perf.data file ends early (truncated?); the samples before were read");
                    self.metrics.errors("perf_data_truncated", 1);
                }
                Ok(())
            }
            Err(e) => Err(Stop::Io(std::io::Error::other(e.to_string()))),
        }
    }

    async fn read_stream(
        &mut self,
        mut r: impl AsyncRead + Unpin,
        window: Window,
    ) -> Result<(), Stop> {
        let mut chunker = Chunker::new(self.unit(), self.max_carry());
        let mut buf = vec![0u8; self.config.read_size.get() as usize];
        loop {
            if self.shutdown.is_triggered() {
                break;
            }
            let n = r.read(&mut buf).await.map_err(Stop::Io)?;
            if n == 0 {
                break;
            }
            if let Some(piece) = chunker.push(&buf[..n]) {
                self.consume(window, piece, EventFinalizers::default())
                    .await?;
            }
        }
        if let Some(rest) = chunker.finish() {
            self.consume(window, rest, EventFinalizers::default())
                .await?;
        }
        self.metrics.errors("oversized_line", chunker.oversized);
        Ok(())
    }

    /// Polls the paths, reading what each file gained, in wall-clock windows.
    async fn follow(&mut self) -> Result<(), Stop> {
        let window_ms = self.config.window.get().as_millis().max(1) as u64;
        let align = |t: u64| Window::new(t - t % window_ms, t - t % window_ms + window_ms);
        let mut window = align(now_ms());
        let mut tracker =
            Tracker::new(self.unit(), self.max_carry(), self.config.max_tracked_files);
        let file = self
            .checkpoint_file
            .clone()
            .expect("follow mode has a state file");
        let mut checkpoints = Checkpoints::load(file).map_err(Stop::Io)?;
        let mut skip_existing = self.config.read_from == ReadFrom::End;
        let mut buf = vec![0u8; self.config.read_size.get() as usize];
        let mut shutdown = self.shutdown.clone();
        loop {
            self.settle(&mut checkpoints);
            let matches = tracker.scan(&self.config.paths);
            for m in &matches {
                if checkpoints.pending() >= MAX_PENDING_PIECES {
                    // Outcomes lag: read no further until they come back.
                    self.metrics.errors("ack_backlog", 1);
                    break;
                }
                let first_sight = !tracker.is_tracked(m.id);
                let resume = checkpoints.resume_offset(m.id).filter(|_| first_sight);
                let state = tracker.state(m, skip_existing, resume);
                if first_sight && resume.is_some_and(|o| o > m.size) {
                    checkpoints.reset(m.id);
                }
                if state.offset >= m.size {
                    continue;
                }
                loop {
                    match read_from(&m.path, state, &mut buf).await {
                        Ok((pieces, more)) => {
                            for (piece, start, end) in pieces {
                                let (batch, rx) = Batch::new();
                                checkpoints.track(m.id, start, end, rx);
                                self.consume(window, piece, batch.finalizers()).await?;
                            }
                            if !more || self.shutdown.is_triggered() {
                                break;
                            }
                        }
                        Err(e) => {
                            tracing::debug!(path = %m.path.display(), error = %e, "read failed");
                            self.metrics.errors("read_failed", 1);
                            break;
                        }
                    }
                }
            }
            skip_existing = false;
            // A file gone for good: its tail has no place to resume from.
            for tail in tracker.forget_unseen() {
                self.consume(window, tail, EventFinalizers::default())
                    .await?;
            }
            checkpoints.retain(|id| tracker.is_tracked(id));
            let now = now_ms();
            if now >= window.end_ms {
                self.emitter.flush(window).await?;
                self.emitter.watermark(window.end_ms).await?;
                window = align(now);
            }
            tokio::select! {
                _ = shutdown.recv() => break,
                _ = tokio::time::sleep(self.config.poll_interval.get()) => {}
            }
        }
        self.emitter.flush(window).await?;
        self.emitter.watermark(Watermark::FINISHED).await?;
        // Outcomes of what is in flight come back while the pipeline drains; keep
        // recording them until they are all in (or the agent stops this task).
        while checkpoints.pending() > 0 {
            checkpoints.wait_oldest().await;
            self.settle(&mut checkpoints);
        }
        Ok(())
    }

    /// Records the outcomes that came back and persists the read positions.
    fn settle(&mut self, checkpoints: &mut Checkpoints) {
        let polled = checkpoints.poll();
        if polled.errored > 0 {
            self.metrics.errors("undelivered", polled.errored);
            tracing::debug!(
                source = %self.emitter.labels.source,
                pieces = polled.errored,
                "pieces not delivered; their bytes are read again at the next start"
            );
        }
        if let Err(e) = checkpoints.save() {
            self.metrics.errors("checkpoint_failed", 1);
            tracing::warn!(source = %self.emitter.labels.source, error = %e, "cannot save read positions");
        }
    }

    fn report_problems(&self) {
        // The parsers already warned once per kind; this is the total.
        for (kind, n) in self.decoder.problems() {
            self.metrics.errors(kind, n);
            tracing::info!(source = %self.emitter.labels.source, kind, count = n, "skipped malformed input lines");
        }
    }
}

/// Reads a file from the tracked offset towards its current end, returning whole
/// units and whether more remains. At most a few reads are made per call so that the
/// caller sends data on (and feels backpressure) while a large file is read. The file
/// is opened and closed here: no descriptor outlives the read.
/// Each piece comes with the file offsets its whole units start and end at.
async fn read_from(
    path: &std::path::Path,
    state: &mut tracker::Tracked,
    buf: &mut [u8],
) -> std::io::Result<(Vec<(Bytes, u64, u64)>, bool)> {
    let mut f = tokio::fs::File::open(path).await?;
    f.seek(std::io::SeekFrom::Start(state.offset)).await?;
    let mut out = Vec::new();
    for _ in 0..4 {
        let start = state.offset - state.chunker.carried() as u64;
        let n = f.read(buf).await?;
        if n == 0 {
            return Ok((out, false));
        }
        state.offset += n as u64;
        if let Some(p) = state.chunker.push(&buf[..n]) {
            let end = state.offset - state.chunker.carried() as u64;
            out.push((p, start, end));
        }
    }
    Ok((out, true))
}
