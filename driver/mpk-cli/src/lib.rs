//! The `mpk` command line: clap arguments → the engine's typed options
//! (`mpk-pack`), printing, progress bars, signals and exit codes.

/// Writes to standard output like `print!`, but returns the error (a closed
/// pipe among them) instead of panicking; `main` ends quietly on a closed
/// pipe.
macro_rules! out {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        write!(std::io::stdout().lock(), $($t)*).map_err($crate::stdout_error)?
    }};
}

/// [`out!`] with a newline, like `println!`.
macro_rules! outln {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($t)*).map_err($crate::stdout_error)?
    }};
}

pub mod cmd_attest;
pub mod cmd_crypt;
pub mod cmd_hub;
pub mod cmd_initrd;
pub mod cmd_measure;
pub mod cmd_pack;
pub mod cmd_verify;
pub mod cmd_verity;
pub mod keys;
pub mod progress;
pub mod reference;
pub mod schema_arg;

use clap::{Parser, Subcommand};

/// Verifiable model packing: byte-exact EROFS + dm-verity images.
#[derive(Debug, Parser)]
#[command(
    name = "mpk",
    version,
    about = "Verifiable model packs: pin Hugging Face models, pack them byte-exactly (EROFS + dm-verity), reproduce and verify packs, compute expected launch measurements, verify attestations"
)]
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

/// Standard output was closed (a pipe whose reader went away).
#[derive(Debug, thiserror::Error)]
#[error("standard output was closed")]
pub struct StdoutClosed;

/// The symlink rule of a folder scan: contained unless
/// `--allow-external-symlinks` was given.
pub(crate) fn symlinks(allow_external: bool) -> mpk_pack::scan::Symlinks {
    if allow_external {
        mpk_pack::scan::Symlinks::Any
    } else {
        mpk_pack::scan::Symlinks::Contained
    }
}

/// The error of a write to standard output: [`StdoutClosed`] for a closed
/// pipe, else the I/O error with context.
pub fn stdout_error(e: std::io::Error) -> anyhow::Error {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        anyhow::Error::new(StdoutClosed)
    } else {
        anyhow::Error::new(e).context("cannot write to standard output")
    }
}

/// Prints `e` on standard error (unless standard output was closed) and
/// returns its exit code: 1 for a negative finding, 141 for a closed
/// standard output, 2 for anything else.
pub fn report_error(e: &anyhow::Error) -> u8 {
    if e.chain().any(|c| c.is::<StdoutClosed>()) {
        return 141;
    }
    eprintln!("error: {}", chain_text(e));
    let hub_finding = e.chain().any(|c| {
        c.downcast_ref::<mpk_hub::Error>()
            .is_some_and(mpk_hub::Error::is_finding)
    });
    if mpk_pack::Finding::in_chain(e) || hub_finding {
        1
    } else {
        2
    }
}

/// `e` and its causes, `: `-separated, leaving out a cause whose text the
/// message already holds (many errors, ureq's and std's among them, print
/// their source themselves, so `{:#}` would say it twice).
pub fn chain_text(e: &anyhow::Error) -> String {
    let mut msg = String::new();
    for cause in e.chain() {
        let t = cause.to_string();
        if msg.contains(&t) {
            continue;
        }
        if !msg.is_empty() {
            msg.push_str(": ");
        }
        msg.push_str(&t);
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causes_are_not_repeated() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let e = anyhow::Error::new(io)
            .context("x.lock: no such file")
            .context("cannot fetch");
        assert_eq!(chain_text(&e), "cannot fetch: x.lock: no such file");
        let e = anyhow::anyhow!("inner").context("outer");
        assert_eq!(chain_text(&e), "outer: inner");
    }
}
