//! Plans an EROFS image exactly as
//! `mkfs.erofs 1.8.6 --all-root -T0 -U<uuid> -b4096 --workers=<n>` lays it
//! out (the `modelwrap-v2` layout), from names, modes and sizes only.
//!
//! erofs-utils 1.8 hands the allocation work to one "dfops" worker thread
//! as a FIFO of jobs (a file's data and inode, a directory's inode, a
//! directory's blocks), so the placement depends only on the job order,
//! never on `--workers` (which sizes the compression pool, unused here).
//! This module replays that job order against the 1.8.6 allocator model
//! (`alloc186.rs`) and hands the result to the layout assembly the 1.5
//! model shares. Rules: `erofs-1.8.6-layout.md`.

use std::collections::VecDeque;

use crate::Error;
use crate::alloc186::{Alloc, BbId, Use};
use crate::format::{BLOCK_SIZE, ISLOT_BITS, LAYOUT_FLAT_INLINE, SUPERBLOCK_END};
use crate::tree::{NodeId, NodeKind, Tree};
use crate::writer::{At, Facts, Layout, assemble, dir_entries};

const B: u64 = BLOCK_SIZE;

struct Planner<'a> {
    tree: &'a Tree,
    alloc: Alloc,
    ino: u32,
    inode_pos: Vec<Option<(BbId, u64)>>,
    first_block: Vec<Option<u64>>,
    tail_pos: Vec<Option<(BbId, u64)>>,
    /// The tail goes in a block of its own, allocated late (`lazy_tailblock`).
    lazy: Vec<bool>,
    facts: Facts,
}

/// Plans the 1.8.6 image of `tree` with filesystem UUID `uuid`.
pub(crate) fn plan(tree: &Tree, uuid: [u8; 16]) -> Result<Layout, Error> {
    let n = tree.len();
    let mut p = Planner {
        tree,
        alloc: Alloc::new(),
        ino: 0,
        inode_pos: vec![None; n],
        first_block: vec![None; n],
        tail_pos: vec![None; n],
        lazy: vec![false; n],
        facts: Facts::new(n),
    };
    // erofs_reserve_sb: an empty META buffer, ballooned to 1152 bytes and
    // mapped at block 0.
    let (sb, _) = p
        .alloc
        .balloc(Use::Meta, 0, 0)
        .expect("an empty buffer always fits");
    p.alloc.attach_after(sb, SUPERBLOCK_END);
    p.alloc.map(Some(sb));
    // The root's inode first, then (erofs_fixup_meta_blkaddr) its address.
    p.dir_inode(Tree::ROOT)?;
    let (rbb, roff) = p.inode_pos[0].expect("root placed");
    p.alloc.map(Some(rbb));
    let root_off = p.alloc.addr(rbb).expect("mapped") * B + roff;
    if root_off > 0xFFFFu64 << ISLOT_BITS {
        // Cannot happen (the root's inode is the first one placed), but a
        // moved `meta_blkaddr` is never written.
        return Err(Error::MetaBlkaddr);
    }
    // erofs_mkfs_dump_tree: each directory's children in name order (files:
    // data and inode; directories: inode), then the directory's own blocks;
    // its subdirectories are visited next, before the directories queued
    // earlier (depth first over directories).
    let mut queue = VecDeque::from([Tree::ROOT]);
    while let Some(dir) = queue.pop_front() {
        let mut subdirs = Vec::new();
        let children: Vec<NodeId> = p.facts.entries[dir.0]
            .iter()
            .filter(|(name, _, _)| name.as_slice() != b"." && name.as_slice() != b"..")
            .map(|&(_, id, _)| id)
            .collect();
        for c in children {
            match tree.node(c).kind {
                NodeKind::File { size } => p.file(c, size)?,
                NodeKind::Dir { .. } => {
                    p.dir_inode(c)?;
                    subdirs.push(c);
                }
            }
        }
        p.dir_blocks(dir)?;
        for d in subdirs.into_iter().rev() {
            queue.push_front(d);
        }
    }
    // erofs_bflush / erofs_writesb: everything left gets an address.
    p.alloc.map(None);
    let at: Vec<At> = (0..n)
        .map(|i| {
            let addr = |bb| p.alloc.addr(bb).expect("mapped") * B;
            let (bb, ioff) = p.inode_pos[i].expect("every node placed");
            let tail = p.tail_pos[i].map(|(tbb, toff)| addr(tbb) + toff);
            (addr(bb) + ioff, p.first_block[i], tail)
        })
        .collect();
    assemble(tree, &p.facts, &at, u64::from(p.ino), p.alloc.tail(), uuid)
}

