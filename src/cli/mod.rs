//! Command-line interface: `run`, `validate`, `fold`.

pub mod dead_letter;
pub mod fold;
pub mod run;
pub mod sampler;
pub mod validate;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// profpipe: a continuous-profiling agent. It runs profilers (perf, py-spy, rbspy,
/// PyPerf), folds their output into stacks and ships them through pipelines declared
/// in TOML (sources -> transforms -> sinks), with memory capped by configuration.
#[derive(Debug, Parser)]
#[command(name = "profpipe", version, about, long_about = None)]
pub struct Cli {
    /// Log filter, e.g. "info", "debug", "profpipe=debug" (RUST_LOG also works).
    #[arg(long, global = true, default_value = "info", value_name = "FILTER")]
    pub log: String,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a pipeline until SIGINT/SIGTERM, or until its finite sources are exhausted;
    /// then drain what is in flight into the sinks and exit.
    Run(run::RunArgs),
    /// Check config files without running them; prints every problem with its
    /// file:line:column.
    Validate(validate::ValidateArgs),
    /// Fold `perf script` output into stacks: a drop-in for inferno-collapse-perf and
    /// stackcollapse-perf.pl.
    Fold(fold::FoldArgs),
    /// List or re-inject the records a sink's disk buffer gave up on (its
    /// dead-letter file).
    #[command(name = "dead-letter")]
    DeadLetter(dead_letter::DeadLetterArgs),
    /// The runtime sampler child the py_spy and rbspy sources start (internal).
    #[command(hide = true)]
    Sampler(sampler::SamplerArgs),
}

pub fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    init_logging(&cli.log);
    match cli.command {
        Command::Run(args) => run::run(args),
        Command::Validate(args) => validate::run(args),
        Command::Fold(args) => fold::run(args),
        Command::DeadLetter(args) => dead_letter::run(args),
        Command::Sampler(args) => sampler::run(args),
    }
}

fn init_logging(default: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, never into log files.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}
