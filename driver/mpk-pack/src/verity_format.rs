//! `veritysetup format`, natively: the same bytes as cryptsetup 2.6.1's
//! (format 1, sha256, 4096-byte blocks).
//!
//! The data file is streamed in 4 MiB chunks (reading the next chunk while
//! the current one is hashed in parallel with rayon), the digests are pushed
//! in order into [`mpk_verity::TreeBuilder`], and every hash block it emits
//! is written in place with positioned writes. Peak memory is a few chunk
//! buffers plus one block per tree level, whatever the data size. The hash
//! file is written in place, as veritysetup does.

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use mpk_verity::{BLOCK, DIGEST, MAX_SALT, SUPERBLOCK_SIZE, TreeBuilder};

/// `BLOCK` as a `u64`.
const BLOCK_U64: u64 = BLOCK as u64;

/// Data blocks read and hashed per chunk (4 MiB).
const CHUNK_BLOCKS: u64 = 1024;

/// Largest run of contiguous hash blocks gathered into one write (1 MiB).
const MAX_RUN: usize = 256 * BLOCK;

/// What `format` writes, named as in `veritysetup format`.
#[derive(Debug, Clone)]
pub struct FormatOptions {
    /// Data file (or device). A trailing partial 4096-byte block is ignored.
    pub data: PathBuf,
    /// Hash file: created if missing (mode 0600), never truncated.
    pub hash: PathBuf,
    /// Salt (at most 256 bytes).
    pub salt: Vec<u8>,
    /// UUID for the superblock; `None`: no superblock.
    pub uuid: Option<[u8; 16]>,
    /// Byte offset of the superblock (or, without one, of the tree,
    /// rounded down to 4096) in the hash file; a multiple of 512.
    pub hash_offset: u64,
    /// Data blocks to cover (`None` or 0: all whole blocks of the data).
    pub data_blocks: Option<u64>,
    /// Also write the root hash (64 lowercase hex digits) here.
    pub root_hash_file: Option<PathBuf>,
}

/// `veritysetup format`: writes the tree and superblock, returns the root.
pub fn format(a: &FormatOptions) -> Result<[u8; DIGEST]> {
    let salt = &a.salt;
    let uuid = a.uuid;
    if salt.len() > MAX_SALT {
        bail!(
            "the salt is {} bytes long; dm-verity allows at most {MAX_SALT} bytes",
            salt.len()
        );
    }
    if !a.hash_offset.is_multiple_of(512) {
        bail!(
            "unsupported --hash-offset {}: it must be a multiple of 512 bytes",
            a.hash_offset
        );
    }
    let (dpath, hpath) = (a.data.display(), a.hash.display());

    let mut data = File::open(&a.data).with_context(|| format!("cannot open data file {dpath}"))?;
    // Seeking to the end also sizes block devices (whose metadata says 0).
    let data_size = data
        .seek(SeekFrom::End(0))
        .with_context(|| format!("cannot size data file {dpath}"))?;
    let whole = data_size / BLOCK_U64;
    let data_blocks = match a.data_blocks {
        None | Some(0) => whole,
        Some(n) if n > whole => bail!(
            "--data-blocks {n} exceeds data file {dpath}: it holds {whole} whole 4096-byte \
             blocks ({data_size} bytes)"
        ),
        Some(n) => n,
    };
    if data_blocks == 0 {
        bail!("data file {dpath} is {data_size} bytes: it holds no whole 4096-byte block");
    }
    let mut builder = TreeBuilder::new(salt, data_blocks)?;
    let sb = uuid.is_some();
    let tree_start = mpk_verity::tree_start_block(a.hash_offset, sb);
    let tree_bytes = builder.geometry().total_hash_bytes();
    let tree_base = tree_start.checked_mul(BLOCK_U64);
    if tree_base
        .zip(tree_bytes)
        .and_then(|(b, t)| b.checked_add(t))
        .is_none()
    {
        bail!(
            "the hash area at --hash-offset {} overflows 64 bits",
            a.hash_offset
        );
    }
    let tree_base = tree_base.expect("checked above");

    let hash = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        // veritysetup keeps the existing bytes outside what it writes.
        .truncate(false)
        .mode(0o600)
        .open(&a.hash)
        .with_context(|| format!("cannot open or create hash file {hpath}"))?;
    let (dmeta, hmeta) = (
        data.metadata()
            .with_context(|| format!("cannot stat {dpath}"))?,
        hash.metadata()
            .with_context(|| format!("cannot stat {hpath}"))?,
    );
    let data_end = data_blocks * BLOCK_U64;
    if (dmeta.dev(), dmeta.ino()) == (hmeta.dev(), hmeta.ino()) && a.hash_offset < data_end {
        bail!(
            "data area overlaps with hash area: {hpath} is the data file and --hash-offset {} \
             lies before the end of its {data_blocks} data blocks (byte {data_end})",
            a.hash_offset
        );
    }

    let mut out = TreeWriter {
        file: &hash,
        path: &a.hash,
        base: tree_base,
        run_start: 0,
        run: Vec::new(),
    };
    let hasher = builder.hasher().clone();
    crate::hashing::hash_blocks(
        data_blocks,
        CHUNK_BLOCKS,
        &hasher,
        |buf, first| {
            data.read_exact_at(buf, first * BLOCK_U64).with_context(|| {
                format!(
                    "cannot read data file {dpath} at byte {}",
                    first * BLOCK_U64
                )
            })
        },
        |_, digests| builder.push_all(digests, |i, b| out.write(i, b)),
    )?;
    let root = builder.finish(|i, b| out.write(i, b))?;
    out.flush()?;

    if let Some(uuid) = uuid {
        let sb = mpk_verity::superblock(uuid, salt, data_blocks)?;
        write_superblock(&hash, &a.hash, a.hash_offset, &sb)?;
    }
    hash.sync_all()
        .with_context(|| format!("cannot sync hash file {hpath}"))?;

    if let Some(p) = &a.root_hash_file {
        // Replaced if it exists, as veritysetup does.
        let p = camino::Utf8Path::from_path(p)
            .with_context(|| format!("root hash file {} is not UTF-8", p.display()))?;
        crate::output::write_file_mode(p, hex::encode(root).as_bytes(), true, 0o600)?;
    }
    Ok(root)
}

