//! `profpipe fold`: fold `perf script` output into stacks, as a drop-in for
//! `inferno-collapse-perf` and FlameGraph's `stackcollapse-perf.pl`; or fold a
//! perf.data file directly (recognised by its magic), symbolized in-process.

use std::fs::File;
use std::io::{self, Cursor, Read, Seek, Write};
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use profpipe::formats::perf_data::{
    self, ConvertStats, Converter, PerfDataError, Symbolizer, TextReader,
};
use profpipe::formats::perf_script::{fold_to_writer, FoldOptions, FoldStats};

const AFTER_HELP: &str = "\
Input is the text of `perf script`, or a perf.data file (either layout: `perf record
-o FILE` or `-o -`), which is read and symbolized in-process with the same result as
`perf script -F +pid --no-inline -i FILE | profpipe fold`. Each sample becomes one line of output,
`comm;root_frame;...;leaf_frame COUNT`, sorted, with equal stacks summed. COUNT is the
sum of the samples' periods when perf printed them (as inferno-collapse-perf does),
else the number of samples. Only samples of the first event type seen are counted.

Examples:
  perf record -e cpu-clock -F 99 -a -g -- sleep 10
  perf script --no-inline | profpipe fold > stacks.folded
  profpipe fold --all --pid perf-script.txt | inferno-flamegraph > flame.svg
  profpipe fold --kernel perf.data > stacks.folded

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

    /// `perf script` output or a perf.data file to read; `-` or none for standard input.
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

    let stdout = io::stdout().lock();
    let mut head = [0u8; 16];
    let (result, converted) = match &args.file {
        Some(path) if path.as_os_str() != "-" => {
            let mut f =
                File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
            let n = read_head(&mut f, &mut head).context("cannot read the input")?;
            if perf_data::detect(&head[..n]).is_some() {
                f.seek(io::SeekFrom::Start(0))
                    .context("cannot read the input")?;
                fold_perf_data(f, &opts, threads, stdout)
            } else {
                let text = Cursor::new(head[..n].to_vec()).chain(f);
                (fold_to_writer(text, &opts, threads, stdout), None)
            }
        }
        _ => {
            let mut stdin = io::stdin().lock();
            let n = read_head(&mut stdin, &mut head).context("cannot read the input")?;
            if perf_data::detect(&head[..n]).is_some() {
                // The file layout needs seeking: standard input is read whole.
                let mut all = head[..n].to_vec();
                stdin
                    .read_to_end(&mut all)
                    .context("cannot read the input")?;
                fold_perf_data(Cursor::new(all), &opts, threads, stdout)
            } else {
                let text = Cursor::new(head[..n].to_vec()).chain(stdin);
                (fold_to_writer(text, &opts, threads, stdout), None)
            }
        }
    };
    let stats = match result {
        Ok(stats) => stats,
        // `profpipe fold ... | head`: the reader has what it wanted.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(ExitCode::SUCCESS),
        Err(e) => return Err(e).context("folding failed"),
    };
    if let Some(converted) = converted {
        let c = converted.context("cannot read the perf.data file")?;
        if c.truncated {
            eprintln!("profpipe fold: warning: the perf.data file ends early (truncated?); the samples before were folded");
        }
        if c.bad_records > 0 {
            eprintln!(
                "profpipe fold: warning: skipped {} perf.data records that could not be decoded",
                c.bad_records
            );
        }
    }

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

type Converted = Option<Result<ConvertStats, PerfDataError>>;

/// Folds a perf.data input, symbolized in-process, as its `perf script` text.
fn fold_perf_data<R: Read + Seek + Send + 'static, W: Write>(
    input: R,
    opts: &FoldOptions,
    threads: usize,
    out: W,
) -> (io::Result<FoldStats>, Converted) {
    let mut reader = TextReader::new(Converter::new(Symbolizer::default()), input);
    let r = fold_to_writer(&mut reader, opts, threads, out);
    let (_, converted) = reader.finish();
    (r, Some(converted))
}

/// Reads up to `head.len()` bytes (fewer only at the end of input).
fn read_head(input: &mut impl Read, head: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < head.len() {
        match input.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}
