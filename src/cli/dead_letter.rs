//! `profpipe dead-letter list | replay`: what a disk buffer gave up on, and putting
//! it back.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use profpipe::buffer::disk::{codec, dead_letter};
use profpipe::buffer::BufferKind;
use profpipe::config::{self, Config};
use profpipe::event::Event;

const AFTER_HELP: &str = "\
A disk buffer moves a record to <state_dir>/buffers/<sink>/dead_letter once its sink
reported it errored `buffer.dead_letter.max_attempts` times (or once more after it is
`max_record_age` old) while it delivered others, so that one record never holds the
buffer. `list` prints those records (it may run beside the agent); `replay` writes
them back into the sink's buffer, to be delivered by the agent's next run.

The agent holds its buffers' locks while it runs: stop it before `replay` (which
waits 5 s for the lock, then says so), replay, then start the agent again.";

/// List or re-inject the records a sink's disk buffer gave up on.
#[derive(Debug, clap::Args)]
#[command(after_help = AFTER_HELP)]
pub struct DeadLetterArgs {
    #[command(subcommand)]
    pub action: Action,
}

#[derive(Debug, clap::Subcommand)]
pub enum Action {
    /// Print the dead-lettered records of every disk-buffered sink (or of SINK).
    List {
        /// The pipeline's config (its sinks and `[agent] state_dir`).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Only this sink.
        sink: Option<String>,
    },
    /// Write SINK's dead-lettered records back into its disk buffer, to be
    /// delivered by the agent's next run. The agent must not be running.
    Replay {
        /// The pipeline's config (its sinks and `[agent] state_dir`).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// The sink whose buffer gets its records back.
        sink: String,
    },
}

pub fn run(args: DeadLetterArgs) -> anyhow::Result<ExitCode> {
    match args.action {
        Action::List { config, sink } => list(&load(&config)?, sink.as_deref()),
        Action::Replay { config, sink } => replay(&load(&config)?, &sink),
    }
}

fn load(path: &Path) -> anyhow::Result<Config> {
    config::load_file(path, &profpipe::registry::registry())
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("loading {}", path.display()))
}

/// The disk-buffered sinks of `config` (only `only`, if given): id, buffer
/// directory, buffer size.
fn disk_buffers(
    config: &Config,
    only: Option<&str>,
) -> anyhow::Result<Vec<(String, PathBuf, u64)>> {
    let all: Vec<(String, PathBuf, u64)> = config
        .sinks
        .iter()
        .filter(|s| s.buffer.kind == BufferKind::Disk)
        .map(|s| {
            let dir = config.agent.state_dir.join("buffers").join(&*s.id);
            (s.id.to_string(), dir, s.buffer.max_bytes.get())
        })
        .collect();
    let Some(name) = only else {
        return Ok(all);
    };
    if let Some(found) = all.iter().find(|(id, _, _)| id == name) {
        return Ok(vec![found.clone()]);
    }
    let names: Vec<&str> = all.iter().map(|(id, _, _)| id.as_str()).collect();
    if config.sinks.iter().any(|s| &*s.id == name) {
        bail!("sink `{name}` has no disk buffer (buffer = {{ type = \"disk\", ... }}), so no dead-letter file; disk-buffered sinks: {}", listing(&names));
    }
    bail!(
        "no sink `{name}` in this config; disk-buffered sinks: {}",
        listing(&names)
    );
}

fn listing(names: &[&str]) -> String {
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

fn list(config: &Config, only: Option<&str>) -> anyhow::Result<ExitCode> {
    for (id, dir, _) in disk_buffers(config, only)? {
        let file = dir.join(dead_letter::FILE);
        let Some(mut reader) = dead_letter::Reader::open(&dir)
            .with_context(|| format!("reading {}", file.display()))?
        else {
            println!(
                "sink `{id}`: no dead-lettered records ({} does not exist)",
                file.display()
            );
            continue;
        };
        println!("sink `{id}`: {}", file.display());
        let mut n = 0u64;
        while let Some(e) = reader
            .next_entry()
            .with_context(|| format!("reading {}", file.display()))?
        {
            n += 1;
            println!(
                "  seq {}  written {}  {} bytes  {}",
                e.seq,
                humantime::format_rfc3339_millis(
                    std::time::UNIX_EPOCH + std::time::Duration::from_millis(e.written_ms)
                ),
                e.payload.len(),
                describe(&e.payload)
            );
        }
        let d = reader.damage;
        println!("  {n} record(s)");
        if d.checksum > 0 || d.unreadable_bytes > 0 {
            println!(
                "  damaged: {} record(s) failing their checksum, {} unreadable byte(s)",
                d.checksum, d.unreadable_bytes
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One line about a record's event.
fn describe(payload: &[u8]) -> String {
    match codec::decode(payload) {
        Ok(Event::Profile(p)) => {
            let samples: u64 = p.stacks.iter().map(|s| s.count).sum();
            let l = &p.labels;
            let mut labels = vec![
                format!("host={}", l.host),
                format!("source={}", &*l.source),
                format!("profiler={}", l.profiler),
            ];
            labels.extend(l.extra.iter().map(|(k, v)| format!("{k}={v}")));
            format!(
                "profile: window {}..{} ms, {} stacks, {samples} samples, labels {{{}}}",
                p.window.start_ms,
                p.window.end_ms,
                p.stacks.len(),
                labels.join(", ")
            )
        }
        Ok(Event::PerfScript(_)) => "perf script text".into(),
        Ok(Event::Diagnostic(_)) => "diagnostic".into(),
        Ok(Event::Watermark(_)) => "watermark".into(),
        Err(e) => format!("does not decode: {e}"),
    }
}

fn replay(config: &Config, sink: &str) -> anyhow::Result<ExitCode> {
    let (id, dir, max_bytes) = disk_buffers(config, Some(sink))?.remove(0);
    if !dir.join(dead_letter::FILE).exists() {
        println!("sink `{id}`: no dead-lettered records");
        return Ok(ExitCode::SUCCESS);
    }
    // Metrics of this command alone: nobody scrapes them.
    let metrics = profpipe::telemetry::Telemetry::new()
        .component(&id, "sink", "dead_letter")
        .disk_buffer();
    let done = match dead_letter::replay(&dir, max_bytes, metrics) {
        Ok(done) => done,
        Err(dead_letter::ReplayError::Open(e @ profpipe::buffer::disk::OpenError::Locked(..))) => {
            bail!("{e}. A running agent holds its disk buffers: stop it, replay, then start it again (it delivers the records then)");
        }
        Err(e) => return Err(e.into()),
    };
    println!(
        "sink `{id}`: {} record(s) written back into its disk buffer ({}); the agent's next run delivers them",
        done.records,
        dir.display()
    );
    if done.left > 0 {
        println!(
            "sink `{id}`: {} record(s) did not fit in the buffer's max_bytes and stay in the dead-letter file; replay again once it has drained",
            done.left
        );
    }
    if done.damage.checksum > 0 || done.damage.unreadable_bytes > 0 {
        println!(
            "sink `{id}`: skipped {} damaged record(s) and {} unreadable byte(s)",
            done.damage.checksum, done.damage.unreadable_bytes
        );
    }
    Ok(ExitCode::SUCCESS)
}
