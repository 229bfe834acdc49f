//! `type = "file"`: one file per complete window and format in a local directory,
//! as gProfiler's `--output-dir` does.
//!
//! ```toml
//! [sinks.archive]
//! type = "file"
//! inputs = ["fold"]
//! path = "/var/lib/profpipe/profiles"
//! formats = ["collapsed", "flamegraph", "pprof"]
//! sample_rate = 11          # Hz of the profilers feeding it: pprof's and otlp's period
//! retain_files = 100
//! retain_bytes = "1GiB"
//! ```
//!
//! For each window: `profile_<end>.col` / `.folded` / `.svg` / `.pb.gz` / `.otlp.pb`, `<end>` being the
//! window's end in ISO 8601 basic format (`20231203T163100.000Z`, no `:`); windows
//! of another host than the agent's own (pushed to an `http_server` source) are
//! `profile_<end>_<host>.<ext>`, so two hosts' windows with the same end never
//! collide (the host with every byte outside `[A-Za-z0-9._-]` made `_`). Each file
//! is written to a hidden temporary file, synced and renamed into place; then
//! `last_profile.<ext>` is atomically re-pointed at it, then the oldest `profile_*`
//! files beyond `retain_files` (per format) or `retain_bytes` (all formats together)
//! are deleted, never the newest of a format. Writing runs on the blocking pool.
//! Failures are counted (`write_failed`, `retention_failed`), logged once per kind,
//! and the sink goes on with the next window.

use std::collections::HashSet;
use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

use super::encoding::{profile_id, Encoding};
use super::local::{Local, LocalSink, LocalWriter};
use super::pending::CompleteWindow;
use crate::component::{parse_table, BuildError, ComponentContext, FieldError};
use crate::event::EventStatus;
use crate::formats::flamegraph::{self, FlameGraphOptions};
use crate::formats::profile_json::PartInfo;
use crate::formats::timestamp::{file_stamp, iso8601};
use crate::formats::{collapsed, folded, otlp, pprof};
use crate::telemetry::ComponentMetrics;
use crate::units::ByteSize;

/// A file format the sink writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileFormat {
    /// Plain folded stacks, `comm;frames count` (`.folded`).
    Folded,
    /// gProfiler's collapsed file with its `# {json}` header (`.col`).
    Collapsed,
    /// An interactive SVG flame graph (`.svg`).
    Flamegraph,
    /// gzip-compressed `profile.proto` (`.pb.gz`), as `go tool pprof` reads it.
    Pprof,
    /// OpenTelemetry profiles: one `ExportProfilesServiceRequest` (`.otlp.pb`), the
    /// bytes an OTLP/HTTP exporter would POST.
    Otlp,
}

impl FileFormat {
    pub fn extension(self) -> &'static str {
        match self {
            FileFormat::Folded => "folded",
            FileFormat::Collapsed => "col",
            FileFormat::Flamegraph => "svg",
            FileFormat::Pprof => Encoding::Pprof.extension(),
            FileFormat::Otlp => Encoding::OtlpProto.extension(),
        }
    }

    fn name(self) -> &'static str {
        match self {
            FileFormat::Folded => "folded",
            FileFormat::Collapsed => "collapsed",
            FileFormat::Flamegraph => "flamegraph",
            FileFormat::Pprof => "pprof",
            FileFormat::Otlp => "otlp",
        }
    }
}

/// `[sinks.ID] type = "file"`: its own keys and the pending-window keys.
pub type FileSinkConfig = Local<FileSink>;

/// The file sink's own keys.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSink {
    /// Directory to write into. Created (mode 0700, parents too) if missing.
    pub path: PathBuf,
    /// Formats written for each window: "folded", "collapsed", "flamegraph", "pprof",
    /// "otlp".
    #[serde(default = "default_formats")]
    pub formats: Vec<FileFormat>,
    /// Sampling frequency (Hz) of the profilers feeding this sink; pprof's `period`
    /// is 1e9 / it nanoseconds. Stacks carry counts, not their rate, so the sink
    /// is told. 0 means unknown (period 0). Default: the default pipeline's 11 Hz.
    #[serde(default = "default_sample_rate")]
    pub sample_rate: u32,
    /// Title of the flame graphs (default "<host> CPU profile").
    #[serde(default)]
    pub title: Option<String>,
    /// Most `profile_*` files kept per format; the oldest go first.
    #[serde(default = "default_retain_files")]
    pub retain_files: usize,
    /// Most bytes of `profile_*` files kept, all formats of this sink together.
    /// The newest file of each format is kept even when it alone is larger.
    #[serde(default = "default_retain_bytes")]
    pub retain_bytes: ByteSize,
}

