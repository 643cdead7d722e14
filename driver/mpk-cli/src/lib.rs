//! The `mpk` command line: argument parsing (clap) and the I/O edges that
//! feed the pure format crates (`mpk-erofs`, `mpk-verity`).

pub mod cmd_verity;

use clap::{Parser, Subcommand};

/// Verifiable model packing: byte-exact EROFS + dm-verity images.
#[derive(Debug, Parser)]
#[command(name = "mpk", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// dm-verity tools (compatible with `veritysetup`).
    #[command(subcommand)]
    Verity(cmd_verity::VerityCommand),
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Verity(c) => cmd_verity::run(c),
    }
}
