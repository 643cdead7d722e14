//! Encrypted packs (`.empk`): `mpk keygen` makes a master key, `mpk
//! encrypt` turns a finished `.mpk` into an `.empk` (GPT container, raw
//! dm-crypt `aes-xts-plain64` payload, see `mpk-crypt`) plus the encrypted
//! reference `<root>_<hash offset>_<partition uuid>`, and
//! [`verify_encrypted`] (`mpk verify --key-file`) decrypts an `.empk` in
//! memory and checks every data and hash block against that reference, the
//! way the guest's dm-crypt + dm-verity stack would. `mpk pack --encrypt`
//! (in `cmd_pack`) writes the same `.empk` without a plaintext image.
//!
//! Key bytes never reach an error message or the output: errors name the
//! key file and its length only.

use anyhow::{Context, Result, anyhow, bail};
use camino::{Utf8Path, Utf8PathBuf};
use clap::Args;
use mpk_crypt::{Layout, MasterKey, SectorCipher};
use mpk_verity::{Hasher, TreeGeometry};
use rayon::prelude::*;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
use zeroize::Zeroizing;

use mpk_model::Identity;
use mpk_model::Reference;

const B: u64 = 4096;
/// Blocks per read: 8 MiB buffers bound the memory of encrypt and verify.
const BATCH: u64 = 2048;

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

/// Makes this process non-dumpable before any key byte is in memory: no
/// core dump (and no ptrace by other users) can carry key material.
fn no_core_dumps() -> Result<()> {
    nix::sys::prctl::set_dumpable(false)
        .map_err(|e| anyhow!("cannot disable core dumps before handling a key: {e}"))
}

/// Runs `mpk keygen`.
pub fn run_keygen(a: KeygenArgs) -> Result<()> {
    no_core_dumps()?;
    let mut key = Zeroizing::new([0u8; mpk_crypt::key::KEY_LEN]);
    getrandom::getrandom(key.as_mut_slice())
        .map_err(|e| anyhow!("cannot get random bytes from the system: {e}"))?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&a.output)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                anyhow!(
                    "`{}` already exists; refusing to overwrite a key file",
                    a.output
                )
            } else {
                anyhow!("cannot create `{}`: {e}", a.output)
            }
        })?;
    let written = f
        .set_permissions(std::fs::Permissions::from_mode(0o600))
        .and_then(|()| f.write_all(key.as_slice()))
        .and_then(|()| f.sync_all());
    if let Err(e) = written {
        let _ = std::fs::remove_file(&a.output);
        bail!("cannot write `{}`: {e}", a.output);
    }
    println!(
        "wrote a new 64-byte master key to `{}` (mode 0600)",
        a.output
    );
    Ok(())
}

/// Reads a master key file: exactly 64 bytes. The bytes are read into one
/// fixed, zeroized buffer (no growing `Vec` leaves copies behind).
pub fn read_master_key(path: &Utf8Path) -> Result<MasterKey> {
    use std::io::Read;
    no_core_dumps()?;
    let mut f = File::open(path).map_err(|e| anyhow!("cannot read the key file `{path}`: {e}"))?;
    let mut buf = Zeroizing::new([0u8; mpk_crypt::key::KEY_LEN + 1]);
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => bail!("cannot read the key file `{path}`: {e}"),
        }
    }
    if n > mpk_crypt::key::KEY_LEN {
        let len = f.metadata().map(|m| m.len()).unwrap_or(n as u64);
        bail!(
            "key file `{path}`: a master key must be exactly {} bytes, this file has {len}",
            mpk_crypt::key::KEY_LEN
        );
    }
    MasterKey::from_bytes(&buf[..n]).map_err(|e| anyhow!("key file `{path}`: {e}"))
}

/// Applies `f` (a [`SectorCipher`] encrypt or decrypt) to every 4096-byte
/// block of `buf`, which sits at payload offset `off`, on all cores of the
/// current rayon pool.
pub(crate) fn per_block(
    buf: &mut [u8],
    off: u64,
    f: impl Fn(&mut [u8], u64) -> Result<(), mpk_crypt::Error> + Sync,
) -> Result<(), mpk_crypt::Error> {
    buf.par_chunks_mut(B as usize)
        .enumerate()
        .try_for_each(|(i, s)| f(s, off + i as u64 * B))
}

