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

/// The most entries [`Image::walk`] lists: a bound on its memory whatever
/// the image claims (mkfs.erofs 1.5 images of real models hold far fewer).
pub const MAX_ENTRIES: usize = 16 << 20;

/// Supplies 4096-byte blocks of an image.
pub trait Source {
    /// Returns block `n` (exactly 4096 bytes), or a message saying why not.
    fn block(&mut self, n: u64) -> Result<Vec<u8>, String>;
}

impl Source for &[u8] {
    fn block(&mut self, n: u64) -> Result<Vec<u8>, String> {
        let past = || format!("block {n} is past the end of the image");
        let start = n
            .checked_mul(B)
            .and_then(|s| usize::try_from(s).ok())
            .ok_or_else(past)?;
        start
            .checked_add(B as usize)
            .and_then(|end| self.get(start..end))
            .map(<[u8]>::to_vec)
            .ok_or_else(past)
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
        // A directory is reached once in a real image (directories have no
        // hard links): a crafted one whose entries point at directories
        // already walked (a DAG or a loop) would make the walk exponential.
        let mut walked = std::collections::HashSet::new();
        while let Some((nid, path, depth)) = stack.pop() {
            if depth > 4096 {
                return Err(Error::Corrupt(
                    "directory nesting too deep (a loop?)".into(),
                ));
            }
            if !walked.insert(nid) {
                return Err(Error::Corrupt(format!(
                    "directory inode {nid} is reached twice (`{}`): directories cannot be hard-linked",
                    String::from_utf8_lossy(&path)
                )));
            }
            if out.len() > MAX_ENTRIES {
                return Err(Error::Corrupt(format!("more than {MAX_ENTRIES} entries")));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Tree, plan};

    /// 36 levels of `a/` and `b/`; returns the image and, per level, the
    /// node ids of `a` and `b`.
    fn ladder() -> (Vec<u8>, Vec<(crate::NodeId, crate::NodeId)>) {
        let mut t = Tree::new(0o755);
        let mut at = Tree::ROOT;
        let mut levels = Vec::new();
        for _ in 0..36 {
            let a = t.add_dir(at, b"a", 0o755).unwrap();
            let b = t.add_dir(at, b"b", 0o755).unwrap();
            levels.push((a, b));
            at = a;
        }
        let layout = plan(&t, [7; 16]).unwrap();
        let img = layout.to_bytes(|_| &[]);
        (img, levels)
    }

    #[test]
    fn a_directory_dag_is_refused_not_walked() {
        let (mut img, levels) = ladder();
        let entries = Image::open(&img[..]).unwrap().walk().unwrap();
        assert_eq!(entries.len(), 1 + 2 * 36);
        let nid_of = |path: &str| {
            entries
                .iter()
                .find(|e| e.path == path.as_bytes())
                .unwrap()
                .nid
        };
        // Rewire every `b` to its sibling `a`: 2^36 paths if walked.
        let mut prefix = String::new();
        for _ in &levels {
            let a = nid_of(&format!("{prefix}a"));
            let b = nid_of(&format!("{prefix}b"));
            let (from, to) = (b.to_le_bytes(), a.to_le_bytes());
            // Dirents start with the 8-byte nid; rewrite the one for `b`.
            let at = img
                .windows(8)
                .enumerate()
                .filter(|(i, w)| *w == from && i % 4 == 0 && !(1024..1024 + 128).contains(i))
                .map(|(i, _)| i)
                .find(|&i| {
                    // nameoff (u16) then file type FT_DIR follow the nid.
                    img[i + 10] == FT_DIR
                })
                .expect("the dirent of b");
            img[at..at + 8].copy_from_slice(&to);
            prefix.push_str("a/");
        }
        // The checksum covers block 0 from the superblock on, where inline
        // directories may sit: a crafted image carries a valid one.
        let sb = SUPERBLOCK_OFFSET as usize;
        let mut check = img[sb..B as usize].to_vec();
        check[4..8].fill(0);
        let sum = superblock_checksum(&check);
        img[sb + 4..sb + 8].copy_from_slice(&sum.to_le_bytes());
        // Guarded: without the check this walk visits 2^36 paths, and the
        // test must fail, not hang.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || tx.send(Image::open(&img[..]).unwrap().walk().map(|e| e.len())));
        let got = rx
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("the walk of a crafted image ran for a minute");
        let e = got.unwrap_err();
        assert!(e.to_string().contains("reached twice"), "{e}");
    }

    /// Found by the robustness suite: a block number near 2^52 or above
    /// overflowed the byte-slice source's range instead of being refused.
    #[test]
    fn a_block_past_any_image_is_an_error() {
        let img = vec![0u8; 8192];
        let mut src: &[u8] = &img;
        assert!(src.block(1).is_ok());
        for n in [2, 1 << 52, (u64::MAX / B) - 1, u64::MAX / B, u64::MAX] {
            assert!(src.block(n).is_err(), "block {n}");
        }
    }
}
