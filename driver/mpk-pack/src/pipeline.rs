//! The native packing engine: plans the EROFS layout from names and sizes,
//! then streams every input byte exactly once into the image while the
//! dm-verity leaves are hashed on all cores and the upper tree levels are
//! written as soon as they complete. No second pass over the image.
//!
//! Three stages run at once: a producer thread reads the inputs in order,
//! this thread hashes each batch on the pool, and [`WRITERS`] threads
//! write batches (through `O_DIRECT` on disks, see `Writer`) while the
//! next ones are read and hashed.
//!
//! Memory: [`IN_FLIGHT`] batches of [`BATCH_BLOCKS`] blocks (48 MiB), one
//! more batch per writer when encrypting, up to `IN_FLIGHT + 1` runs of
//! gathered hash blocks (1 MiB each),
//! one 4 KiB block per tree level, and the metadata of the layout (about
//! 32 bytes per file plus its directory entry). Tails are read when their
//! block is produced. Nothing grows with the size of the files.

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
/// Written bytes between two background `fdatasync` calls (see
/// [`pack_into`]).
const FLUSH_EVERY: u64 = 64 << 20;
/// Batches between the reading, hashing and writing stages (6 × 8 MiB).
pub const IN_FLIGHT: usize = 6;
/// Writing threads: each writes whole batches, so the disk always has
/// requests queued.
pub const WRITERS: usize = 2;
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

/// Reads file `id`'s tail (the bytes after its last full block) into
/// `dst`, which must be exactly that long. Tails are read when their block
/// is produced, not held for the whole pack: memory stays independent of
/// the number of files.
fn read_tail(scan: &Scan, layout: &Layout, id: NodeId, dst: &mut [u8]) -> Result<()> {
    let pl = layout.placement(id);
    let src = scan.source(id);
    let short = || format!("`{}` is shorter than expected", src.path.display());
    if let Some(r) = &src.remote {
        r.read_exact_at(dst, pl.full_blocks * B).with_context(short)
    } else {
        let f = open(src)?;
        f.read_exact_at(dst, pl.full_blocks * B)
            .with_context(short)?;
        check_unchanged(src, &f)
    }
}

/// SHA-256 of each tail read once so far, kept until its second read:
/// a tail goes into the image (inline after its inode, or in a tail
/// block) and into its file's SHA-256, in two reads at different times.
/// The second read must give the bytes the first gave, or the file's
/// SHA-256 would describe bytes the image does not hold. Comparing here
/// catches what the stamp cannot: a Hub range that answers differently, a
/// filesystem that does not move ctime. 32 bytes per file at most, like
/// the rest of the per-file metadata; empty when file hashes are not asked
/// for (then each tail is read once).
type TailLedger = HashMap<NodeId, [u8; 32]>;

/// Reads file `id`'s tail into `dst` (see [`read_tail`]) and, with a
/// ledger, checks it against the other read of the same tail.
fn read_tail_checked(
    scan: &Scan,
    layout: &Layout,
    id: NodeId,
    dst: &mut [u8],
    ledger: Option<&mut TailLedger>,
) -> Result<()> {
    read_tail(scan, layout, id, dst)?;
    if let Some(ledger) = ledger {
        let digest: [u8; 32] = Sha256::digest(&*dst).into();
        match ledger.remove(&id) {
            None => {
                ledger.insert(id, digest);
            }
            Some(first) if first != digest => bail!(
                "`{}` changed while it was being packed: its last {} bytes (from offset {}) \
                 read differently for the image and for its SHA-256; nothing was written",
                scan.source(id).path.display(),
                dst.len(),
                layout.placement(id).full_blocks * B
            ),
            Some(_) => {}
        }
    }
    Ok(())
}

/// File bytes inside a batch: where they came from, for cloning.
struct Seg {
    src: Arc<File>,
    file_off: u64,
    buf_off: usize,
    len: usize,
}

/// A fixed-capacity byte buffer whose contents start on a 4096-byte
/// boundary, as `O_DIRECT` writes need; safe code: it over-allocates one
/// block and starts at the first aligned byte, and never reallocates.
struct AlignedBuf {
    raw: Vec<u8>,
    start: usize,
    len: usize,
}

