//! `profpipe fold` (placeholder).

use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct FoldArgs {}

pub fn run(_args: FoldArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not implemented yet")
}
