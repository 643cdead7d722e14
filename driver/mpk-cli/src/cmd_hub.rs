//! Hugging Face Hub commands (placeholder, being written).
use clap::Subcommand;
/// Hub subcommands, flattened into the top level.
#[derive(Debug, Subcommand)]
pub enum HubCommand {}
/// Runs a Hub subcommand.
pub fn run(c: HubCommand) -> anyhow::Result<()> {
    match c {}
}
