//! `profpipe sampler python|ruby` (hidden): the long-lived runtime sampler child the
//! `py_spy` and `rbspy` sources start; see `profpipe::sources::runtime_sampler`.
//! It reads control lines on stdin and writes batches on stdout until stdin closes.

use std::process::ExitCode;

use clap::{Args, ValueEnum};
use profpipe::sources::runtime_sampler::{child, Kind, Options};

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Runtime {
    Python,
    Ruby,
}

#[derive(Debug, Args)]
pub struct SamplerArgs {
    /// Which runtime's processes this child samples.
    #[arg(value_enum)]
    runtime: Runtime,
    /// Samples per second per process.
    #[arg(long, default_value_t = 11)]
    rate: u32,
    /// Python: keep samples of idle threads.
    #[arg(long)]
    idle: bool,
    /// Python: only the thread holding the GIL.
    #[arg(long)]
    gil: bool,
    /// Python: full paths instead of short file names.
    #[arg(long)]
    full_filenames: bool,
    /// Ruby: only samples taken while the process is on a CPU.
    #[arg(long)]
    on_cpu: bool,
    /// Most processes sampled at once.
    #[arg(long, default_value_t = 256)]
    max_targets: usize,
    /// Distinct stacks kept per process between two flushes.
    #[arg(long, default_value_t = profpipe::sources::runtime_sampler::stacks::MAX_STACKS_PER_TARGET)]
    max_stacks: usize,
}

pub fn run(args: SamplerArgs) -> anyhow::Result<ExitCode> {
    let kind = match args.runtime {
        Runtime::Python => Kind::Python,
        Runtime::Ruby => Kind::Ruby,
    };
    let opts = Options {
        rate: args.rate,
        idle: args.idle,
        gil: args.gil,
        full_filenames: args.full_filenames,
        on_cpu: args.on_cpu,
        max_targets: args.max_targets,
        max_stacks: args.max_stacks,
    };
    child::run(kind, opts)?;
    Ok(ExitCode::SUCCESS)
}