impl AlignedBuf {
    fn new(capacity: usize) -> Self {
        let raw = vec![0u8; capacity + B as usize];
        let start = raw.as_ptr().align_offset(B as usize);
        Self { raw, start, len: 0 }
    }

    fn capacity(&self) -> usize {
        self.raw.len() - B as usize
    }

    fn len(&self) -> usize {
        self.len
    }

    fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn clear(&mut self) {
        self.len = 0;
    }

    fn as_slice(&self) -> &[u8] {
        &self.raw[self.start..self.start + self.len]
    }

    fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.raw[self.start..self.start + self.len]
    }

    /// Appends `n` bytes (contents unspecified) and returns them.
    fn grow(&mut self, n: usize) -> &mut [u8] {
        assert!(self.len + n <= self.capacity(), "AlignedBuf overflow");
        let at = self.start + self.len;
        self.len += n;
        &mut self.raw[at..at + n]
    }

    /// Replaces the contents with a copy of `data`.
    fn copy_from(&mut self, data: &[u8]) {
        self.clear();
        self.grow(data.len()).copy_from_slice(data);
    }
}

/// Consecutive image blocks, and which of them are plain file data.
struct Batch {
    buf: AlignedBuf,
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
    /// Encrypts `buf` (whole blocks at payload offset `off`) in place on all
    /// cores of `pool`.
    fn encrypt(&self, buf: &mut [u8], off: u64, pool: &rayon::ThreadPool) -> std::io::Result<()> {
        pool.install(|| crate::encrypted::per_block(buf, off, |s, o| self.cipher.encrypt(s, o)))
            .map_err(std::io::Error::other)
    }
}

/// Concurrent `O_DIRECT` writes per batch: the disk sees several requests
/// at once (one at a time leaves it idle between them).
const DIRECT_STREAMS: usize = 4;

/// Where the `.mpk` bytes go, and how.
///
/// Image batches go through a second descriptor opened with `O_DIRECT`
/// when the filesystem allows it: no copy into the page cache and no
/// writeback afterwards, which on a disk costs about as much CPU as the
/// hashing (measured: 0.55 s per GiB on ext4), and the final fsync finds
/// the data already written. Runs of hash blocks ([`Runs`]) take the same
/// path; only the last few hash blocks and the superblock block, written
/// after the writers are done, use the ordinary descriptor. Any refusal of
/// `O_DIRECT` (`EINVAL`: filesystem or alignment) falls back to ordinary
/// writes, which a flusher thread then pushes to the disk as they come.
struct Writer<'a> {
    out: Option<&'a File>,
    direct: Option<File>,
    encrypt: Option<Encrypt<'a>>,
    clone: bool,
    scratch: AlignedBuf,
}

impl Writer<'_> {
    /// Writes image blocks at image offset `at` (encrypting, cloning or
    /// plainly, as configured).
    fn write_batch(&mut self, b: &Batch, at: u64, pool: &rayon::ThreadPool) -> std::io::Result<()> {
        let Some(out) = self.out else {
            return Ok(());
        };
        if self.clone {
            return write_cloning(out, b, at);
        }
        let (data, off) = match self.encrypt {
            Some(e) => {
                self.scratch.copy_from(b.buf.as_slice());
                e.encrypt(self.scratch.as_mut_slice(), at, pool)?;
                (self.scratch.as_slice(), e.base + at)
            }
            None => (b.buf.as_slice(), at),
        };
        write_out(out, &mut self.direct, data, off)
    }
}

/// Hash blocks on their way out: consecutive blocks are gathered into runs
/// (one aligned buffer each), which the writer threads write like batches,
/// so the hashing thread never waits for the disk.
struct Runs {
    /// Gathering nothing (no output file).
    disabled: bool,
    buf: AlignedBuf,
    /// Image offset of the first gathered block.
    at: u64,
}

/// Bytes of one run of hash blocks.
const RUN_BYTES: usize = 256 * B as usize;

impl Runs {
    fn new(disabled: bool) -> Self {
        Self {
            disabled,
            buf: AlignedBuf::new(if disabled { 0 } else { RUN_BYTES }),
            at: 0,
        }
    }

