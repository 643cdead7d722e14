//! `mpk verity …` (placeholder, being written).
use clap::Subcommand;
/// dm-verity subcommands.
#[derive(Debug, Subcommand)]
pub enum VerityCommand {}
/// Runs a verity subcommand.
pub fn run(c: VerityCommand) -> anyhow::Result<()> {
    match c {}
}
