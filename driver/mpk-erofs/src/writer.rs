//! Plans an EROFS image exactly as `mkfs.erofs 1.5 --all-root -T0 -U<uuid>`
//! lays it out, from names, modes and sizes only.
//!
//! The result, a [`Layout`], holds every metadata byte (superblock,
//! inodes, directory blocks) and says where each file's full blocks and
//! tail go. File contents never pass through here: the caller streams
//! them into the places the layout names ([`Layout::extents`]) and asks
//! for the finished metadata blocks with the tails filled in
//! ([`Layout::meta_block`]). Rules: `erofs-1.5-layout.md` §2–§9.

use std::collections::BTreeMap;

use crate::Error;
use crate::alloc::{Alloc, BbId, Kind};
use crate::format::{
    BLOCK_SIZE, BLOCK_SIZE_BITS, Dirent, FEATURE_COMPAT_MTIME, FEATURE_COMPAT_SB_CHKSUM, FT_DIR,
    FT_REG_FILE, ISLOT_BITS, Inode, LAYOUT_FLAT_INLINE, LAYOUT_FLAT_PLAIN, NULL_ADDR, S_IFDIR,
    S_IFREG, SUPERBLOCK_END, SUPERBLOCK_OFFSET, Superblock, superblock_checksum,
};
use crate::tree::{NodeId, NodeKind, Tree};

const B: u64 = BLOCK_SIZE;

/// Where one node's inode and data landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// `i_ino`: pre-order walk counter.
    pub ino: u32,
    /// Inode number (32-byte slot index from `meta_blkaddr`).
    pub nid: u64,
    /// Byte offset of the inode in the image.
    pub inode_offset: u64,
    /// First full data block, if the node has full blocks.
    pub first_block: Option<u64>,
    /// Number of full data blocks.
    pub full_blocks: u64,
    /// Byte offset of the tail (`size mod 4096` bytes) in the image, if any:
    /// right after the inode (inline) or at the start of a tail block.
    pub tail_offset: Option<u64>,
    /// Length of the tail in bytes (0 when none).
    pub tail_len: u64,
}

impl Placement {
    /// The block holding the tail, if any.
    pub fn tail_block(&self) -> Option<u64> {
        self.tail_offset.map(|o| o / B)
    }
}

/// A run of image blocks and where their bytes come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Extent {
    /// `count` full blocks of a file, from its block `file_block` onwards.
    File {
        /// The file.
        node: NodeId,
        /// First block index within the file.
        file_block: u64,
        /// First image block.
        image_block: u64,
        /// Number of blocks.
        count: u64,
    },
    /// Blocks made by [`Layout::meta_block`] (metadata, tails, or zeros).
    Meta {
        /// First image block.
        image_block: u64,
        /// Number of blocks.
        count: u64,
    },
}

/// The metadata writes of one block: (offset in the block, bytes), applied
/// in order over zeros.
type MetaWrites = Vec<(u16, Box<[u8]>)>;

/// A planned image.
#[derive(Debug, Clone)]
pub struct Layout {
    superblock: Superblock,
    placements: Vec<Placement>,
    /// Metadata bytes by block, as (offset in block, bytes) writes over
    /// zeros: only the bytes that exist are held (a whole 4 KiB block per
    /// metadata block would cost 4 KiB per small file with an inline tail).
    meta: BTreeMap<u64, MetaWrites>,
    tails: BTreeMap<u64, Vec<(usize, NodeId)>>,
    file_runs: Vec<(u64, u64, NodeId)>,
}

struct Planner<'a> {
    tree: &'a Tree,
    alloc: Alloc,
    ino: u32,
    // Per node: inode buffer block + offset, data BB, tail position.
    inode_pos: Vec<Option<(BbId, u64)>>,
    data_pos: Vec<Option<u64>>,
    tail_pos: Vec<Option<(BbId, u64)>>,
    facts: Facts,
    root_inode_off: Option<u64>,
}