    /// Adds the block for image offset `off`; returns the run gathered so
    /// far when `off` does not continue it or it is full.
    fn put(&mut self, blk: &[u8], off: u64) -> Option<(AlignedBuf, u64)> {
        if self.disabled {
            return None;
        }
        let end = self.at + self.buf.len() as u64;
        let done = if !self.buf.is_empty()
            && (off != end || self.buf.len() + blk.len() > self.buf.capacity())
        {
            self.take()
        } else {
            None
        };
        if self.buf.is_empty() {
            self.at = off;
        }
        self.buf.grow(blk.len()).copy_from_slice(blk);
        done
    }

    /// The run gathered so far, if any.
    fn take(&mut self) -> Option<(AlignedBuf, u64)> {
        if self.buf.is_empty() {
            return None;
        }
        let buf = std::mem::replace(&mut self.buf, AlignedBuf::new(RUN_BYTES));
        Some((buf, self.at))
    }
}

/// Work for the writer threads.
enum Job {
    /// Image blocks at an image offset; the batch goes back to the producer.
    Data(Batch, u64),
    /// A run of hash blocks at an image offset.
    Blocks(AlignedBuf, u64),
}

/// Writes a few blocks (the last hash blocks, the superblock block) at
/// image offset `off` through the ordinary descriptor, encrypted when
/// asked; the writer threads are done by then, so no direct write holds
/// the inode lock.
fn put_blocks(
    out: Option<&File>,
    encrypt: Option<Encrypt<'_>>,
    buf: &[u8],
    off: u64,
    pool: &rayon::ThreadPool,
) -> std::io::Result<()> {
    match (out, encrypt) {
        (None, _) => Ok(()),
        (Some(f), None) => f.write_all_at(buf, off),
        (Some(f), Some(e)) => {
            let mut c = buf.to_vec();
            e.encrypt(&mut c, off, pool)?;
            f.write_all_at(&c, e.base + off)
        }
    }
}

impl Writer<'_> {
    /// Writes a run of hash blocks at image offset `at` (encrypted in place
    /// when asked), through the direct descriptor when there is one.
    fn write_blocks(
        &mut self,
        buf: &mut AlignedBuf,
        at: u64,
        pool: &rayon::ThreadPool,
    ) -> std::io::Result<()> {
        let Some(out) = self.out else {
            return Ok(());
        };
        let mut off = at;
        if let Some(e) = self.encrypt {
            e.encrypt(buf.as_mut_slice(), at, pool)?;
            off += e.base;
        }
        write_out(out, &mut self.direct, buf.as_slice(), off)
    }
}

/// Writes `data` at `off`: through the `O_DIRECT` descriptor `direct` when
/// there is one, else (or once the filesystem refuses it with `EINVAL`,
/// which drops `direct` for good) through `out`.
fn write_out(out: &File, direct: &mut Option<File>, data: &[u8], off: u64) -> std::io::Result<()> {
    if let Some(d) = direct {
        match write_direct(d, data, off) {
            Err(e) if e.raw_os_error() == Some(nix::libc::EINVAL) => *direct = None,
            done => return done,
        }
    }
    out.write_all_at(data, off)
}

/// Writes `data` at `off` through an `O_DIRECT` descriptor, in
/// [`DIRECT_STREAMS`] concurrent block-aligned pieces.
fn write_direct(f: &File, data: &[u8], off: u64) -> std::io::Result<()> {
    let piece = data
        .len()
        .div_ceil(DIRECT_STREAMS)
        .next_multiple_of(B as usize);
    std::thread::scope(|s| {
        let handles: Vec<_> = data
            .chunks(piece)
            .enumerate()
            .map(|(i, c)| s.spawn(move || f.write_all_at(c, off + (i * piece) as u64)))
            .collect();
        handles
            .into_iter()
            .try_for_each(|h| h.join().expect("writer thread panicked"))
    })
}

/// True unless `f` is on tmpfs, where
/// `O_DIRECT` saves nothing and fallocate would zero every page up front.
fn on_disk(f: &File) -> bool {
    use nix::sys::statfs::{TMPFS_MAGIC, fstatfs};
    fstatfs(f).is_ok_and(|s| s.filesystem_type() != TMPFS_MAGIC)
}

