//! `mpk measure …` (placeholder, being written).
use clap::Subcommand;
/// Measurement subcommands.
#[derive(Debug, Subcommand)]
pub enum MeasureCommand {}
/// Runs a measurement subcommand.
pub fn run(c: MeasureCommand) -> anyhow::Result<()> {
    match c {}
}
