//! `mpk initrd`: arguments → [`mpk_pack::initrd::build`]; the archive is
//! published like every output (complete or not at all) and its SHA-256
//! (what `image.json` pins) printed.

use anyhow::{Result, bail};
use camino::Utf8PathBuf;
use clap::Args;
use sha2::{Digest, Sha256};

/// Arguments of `mpk initrd`.
#[derive(Debug, Args)]
pub struct InitrdArgs {
    /// The static guest init (`mpk-init`), stored as /init.
    #[arg(long, value_name = "PATH")]
    pub init: Utf8PathBuf,
    /// A kernel module (uncompressed `.ko`), stored under
    /// /lib/modules/mpk/ and loaded by the init in the order given.
    #[arg(long = "module", value_name = "PATH.ko")]
    pub modules: Vec<Utf8PathBuf>,
    /// An extra file: SRC on the host, stored at DEST inside the initrd
    /// (DEST may not hold `:`).
    #[arg(long = "file", value_name = "SRC:DEST")]
    pub files: Vec<String>,
    /// The initrd to write.
    #[arg(short, long, value_name = "OUT")]
    pub output: Utf8PathBuf,
    /// Replace an existing output.
    #[arg(long)]
    pub force: bool,
}

/// Runs `mpk initrd`.
pub fn run(a: InitrdArgs) -> Result<()> {
    if !a.force && std::fs::symlink_metadata(&a.output).is_ok() {
        bail!("`{}` already exists; pass --force to replace it", a.output);
    }
    let mut files = Vec::new();
    for f in &a.files {
        let Some((src, dest)) = f.rsplit_once(':') else {
            bail!("--file `{f}` is not SRC:DEST");
        };
        files.push((Utf8PathBuf::from(src), dest.to_string()));
    }
    let bytes = mpk_pack::initrd::build(&mpk_pack::initrd::InitrdOptions {
        init: a.init.clone(),
        modules: a.modules.clone(),
        files,
    })?;
    mpk_pack::output::write_file(&a.output, &bytes, a.force)?;
    outln!("{}", hex::encode(Sha256::digest(&bytes)));
    Ok(())
}
