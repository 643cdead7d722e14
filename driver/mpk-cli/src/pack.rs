//! The native packing engine: plans the EROFS layout from names and sizes,
//! then streams every input byte exactly once into the image while the
//! dm-verity leaves are hashed on all cores and the upper tree levels are
//! written as soon as they complete. No second pass over the image.
//!
//! Memory: two batches of [`BATCH_BLOCKS`] blocks in flight, one 4 KiB
//! block per tree level, the metadata blocks of the layout (about 32 bytes
//! per file plus its directory entry), and every file's tail (< 4 KiB per
//! file, read up front because a tail may sit in a block that precedes its
//! file's data). Nothing grows with the size of the files.

use anyhow::{Context, Result, bail};
use mpk_erofs::{Extent, Layout, NodeId, NodeKind};
use mpk_verity::TreeBuilder;
use rayon::prelude::*;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::sync::mpsc::sync_channel;

use crate::scan::{Scan, Source};

/// Image blocks per batch (8 MiB): large sequential reads and writes.
pub const BATCH_BLOCKS: usize = 2048;
const B: u64 = 4096;

/// What a finished pack computed in its single pass.
#[derive(Debug)]
pub struct Packed {
    /// dm-verity root hash.
    pub root: [u8; 32],
    /// Image length = hash offset.
    pub hash_offset: u64,
    /// SHA-256 of every file's contents, by node (empty unless asked for).
    pub sha256: HashMap<NodeId, [u8; 32]>,
}

/// The full length of an `.mpk` for an image of `blocks` blocks.
pub fn mpk_len(blocks: u64) -> Result<u64> {
    let g = mpk_verity::TreeGeometry::new(blocks)?;
    Ok((blocks + 1 + g.total_hash_blocks()) * B)
}

fn check_unchanged(src: &Source, f: &File) -> Result<()> {
    let m = f
        .metadata()
        .with_context(|| format!("cannot stat `{}`", src.path.display()))?;
    if m.len() != src.size || Source::stamp_of(&m) != src.stamp {
        bail!(
            "`{}` changed while it was being packed (size {} → {}); nothing was written",
            src.path.display(),
            src.size,
            m.len()
        );
    }
    Ok(())
}

fn open(src: &Source) -> Result<File> {
    File::open(&src.path).with_context(|| format!("cannot open `{}`", src.path.display()))
}

/// An open input: a local file (which can be cloned from and re-checked),
/// or a remote stream.
enum Input {
    Local(Arc<File>),
    Remote(Box<dyn Read + Send>),
}

impl Input {
    fn open(src: &Source, full_bytes: u64) -> Result<Self> {
        Ok(match &src.remote {
            Some(r) => Input::Remote(r.range(0, full_bytes)),
            None => Input::Local(Arc::new(open(src)?)),
        })
    }

    fn read_exact(&mut self, buf: &mut [u8]) -> std::io::Result<()> {
        match self {
            Input::Local(f) => (&**f).read_exact(buf),
            Input::Remote(r) => r.read_exact(buf),
        }
    }

    fn check_unchanged(&self, src: &Source) -> Result<()> {
        match self {
            Input::Local(f) => check_unchanged(src, f),
            Input::Remote(_) => Ok(()),
        }
    }
}

/// Reads every file's tail (the bytes after its last full block).
fn read_tails(scan: &Scan, layout: &Layout) -> Result<HashMap<NodeId, Vec<u8>>> {
    let mut tails = HashMap::new();
    for i in 0..scan.tree.len() {
        let id = NodeId(i);
        let pl = layout.placement(id);
        if pl.tail_len == 0 || !matches!(scan.tree.node(id).kind, NodeKind::File { .. }) {
            continue;
        }
        let src = scan.source(id);
        let mut buf = vec![0u8; pl.tail_len as usize];
        let short = || format!("`{}` is shorter than expected", src.path.display());
        if let Some(r) = &src.remote {
            r.read_exact_at(&mut buf, pl.full_blocks * B)
                .with_context(short)?;
        } else {
            let f = open(src)?;
            f.read_exact_at(&mut buf, pl.full_blocks * B)
                .with_context(short)?;
            check_unchanged(src, &f)?;
        }
        tails.insert(id, buf);
    }
    Ok(tails)
}

