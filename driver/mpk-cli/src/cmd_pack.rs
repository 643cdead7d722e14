//! `mpk pack`: arguments → [`mpk_pack::pack::PackOptions`], and the
//! reference (or the JSON report) printed.

use anyhow::Result;
use camino::Utf8PathBuf;
use clap::{Args, ValueEnum};
use mpk_model::Identity;
use mpk_pack::pack::{PackInput, PackOptions};

use crate::schema_arg::SchemaArg;

/// How the image is produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendArg {
    /// mpk's own single-pass writer (default).
    Native,
    /// The reference pipeline (the schema's mkfs.erofs + veritysetup) on
    /// a normalised staging copy, for cross-checking.
    Tools,
}

/// Arguments of `mpk pack`.
#[derive(Debug, Args)]
pub struct PackArgs {
    /// The model folder (e.g. a Hugging Face snapshot folder).
    pub dir: Utf8PathBuf,
    /// The model identity, `ORG/NAME@<40 lowercase hex commit>`; salt and
    /// UUID derive from it.
    #[arg(long)]
    pub identity: Identity,
    /// The schema (the encoder is part of the commitment).
    #[arg(long, value_enum, default_value = "modelwrap-v1")]
    pub schema: SchemaArg,
    /// Output file; must end in `.mpk`. `OUT.info` is written beside it.
    #[arg(short = 'o', long = "output")]
    pub output: Utf8PathBuf,
    /// Hashing threads (default: all cores). The output never depends on it.
    #[arg(long)]
    pub threads: Option<usize>,
    /// Print a JSON report instead of the bare reference.
    #[arg(long)]
    pub json: bool,
    /// Replace existing output files.
    #[arg(long)]
    pub force: bool,
    /// Which implementation writes the image.
    #[arg(long, value_enum, default_value = "native")]
    pub backend: BackendArg,
    /// No progress bar (one is shown only when standard error is a terminal).
    #[arg(long, short)]
    pub quiet: bool,
    /// Write an encrypted pack instead: OUT must end in `.empk` (GPT disk
    /// image, raw dm-crypt aes-xts-plain64, Modelwrap's format) and
    /// `OUT.info` gets the encrypted reference. No plaintext image is
    /// written anywhere. Needs --key-file.
    #[arg(long, requires = "key_file")]
    pub encrypt: bool,
    /// The master key for --encrypt (64 bytes, from `mpk keygen`).
    #[arg(long = "key-file", requires = "encrypt")]
    pub key_file: Option<Utf8PathBuf>,
    /// Follow symlinks to any file on this machine. By default a symlink is
    /// followed only when its target stays inside DIR (or, for a Hugging
    /// Face snapshot folder, inside its repository's `blobs/`).
    #[arg(long)]
    pub allow_external_symlinks: bool,
}

impl From<BackendArg> for mpk_pack::pack::Backend {
    fn from(b: BackendArg) -> Self {
        match b {
            BackendArg::Native => Self::Native,
            BackendArg::Tools => Self::Tools,
        }
    }
}

/// Runs `mpk pack`.
pub fn run(a: PackArgs) -> Result<()> {
    // A bad key file fails before any work.
    let key = match &a.key_file {
        Some(k) => Some(crate::keys::read_master_key(k)?),
        None => None,
    };
    let report = mpk_pack::pack::pack(
        PackOptions {
            input: PackInput::Folder {
                dir: a.dir,
                symlinks: crate::symlinks(a.allow_external_symlinks),
            },
            identity: a.identity,
            schema: a.schema.into(),
            output: a.output,
            threads: a.threads,
            force: a.force,
            backend: a.backend.into(),
            hash_files: a.json,
            key,
            expected: None,
        },
        &crate::progress::Bars::new(a.quiet),
    )?;
    if a.json {
        outln!("{}", serde_json::to_string_pretty(&report)?);
    } else if let Some(e) = &report.encryption {
        outln!("{}", e.encrypted_reference);
    } else {
        outln!("{}", report.reference);
    }
    Ok(())
}