/// Opens `f` a second time with `O_DIRECT` (through `/proc/self/fd`), or
/// `None` where the filesystem refuses it.
fn reopen_direct(f: &File) -> Option<File> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(nix::libc::O_DIRECT)
        .open(format!("/proc/self/fd/{}", f.as_raw_fd()))
        .ok()
}

/// Writes a batch at byte `at`, file data by cloning, the rest (and any
/// range the filesystem refuses to clone) by plain writes.
fn write_cloning(out: &File, b: &Batch, at: u64) -> std::io::Result<()> {
    let buf = b.buf.as_slice();
    let mut pos = 0;
    for s in &b.segs {
        out.write_all_at(&buf[pos..s.buf_off], at + pos as u64)?;
        let end = s.buf_off + s.len;
        let dst = at + s.buf_off as u64;
        if clone_range(&s.src, s.file_off, out, dst, s.len).is_err() {
            out.write_all_at(&buf[s.buf_off..end], dst)?;
        }
        pos = end;
    }
    out.write_all_at(&buf[pos..], at + pos as u64)
}

/// Produces the image's blocks in order, reading each file once.
struct Producer<'a> {
    scan: &'a Scan,
    layout: &'a Layout,
    extents: Vec<Extent>,
    next: usize,
    /// Within the current extent: blocks already produced.
    done: u64,
    file: Option<(Input, Option<Sha256>)>,
    hash_files: bool,
    sha256: HashMap<NodeId, [u8; 32]>,
    tails: TailLedger,
}