/// File bytes inside a batch: where they came from, for cloning.
struct Seg {
    src: Arc<File>,
    file_off: u64,
    buf_off: usize,
    len: usize,
}

/// Consecutive image blocks, and which of them are plain file data.
#[derive(Default)]
struct Batch {
    buf: Vec<u8>,
    segs: Vec<Seg>,
}

/// True when `f` is on a filesystem whose `copy_file_range` shares blocks
/// (reflinks) instead of copying them: XFS and btrfs.
fn reflinks(f: &File) -> bool {
    use nix::sys::statfs::{BTRFS_SUPER_MAGIC, XFS_SUPER_MAGIC, fstatfs};
    fstatfs(f).is_ok_and(|s| {
        let t = s.filesystem_type();
        t == XFS_SUPER_MAGIC || t == BTRFS_SUPER_MAGIC
    })
}

/// Clones `len` bytes of `src` at `off_in` into `dst` at `off_out` with
/// `copy_file_range` (a reflink on XFS/btrfs: both offsets are
/// block-aligned by construction).
fn clone_range(
    src: &File,
    off_in: u64,
    dst: &File,
    off_out: u64,
    len: usize,
) -> std::io::Result<()> {
    let (mut i, mut o, mut left) = (off_in as i64, off_out as i64, len);
    while left > 0 {
        let n = nix::fcntl::copy_file_range(src, Some(&mut i), dst, Some(&mut o), left)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        left -= n;
    }
    Ok(())
}

/// Encryption of the output (`.empk`): each 4096-byte block is encrypted
/// at its offset in the `.mpk` payload and written `base` bytes further on
/// (after the GPT head). Plaintext never reaches the file.
#[derive(Clone, Copy)]
pub struct Encrypt<'a> {
    /// The pack's dm-crypt cipher.
    pub cipher: &'a mpk_crypt::SectorCipher,
    /// Byte offset of the payload in the output file.
    pub base: u64,
}

impl Encrypt<'_> {
    /// Encrypts `buf` (whole blocks at payload offset `off`) into `scratch`
    /// on all cores and writes it.
    fn write(
        &self,
        out: &File,
        buf: &[u8],
        off: u64,
        scratch: &mut Vec<u8>,
    ) -> std::io::Result<()> {
        scratch.clear();
        scratch.extend_from_slice(buf);
        scratch
            .par_chunks_mut(B as usize)
            .enumerate()
            .try_for_each(|(i, s)| self.cipher.encrypt(s, off + i as u64 * B))
            .map_err(std::io::Error::other)?;
        out.write_all_at(scratch, self.base + off)
    }
}

/// Writes a batch at byte `at`: file data by cloning when `clone`, the rest
/// (and any range the filesystem refuses to clone) by plain writes.
fn write_batch(out: &File, b: &Batch, at: u64, clone: bool) -> std::io::Result<()> {
    if !clone {
        return out.write_all_at(&b.buf, at);
    }
    let mut pos = 0;
    for s in &b.segs {
        out.write_all_at(&b.buf[pos..s.buf_off], at + pos as u64)?;
        let end = s.buf_off + s.len;
        let dst = at + s.buf_off as u64;
        if clone_range(&s.src, s.file_off, out, dst, s.len).is_err() {
            out.write_all_at(&b.buf[s.buf_off..end], dst)?;
        }
        pos = end;
    }
    out.write_all_at(&b.buf[pos..], at + pos as u64)
}

/// Produces the image's blocks in order, reading each file once.
struct Producer<'a> {
    scan: &'a Scan,
    layout: &'a Layout,
    tails: &'a HashMap<NodeId, Vec<u8>>,
    extents: Vec<Extent>,
    next: usize,
    /// Within the current extent: blocks already produced.
    done: u64,
    file: Option<(Input, Option<Sha256>)>,
    hash_files: bool,
    sha256: HashMap<NodeId, [u8; 32]>,
}

