//! `mpk keygen` makes a master key; `mpk encrypt` hands a finished `.mpk`
//! and its key (read by [`crate::keys`]) to
//! [`mpk_pack::encrypted::encrypt`].
//!
//! Key bytes never reach an error message or the output: errors name the
//! key file and its length only.

use anyhow::{Result, anyhow, bail};
use camino::{Utf8Path, Utf8PathBuf};
use clap::Args;
use zeroize::Zeroizing;

use mpk_model::Identity;

/// Arguments of `mpk keygen`.
#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Where to write the new master key (64 random bytes, mode 0600);
    /// an existing file is never overwritten.
    #[arg(short = 'o', long = "output")]
    pub output: Utf8PathBuf,
}

/// Arguments of `mpk encrypt`.
#[derive(Debug, Args)]
pub struct EncryptArgs {
    /// The plaintext `.mpk`.
    pub input: Utf8PathBuf,
    /// The `.mpk`'s reference string, or the path of its `.info` file.
    #[arg(long = "ref")]
    pub reference: String,
    /// The model identity `ORG/NAME@<40 hex>`.
    #[arg(long)]
    pub identity: Identity,
    /// The master key file (64 bytes, from `mpk keygen`).
    #[arg(long = "key-file")]
    pub key_file: Utf8PathBuf,
    /// The output `OUT.empk`; the encrypted reference goes to `OUT.info`.
    #[arg(short = 'o', long = "output")]
    pub output: Utf8PathBuf,
    /// Replace existing outputs.
    #[arg(long)]
    pub force: bool,
}

/// Runs `mpk keygen`.
pub fn run_keygen(a: KeygenArgs) -> Result<()> {
    crate::keys::no_core_dumps()?;
    let mut key = Zeroizing::new([0u8; mpk_crypt::key::KEY_LEN]);
    getrandom::getrandom(key.as_mut_slice())
        .map_err(|e| anyhow!("cannot get random bytes from the system: {e}"))?;
    // Published like every output (unnamed until complete, so a killed
    // run leaves no partial key), but 0600 and never over an existing file.
    mpk_pack::output::write_file_mode(&a.output, key.as_slice(), false, 0o600).map_err(|e| {
        if e.is::<mpk_pack::output::Exists>() {
            anyhow!(
                "`{}` already exists; refusing to overwrite a key file",
                a.output
            )
        } else {
            e
        }
    })?;
    outln!(
        "wrote a new 64-byte master key to `{}` (mode 0600)",
        a.output
    );
    Ok(())
}

/// Runs `mpk encrypt`.
pub fn run_encrypt(a: EncryptArgs) -> Result<()> {
    let r = crate::reference::load(&a.reference)?;
    if r.uuid != a.identity.uuid() {
        bail!(
            "the reference's UUID {} is not the UUID of {} ({}): pass the plaintext .mpk's reference and its identity",
            r.uuid,
            a.identity,
            a.identity.uuid()
        );
    }
    let info = mpk_pack::output::info_path(&a.output, "empk")?;
    let same = |x: &str, y: &Utf8Path| matches!((std::fs::canonicalize(x), std::fs::canonicalize(y)), (Ok(p), Ok(q)) if p == q);
    if same(&a.reference, &info) {
        bail!("`{info}` is the plaintext reference given with --ref; name the output differently");
    }
    let key = crate::keys::read_master_key(&a.key_file)?;
    let enc = mpk_pack::encrypted::encrypt(mpk_pack::encrypted::EncryptJob {
        input: &a.input,
        reference: &r,
        identity: &a.identity,
        key,
        output: &a.output,
        force: a.force,
    })?;
    outln!("{enc}");
    Ok(())
}