impl Producer<'_> {
    /// Fills `batch` with up to `BATCH_BLOCKS` blocks; false at the end.
    fn fill(&mut self, batch: &mut Batch) -> Result<bool> {
        batch.segs.clear();
        let buf = &mut batch.buf;
        buf.clear();
        while buf.len() < buf.capacity() {
            let Some(&ext) = self.extents.get(self.next) else {
                break;
            };
            let room = (buf.capacity() - buf.len()) as u64 / B;
            match ext {
                Extent::Meta { image_block, count } => {
                    let n = room.min(count - self.done);
                    for b in image_block + self.done..image_block + self.done + n {
                        let mut ledger = self.hash_files.then_some(&mut self.tails);
                        let (scan, layout) = (self.scan, self.layout);
                        let blk = layout.meta_block(b, |node, dst: &mut [u8]| -> Result<()> {
                            read_tail_checked(scan, layout, node, dst, ledger.as_deref_mut())
                        })?;
                        buf.grow(B as usize).copy_from_slice(&blk);
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
                    let dst = buf.grow((n * B) as usize);
                    if let Input::Local(f) = f {
                        batch.segs.push(Seg {
                            src: Arc::clone(f),
                            file_off: self.done * B,
                            buf_off: start,
                            len: (n * B) as usize,
                        });
                    }
                    f.read_exact(dst).with_context(|| {
                        format!(
                            "`{}` is shorter than when it was scanned",
                            src.path.display()
                        )
                    })?;
                    if let Some(h) = h {
                        h.update(dst);
                    }
                    if self.advance(n, count) {
                        let (f, h) = self.file.take().expect("opened");
                        f.check_unchanged(src)?;
                        if let Some(mut h) = h {
                            let mut t = vec![0u8; self.layout.placement(node).tail_len as usize];
                            if !t.is_empty() {
                                let ledger = Some(&mut self.tails);
                                read_tail_checked(self.scan, self.layout, node, &mut t, ledger)?;
                            }
                            h.update(&t);
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
    let mut builder = TreeBuilder::new(salt, blocks)?;
    let hash_base = h + B;
    let write_err =
        |what: &str, off: u64| format!("cannot write {what} at offset {off} of the output");

    let mut producer = Producer {
        scan,
        layout,
        extents: layout.extents(),
        next: 0,
        done: 0,
        file: None,
        hash_files,
        sha256: HashMap::new(),
        tails: TailLedger::new(),
    };
    let clone = encrypt.is_none() && out.is_some_and(reflinks);
    let direct = out.is_some_and(|f| !clone && on_disk(f));
    let writers: Vec<Writer> = (0..WRITERS)
        .map(|_| Writer {
            out,
            direct: out.filter(|_| direct).and_then(reopen_direct),
            encrypt,
            clone,
            scratch: AlignedBuf::new(if encrypt.is_some() {
                BATCH_BLOCKS * B as usize
            } else {
                0
            }),
        })
        .collect();
    let mut runs = Runs::new(out.is_none());
    if let (Some(f), true) = (out, direct) {
        // Allocate the whole payload first: O_DIRECT writes that extend a
        // file or fill holes are serialised by the filesystem (ext4 takes
        // the inode lock exclusively for them), allocated ones run in
        // parallel. Where fallocate is unsupported, writes still work.
        let base = encrypt.map_or(0, |e| e.base);
        let _ = nix::fcntl::fallocate(
            f,
            nix::fcntl::FallocateFlags::empty(),
            base as i64,
            image_len(blocks)? as i64,
        );
    }
    // Three stages, each on its own thread, IN_FLIGHT batches between
    // them: the producer reads, this thread hashes (on the pool), the
    // writer writes. The disk is kept busy while the next batches are read
    // and hashed.
    let (empty_tx, empty_rx) = sync_channel::<Batch>(IN_FLIGHT);
    let (full_tx, full_rx) = sync_channel::<Result<Batch>>(IN_FLIGHT);
    let (write_tx, write_rx) = sync_channel::<Job>(IN_FLIGHT);
    for _ in 0..IN_FLIGHT {
        let batch = Batch {
            buf: AlignedBuf::new(BATCH_BLOCKS * B as usize),
            segs: Vec::new(),
        };
        empty_tx.send(batch).expect("fresh channel");
    }

    // Without O_DIRECT, on a disk, the kernel would start writing the image
    // back only when its dirty-page thresholds are reached, and the final
    // fsync would then wait for most of it after all hashing is done. A
    // flusher thread calls fdatasync every FLUSH_EVERY bytes instead, so
    // the disk writes while the cores hash, and the final fsync finds
    // little left. Its errors are kept and fail the pack (an fsync error
    // seen and dropped here could let the final fsync succeed on lost
    // data). On tmpfs it costs nothing.
    let (flush_tx, flush_rx) = sync_channel::<()>(1);
    let flush_file = out.filter(|_| !clone);
    let write_rx = std::sync::Mutex::new(write_rx);
    let write_rx = &write_rx;
    let (result, written, (mut sha256, mut tails), flushed) = std::thread::scope(|sc| {
        let flusher = sc.spawn(move || -> std::io::Result<()> {
            let mut first_err = None;
            while flush_rx.recv().is_ok() {
                if let (Some(f), None) = (flush_file, &first_err) {
                    first_err = f.sync_data().err();
                }
            }
            first_err.map_or(Ok(()), Err)
        });
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
            (producer.sha256, producer.tails)
        });
        let writing: Vec<_> = writers
            .into_iter()
            .map(|mut writer| {
                let (empty_tx, flush_tx) = (empty_tx.clone(), flush_tx.clone());
                sc.spawn(move || -> std::result::Result<(), (u64, std::io::Error)> {
                    let mut unflushed = 0u64;
                    loop {
                        let next = write_rx
                            .lock()
                            .map_err(|_| (0, std::io::Error::other("writer lock poisoned")))?
                            .recv();
                        let (batch, at) = match next {
                            Ok(Job::Data(batch, at)) => (batch, at),
                            Ok(Job::Blocks(mut run, at)) => {
                                writer
                                    .write_blocks(&mut run, at, pool)
                                    .map_err(|e| (at, e))?;
                                continue;
                            }
                            Err(_) => break,
                        };
                        writer.write_batch(&batch, at, pool).map_err(|e| (at, e))?;
                        unflushed += batch.buf.len() as u64;
                        if unflushed >= FLUSH_EVERY
                            && flush_file.is_some()
                            && writer.direct.is_none()
                        {
                            // Never blocks: a pending request covers these bytes too.
                            let _ = flush_tx.try_send(());
                            unflushed = 0;
                        }
                        // The producer may have finished: then the batch is dropped.
                        let _ = empty_tx.send(batch);
                    }
                    Ok(())
                })
            })
            .collect();
        drop((empty_tx, flush_tx));
        let mut pos = 0u64;
        let result = (|| -> Result<()> {
            for batch in full_rx.iter() {
                let batch = batch?;
                let buf = batch.buf.as_slice();
                let hasher = builder.hasher();
                let digests = pool.install(|| {
                    buf.par_chunks(B as usize)
                        .map(|blk| hasher.hash(blk))
                        .collect::<Vec<_>>()
                });
                builder.push_all(&digests, |idx, blk| -> Result<()> {
                    if let Some((run, at)) = runs.put(blk, hash_base + idx * B) {
                        if write_tx.send(Job::Blocks(run, at)).is_err() {
                            bail!("the writing threads stopped early");
                        }
                    }
                    Ok(())
                })?;
                let n = buf.len() as u64;
                if write_tx.send(Job::Data(batch, pos * B)).is_err() {
                    // Only after a write error, which is reported first.
                    bail!("the writing thread stopped early");
                }
                pos += n / B;
                progress(n);
            }
            if pos != blocks {
                bail!("internal error: produced {pos} of {blocks} image blocks");
            }
            if let Some((run, at)) = runs.take() {
                if write_tx.send(Job::Blocks(run, at)).is_err() {
                    bail!("the writing threads stopped early");
                }
            }
            Ok(())
        })();
        // Stop the writer after its queue, then unblock and drain the
        // producer whatever happened.
        drop(write_tx);
        let written = writing
            .into_iter()
            .map(|w| w.join().expect("writer thread panicked"))
            .collect::<std::result::Result<Vec<()>, _>>();
        for _ in full_rx.iter() {}
        let sha256 = prod.join().expect("producer thread panicked");
        let flushed = flusher.join().expect("flusher thread panicked");
        (result, written, sha256, flushed)
    });
    if let Err((at, e)) = written {
        return Err(anyhow::Error::new(e).context(write_err("image data", at)));
    }
    result?;
    flushed.context("cannot write the output (fdatasync failed)")?;
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
        put_blocks(out, encrypt, blk, off, pool).with_context(|| write_err("a hash block", off))
    })?;
    // The whole block after the image: the superblock, then zeros (which
    // must be encrypted too, so they are written, not left as a hole).
    let mut sb = vec![0u8; B as usize];
    let sbb = mpk_verity::Superblock::new(uuid, salt, blocks)?.to_bytes();
    sb[..sbb.len()].copy_from_slice(&sbb);
    put_blocks(out, encrypt, &sb, h, pool)
        .with_context(|| write_err("the verity superblock", h))?;
    if let (Some(f), None) = (out, encrypt) {
        f.set_len(image_len(blocks)?)
            .context("cannot size the output")?;
    }
    // Files without full blocks were never streamed: each is its tail, and
    // its SHA-256 is the digest of the one read that went into the image
    // (an empty file has no tail to read).
    for i in 0..scan.tree.len() {
        let id = NodeId(i);
        if hash_files
            && matches!(scan.tree.node(id).kind, NodeKind::File { .. })
            && !sha256.contains_key(&id)
        {
            let digest = match tails.remove(&id) {
                Some(d) => d,
                None if layout.placement(id).tail_len == 0 => Sha256::digest([]).into(),
                None => bail!(
                    "internal error: the tail of `{}` was never read",
                    scan.tree.path(id)
                ),
            };
            sha256.insert(id, digest);
        }
    }
    if let Some(id) = tails.keys().next() {
        bail!(
            "internal error: the tail of `{}` was read only once",
            scan.tree.path(*id)
        );
    }
    Ok(Packed {
        root,
        hash_offset: h,
        sha256,
    })
}

/// The `.mpk` length of an image of `blocks` blocks, as an error when it
/// does not fit in 64 bits.
fn image_len(blocks: u64) -> Result<u64> {
    mpk_model::mpk_len(blocks)
        .with_context(|| format!("an image of {blocks} blocks is too large for a .mpk"))
}