/// Plans the image `mkfs.erofs` 1.5 makes of `tree` with filesystem UUID
/// `uuid` (the `modelwrap-v1` layout; [`crate::plan_for`] picks a model).
pub fn plan(tree: &Tree, uuid: [u8; 16]) -> Result<Layout, Error> {
    tree.check_names_1_5()?;
    let n = tree.len();
    let mut p = Planner {
        tree,
        alloc: Alloc::new(),
        ino: 0,
        inode_pos: vec![None; n],
        data_pos: vec![None; n],
        tail_pos: vec![None; n],
        facts: Facts::new(n),
        root_inode_off: None,
    };
    // The superblock's buffer block: 1024 zero bytes + 128 bytes.
    let sb = p.alloc.new_bb(Kind::Meta);
    p.alloc.attach(sb, SUPERBLOCK_END, 1, 0);
    p.process(Tree::ROOT)?;
    p.alloc.assign(None);
    p.finish(uuid)
}

/// One directory entry: name, target, `file_type`.
pub(crate) type DirEntry = (Vec<u8>, NodeId, u8);

/// A directory's entries (with `.` and `..`) in byte order, its `i_nlink`
/// and its size (both layouts share these rules: `erofs-1.5-layout.md` §3).
pub(crate) fn dir_entries(tree: &Tree, id: NodeId) -> Result<(Vec<DirEntry>, u32, u64), Error> {
    let node = tree.node(id);
    let NodeKind::Dir { children } = &node.kind else {
        unreachable!("dir_entries of a file");
    };
    let mut entries: Vec<DirEntry> = vec![
        (b".".to_vec(), id, FT_DIR),
        (b"..".to_vec(), node.parent, FT_DIR),
    ];
    for &c in children {
        let cn = tree.node(c);
        let ft = match cn.kind {
            NodeKind::Dir { .. } => FT_DIR,
            NodeKind::File { .. } => FT_REG_FILE,
        };
        entries.push((cn.name.clone(), c, ft));
    }
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    for w in entries.windows(2) {
        if w[0].0 == w[1].0 {
            return Err(Error::DuplicateName(tree.path(w[1].1)));
        }
    }
    let subdirs = entries.iter().filter(|e| e.2 == FT_DIR).count() as u32;
    let nlink = if subdirs > u32::from(u16::MAX) {
        1
    } else {
        subdirs
    };
    let mut d = 0u64;
    for (name, _, _) in &entries {
        let l = Dirent::SIZE as u64 + name.len() as u64;
        if d % B + l > B {
            d = d.div_ceil(B) * B;
        }
        d += l;
    }
    Ok((entries, nlink, d))
}

/// What a planner learns about every node besides where it goes.
#[derive(Debug)]
pub(crate) struct Facts {
    /// `i_ino`.
    pub(crate) ino: Vec<u32>,
    /// `LAYOUT_FLAT_PLAIN` or `LAYOUT_FLAT_INLINE`.
    pub(crate) layout: Vec<u16>,
    /// File size, or directory size.
    pub(crate) size: Vec<u64>,
    /// `i_nlink`.
    pub(crate) nlink: Vec<u32>,
    /// A directory's entries in order (empty for files).
    pub(crate) entries: Vec<Vec<DirEntry>>,
}

impl Facts {
    pub(crate) fn new(n: usize) -> Self {
        Self {
            ino: vec![0; n],
            layout: vec![LAYOUT_FLAT_PLAIN; n],
            size: vec![0; n],
            nlink: vec![1; n],
            entries: vec![Vec::new(); n],
        }
    }
}

/// Where a planner put one node: its inode's byte offset, its first full
/// block, its tail's byte offset.
pub(crate) type At = (u64, Option<u64>, Option<u64>);

