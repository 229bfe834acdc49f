//! `profpipe fold`: fold `perf script` output into stacks, as a drop-in for
//! `inferno-collapse-perf` and FlameGraph's `stackcollapse-perf.pl`.

use std::fs::File;
use std::io::{self, Read, Write};
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use profpipe::formats::perf_script::{fold_to_writer, FoldOptions, FoldStats};

const AFTER_HELP: &str = "\
Input is the text of `perf script`. Each sample becomes one line of output,
`comm;root_frame;...;leaf_frame COUNT`, sorted, with equal stacks summed. COUNT is the
sum of the samples' periods when perf printed them (as inferno-collapse-perf does),
else the number of samples. Only samples of the first event type seen are counted.

Examples:
  perf record -e cpu-clock -F 99 -a -g -- sleep 10
  perf script --no-inline | profpipe fold > stacks.folded
  profpipe fold --all --pid perf-script.txt | inferno-flamegraph > flame.svg

Malformed lines are skipped; at the end one warning per kind of problem is printed on
stderr. The exit status is 0 unless the input cannot be read or the output written.";

/// Fold `perf script` output into folded stacks (`frame;frame;frame COUNT` lines).
#[derive(Debug, clap::Args)]
#[command(after_help = AFTER_HELP)]
pub struct FoldArgs {
    /// Append the PID to the process name in the root frame (`comm-PID`).
    #[arg(long)]
    pub pid: bool,

    /// Append the PID and TID to the process name in the root frame (`comm-PID/TID`).
    #[arg(long)]
    pub tid: bool,

    /// Mark kernel frames with a `_[k]` suffix.
    #[arg(long)]
    pub kernel: bool,

    /// Mark JIT-compiled frames (from `/tmp/perf-PID.map` or jitdump) with a `_[j]` suffix.
    #[arg(long)]
    pub jit: bool,

    /// Same as `--kernel --jit`.
    #[arg(long)]
    pub all: bool,

    /// Show the address of frames whose symbol is unknown: `[libfoo.so <7f12ab>]`.
    #[arg(long)]
    pub addrs: bool,

    /// Number of threads to fold with [default: the number of CPUs].
    #[arg(short = 'n', long = "nthreads", value_name = "N")]
    pub nthreads: Option<NonZeroUsize>,

    /// `perf script` output to read; `-` or none for standard input.
    #[arg(value_name = "FILE")]
    pub file: Option<PathBuf>,
}

pub fn run(args: FoldArgs) -> anyhow::Result<ExitCode> {
    let opts = FoldOptions {
        include_pid: args.pid,
        include_tid: args.tid,
        annotate_kernel: args.kernel || args.all,
        annotate_jit: args.jit || args.all,
        include_addrs: args.addrs,
        ..FoldOptions::default()
    };
    let threads = args
        .nthreads
        .or_else(|| std::thread::available_parallelism().ok())
        .map_or(1, NonZeroUsize::get);

    let input: Box<dyn Read> = match &args.file {
        Some(path) if path.as_os_str() != "-" => {
            Box::new(File::open(path).with_context(|| format!("cannot open {}", path.display()))?)
        }
        _ => Box::new(io::stdin().lock()),
    };
    let stdout = io::stdout().lock();
    let stats = match fold_to_writer(input, &opts, threads, stdout) {
        Ok(stats) => stats,
        // `profpipe fold ... | head`: the reader has what it wanted.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(ExitCode::SUCCESS),
        Err(e) => return Err(e).context("folding failed"),
    };

    let mut stderr = io::stderr().lock();
    for (kind, count) in stats.problems() {
        let _ = writeln!(
            stderr,
            "profpipe fold: warning: {}",
            FoldStats::describe(kind, count)
        );
    }
    Ok(ExitCode::SUCCESS)
}
