//! Reads uncompressed EROFS images (plain and inline layouts): lists the
//! tree, extracts file contents and maps a block back to the entries that
//! own bytes in it. Blocks come from a caller-supplied [`Source`], so this
//! module does no I/O of its own.

use crate::Error;
use crate::format::{
    BLOCK_SIZE, Dirent, FT_DIR, ISLOT_BITS, Inode, LAYOUT_FLAT_INLINE, LAYOUT_FLAT_PLAIN,
    NULL_ADDR, S_IFDIR, S_IFMT, SUPERBLOCK_OFFSET, Superblock, superblock_checksum,
};

const B: u64 = BLOCK_SIZE;

/// Supplies 4096-byte blocks of an image.
pub trait Source {
    /// Returns block `n` (exactly 4096 bytes), or a message saying why not.
    fn block(&mut self, n: u64) -> Result<Vec<u8>, String>;
}

impl Source for &[u8] {
    fn block(&mut self, n: u64) -> Result<Vec<u8>, String> {
        let start = usize::try_from(n * B).map_err(|e| e.to_string())?;
        self.get(start..start + B as usize)
            .map(<[u8]>::to_vec)
            .ok_or_else(|| format!("block {n} is past the end of the image"))
    }
}

/// One file or directory found in the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Path from the root, `/`-separated, raw bytes (empty for the root).
    pub path: Vec<u8>,
    /// Inode number.
    pub nid: u64,
    /// The decoded inode.
    pub inode: Inode,
}

impl Entry {
    /// The path for messages (lossy UTF-8).
    pub fn display_path(&self) -> String {
        String::from_utf8_lossy(&self.path).into_owned()
    }

    /// True for directories.
    pub fn is_dir(&self) -> bool {
        self.inode.mode & S_IFMT == S_IFDIR
    }

    fn full_blocks(&self) -> u64 {
        self.inode.size / B
    }

    fn tail_len(&self) -> u64 {
        self.inode.size % B
    }
}

/// What an entry keeps in a given block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The inode itself.
    Inode,
    /// Full data block number `n` of the entry.
    Data(u64),
    /// The tail (inline after the inode, or in a tail block).
    Tail,
}

/// An opened image.
#[derive(Debug)]
pub struct Image<S> {
    src: S,
    sb: Superblock,
}

impl<S: Source> Image<S> {
    /// Reads and checks the superblock (magic, block size, checksum).
    pub fn open(mut src: S) -> Result<Self, Error> {
        let b0 = src.block(0).map_err(Error::Corrupt)?;
        let raw: &[u8; Superblock::SIZE] = b0[SUPERBLOCK_OFFSET as usize..][..Superblock::SIZE]
            .try_into()
            .expect("128 bytes");
        let sb = Superblock::decode(raw).ok_or_else(|| {
            Error::Corrupt("no EROFS superblock (bad magic or unsupported features)".into())
        })?;
        if sb.blkszbits != 12 {
            return Err(Error::Corrupt(format!(
                "block size 2^{} is not 4096",
                sb.blkszbits
            )));
        }
        let mut check = b0[SUPERBLOCK_OFFSET as usize..].to_vec();
        check[4..8].fill(0);
        let want = superblock_checksum(&check);
        if want != sb.checksum {
            return Err(Error::Corrupt(format!(
                "superblock checksum {:#010x} does not match its contents ({want:#010x})",
                sb.checksum
            )));
        }
        Ok(Self { src, sb })
    }

    /// The superblock.
    pub fn superblock(&self) -> &Superblock {
        &self.sb
    }

    fn inode_offset(&self, nid: u64) -> u64 {
        u64::from(self.sb.meta_blkaddr) * B + (nid << ISLOT_BITS)
    }

    /// Reads `len` bytes at byte offset `off`.
    fn read_at(&mut self, off: u64, len: usize) -> Result<Vec<u8>, Error> {
        let mut out = Vec::with_capacity(len);
        let mut pos = off;
        while out.len() < len {
            let blk = self.src.block(pos / B).map_err(Error::Corrupt)?;
            let inb = (pos % B) as usize;
            let n = (len - out.len()).min(B as usize - inb);
            out.extend_from_slice(&blk[inb..inb + n]);
            pos += n as u64;
        }
        Ok(out)
    }

    /// Reads the inode `nid`.
    pub fn inode(&mut self, nid: u64) -> Result<Inode, Error> {
        let raw = self.read_at(self.inode_offset(nid), Inode::EXTENDED_SIZE.min(64))?;
        let ino = Inode::decode(&raw)
            .ok_or_else(|| Error::Corrupt(format!("inode {nid} cannot be decoded")))?;
        if ino.layout != LAYOUT_FLAT_PLAIN && ino.layout != LAYOUT_FLAT_INLINE {
            return Err(Error::Corrupt(format!(
                "inode {nid} has unsupported data layout {}",
                ino.layout
            )));
        }
        Ok(ino)
    }

