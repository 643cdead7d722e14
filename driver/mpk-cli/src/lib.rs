//! The `mpk` command line: argument parsing (clap) and the I/O edges that
//! feed the pure format crates (`mpk-erofs`, `mpk-verity`).

pub mod cmd_attest;
pub mod cmd_crypt;
pub mod cmd_hub;
pub mod cmd_initrd;
pub mod cmd_measure;
pub mod cmd_pack;
pub mod cmd_verify;
pub mod cmd_verity;
pub mod hashing;
pub mod output;
pub mod pack;
pub mod progress;
pub mod reference;
pub mod scan;
pub mod tools;

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
    /// Pack a model folder into OUT.mpk (EROFS + dm-verity) and OUT.info.
    Pack(cmd_pack::PackArgs),
    /// Check every block of an .mpk against a reference and identity.
    Verify(cmd_verify::VerifyArgs),
    /// dm-verity tools (compatible with `veritysetup`).
    #[command(subcommand)]
    Verity(cmd_verity::VerityCommand),
    /// Expected launch measurements (SEV-SNP, TDX).
    #[command(subcommand)]
    Measure(cmd_measure::MeasureCommand),
    /// Hugging Face Hub: lock, fetch, build, reproduce, identity.
    #[command(flatten)]
    Hub(cmd_hub::HubCommand),
    /// Verify attestation evidence against a deployment document.
    #[command(subcommand)]
    Attest(cmd_attest::AttestCommand),
    /// Make a 64-byte master key for encrypted packs (mode 0600).
    Keygen(cmd_crypt::KeygenArgs),
    /// Encrypt an .mpk into OUT.empk (GPT + dm-crypt) and OUT.info.
    Encrypt(cmd_crypt::EncryptArgs),
    /// Write a base image's reproducible initrd (/init, modules, files).
    Initrd(cmd_initrd::InitrdArgs),
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Pack(a) => cmd_pack::run(a),
        Command::Verify(a) => cmd_verify::run(a),
        Command::Verity(c) => cmd_verity::run(c),
        Command::Measure(c) => cmd_measure::run(c),
        Command::Hub(c) => cmd_hub::run(c),
        Command::Attest(c) => cmd_attest::run(c),
        Command::Keygen(a) => cmd_crypt::run_keygen(a),
        Command::Encrypt(a) => cmd_crypt::run_encrypt(a),
        Command::Initrd(a) => cmd_initrd::run(a),
    }
}