/// Builds the [`Layout`] (superblock, inodes, directory blocks, tails and
/// file runs) from every node's placement: the part both layout models
/// share.
pub(crate) fn assemble(
    tree: &Tree,
    facts: &Facts,
    at: &[At],
    inos: u64,
    blocks: u64,
    uuid: [u8; 16],
) -> Result<Layout, Error> {
    let blocks32 = u32::try_from(blocks).map_err(|_| Error::TooLarge(String::new()))?;
    let placements: Vec<Placement> = at
        .iter()
        .enumerate()
        .map(|(i, &(inode_offset, first_block, tail_offset))| Placement {
            ino: facts.ino[i],
            nid: inode_offset >> ISLOT_BITS,
            inode_offset,
            first_block,
            full_blocks: facts.size[i] / B,
            tail_offset,
            tail_len: if tail_offset.is_some() {
                facts.size[i] % B
            } else {
                0
            },
        })
        .collect();
    let root_nid = placements[0].nid;
    let mut layout = Layout {
        superblock: Superblock {
            checksum: 0,
            feature_compat: FEATURE_COMPAT_SB_CHKSUM | FEATURE_COMPAT_MTIME,
            blkszbits: BLOCK_SIZE_BITS,
            sb_extslots: 0,
            root_nid: root_nid as u16,
            inos,
            build_time: 0,
            build_time_nsec: 0,
            blocks: blocks32,
            meta_blkaddr: 0,
            xattr_blkaddr: 0,
            uuid,
        },
        placements,
        meta: BTreeMap::new(),
        tails: BTreeMap::new(),
        file_runs: Vec::new(),
    };
    layout.put(SUPERBLOCK_OFFSET, &layout.superblock.encode());
    for i in 0..at.len() {
        let id = NodeId(i);
        let node = tree.node(id);
        let pl = layout.placements[i].clone();
        let (mode, is_dir) = match node.kind {
            NodeKind::Dir { .. } => (S_IFDIR | node.perm, true),
            NodeKind::File { .. } => (S_IFREG | node.perm, false),
        };
        let raw_blkaddr = match (pl.first_block, pl.tail_offset) {
            (Some(b), _) => b as u32,
            (None, Some(off)) if facts.layout[i] == LAYOUT_FLAT_PLAIN => (off / B) as u32,
            (None, Some(_)) => NULL_ADDR,
            (None, None) => 0,
        };
        let size = facts.size[i];
        let inode = Inode {
            extended: size > u64::from(u32::MAX),
            layout: facts.layout[i],
            mode,
            nlink: facts.nlink[i],
            size,
            raw_blkaddr,
            ino: pl.ino,
        };
        layout.put(pl.inode_offset, &inode.encode());
        if is_dir {
            layout.put_dir(&facts.entries[i], &pl);
        } else {
            if let (Some(first), true) = (pl.first_block, pl.full_blocks > 0) {
                layout.file_runs.push((first, pl.full_blocks, id));
            }
            if let Some(off) = pl.tail_offset {
                layout
                    .tails
                    .entry(off / B)
                    .or_default()
                    .push(((off % B) as usize, id));
                // A tail block exists as a metadata block even if it
                // holds nothing else: make sure it is composed.
                layout.meta.entry(off / B).or_default();
            }
        }
    }
    layout.file_runs.sort_unstable();
    Ok(layout)
}

