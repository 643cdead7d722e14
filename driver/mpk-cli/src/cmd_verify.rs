//! `mpk verify`: arguments → [`mpk_pack::verify`] (or
//! [`mpk_pack::encrypted::verify_encrypted`] with a key), and the result
//! printed.

use anyhow::{Result, bail};
use camino::Utf8PathBuf;
use clap::Args;
use mpk_model::Identity;
use mpk_pack::verify::{looks_encrypted, verify};

/// Arguments of `mpk verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The `.mpk` file, or an encrypted `.empk` (with --key-file).
    pub image: Utf8PathBuf,
    /// The reference string, or the path of an `.info` file (for an `.empk`,
    /// its encrypted reference).
    #[arg(long = "ref")]
    pub reference: String,
    /// The model identity `ORG/NAME@<40 hex>` (gives the salt).
    #[arg(long)]
    pub identity: Identity,
    /// Hashing threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// The master key of an encrypted `.empk` (64 bytes, from `mpk
    /// keygen`): the image is decrypted in memory, never on disk.
    #[arg(long = "key-file")]
    pub key_file: Option<Utf8PathBuf>,
}

/// Runs `mpk verify`.
pub fn run(a: VerifyArgs) -> Result<()> {
    let r = crate::reference::load(&a.reference)?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(a.threads.unwrap_or(0))
        .build()?;
    let v = match &a.key_file {
        Some(k) => {
            let key = crate::keys::read_master_key(k)?;
            pool.install(|| {
                mpk_pack::encrypted::verify_encrypted(&a.image, &r, &a.identity, &key, &pool)
            })?
        }
        None => {
            if looks_encrypted(&a.image) || r.uuid == a.identity.partition_uuid() {
                bail!(
                    "`{}` is an encrypted pack (or the reference is an encrypted one): pass --key-file with its master key",
                    a.image
                );
            }
            verify(&a.image, &r, &a.identity, &pool)?
        }
    };
    let how = if v.decrypted {
        "decrypt and verify"
    } else {
        "verify"
    };
    let blocks = |n: u64, what: &str| format!("{n} {what} block{}", if n == 1 { "" } else { "s" });
    outln!(
        "OK: all {} and {} of `{}` {how} against {r} ({})",
        blocks(v.data_blocks, "data"),
        blocks(v.hash_blocks, "hash"),
        a.image,
        a.identity
    );
    Ok(())
}