fn default_formats() -> Vec<FileFormat> {
    vec![FileFormat::Collapsed, FileFormat::Flamegraph]
}
/// Highest `sample_rate`: the perf source's highest `frequency`.
const MAX_SAMPLE_RATE: u32 = 10_000;

fn default_sample_rate() -> u32 {
    super::encoding::DEFAULT_SAMPLE_RATE
}
fn default_retain_files() -> usize {
    100
}
fn default_retain_bytes() -> ByteSize {
    ByteSize(1 << 30)
}

impl LocalSink for FileSink {
    type Writer = FileWriter;

    fn parse(table: toml::Table) -> Result<Self, Vec<FieldError>> {
        parse_table(toml::Value::Table(table))
    }

    fn validate(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        if self.path.as_os_str().is_empty() {
            errors.push(FieldError::new(&["path"], "must name a directory"));
        }
        if self.formats.is_empty() {
            errors.push(FieldError::new(
                &["formats"],
                "must list at least one of \"folded\", \"collapsed\", \"flamegraph\", \"pprof\", \"otlp\"",
            ));
        }
        let mut seen = HashSet::new();
        for (i, f) in self.formats.iter().enumerate() {
            if !seen.insert(*f) {
                errors.push(FieldError::new(
                    &["formats", &i.to_string()],
                    format!("\"{}\" is listed twice", f.name()),
                ));
            }
        }
        if self.sample_rate > MAX_SAMPLE_RATE {
            errors.push(FieldError::new(
                &["sample_rate"],
                format!(
                    "must be at most {MAX_SAMPLE_RATE} (Hz, perf's highest frequency); 0 = unknown"
                ),
            ));
        }
        if self.retain_files == 0 {
            errors.push(FieldError::new(
                &["retain_files"],
                "must be at least 1 (the newest file is always kept)",
            ));
        }
        errors
    }

    fn writer(&self, cx: &ComponentContext) -> Result<FileWriter, BuildError> {
        create_dir(&self.path).map_err(|e| {
            BuildError(format!(
                "cannot create output directory {}: {e}",
                self.path.display()
            ))
        })?;
        remove_stale_temp_files(&self.path);
        let title = self
            .title
            .clone()
            .unwrap_or_else(|| format!("{} CPU profile", cx.host));
        let settings = Arc::new(Settings {
            dir: self.path.clone(),
            formats: self.formats.clone(),
            sample_rate: self.sample_rate,
            title,
            own_host: cx.host.clone(),
            retain_files: self.retain_files.max(1),
            retain_bytes: self.retain_bytes.get(),
        });
        Ok(FileWriter {
            settings,
            metrics: cx.metrics.clone(),
            newest_end_ms: None,
            warned: HashSet::new(),
        })
    }
}

fn create_dir(path: &Path) -> io::Result<()> {
    match fs::metadata(path) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(io::Error::other("exists and is not a directory")),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            DirBuilder::new().recursive(true).mode(0o700).create(path)
        }
        Err(e) => Err(e),
    }
}