impl Planner<'_> {
    fn process(&mut self, id: NodeId) -> Result<(), Error> {
        self.facts.ino[id.0] = self.ino;
        self.ino = self.ino.checked_add(1).ok_or(Error::TooManyInodes)?;
        let node = self.tree.node(id);
        let size = match &node.kind {
            NodeKind::File { size } => *size,
            NodeKind::Dir { .. } => {
                let (entries, nlink, d) = dir_entries(self.tree, id)?;
                self.facts.nlink[id.0] = nlink;
                self.facts.entries[id.0] = entries;
                d
            }
        };
        self.facts.size[id.0] = size;
        let is_dir = matches!(node.kind, NodeKind::Dir { .. });
        let s: u64 = if size > u64::from(u32::MAX) { 64 } else { 32 };
        let full = size / B;
        let t = size % B;
        if full > u64::from(u32::MAX) {
            return Err(Error::TooLarge(self.tree.path(id)));
        }
        let mut data_bb = (full > 0).then(|| self.alloc.alloc_data(full));
        self.data_pos[id.0] = data_bb.map(|bb| self.alloc.addr(bb).expect("data is mapped"));
        if t == 0 {
            let (bb, ioff, _) = self.alloc.place_inode(s, 0);
            self.inode_pos[id.0] = Some((bb, ioff));
            self.facts.layout[id.0] = LAYOUT_FLAT_PLAIN;
        } else if s + t <= B {
            let (bb, ioff, toff) = self.alloc.place_inode(s, t);
            self.inode_pos[id.0] = Some((bb, ioff));
            self.tail_pos[id.0] = Some((bb, toff));
            self.facts.layout[id.0] = LAYOUT_FLAT_INLINE;
        } else {
            // The tail does not fit beside the inode: one extra "tail block".
            let bb = match data_bb {
                Some(bb) => {
                    self.alloc.grow_data(bb);
                    bb
                }
                None => {
                    let bb = self.alloc.alloc_data(1);
                    self.data_pos[id.0] = None;
                    data_bb = Some(bb);
                    bb
                }
            };
            self.tail_pos[id.0] = Some((bb, full * B));
            let (ibb, ioff, _) = self.alloc.place_inode(s, 0);
            self.inode_pos[id.0] = Some((ibb, ioff));
            self.facts.layout[id.0] = LAYOUT_FLAT_PLAIN;
        }
        if is_dir {
            let (ibb, ioff) = self.inode_pos[id.0].expect("placed");
            if id == Tree::ROOT {
                self.alloc.assign(Some(ibb));
                self.root_inode_off = Some(self.alloc.addr(ibb).expect("mapped") * B + ioff);
            }
            let entries = std::mem::take(&mut self.facts.entries[id.0]);
            for (name, target, _) in &entries {
                if name.as_slice() != b"." && name.as_slice() != b".." {
                    self.process(*target)?;
                }
                let (tbb, _) = self.inode_pos[target.0].expect("placed before lookup");
                self.alloc.assign(Some(tbb));
            }
            self.facts.entries[id.0] = entries;
        }
        if let Some(bb) = data_bb {
            self.alloc.release(bb);
        }
        Ok(())
    }

    fn finish(self, uuid: [u8; 16]) -> Result<Layout, Error> {
        let root_off = self.root_inode_off.expect("root processed");
        let max_root = 0xFFFFu64 << ISLOT_BITS;
        if root_off > max_root {
            return Err(Error::MetaBlkaddr);
        }
        let at: Vec<At> = (0..self.tree.len())
            .map(|i| {
                let addr = |bb| self.alloc.addr(bb).expect("mapped") * B;
                let (bb, ioff) = self.inode_pos[i].expect("every node placed");
                let tail = self.tail_pos[i].map(|(tbb, toff)| addr(tbb) + toff);
                (addr(bb) + ioff, self.data_pos[i], tail)
            })
            .collect();
        assemble(
            self.tree,
            &self.facts,
            &at,
            u64::from(self.ino),
            self.alloc.tail(),
            uuid,
        )
    }
}

impl Layout {
    fn put(&mut self, offset: u64, bytes: &[u8]) {
        let mut off = offset;
        let mut rest = bytes;
        while !rest.is_empty() {
            let blk = off / B;
            let inb = (off % B) as usize;
            let n = rest.len().min(B as usize - inb);
            self.meta
                .entry(blk)
                .or_default()
                .push((inb as u16, rest[..n].into()));
            rest = &rest[n..];
            off += n as u64;
        }
    }

    fn put_dir(&mut self, entries: &[DirEntry], pl: &Placement) {
        // Split into pieces exactly like the size rule (§3).
        let mut pieces: Vec<&[DirEntry]> = Vec::new();
        let (mut start, mut used) = (0usize, 0u64);
        for (i, (name, _, _)) in entries.iter().enumerate() {
            let l = Dirent::SIZE as u64 + name.len() as u64;
            if used + l > B {
                pieces.push(&entries[start..i]);
                start = i;
                used = 0;
            }
            used += l;
        }
        pieces.push(&entries[start..]);
        for (k, piece) in pieces.iter().enumerate() {
            let mut buf = Vec::with_capacity(B as usize);
            let mut nameoff = piece.len() * Dirent::SIZE;
            for (name, target, ft) in piece.iter() {
                let d = Dirent {
                    nid: self.placements[target.0].nid,
                    nameoff: nameoff as u16,
                    file_type: *ft,
                };
                buf.extend_from_slice(&d.encode());
                nameoff += name.len();
            }
            for (name, _, _) in piece.iter() {
                buf.extend_from_slice(name);
            }
            let k = k as u64;
            if k < pl.full_blocks {
                let first = pl
                    .first_block
                    .expect("a directory with full blocks has data");
                self.put((first + k) * B, &buf);
            } else {
                let off = pl.tail_offset.expect("a directory tail has a place");
                self.put(off, &buf);
                if off.is_multiple_of(B) {
                    // Tail block: the rest of the block is zero.
                    self.meta.entry(off / B).or_default();
                }
            }
        }
    }