impl Planner<'_> {
    /// `erofs_prepare_inode_buffer`: places the inode of `s` bytes with its
    /// `t`-byte tail inline when it fits; otherwise the tail gets a block
    /// (now, by growing `data`, or later) and the inode goes alone.
    fn inode(&mut self, id: NodeId, s: u64, t: u64, data: Option<BbId>) -> Result<(), Error> {
        match self.alloc.balloc(Use::Inode, s, t) {
            Ok((bb, off)) => {
                self.inode_pos[id.0] = Some((bb, off));
                if t > 0 {
                    self.facts.layout[id.0] = LAYOUT_FLAT_INLINE;
                    let toff = self.alloc.attach_after(bb, t);
                    self.tail_pos[id.0] = Some((bb, toff));
                }
            }
            Err(_) => {
                match data {
                    Some(bb) => self.alloc.balloon_block(bb),
                    None => self.lazy[id.0] = true,
                }
                let (bb, off) = self
                    .alloc
                    .balloc(Use::Inode, s, 0)
                    .expect("an inode alone always fits");
                self.inode_pos[id.0] = Some((bb, off));
            }
        }
        // `i_ino` counts from 1, in job order.
        self.ino = self.ino.checked_add(1).ok_or(Error::TooManyInodes)?;
        self.facts.ino[id.0] = self.ino;
        Ok(())
    }

    /// `erofs_write_tail_end`: a tail that is not inline goes at the start
    /// of its tail block; then the data buffer is dropped.
    fn tail_end(&mut self, id: NodeId, data: Option<BbId>, what: Use) {
        let t = self.facts.size[id.0] % B;
        let mut data = data;
        if t > 0 && self.tail_pos[id.0].is_none() {
            let bb = match data {
                None => {
                    let (bb, _) = self
                        .alloc
                        .balloc(what, B, 0)
                        .expect("a new block always fits");
                    self.alloc.map(Some(bb));
                    self.first_block[id.0] = None;
                    data = Some(bb);
                    bb
                }
                Some(bb) => {
                    if self.lazy[id.0] {
                        self.alloc.balloon_block(bb);
                    }
                    self.alloc.map(Some(bb));
                    bb
                }
            };
            self.tail_pos[id.0] = Some((bb, self.alloc.used(bb) - B));
        }
        if let Some(bb) = data {
            self.alloc.release(bb);
        }
    }

    /// A file's job: its full blocks (a new DATA buffer, mapped at once),
    /// its inode, its tail.
    fn file(&mut self, id: NodeId, size: u64) -> Result<(), Error> {
        self.facts.size[id.0] = size;
        let s = if size > u64::from(u32::MAX) { 64 } else { 32 };
        let full = size / B;
        if full > u64::from(u32::MAX) {
            return Err(Error::TooLarge(self.tree.path(id)));
        }
        let data = (full > 0).then(|| {
            let (bb, _) = self
                .alloc
                .balloc(Use::Data, full * B, 0)
                .expect("a new block always fits");
            self.alloc.map(Some(bb));
            self.first_block[id.0] = self.alloc.addr(bb);
            bb
        });
        self.inode(id, s, size % B, data)?;
        self.tail_end(id, data, Use::Data);
        Ok(())
    }

    /// A directory's inode job: its entries are read and sized
    /// (`erofs_prepare_dir_file`), then its inode placed with the tail of
    /// its entries inline if they fit. Its blocks come later.
    fn dir_inode(&mut self, id: NodeId) -> Result<(), Error> {
        let (entries, nlink, d) = dir_entries(self.tree, id)?;
        self.facts.entries[id.0] = entries;
        self.facts.nlink[id.0] = nlink;
        self.facts.size[id.0] = d;
        // A directory's inode size is chosen while its size is still 0.
        self.inode(id, 32, d % B, None)
    }

    /// A directory's blocks job (`erofs_write_dir_file`): its full blocks
    /// (a new block-aligned META buffer at the end of the list, which maps
    /// everything before it), every entry's inode mapped as its nid is
    /// looked up, then its tail.
    fn dir_blocks(&mut self, id: NodeId) -> Result<(), Error> {
        let full = self.facts.size[id.0] / B;
        let data = (full > 0).then(|| {
            let (bb, _) = self
                .alloc
                .balloc(Use::Dira, full * B, 0)
                .expect("a new block always fits");
            self.alloc.map(Some(bb));
            self.first_block[id.0] = self.alloc.addr(bb);
            bb
        });
        for &(_, target, _) in &self.facts.entries[id.0] {
            let (bb, _) = self.inode_pos[target.0].expect("placed before lookup");
            self.alloc.map(Some(bb));
        }
        self.tail_end(id, data, Use::Dira);
        Ok(())
    }
}