/// Writes emitted hash blocks at `base + index * 4096`, gathering runs of
/// consecutive blocks (leaf blocks mostly arrive in order) into one write.
struct TreeWriter<'a> {
    file: &'a File,
    path: &'a Path,
    /// Byte offset of tree block 0 in the file.
    base: u64,
    /// Tree block index of `run[0..4096]`.
    run_start: u64,
    /// Pending consecutive blocks.
    run: Vec<u8>,
}

impl TreeWriter<'_> {
    fn write(&mut self, index: u64, block: &[u8; BLOCK]) -> Result<()> {
        let run_end = self.run_start + (self.run.len() / BLOCK) as u64;
        if !self.run.is_empty() && (index != run_end || self.run.len() >= MAX_RUN) {
            self.flush()?;
        }
        if self.run.is_empty() {
            self.run_start = index;
        }
        self.run.extend_from_slice(block);
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if self.run.is_empty() {
            return Ok(());
        }
        // Cannot overflow: the whole tree's extent was checked.
        let at = self.base + self.run_start * BLOCK_U64;
        self.file.write_all_at(&self.run, at).with_context(|| {
            format!(
                "cannot write hash file {} at byte {at}",
                self.path.display()
            )
        })?;
        self.run.clear();
        Ok(())
    }
}

/// Writes the superblock as veritysetup 2.6.1 does: it rewrites the whole
/// 4096-byte block holding it (a page on x86), keeping that block's other
/// bytes (zero past the end of the file). Called after the tree is written,
/// so with a tree the block exists; with a single data block (no tree) and an
/// offset that is not a multiple of 4096, veritysetup fails unless the file
/// already reaches the superblock's end, and so does this.
fn write_superblock(
    hash: &File,
    path: &Path,
    offset: u64,
    sb: &[u8; SUPERBLOCK_SIZE],
) -> Result<()> {
    let front = offset % BLOCK_U64;
    let block_start = offset - front;
    let len = hash
        .metadata()
        .with_context(|| format!("cannot stat hash file {}", path.display()))?
        .len();
    let sb_end = offset + SUPERBLOCK_SIZE as u64;
    if front != 0 && len < sb_end {
        bail!(
            "cannot write the verity superblock at byte {offset} of hash file {}: the file is \
             {len} bytes long. Like veritysetup 2.6.1 (\"Error during update of verity \
             header\"), a superblock not aligned to 4096 bytes needs the file to reach its end \
             ({sb_end}) already, which only the tree guarantees, and a single data block has \
             none; use a --hash-offset that is a multiple of 4096",
            path.display()
        );
    }
    let mut page = [0u8; BLOCK];
    let mut got = 0;
    while got < BLOCK {
        let n = hash
            .read_at(&mut page[got..], block_start + got as u64)
            .with_context(|| format!("cannot read hash file {}", path.display()))?;
        if n == 0 {
            break;
        }
        got += n;
    }
    let front = front as usize;
    page[front..front + SUPERBLOCK_SIZE].copy_from_slice(sb);
    hash.write_all_at(&page, block_start)
        .with_context(|| format!("cannot write the verity superblock to {}", path.display()))
}