/// Temporary files a crash may have left: `.profile_*.tmp`, `.last_profile.*.tmp`.
fn remove_stale_temp_files(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if (name.starts_with(".profile_") || name.starts_with(".last_profile."))
            && name.ends_with(".tmp")
        {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// What the blocking writer needs; shared, never changed.
#[derive(Debug)]
struct Settings {
    dir: PathBuf,
    formats: Vec<FileFormat>,
    sample_rate: u32,
    title: String,
    /// The agent's host: its windows' names carry no host.
    own_host: Arc<str>,
    retain_files: usize,
    retain_bytes: u64,
}

/// A failure while writing one window, for counting and logging.
#[derive(Debug)]
struct Failure {
    /// `write_failed` or `retention_failed`.
    reason: &'static str,
    /// What was being done ("write collapsed", "link svg", "delete"), for the log.
    stage: String,
    error: io::Error,
}

/// What the blocking part reports back.
#[derive(Debug, Default)]
struct Outcome {
    written: usize,
    failures: Vec<Failure>,
}

/// The file sink's writer.
pub struct FileWriter {
    settings: Arc<Settings>,
    metrics: ComponentMetrics,
    /// End of the newest window written: `last_profile.*` never moves back.
    newest_end_ms: Option<u64>,
    /// Kinds of failure already logged.
    warned: HashSet<(String, io::ErrorKind)>,
}

impl LocalWriter for FileWriter {
    /// Delivered once any format of the window is written (a failed format is
    /// counted and logged); Errored when none could be.
    async fn write(&mut self, window: CompleteWindow) -> EventStatus {
        let end = window.window.end_ms;
        let relink = self.newest_end_ms.is_none_or(|n| end >= n);
        if relink {
            self.newest_end_ms = Some(end);
        }
        let (events, bytes) = (window.events, window.bytes);
        let settings = self.settings.clone();
        let outcome =
            match tokio::task::spawn_blocking(move || write_window(&settings, &window, relink))
                .await
            {
                Ok(o) => o,
                Err(e) => Outcome {
                    written: 0,
                    failures: vec![Failure {
                        reason: "write_failed",
                        stage: "write window".into(),
                        error: io::Error::other(format!("writer task failed: {e}")),
                    }],
                },
            };
        let status = if outcome.written > 0 {
            self.metrics.sent_many(events, bytes);
            EventStatus::Delivered
        } else {
            EventStatus::Errored
        };
        for f in outcome.failures {
            self.metrics.errors(f.reason, 1);
            if status == EventStatus::Errored {
                self.metrics
                    .note_delivery_error(&format!("{} failed: {}", f.stage, f.error));
            }
            if self.warned.insert((f.stage.clone(), f.error.kind())) {
                tracing::warn!(
                    component = self.metrics.id(),
                    dir = %self.settings.dir.display(),
                    reason = f.reason,
                    "{} failed: {} (further failures of this kind are only counted)",
                    f.stage,
                    f.error
                );
            }
        }
        status
    }
}

/// Writes every format of one window, relinks and applies retention. Blocking.
fn write_window(s: &Settings, w: &CompleteWindow, relink: bool) -> Outcome {
    let mut out = Outcome::default();
    let stamp = file_name_stem(w, &s.own_host);
    for &format in &s.formats {
        let ext = format.extension();
        let name = match unused_name(&s.dir, &stamp, ext) {
            Ok(n) => n,
            Err(error) => {
                out.failures.push(Failure {
                    reason: "write_failed",
                    stage: format!("write {}", format.name()),
                    error,
                });
                continue;
            }
        };
        let result = write_atomic(&s.dir, &name, |file| render(s, w, format, file));
        if let Err(error) = result {
            out.failures.push(Failure {
                reason: "write_failed",
                stage: format!("write {}", format.name()),
                error,
            });
            continue;
        }
        out.written += 1;
        if relink {
            if let Err(error) = link_last(&s.dir, &name, ext) {
                out.failures.push(Failure {
                    reason: "write_failed",
                    stage: format!("link last_profile.{ext}"),
                    error,
                });
            }
        }
    }
    if let Err(error) = apply_retention(s) {
        out.failures.push(Failure {
            reason: "retention_failed",
            stage: "retention".into(),
            error,
        });
    }
    out
}

fn render(
    s: &Settings,
    w: &CompleteWindow,
    format: FileFormat,
    out: &mut dyn Write,
) -> io::Result<()> {
    match format {
        FileFormat::Folded => folded::write(out, &w.stacks),
        FileFormat::Collapsed => {
            let info = collapsed::HeaderInfo {
                hostname: &w.host,
                window: w.window,
            };
            collapsed::write(out, &info, &w.labels, &w.stacks)
        }
        FileFormat::Flamegraph => {
            let opts = FlameGraphOptions {
                title: s.title.clone(),
                subtitle: Some(format!(
                    "{} to {}",
                    iso8601(w.window.start_ms),
                    iso8601(w.window.end_ms)
                )),
                ..FlameGraphOptions::default()
            };
            flamegraph::write_svg(out, &w.stacks, &opts)
        }
        FileFormat::Pprof => out.write_all(&pprof::encode(&pprof::PprofInput {
            window: w.window,
            stacks: &w.stacks,
            labels: &w.labels,
            host: &w.host,
            sample_rate_hz: s.sample_rate,
            part: None,
        })),
        FileFormat::Otlp => {
            // One part, with the window's stable id, so the profiles carry ids a
            // consumer can recognise a re-written window by.
            let profile_id = profile_id(&w.host, w.window, &w.labels);
            let part = PartInfo {
                profile_id: &profile_id,
                index: 0,
                count: 1,
            };
            out.write_all(&otlp::encode_request(&otlp::OtlpInput {
                window: w.window,
                stacks: &w.stacks,
                labels: &w.labels,
                host: &w.host,
                sample_rate_hz: s.sample_rate,
                part: Some(&part),
            }))
        }
    }
}

/// The window's end stamp, then `_<host>` when the host is not the agent's own.
/// The stamp comes first and is fixed-width, so names still sort by time.
fn file_name_stem(w: &CompleteWindow, own_host: &str) -> String {
    let stamp = file_stamp(w.window.end_ms);
    if *w.host == *own_host || w.host.is_empty() {
        return stamp;
    }
    let host: String = w
        .host
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{stamp}_{host}")
}

/// `profile_<stamp>.<ext>`, or `profile_<stamp>~N.<ext>` when a window with the same
/// end was already written (a late profile): never overwrite a written profile.
fn unused_name(dir: &Path, stamp: &str, ext: &str) -> io::Result<String> {
    let base = format!("profile_{stamp}.{ext}");
    if !exists(&dir.join(&base))? {
        return Ok(base);
    }
    for n in 1..1000 {
        let name = format!("profile_{stamp}~{n}.{ext}");
        if !exists(&dir.join(&name))? {
            return Ok(name);
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!("too many files for window {stamp}"),
    ))
}

fn exists(path: &Path) -> io::Result<bool> {
    match fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Writes `dir/name` through a hidden temporary file: written, synced, renamed.
fn write_atomic(
    dir: &Path,
    name: &str,
    fill: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> io::Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    let result = (|| {
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        let mut w = BufWriter::with_capacity(64 * 1024, file);
        fill(&mut w)?;
        let file = w.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        fs::rename(&tmp, dir.join(name))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Points `last_profile.<ext>` at `name` (relative), replacing it atomically.
fn link_last(dir: &Path, name: &str, ext: &str) -> io::Result<()> {
    let link = format!("last_profile.{ext}");
    let tmp = dir.join(format!(".{link}.tmp"));
    let _ = fs::remove_file(&tmp);
    std::os::unix::fs::symlink(name, &tmp)?;
    let result = fs::rename(&tmp, dir.join(&link));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// One `profile_*` file of this sink.
struct Kept {
    format: usize,
    name: String,
    bytes: u64,
}

/// Deletes the oldest `profile_*` files of this sink's formats beyond the limits,
/// never the newest of a format. Returns the first error (after trying them all).
fn apply_retention(s: &Settings) -> io::Result<()> {
    let mut files: Vec<Kept> = Vec::new();
    for entry in fs::read_dir(&s.dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !name.starts_with("profile_") {
            continue;
        }
        let Some(format) = s.formats.iter().position(|f| {
            name.strip_suffix(f.extension())
                .is_some_and(|n| n.ends_with('.'))
        }) else {
            continue;
        };
        let meta = entry.metadata()?; // does not follow symlinks
        if !meta.is_file() {
            continue;
        }
        files.push(Kept {
            format,
            name: name.to_string(),
            bytes: meta.len(),
        });
    }
    // Names start with a fixed-width UTC stamp: name order is time order.
    files.sort_by(|a, b| a.name.cmp(&b.name));
    let mut newest: Vec<Option<usize>> = vec![None; s.formats.len()];
    let mut count = vec![0usize; s.formats.len()];
    for (i, f) in files.iter().enumerate() {
        newest[f.format] = Some(i);
        count[f.format] += 1;
    }
    let mut total: u64 = files.iter().map(|f| f.bytes).sum();
    let mut first_error = None;
    // Oldest first: by count within a format, then by bytes across formats.
    for (i, f) in files.iter().enumerate() {
        if newest[f.format] == Some(i) {
            continue;
        }
        if count[f.format] > s.retain_files || total > s.retain_bytes {
            match fs::remove_file(s.dir.join(&f.name)) {
                Ok(()) => total -= f.bytes,
                Err(e) if e.kind() == io::ErrorKind::NotFound => total -= f.bytes,
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
            count[f.format] -= 1;
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests;