impl Producer<'_> {
    /// Fills `batch` with up to `BATCH_BLOCKS` blocks; false at the end.
    fn fill(&mut self, batch: &mut Batch) -> Result<bool> {
        batch.segs.clear();
        let buf = &mut batch.buf;
        buf.clear();
        while buf.len() < BATCH_BLOCKS * B as usize {
            let Some(&ext) = self.extents.get(self.next) else {
                break;
            };
            let room = (BATCH_BLOCKS * B as usize - buf.len()) as u64 / B;
            match ext {
                Extent::Meta { image_block, count } => {
                    let n = room.min(count - self.done);
                    for b in image_block + self.done..image_block + self.done + n {
                        let blk =
                            self.layout
                                .meta_block(b, |node, dst: &mut [u8]| -> Result<()> {
                                    dst.copy_from_slice(&self.tails[&node]);
                                    Ok(())
                                })?;
                        buf.extend_from_slice(&blk);
                    }
                    self.advance(n, count);
                }
                Extent::File { node, count, .. } => {
                    let src = self.scan.source(node);
                    if self.file.is_none() {
                        self.file = Some((
                            Input::open(src, count * B)?,
                            self.hash_files.then(Sha256::new),
                        ));
                    }
                    let (f, h) = self.file.as_mut().expect("opened");
                    let n = room.min(count - self.done);
                    let start = buf.len();
                    buf.resize(start + (n * B) as usize, 0);
                    if let Input::Local(f) = f {
                        batch.segs.push(Seg {
                            src: Arc::clone(f),
                            file_off: self.done * B,
                            buf_off: start,
                            len: (n * B) as usize,
                        });
                    }
                    f.read_exact(&mut buf[start..]).with_context(|| {
                        format!(
                            "`{}` is shorter than when it was scanned",
                            src.path.display()
                        )
                    })?;
                    if let Some(h) = h {
                        h.update(&buf[start..]);
                    }
                    if self.advance(n, count) {
                        let (f, h) = self.file.take().expect("opened");
                        f.check_unchanged(src)?;
                        if let Some(mut h) = h {
                            if let Some(t) = self.tails.get(&node) {
                                h.update(t);
                            }
                            self.sha256.insert(node, h.finalize().into());
                        }
                    }
                }
            }
        }
        Ok(!buf.is_empty())
    }

    /// Moves `n` blocks on in the current extent; true when it ends.
    fn advance(&mut self, n: u64, count: u64) -> bool {
        self.done += n;
        if self.done == count {
            self.next += 1;
            self.done = 0;
            true
        } else {
            false
        }
    }
}

/// How to pack: the verity salt and UUID, where the bytes go, and what
/// else to compute on the way.
pub struct PackParams<'a> {
    /// dm-verity salt (SHA-256 of the identity).
    pub salt: &'a [u8],
    /// EROFS and verity UUID.
    pub uuid: [u8; 16],
    /// The empty output file; `None` writes nothing and only computes the
    /// root hash (and file hashes), the way `mpk reproduce` checks a
    /// reference without disk space for an image.
    pub out: Option<&'a File>,
    /// Encrypt what goes to `out` (an `.empk` payload) instead of writing
    /// plaintext.
    pub encrypt: Option<Encrypt<'a>>,
    /// Also compute each file's SHA-256 in the same pass (one more SHA-256
    /// over every input byte, on the reading thread).
    pub hash_files: bool,
    /// Told how many image bytes each finished batch added.
    pub progress: &'a (dyn Fn(u64) + Sync),
}