    /// Image size in blocks.
    pub fn blocks(&self) -> u64 {
        u64::from(self.superblock.blocks)
    }

    /// Image size in bytes (the dm-verity hash offset of an `.mpk`).
    pub fn image_len(&self) -> u64 {
        self.blocks() * B
    }

    /// The superblock (checksum not yet filled in: see [`Layout::meta_block`]).
    pub fn superblock(&self) -> &Superblock {
        &self.superblock
    }

    /// Where a node's inode and data landed.
    pub fn placement(&self, id: NodeId) -> &Placement {
        &self.placements[id.0]
    }

    /// The image as an ordered, gap-free list of runs covering every block.
    pub fn extents(&self) -> Vec<Extent> {
        let mut out = Vec::with_capacity(self.file_runs.len() * 2 + 1);
        let mut next = 0u64;
        for &(start, count, node) in &self.file_runs {
            if start > next {
                out.push(Extent::Meta {
                    image_block: next,
                    count: start - next,
                });
            }
            out.push(Extent::File {
                node,
                file_block: 0,
                image_block: start,
                count,
            });
            next = start + count;
        }
        if next < self.blocks() {
            out.push(Extent::Meta {
                image_block: next,
                count: self.blocks() - next,
            });
        }
        out
    }

    /// The files whose tails live in `block`, with their byte offsets in it.
    pub fn tails_in(&self, block: u64) -> &[(usize, NodeId)] {
        self.tails.get(&block).map_or(&[], Vec::as_slice)
    }

    /// The whole image in memory, given every file's contents: the pure
    /// "bytes in, bytes out" form, for tests and small trees. Streaming
    /// callers use [`Layout::extents`] and [`Layout::meta_block`] instead.
    /// Panics if a file's contents are shorter than its planned size.
    pub fn to_bytes<'a>(&self, contents: impl Fn(NodeId) -> &'a [u8]) -> Vec<u8> {
        let mut img = Vec::with_capacity(self.image_len() as usize);
        for e in self.extents() {
            match e {
                Extent::File {
                    node,
                    file_block,
                    count,
                    ..
                } => {
                    let start = (file_block * B) as usize;
                    img.extend_from_slice(&contents(node)[start..start + (count * B) as usize]);
                }
                Extent::Meta { image_block, count } => {
                    for b in image_block..image_block + count {
                        let blk = self
                            .meta_block(b, |n, dst: &mut [u8]| -> Result<(), ()> {
                                let c = contents(n);
                                dst.copy_from_slice(&c[c.len() - dst.len()..]);
                                Ok(())
                            })
                            .expect("infallible");
                        img.extend_from_slice(&blk);
                    }
                }
            }
        }
        img
    }

    /// The finished bytes of a non-file block: metadata with each inline
    /// tail filled in by `fill(node, dst)` (which must write the file's last
    /// `dst.len()` bytes), and for block 0 the superblock checksum.
    pub fn meta_block<E>(
        &self,
        block: u64,
        mut fill: impl FnMut(NodeId, &mut [u8]) -> Result<(), E>,
    ) -> Result<Box<[u8]>, E> {
        let mut out: Box<[u8]> = vec![0u8; B as usize].into();
        for (off, bytes) in self.meta.get(&block).map_or(&[][..], Vec::as_slice) {
            let off = usize::from(*off);
            out[off..off + bytes.len()].copy_from_slice(bytes);
        }
        for &(off, node) in self.tails_in(block) {
            let len = self.placements[node.0].tail_len as usize;
            fill(node, &mut out[off..off + len])?;
        }
        if block == 0 {
            let csum = superblock_checksum(&out[SUPERBLOCK_OFFSET as usize..]);
            let at = SUPERBLOCK_OFFSET as usize + 4;
            out[at..at + 4].copy_from_slice(&csum.to_le_bytes());
        }
        Ok(out)
    }
}
