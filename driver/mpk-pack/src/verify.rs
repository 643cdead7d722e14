//! Verifying an `.mpk`: every data and hash block is checked using only
//! the reference and the identity, the way the kernel's dm-verity would
//! with an explicit table: hash blocks are authenticated top-down from the
//! root, data blocks against the authenticated leaves. The on-disk verity
//! superblock is never trusted; it is compared separately and reported.
//! A negative finding is a [`Finding`] naming the first bad block, its
//! byte offset and the file (or metadata) that owns it.

use anyhow::{Context, Result, bail};
use camino::Utf8Path;
use mpk_erofs::reader::{Image, Role, Source};
use mpk_model::{Identity, Reference};
use mpk_verity::{DIGEST, DIGESTS_PER_BLOCK, Hasher, TreeGeometry};
use std::fs::File;
use std::os::unix::fs::FileExt;

use crate::Finding;

const B: u64 = 4096;
const BATCH: u64 = 2048;

/// What a successful verification checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    /// Data blocks checked (the EROFS image).
    pub data_blocks: u64,
    /// Hash blocks authenticated.
    pub hash_blocks: u64,
    /// The image was an `.empk`, decrypted in memory.
    pub decrypted: bool,
}

/// The plaintext bytes of an `.mpk`: the file itself, or a decrypting view
/// of an `.empk` (`cmd_crypt`). Verification reads only through this.
pub trait Plaintext: Sync {
    /// Fills `buf` with the plaintext at `off`.
    fn read_at(&self, buf: &mut [u8], off: u64) -> Result<()>;
    /// Names plaintext byte `off` for messages.
    fn where_is(&self, off: u64) -> String {
        format!("byte offset {off}")
    }
    /// What a mismatch may mean beyond tampering (e.g. a wrong key).
    fn hint(&self) -> &'static str {
        ""
    }
}

impl Plaintext for File {
    fn read_at(&self, buf: &mut [u8], off: u64) -> Result<()> {
        self.read_exact_at(buf, off)
            .with_context(|| format!("cannot read {} bytes at offset {off}", buf.len()))
    }
}

/// Image blocks for the EROFS reader.
struct Blocks<'a>(&'a dyn Plaintext);

impl Source for Blocks<'_> {
    fn block(&mut self, n: u64) -> Result<Vec<u8>, String> {
        let mut buf = vec![0u8; B as usize];
        self.0
            .read_at(&mut buf, n * B)
            .map_err(|e| format!("cannot read block {n}: {e:#}"))?;
        Ok(buf)
    }
}

/// A failed check of a hash block.
struct BadHash {
    level: usize,
    index: u64,
    place: String,
    hint: &'static str,
}

/// Hash blocks authenticated so far: one cached block per level.
struct Auth<'a> {
    src: &'a dyn Plaintext,
    hasher: &'a Hasher,
    geometry: &'a TreeGeometry,
    tree_start: u64,
    root: [u8; 32],
    cache: Vec<Option<(u64, Box<[u8]>)>>,
    hash_blocks_checked: u64,
}

impl Auth<'_> {
    /// The authenticated digest of block `index` of the level below `level`
    /// (data blocks when `level` is 0).
    fn digest(&mut self, level: usize, index: u64) -> Result<[u8; DIGEST]> {
        if self.geometry.levels() == 0 {
            return Ok(self.root);
        }
        let per = DIGESTS_PER_BLOCK as u64;
        let blk = index / per;
        self.load(level, blk)?;
        let (_, data) = self.cache[level].as_ref().expect("loaded");
        let slot = (index % per) as usize * DIGEST;
        Ok(data[slot..slot + DIGEST].try_into().expect("32 bytes"))
    }

    fn load(&mut self, level: usize, blk: u64) -> Result<()> {
        if matches!(&self.cache[level], Some((i, _)) if *i == blk) {
            return Ok(());
        }
        let offset = (self.tree_start + self.geometry.level_start(level) + blk) * B;
        let mut buf = vec![0u8; B as usize].into_boxed_slice();
        self.src
            .read_at(&mut buf, offset)
            .context("cannot read a hash block")?;
        let got = self.hasher.hash(&buf);
        let want = if level + 1 == self.geometry.levels() {
            self.root
        } else {
            self.digest(level + 1, blk)?
        };
        if got != want {
            return Err(Finding::error(
                BadHashError(BadHash {
                    level,
                    index: blk,
                    place: self.src.where_is(offset),
                    hint: self.src.hint(),
                })
                .to_string(),
            ));
        }
        self.hash_blocks_checked += 1;
        self.cache[level] = Some((blk, buf));
        Ok(())
    }
}

#[derive(Debug)]
struct BadHashError(BadHash);

impl std::fmt::Debug for BadHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "level {} block {} at {}",
            self.level, self.index, self.place
        )
    }
}

impl std::fmt::Display for BadHashError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let b = &self.0;
        write!(
            f,
            "hash block {} of tree level {} ({}) does not match the reference root hash: the hash tree is corrupt{}",
            b.index, b.level, b.place, b.hint
        )
    }
}

impl std::error::Error for BadHashError {}

/// Describes who owns image block `block` (best effort: the image's own
/// metadata may be what is damaged).
fn owner_of(src: &dyn Plaintext, block: u64) -> String {
    let mut parts = Vec::new();
    if block == 0 {
        parts.push("the EROFS superblock".to_string());
    }
    match Image::open(Blocks(src)).and_then(|mut img| {
        let entries = img.walk()?;
        Ok(img
            .owners(&entries, block)
            .into_iter()
            .map(|(i, role)| {
                let p = entries[i].display_path();
                let p = if p.is_empty() { "/".to_string() } else { p };
                match role {
                    Role::Inode => format!("the inode of `{p}`"),
                    Role::Data(n) => format!(
                        "file `{p}` (its block {n}, bytes {}..{})",
                        n * B,
                        (n + 1) * B
                    ),
                    Role::Tail => format!("the last bytes of `{p}`"),
                }
            })
            .collect::<Vec<_>>())
    }) {
        Ok(o) => parts.extend(o),
        Err(e) => parts.push(format!(
            "(the image cannot be read to name the owning file: {e})"
        )),
    }
    if parts.is_empty() {
        "no file (padding)".into()
    } else {
        parts.join(", ")
    }
}

