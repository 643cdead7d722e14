//! Encrypted packs (`.empk`): turning a finished `.mpk` into an `.empk`
//! (GPT container, raw dm-crypt `aes-xts-plain64` payload, see
//! `mpk-crypt`) with its encrypted reference `<root>_<hash offset>_<partition
//! uuid>`, and verifying an `.empk` decrypted in memory the way the guest's
//! dm-crypt + dm-verity stack reads it. `pack --encrypt` (in [`crate::pack`])
//! writes the same `.empk` without a plaintext image.
//!
//! Keys arrive as [`MasterKey`] values (reading key files is the front
//! end's job); key bytes never reach an error message.

use anyhow::{Context, Result, bail};
use camino::{Utf8Path, Utf8PathBuf};
use mpk_crypt::{Layout, MasterKey, SectorCipher};
use mpk_model::{Identity, Reference};
use mpk_verity::{Hasher, TreeGeometry};
use rayon::prelude::*;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;

use crate::Finding;
use crate::verify::{Plaintext, Verified};

const B: u64 = 4096;
/// Blocks per read: 8 MiB buffers bound the memory of encrypt and verify.
const BATCH: u64 = 2048;

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
    // A parsed reference's length cannot overflow (checked when parsed).
    let payload_len = r.mpk_len();
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

/// What `encrypt` needs: the plaintext `.mpk`, its reference and
/// identity, the master key and where the `.empk` goes.
pub struct EncryptJob<'a> {
    /// The plaintext `.mpk`.
    pub input: &'a Utf8Path,
    /// Its (plain) reference.
    pub reference: &'a Reference,
    /// Its identity.
    pub identity: &'a Identity,
    /// The master key.
    pub key: MasterKey,
    /// The `.empk` to write (its `.info` goes beside it).
    pub output: &'a Utf8Path,
    /// Replace existing outputs.
    pub force: bool,
}

/// Encrypts a finished `.mpk` into an `.empk` and its `.info`; returns the
/// encrypted reference. Nothing appears at the output paths unless the
/// whole image was written.
pub fn encrypt(job: EncryptJob<'_>) -> Result<Reference> {
    let EncryptJob {
        input: input_path,
        reference: r,
        identity,
        key,
        output,
        force,
    } = job;
    if r.uuid != identity.uuid() {
        bail!(
            "the reference's UUID {} is not the UUID of {identity} ({}): pass the plaintext .mpk's reference and its identity",
            r.uuid,
            identity.uuid()
        );
    }
    let outputs = crate::output::Outputs::new(output, "empk", force)?;
    let input = File::open(input_path).with_context(|| format!("cannot open `{input_path}`"))?;
    let len = input.metadata()?.len();
    let (cipher, layout, enc) = pack_crypto(&key, r, identity)?;
    drop(key);
    if len != layout.payload_len {
        return Err(Finding::error(format!(
            "`{input_path}` is {len} bytes but its reference needs exactly {} (image + verity superblock + hash tree)",
            layout.payload_len
        )));
    }
    check_top_hash(&input, r, identity, input_path)?;
    let tmp = outputs.temp_mpk()?;
    let mut out = tmp.as_file();
    out.write_all(&layout.head())
        .with_context(|| format!("cannot write `{output}`"))?;
    let mut buf = vec![0u8; (BATCH * B) as usize];
    let mut off = 0u64;
    while off < len {
        let n = (BATCH * B).min(len - off) as usize;
        let chunk = &mut buf[..n];
        input
            .read_exact_at(chunk, off)
            .with_context(|| format!("cannot read `{input_path}` at offset {off}"))?;
        per_block(chunk, off, |s, o| cipher.encrypt(s, o))?;
        out.write_all(chunk)
            .with_context(|| format!("cannot write `{output}`"))?;
        off += n as u64;
    }
    out.write_all(&layout.tail())
        .with_context(|| format!("cannot write `{output}`"))?;
    outputs.commit(tmp, &enc.to_string())?;
    Ok(enc)
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
        return Err(Finding::error(format!(
            "`{path}` does not match the reference root hash (block {blk} checked): the .mpk, reference and identity do not belong together"
        )));
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

impl Plaintext for Decrypting<'_> {
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
/// `identity` and the master key. A negative finding is a [`Finding`].
pub fn verify_encrypted(
    image: &Utf8Path,
    r: &Reference,
    identity: &Identity,
    key: &MasterKey,
    pool: &rayon::ThreadPool,
) -> Result<Verified> {
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
        return Err(Finding::error(format!(
            "`{image}` is {len} bytes but the reference needs {}: the file is truncated",
            layout.image_len()
        )));
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
    let (hash_blocks, sb_problems) = crate::verify::check_plaintext(&dec, r, identity, pool)?;
    problems.extend(sb_problems);
    if len > layout.image_len() {
        problems.push(format!(
            "{} unexpected bytes follow the backup GPT header",
            len - layout.image_len()
        ));
    }
    if problems.is_empty() {
        Ok(Verified {
            data_blocks,
            hash_blocks,
            decrypted: true,
        })
    } else {
        Err(Finding::error(format!(
            "all {data_blocks} data blocks and the hash tree decrypt and verify, but: {}",
            problems.join("; ")
        )))
    }
}