/// Streams the `.mpk` bytes (image, verity superblock, hash tree) of
/// `layout` as `p` says; hashing runs on `pool`.
pub fn pack_into(
    scan: &Scan,
    layout: &Layout,
    p: &PackParams<'_>,
    pool: &rayon::ThreadPool,
) -> Result<Packed> {
    let PackParams {
        salt,
        uuid,
        out,
        encrypt,
        hash_files,
        progress,
    } = *p;
    let blocks = layout.blocks();
    let h = layout.image_len();
    let tails = read_tails(scan, layout)?;
    let mut builder = TreeBuilder::new(salt, blocks)?;
    let hash_base = h + B;
    let mut scratch = Vec::new();
    let mut put = |buf: &[u8], off: u64| match (out, encrypt) {
        (None, _) => Ok(()),
        (Some(f), None) => f.write_all_at(buf, off),
        (Some(f), Some(e)) => e.write(f, buf, off, &mut scratch),
    };
    let write_err =
        |what: &str, off: u64| format!("cannot write {what} at offset {off} of the output");

    let mut producer = Producer {
        scan,
        layout,
        tails: &tails,
        extents: layout.extents(),
        next: 0,
        done: 0,
        file: None,
        hash_files,
        sha256: HashMap::new(),
    };
    let clone = encrypt.is_none() && out.is_some_and(reflinks);
    let mut batch_scratch = Vec::new();
    let (full_tx, full_rx) = sync_channel::<Result<Batch>>(1);
    let (empty_tx, empty_rx) = sync_channel::<Batch>(2);
    for _ in 0..2 {
        let buf = Vec::with_capacity(BATCH_BLOCKS * B as usize);
        let batch = Batch {
            buf,
            segs: Vec::new(),
        };
        empty_tx.send(batch).expect("fresh channel");
    }

    let (result, mut sha256) = std::thread::scope(|sc| {
        let prod = sc.spawn(move || {
            while let Ok(mut buf) = empty_rx.recv() {
                match producer.fill(&mut buf) {
                    Ok(true) => {
                        if full_tx.send(Ok(buf)).is_err() {
                            break;
                        }
                    }
                    Ok(false) => break,
                    Err(e) => {
                        let _ = full_tx.send(Err(e));
                        break;
                    }
                }
            }
            producer.sha256
        });
        let mut pos = 0u64;
        let result = (|| -> Result<()> {
            for batch in full_rx.iter() {
                let batch = batch?;
                let buf = &batch.buf;
                let (written, digests) = pool.install(|| {
                    rayon::join(
                        || match (out, encrypt) {
                            (None, _) => Ok(()),
                            (Some(f), None) => write_batch(f, &batch, pos * B, clone),
                            (Some(f), Some(e)) => e.write(f, buf, pos * B, &mut batch_scratch),
                        },
                        || {
                            buf.par_chunks(B as usize)
                                .map(|blk| builder.hasher().hash(blk))
                                .collect::<Vec<_>>()
                        },
                    )
                });
                written.with_context(|| write_err("image data", pos * B))?;
                builder.push_all(&digests, |idx, blk| -> Result<()> {
                    let off = hash_base + idx * B;
                    put(blk, off).with_context(|| write_err("a hash block", off))
                })?;
                pos += (buf.len() as u64) / B;
                progress(buf.len() as u64);
                if empty_tx.send(batch).is_err() {
                    break;
                }
            }
            if pos != blocks {
                bail!("internal error: produced {pos} of {blocks} image blocks");
            }
            Ok(())
        })();
        // Unblock and drain the producer whatever happened.
        drop(empty_tx);
        for _ in full_rx.iter() {}
        (result, prod.join().expect("producer thread panicked"))
    });
    result?;
    // Cloned ranges are shared after the read that hashed them: make sure
    // no input changed in between (and, for every mode, since its read).
    for src in scan.sources.iter().flatten().filter(|s| s.remote.is_none()) {
        let m = std::fs::metadata(&src.path)
            .with_context(|| format!("cannot stat `{}`", src.path.display()))?;
        if m.len() != src.size || Source::stamp_of(&m) != src.stamp {
            bail!(
                "`{}` changed while it was being packed; nothing was written",
                src.path.display()
            );
        }
    }
    let root = builder.finish(|idx, blk| -> Result<()> {
        let off = hash_base + idx * B;
        put(blk, off).with_context(|| write_err("a hash block", off))
    })?;
    // The whole block after the image: the superblock, then zeros (which
    // must be encrypted too, so they are written, not left as a hole).
    let mut sb = vec![0u8; B as usize];
    let sbb = mpk_verity::Superblock::new(uuid, salt, blocks)?.to_bytes();
    sb[..sbb.len()].copy_from_slice(&sbb);
    put(&sb, h).with_context(|| write_err("the verity superblock", h))?;
    if let (Some(f), None) = (out, encrypt) {
        f.set_len(mpk_len(blocks)?)
            .context("cannot size the output")?;
    }
    // Files without full blocks were never streamed: hash their tails.
    for i in 0..scan.tree.len() {
        let id = NodeId(i);
        if hash_files
            && matches!(scan.tree.node(id).kind, NodeKind::File { .. })
            && !sha256.contains_key(&id)
        {
            let t = tails.get(&id).map_or(&[][..], Vec::as_slice);
            sha256.insert(id, Sha256::digest(t).into());
        }
    }
    Ok(Packed {
        root,
        hash_offset: h,
        sha256,
    })
}
