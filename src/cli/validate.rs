//! `profpipe validate`: check configs without running them.

use std::path::PathBuf;
use std::process::ExitCode;

use profpipe::config;

#[derive(Debug, clap::Args)]
pub struct ValidateArgs {
    /// Config files to check.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
}

pub fn run(args: ValidateArgs) -> anyhow::Result<ExitCode> {
    let registry = profpipe::registry::registry();
    let mut bad = 0;
    for f in &args.files {
        match config::load_file(f, &registry) {
            Ok(c) => println!(
                "{}: ok ({} sources, {} transforms, {} sinks)",
                f.display(),
                c.sources.len(),
                c.transforms.len(),
                c.sinks.len()
            ),
            Err(errors) => {
                bad += 1;
                eprintln!("{errors}");
                eprintln!("{}: {} error(s)", f.display(), errors.0.len());
            }
        }
    }
    Ok(if bad == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}