/// The `.info` path beside an `.empk`.
pub fn empk_info_path(empk: &Utf8Path) -> Result<Utf8PathBuf> {
    if empk.extension() != Some("empk") || empk.file_stem().is_none_or(str::is_empty) {
        bail!("output `{empk}` must end in `.empk`");
    }
    Ok(empk.with_extension("info"))
}

/// The cipher, layout and encrypted reference of one pack.
pub(crate) fn pack_crypto(
    key: &MasterKey,
    r: &Reference,
    identity: &Identity,
) -> Result<(SectorCipher, Layout, Reference)> {
    let data_blocks = r.hash_offset / B;
    let payload_len =
        mpk_model::mpk_len(data_blocks).context("the image is too large for a .mpk")?;
    let partuuid = identity.partition_uuid();
    let layout = Layout::new(payload_len, mpk_crypt::disk_guid(&r.root), partuuid)?;
    let cipher = SectorCipher::new(&key.derive(&r.root, &partuuid));
    let enc = Reference {
        root: r.root,
        hash_offset: r.hash_offset,
        uuid: partuuid,
    };
    Ok((cipher, layout, enc))
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
    let info = empk_info_path(&a.output)?;
    let same = |x: &str, y: &Utf8Path| matches!((std::fs::canonicalize(x), std::fs::canonicalize(y)), (Ok(p), Ok(q)) if p == q);
    if same(&a.reference, &info) {
        bail!("`{info}` is the plaintext reference given with --ref; name the output differently");
    }
    if !a.force {
        for p in [a.output.as_path(), info.as_path()] {
            if std::fs::symlink_metadata(p).is_ok() {
                bail!("`{p}` already exists; pass --force to replace it");
            }
        }
    }
    let key = read_master_key(&a.key_file)?;
    let input = File::open(&a.input).with_context(|| format!("cannot open `{}`", a.input))?;
    let len = input.metadata()?.len();
    let (cipher, layout, enc) = pack_crypto(&key, &r, &a.identity)?;
    drop(key);
    if len != layout.payload_len {
        bail!(
            "`{}` is {len} bytes but its reference needs exactly {} (image + verity superblock + hash tree)",
            a.input,
            layout.payload_len
        );
    }
    check_top_hash(&input, &r, &a.identity, &a.input)?;
    let mut out = crate::output::temp_beside(&a.output)?;
    out.write_all(&layout.head())
        .with_context(|| format!("cannot write `{}`", a.output))?;
    let mut buf = vec![0u8; (BATCH * B) as usize];
    let mut off = 0u64;
    while off < len {
        let n = (BATCH * B).min(len - off) as usize;
        let chunk = &mut buf[..n];
        input
            .read_exact_at(chunk, off)
            .with_context(|| format!("cannot read `{}` at offset {off}", a.input))?;
        per_block(chunk, off, |s, o| cipher.encrypt(s, o))?;
        out.write_all(chunk)
            .with_context(|| format!("cannot write `{}`", a.output))?;
        off += n as u64;
    }
    out.write_all(&layout.tail())
        .and_then(|()| out.as_file().sync_all())
        .with_context(|| format!("cannot write `{}`", a.output))?;
    let mut info_tmp = crate::output::temp_beside(&info)?;
    info_tmp
        .write_all(enc.to_string().as_bytes())
        .and_then(|()| info_tmp.as_file().sync_all())
        .with_context(|| format!("cannot write `{info}`"))?;
    for t in [&out, &info_tmp] {
        crate::output::set_mode(t.path())?;
    }
    crate::output::publish(out, &a.output)?;
    crate::output::publish(info_tmp, &info)?;
    println!("{enc}");
    Ok(())
}

/// Checks the top hash block of the plaintext `.mpk` (or its only data
/// block) against the reference root: catches a reference, identity or
/// `.mpk` that do not belong together before anything is written.
fn check_top_hash(f: &File, r: &Reference, identity: &Identity, path: &Utf8Path) -> Result<()> {
    let data_blocks = r.hash_offset / B;
    let g = TreeGeometry::new(data_blocks)?;
    let blk = if g.levels() == 0 {
        0
    } else {
        data_blocks + 1 + g.level_start(g.levels() - 1)
    };
    let mut buf = vec![0u8; B as usize];
    f.read_exact_at(&mut buf, blk * B)
        .with_context(|| format!("cannot read `{path}`"))?;
    if Hasher::new(&identity.salt()).hash(&buf) != r.root {
        bail!(
            "`{path}` does not match the reference root hash (block {blk} checked): the .mpk, reference and identity do not belong together"
        );
    }
    Ok(())
}