    /// Reads the whole contents of an entry, calling `out` per chunk.
    pub fn read(&mut self, nid: u64, mut out: impl FnMut(&[u8])) -> Result<(), Error> {
        let inode = self.inode(nid)?;
        let full = inode.size / B;
        let tail = (inode.size % B) as usize;
        for i in 0..full {
            let blk = self
                .src
                .block(u64::from(inode.raw_blkaddr) + i)
                .map_err(Error::Corrupt)?;
            out(&blk);
        }
        if tail > 0 {
            let off = self.tail_offset(nid, &inode);
            out(&self.read_at(off, tail)?);
        }
        Ok(())
    }

    fn tail_offset(&self, nid: u64, inode: &Inode) -> u64 {
        if inode.layout == LAYOUT_FLAT_INLINE {
            self.inode_offset(nid) + inode.disk_size() as u64
        } else {
            (u64::from(inode.raw_blkaddr) + inode.size / B) * B
        }
    }

    /// The entries of directory `nid`: (name, nid, file type), in disk order.
    pub fn dir(&mut self, nid: u64) -> Result<Vec<(Vec<u8>, u64, u8)>, Error> {
        let mut data = Vec::new();
        self.read(nid, |c| data.extend_from_slice(c))?;
        let mut out = Vec::new();
        for piece in data.chunks(B as usize) {
            let first: &[u8; Dirent::SIZE] = piece
                .get(..Dirent::SIZE)
                .and_then(|s| s.try_into().ok())
                .ok_or_else(|| Error::Corrupt(format!("directory {nid}: short block")))?;
            let count = usize::from(Dirent::decode(first).nameoff) / Dirent::SIZE;
            if count == 0 || count * Dirent::SIZE > piece.len() {
                return Err(Error::Corrupt(format!(
                    "directory {nid}: bad first nameoff"
                )));
            }
            let ds: Vec<Dirent> = (0..count)
                .map(|i| {
                    Dirent::decode(
                        piece[i * Dirent::SIZE..][..Dirent::SIZE]
                            .try_into()
                            .expect("12 bytes"),
                    )
                })
                .collect();
            for (i, d) in ds.iter().enumerate() {
                let start = usize::from(d.nameoff);
                let end = match ds.get(i + 1) {
                    Some(n) => usize::from(n.nameoff),
                    None => piece[start.min(piece.len())..]
                        .iter()
                        .position(|&b| b == 0)
                        .map_or(piece.len(), |p| start + p),
                };
                let name = piece
                    .get(start..end)
                    .ok_or_else(|| Error::Corrupt(format!("directory {nid}: bad nameoff")))?;
                out.push((name.to_vec(), d.nid, d.file_type));
            }
        }
        Ok(out)
    }

    /// Every entry of the image, depth-first in directory order, root first.
    pub fn walk(&mut self) -> Result<Vec<Entry>, Error> {
        let root = u64::from(self.sb.root_nid);
        let mut out = vec![Entry {
            path: Vec::new(),
            nid: root,
            inode: self.inode(root)?,
        }];
        let mut stack = vec![(root, Vec::new(), 0usize)];
        while let Some((nid, path, depth)) = stack.pop() {
            if depth > 4096 {
                return Err(Error::Corrupt(
                    "directory nesting too deep (a loop?)".into(),
                ));
            }
            let mut children = Vec::new();
            for (name, cnid, ft) in self.dir(nid)? {
                if name == b"." || name == b".." {
                    continue;
                }
                let mut p = path.clone();
                if !p.is_empty() {
                    p.push(b'/');
                }
                p.extend_from_slice(&name);
                let inode = self.inode(cnid)?;
                out.push(Entry {
                    path: p.clone(),
                    nid: cnid,
                    inode,
                });
                if ft == FT_DIR {
                    children.push((cnid, p, depth + 1));
                }
            }
            stack.extend(children.into_iter().rev());
        }
        Ok(out)
    }

    /// The entries that keep bytes in `block`, and what they keep there.
    pub fn owners(&self, entries: &[Entry], block: u64) -> Vec<(usize, Role)> {
        let mut out = Vec::new();
        for (i, e) in entries.iter().enumerate() {
            if self.inode_offset(e.nid) / B == block {
                out.push((i, Role::Inode));
            }
            let full = e.full_blocks();
            let start = u64::from(e.inode.raw_blkaddr);
            if full > 0
                && e.inode.raw_blkaddr != NULL_ADDR
                && (start..start + full).contains(&block)
            {
                out.push((i, Role::Data(block - start)));
            }
            if e.tail_len() > 0 && self.tail_offset(e.nid, &e.inode) / B == block {
                out.push((i, Role::Tail));
            }
        }
        out
    }
}
