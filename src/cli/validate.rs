//! `profpipe validate`: check configs without running them; with `--healthcheck`,
//! also ask each sink whether its destination is reachable.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use profpipe::config;
use profpipe::units::DurationStr;

#[derive(Debug, clap::Args)]
pub struct ValidateArgs {
    /// Config files to check.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,

    /// After a config validates, run each sink's healthcheck (is its destination
    /// reachable, does it accept our credentials). Exits 1 if one fails.
    #[arg(long)]
    pub healthcheck: bool,

    /// How long each healthcheck may take.
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "10s",
        requires = "healthcheck"
    )]
    pub healthcheck_timeout: DurationStr,
}

pub fn run(args: ValidateArgs) -> anyhow::Result<ExitCode> {
    let registry = profpipe::registry::registry();
    let mut bad = 0;
    let mut unhealthy = 0;
    // Only built when a healthcheck runs: plain validation stays synchronous.
    let mut runtime = None;
    for f in &args.files {
        // A control-mode file: its [control] table and the pipeline a command
        // would get (every profiler enabled) are checked.
        if let Ok(text) = std::fs::read_to_string(f) {
            if profpipe::control::is_control_mode(&text) {
                match profpipe::control::ControlFile::parse(f, &text) {
                    Ok(_) => println!("{}: ok (control mode)", f.display()),
                    Err(e) => {
                        eprintln!("{e}");
                        bad += 1;
                    }
                }
                continue;
            }
        }
        match config::load_file(f, &registry) {
            Ok(c) => {
                println!(
                    "{}: ok ({} sources, {} transforms, {} sinks)",
                    f.display(),
                    c.sources.len(),
                    c.transforms.len(),
                    c.sinks.len()
                );
                if let Some(note) = memory_note(&c) {
                    println!("{}: NOTE: {note}", f.display());
                }
                if args.healthcheck {
                    let rt = match &mut runtime {
                        Some(rt) => rt,
                        None => runtime.insert(
                            tokio::runtime::Builder::new_current_thread()
                                .enable_all()
                                .build()
                                .context("starting the async runtime")?,
                        ),
                    };
                    let failures = rt.block_on(profpipe::topology::run_healthchecks(
                        &c,
                        args.healthcheck_timeout.get(),
                    ));
                    for (id, message) in &failures {
                        eprintln!(
                            "{}: sink `{id}`: healthcheck failed: {message}",
                            f.display()
                        );
                    }
                    unhealthy += failures.len();
                }
            }
            Err(errors) => {
                bad += 1;
                eprintln!("{errors}");
                eprintln!("{}: {} error(s)", f.display(), errors.0.len());
            }
        }
    }
    Ok(if bad > 0 {
        ExitCode::from(2)
    } else if unhealthy > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// A note when the configured bounds (every edge's `buffer.max_bytes` plus every
/// window store's bound) sum past `[agent] memory_limit`. Not an error: everything
/// shares the one limit, so stores overflow or flush early before it is passed, only
/// sooner than each bound alone says; but edges then compete for the same room, and
/// an upstream edge holding all of it stalls a stage that must send downstream.
fn memory_note(c: &config::Config) -> Option<String> {
    let edges: u64 = c
        .transforms
        .iter()
        .map(|t| t.buffer.max_bytes.get())
        .sum::<u64>()
        + c.sinks
            .iter()
            .map(|s| s.buffer.max_bytes.get())
            .sum::<u64>();
    let stores: u64 = c
        .transforms
        .iter()
        .map(|t| t.config.memory_bound())
        .sum::<u64>()
        + c.sinks.iter().map(|s| s.config.memory_bound()).sum::<u64>();
    let limit = c.agent.memory_limit;
    let b = profpipe::units::ByteSize;
    (edges + stores > limit.get()).then(|| {
        format!(
            "edge buffers ({}) and window stores ({}) are bounded at {} together, past \
             [agent] memory_limit ({limit}); they share that limit (half each), so \
             buffers are scaled down to fit their half and window stores overflow or \
             flush early before their own bounds: raise memory_limit or lower the bounds",
            b(edges),
            b(stores),
            b(edges + stores),
        )
    })
}
