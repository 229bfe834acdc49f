//! Command-line interface: `run`, `validate`, `fold`.

pub mod fold;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// profpipe: a continuous-profiling agent. It runs profilers (perf, py-spy, rbspy,
/// PyPerf), folds their output into stacks and ships them through pipelines declared
/// in TOML, with memory capped by configuration.
#[derive(Debug, Parser)]
#[command(name = "profpipe", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Fold `perf script` output into stacks, like inferno-collapse-perf.
    Fold(fold::FoldArgs),
}

pub fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Fold(args) => fold::run(args),
    }
}