/// Reads and decrypts payload blocks of an `.empk`.
struct Decrypting<'a> {
    file: &'a File,
    cipher: &'a SectorCipher,
    base: u64,
}

impl Decrypting<'_> {
    /// Fills `buf` with the plaintext at payload offset `off`.
    fn read(&self, buf: &mut [u8], off: u64) -> Result<()> {
        self.file
            .read_exact_at(buf, self.base + off)
            .with_context(|| format!("cannot read the image at offset {}", self.base + off))?;
        per_block(buf, off, |s, o| self.cipher.decrypt(s, o))?;
        Ok(())
    }
}

impl crate::cmd_verify::Plaintext for Decrypting<'_> {
    fn read_at(&self, buf: &mut [u8], off: u64) -> Result<()> {
        self.read(buf, off)
    }
    fn where_is(&self, off: u64) -> String {
        format!(
            "plaintext byte offset {off}, image byte offset {}",
            self.base + off
        )
    }
    fn hint(&self) -> &'static str {
        " after decryption: wrong key, or the ciphertext is damaged"
    }
}

/// Verifies the `.empk` at `image` against the encrypted reference `r`,
/// `identity` and the master key; `Ok` carries the success message.
pub fn verify_encrypted(
    image: &Utf8Path,
    r: &Reference,
    identity: &Identity,
    key: &MasterKey,
    pool: &rayon::ThreadPool,
) -> Result<String> {
    let partuuid = identity.partition_uuid();
    if r.uuid != partuuid {
        bail!(
            "the reference's UUID {} is not the partition UUID of {identity} ({partuuid}): pass the encrypted reference (from `mpk encrypt`) and its identity",
            r.uuid
        );
    }
    let (cipher, layout, _) = pack_crypto(key, r, identity)?;
    let file = File::open(image).with_context(|| format!("cannot open `{image}`"))?;
    let len = file.metadata()?.len();
    if len < layout.image_len() {
        bail!(
            "`{image}` is {len} bytes but the reference needs {}: the file is truncated",
            layout.image_len()
        );
    }
    let mut problems = Vec::new();
    let tail_at = layout.payload_offset() + layout.payload_len;
    for (what, want, at) in [
        ("primary GPT", layout.head(), 0),
        ("backup GPT", layout.tail(), tail_at),
    ] {
        let mut got = vec![0u8; want.len()];
        file.read_exact_at(&mut got, at)
            .with_context(|| format!("cannot read `{image}`"))?;
        if let Some(i) = got.iter().zip(&want).position(|(g, w)| g != w) {
            problems.push(format!(
                "the {what} area differs from the expected container at byte offset {}",
                at + i as u64
            ));
        }
    }
    let dec = Decrypting {
        file: &file,
        cipher: &cipher,
        base: layout.payload_offset(),
    };
    let data_blocks = r.hash_offset / B;
    let (hash_blocks, sb_problems) = crate::cmd_verify::check_plaintext(&dec, r, identity, pool)?;
    problems.extend(sb_problems);
    if len > layout.image_len() {
        problems.push(format!(
            "{} unexpected bytes follow the backup GPT header",
            len - layout.image_len()
        ));
    }
    if problems.is_empty() {
        Ok(format!(
            "OK: all {data_blocks} data blocks and {hash_blocks} hash blocks of `{image}` decrypt and verify against {r} ({identity})"
        ))
    } else {
        bail!(
            "all {data_blocks} data blocks and the hash tree decrypt and verify, but: {}",
            problems.join("; ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reading_a_key_makes_the_process_non_dumpable() {
        let dir = tempfile::tempdir().unwrap();
        let path = Utf8PathBuf::from_path_buf(dir.path().join("k")).unwrap();
        std::fs::write(&path, [9u8; mpk_crypt::key::KEY_LEN]).unwrap();
        nix::sys::prctl::set_dumpable(true).unwrap();
        read_master_key(&path).unwrap();
        assert!(
            !nix::sys::prctl::get_dumpable().unwrap(),
            "a process holding a master key must not be dumpable"
        );
    }
}