/// True when `path` starts like a GPT disk (the `.empk` container): the
/// `EFI PART` signature at byte 512, where an `.mpk` holds EROFS padding.
pub fn looks_encrypted(path: &Utf8Path) -> bool {
    let mut sig = [0u8; 8];
    File::open(path).is_ok_and(|f| f.read_exact_at(&mut sig, 512).is_ok() && &sig == b"EFI PART")
}

/// Verifies the `.mpk` at `image` against `r` and `identity`. A negative
/// finding (a bad block, a truncated file, a superblock that disagrees) is
/// a [`Finding`]; an unreadable file is another error.
pub fn verify(
    image: &Utf8Path,
    r: &Reference,
    identity: &Identity,
    pool: &rayon::ThreadPool,
) -> Result<Verified> {
    let id_uuid = identity.uuid();
    if r.uuid != id_uuid {
        bail!(
            "the reference's UUID {} is not the UUID of {identity} ({id_uuid}): reference and identity belong to different models",
            r.uuid,
        );
    }
    let file = File::open(image).with_context(|| format!("cannot open `{image}`"))?;
    let len = file.metadata()?.len();
    let data_blocks = r.hash_offset / B;
    let geometry = TreeGeometry::new(data_blocks)?;
    let expected_len = r.mpk_len();
    if len < expected_len {
        return Err(Finding::error(format!(
            "`{image}` is {len} bytes but the reference needs {expected_len} (image {} + verity superblock 4096 + hash tree {}): the file is truncated",
            r.hash_offset,
            geometry.total_hash_blocks() * B
        )));
    }
    let (hash_blocks, mut problems) = check_plaintext(&file, r, identity, pool)?;
    if len > expected_len {
        problems.push(format!(
            "{} unexpected bytes follow the hash tree (the file should be {expected_len} bytes)",
            len - expected_len
        ));
    }
    if problems.is_empty() {
        Ok(Verified {
            data_blocks,
            hash_blocks,
            decrypted: false,
        })
    } else {
        Err(Finding::error(format!(
            "all {data_blocks} data blocks and the hash tree verify against the reference (the guest maps them with explicit parameters), but: {}",
            problems.join("; ")
        )))
    }
}

/// Checks every data and hash block of the plaintext `src` against `r`
/// and `identity` (hash blocks authenticated top-down from the root, data
/// blocks against the leaves; the first bad block is an error naming its
/// owner), then compares the verity superblock with the one the reference
/// implies. Returns the number of hash blocks checked and the superblock
/// findings (which do not affect what the guest maps).
pub fn check_plaintext(
    src: &dyn Plaintext,
    r: &Reference,
    identity: &Identity,
    pool: &rayon::ThreadPool,
) -> Result<(u64, Vec<String>)> {
    let salt = identity.salt();
    let id_uuid = identity.uuid();
    let data_blocks = r.hash_offset / B;
    let geometry = TreeGeometry::new(data_blocks)?;
    let hasher = Hasher::new(&salt);
    let mut auth = Auth {
        src,
        hasher: &hasher,
        geometry: &geometry,
        tree_start: data_blocks + 1,
        root: r.root,
        cache: vec![None; geometry.levels()],
        hash_blocks_checked: 0,
    };
    pool.install(|| {
        crate::hashing::hash_blocks(
            data_blocks,
            BATCH,
            &hasher,
            |buf, first| src.read_at(buf, first * B),
            |first, digests| {
                for (i, d) in digests.iter().enumerate() {
                    let blk = first + i as u64;
                    let want = auth.digest(0, blk)?;
                    if *d != want {
                        return Err(Finding::error(format!(
                            "data block {blk} ({}) does not match the hash tree{}; it holds {}",
                            src.where_is(blk * B),
                            src.hint(),
                            owner_of(src, blk)
                        )));
                    }
                }
                Ok(())
            },
        )
    })?;
    // The superblock is never trusted, but a copy that disagrees with the
    // reference is worth knowing about.
    let mut problems = Vec::new();
    let mut sb_block = vec![0u8; B as usize];
    src.read_at(&mut sb_block, r.hash_offset)?;
    let expected = mpk_verity::Superblock::new(*id_uuid.as_bytes(), &salt, data_blocks)?;
    match mpk_verity::parse_superblock(&sb_block[..mpk_verity::SUPERBLOCK_SIZE]) {
        Ok(sb) => {
            let fields = sb.mismatches(&expected);
            if !fields.is_empty() {
                problems.push(format!(
                    "the on-disk verity superblock ({}) disagrees with the reference in: {}",
                    src.where_is(r.hash_offset),
                    fields.join(", ")
                ));
            }
        }
        Err(e) => problems.push(format!(
            "the on-disk verity superblock ({}) is unreadable: {e}",
            src.where_is(r.hash_offset)
        )),
    }
    if sb_block[mpk_verity::SUPERBLOCK_SIZE..]
        .iter()
        .any(|&b| b != 0)
    {
        problems.push(format!(
            "the verity superblock block ({}) has non-zero padding",
            src.where_is(r.hash_offset)
        ));
    }
    Ok((auth.hash_blocks_checked, problems))
}
