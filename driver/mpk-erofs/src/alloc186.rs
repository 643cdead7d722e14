//! A model of erofs-utils 1.8.6's buffer-block allocator (`lib/cache.c`),
//! which decides where every inode, inline tail and data block lands in a
//! `modelwrap-v2` image.
//!
//! The rules are those of `erofs-1.8.6-layout.md` §5: an ordered list of
//! buffer blocks (META or DATA), a `tail` block pointer, the last mapped
//! buffer block, and FIFO "watermeter" buckets per (kind, mapped or not,
//! `off mod 4096`), searched best fit first. It differs from 1.5's
//! (`alloc.rs`) in where new DATA blocks go in the list, in how the search
//! walks the buckets, in the second chance for the last mapped block, and in
//! that unmapped META blocks are candidates too. Only positions are
//! modelled; no bytes are held here.

use std::collections::{BTreeMap, BTreeSet};

const B: u64 = crate::format::BLOCK_SIZE;
const MASK: u64 = B - 1;

/// Buffer-block kind (`DATA` or `META`; INODE and DIRA buffers are META).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Data = 0,
    Meta = 1,
}

/// What a buffer is allocated for (`erofs_balloc`'s `type`), which gives
/// its kind and alignment (`get_alignsize`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Use {
    /// File data: a new DATA block, aligned to a block.
    Data,
    /// Directory data (`DIRA`): a new META block, aligned to a block.
    Dira,
    /// An inode: META, 32-byte aligned.
    Inode,
    /// Plain metadata (the superblock): META, unaligned.
    Meta,
}

impl Use {
    fn kind_align(self) -> (Kind, u64) {
        match self {
            Use::Data => (Kind::Data, B),
            Use::Dira => (Kind::Meta, B),
            Use::Inode => (Kind::Meta, 32),
            Use::Meta => (Kind::Meta, 1),
        }
    }
}

/// Index of a buffer block in the arena (never reused, even after release).
pub(crate) type BbId = usize;

#[derive(Debug)]
struct Bb {
    kind: Kind,
    addr: Option<u64>,
    /// `buffers.off`: bytes used, from the block's first byte.
    off: u64,
    /// `buffers.nblocks`: blocks spanned.
    nblocks: u64,
    prev: Option<BbId>,
    next: Option<BbId>,
    /// (mapped, bucket, sequence) while queued in a watermeter bucket.
    queued: Option<(bool, u64, u64)>,
}

/// The allocation did not fit (`-ENOSPC` / `-EINVAL` of `__erofs_battach`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NoSpace;

/// The allocator state.
#[derive(Debug)]
pub(crate) struct Alloc {
    bbs: Vec<Bb>,
    head: Option<BbId>,
    end: Option<BbId>,
    /// `last_mapped_block`; `None` is the list head (nothing mapped yet).
    last: Option<BbId>,
    tail: u64,
    /// Bucket queues by [kind][mapped][off mod B]: sequence → block.
    buckets: Vec<BTreeMap<u64, BbId>>,
    /// The non-empty buckets by [kind][mapped] (the `bktmap` bitmaps).
    nonempty: [[BTreeSet<u64>; 2]; 2],
    seq: u64,
}

fn bucket_index(kind: Kind, mapped: bool, nr: u64) -> usize {
    ((kind as usize * 2 + usize::from(mapped)) * B as usize) + nr as usize
}

fn round_up(x: u64, a: u64) -> u64 {
    x.div_ceil(a) * a
}

impl Alloc {
    pub(crate) fn new() -> Self {
        Self {
            bbs: Vec::new(),
            head: None,
            end: None,
            last: None,
            tail: 0,
            buckets: vec![BTreeMap::new(); 4 * B as usize],
            nonempty: Default::default(),
            seq: 0,
        }
    }

    /// The address of a buffer block, once mapped.
    pub(crate) fn addr(&self, id: BbId) -> Option<u64> {
        self.bbs[id].addr
    }

    /// The next free block (`tail_blkaddr`).
    pub(crate) fn tail(&self) -> u64 {
        self.tail
    }

    /// Bytes used in a buffer block (its `buffers.off`).
    pub(crate) fn used(&self, id: BbId) -> u64 {
        self.bbs[id].off
    }

    fn next_mapped(&self, id: BbId) -> bool {
        self.bbs[id]
            .next
            .is_some_and(|n| self.bbs[n].addr.is_some())
    }

    fn unqueue(&mut self, id: BbId) {
        if let Some((mapped, nr, seq)) = self.bbs[id].queued.take() {
            let kind = self.bbs[id].kind;
            let q = &mut self.buckets[bucket_index(kind, mapped, nr)];
            q.remove(&seq);
            if q.is_empty() {
                self.nonempty[kind as usize][usize::from(mapped)].remove(&nr);
            }
        }
    }

    /// `erofs_update_bwatermeter(bb, false)`: (re)queue at the tail of the
    /// bucket of its current `off mod B` and mapped state.
    fn requeue(&mut self, id: BbId) {
        self.unqueue(id);
        let bb = &self.bbs[id];
        let (kind, mapped, nr) = (bb.kind, bb.addr.is_some(), bb.off & MASK);
        self.seq += 1;
        self.buckets[bucket_index(kind, mapped, nr)].insert(self.seq, id);
        self.nonempty[kind as usize][usize::from(mapped)].insert(nr);
        self.bbs[id].queued = Some((mapped, nr, self.seq));
    }

    /// Links a new, empty buffer block after `after` (`None`: at the front).
    fn link_after(&mut self, after: Option<BbId>, kind: Kind) -> BbId {
        let id = self.bbs.len();
        let next = match after {
            Some(a) => self.bbs[a].next,
            None => self.head,
        };
        self.bbs.push(Bb {
            kind,
            addr: None,
            off: 0,
            nblocks: 0,
            prev: after,
            next,
            queued: None,
        });
        match after {
            Some(a) => self.bbs[a].next = Some(id),
            None => self.head = Some(id),
        }
        match next {
            Some(n) => self.bbs[n].prev = Some(id),
            None => self.end = Some(id),
        }
        id
    }

    /// `__erofs_battach`: `Ok(ret)` (the end of the piece within its
    /// block, 1..=4096) when `incr` bytes (plus `inline` bytes reserved right
    /// after them) fit at the aligned end of `id`; when not `dry`, attaches
    /// them and returns the offset they start at instead.
    fn battach(
        &mut self,
        id: BbId,
        incr: u64,
        align: u64,
        inline: u64,
        dry: bool,
    ) -> Result<u64, NoSpace> {
        let bb = &self.bbs[id];
        let aligned = round_up(bb.off, align);
        // Inline data must never span a block boundary.
        if ((aligned + incr + MASK) & MASK) + inline > MASK {
            return Err(NoSpace);
        }
        let need = aligned + incr + inline;
        let have = bb.nblocks * B;
        let mut tail_update = false;
        if need >= have {
            let oob = need > have;
            if oob && self.next_mapped(id) {
                return Err(NoSpace);
            }
            if let Some(a) = bb.addr {
                tail_update = self.tail == a + bb.nblocks;
                if oob && !tail_update {
                    return Err(NoSpace);
                }
            }
        }
        if dry {
            return Ok(((aligned + incr + MASK) & MASK) + 1);
        }
        let bb = &mut self.bbs[id];
        bb.off = aligned + incr;
        bb.nblocks = bb.nblocks.max(bb.off.div_ceil(B));
        if tail_update {
            self.tail = bb.addr.expect("mapped") + bb.nblocks;
        }
        self.requeue(id);
        Ok(aligned)
    }

    /// The buckets `erofs_bfind_for_attach` visits, in order: bucket
    /// indices from `top` down to `end + 1`, each taken mod B.
    fn bucket_order(&self, kind: Kind, mapped: bool, top: u64, end: u64) -> Vec<u64> {
        let set = &self.nonempty[kind as usize][usize::from(mapped)];
        let mut out = Vec::new();
        let mut hi = top;
        if hi == 2 * B {
            if set.contains(&0) {
                out.push(0);
            }
            hi -= 1;
        }
        if hi >= B {
            let lo = (end + 1).max(B);
            if lo <= hi {
                out.extend(set.range(lo - B..=hi - B).rev());
            }
            hi = B - 1;
        }
        if hi > end {
            out.extend(set.range(end + 1..=hi).rev());
        }
        out
    }

    /// `erofs_bfind_for_attach`: the buffer block to attach to, or `None`
    /// for a new one.
    fn find(&mut self, kind: Kind, align: u64, size: u64, inline: u64) -> Option<BbId> {
        if align == B {
            return None;
        }
        let mut best = None;
        let mut usedmax = 0;
        let used0 = (B - ((size + inline) & MASK)) / align * align;
        let mut end = B;
        let mut mapped_passes: &[bool] = &[true, false];
        if size + inline >= B {
            mapped_passes = &[false];
        }
        for &mapped in mapped_passes {
            for nr in self.bucket_order(kind, mapped, used0 + B, end) {
                let q = &self.buckets[bucket_index(kind, mapped, nr)];
                let mut it = q.values().copied();
                let mut cur = it.next().expect("non-empty bucket");
                // Skip the last mapped block (its queue's next one, if any).
                if mapped && !self.next_mapped(cur) {
                    match it.next() {
                        Some(c) => cur = c,
                        None => continue,
                    }
                }
                let Ok(ret) = self.battach(cur, size, align, inline, true) else {
                    continue;
                };
                let used = ret + inline;
                if used > usedmax {
                    usedmax = used;
                    best = Some(cur);
                }
                break;
            }
            end = used0 + align - 1;
            // The last mapped block is tried on its own.
            if mapped
                && let Some(cur) = self.last
                && self.bbs[cur].kind == kind
                && let Ok(ret) = self.battach(cur, size, align, inline, true)
                && ret + inline > usedmax
            {
                usedmax = ret + inline;
                best = Some(cur);
            }
        }
        best
    }

    /// `erofs_balloc(type, size, inline)`: the buffer block and the offset
    /// the `size` bytes start at. A failed attach leaves the new, empty
    /// buffer block in the list (as erofs-utils does).
    pub(crate) fn balloc(
        &mut self,
        what: Use,
        size: u64,
        inline: u64,
    ) -> Result<(BbId, u64), NoSpace> {
        let (kind, align) = what.kind_align();
        let bb = match self.find(kind, align, size, inline) {
            Some(bb) => bb,
            None if kind == Kind::Data => self.link_after(self.last, kind),
            None => self.link_after(self.end, kind),
        };
        let off = self.battach(bb, size, align, inline, false)?;
        Ok((bb, off))
    }

    /// `erofs_battach(bh, META, size)`: `size` bytes right after the last
    /// piece of `id` (an inline tail after its inode).
    pub(crate) fn attach_after(&mut self, id: BbId, size: u64) -> u64 {
        self.battach(id, size, 1, 0, false)
            .expect("the inline room was reserved")
    }

    /// `erofs_bh_balloon(bh, 4096)`: grows a data buffer block by one block.
    pub(crate) fn balloon_block(&mut self, id: BbId) {
        self.battach(id, B, 1, 0, false)
            .expect("a data block just allocated can grow");
    }

    fn map_one(&mut self, id: BbId) {
        if self.bbs[id].addr.is_none() {
            self.bbs[id].addr = Some(self.tail);
            self.last = Some(id);
            self.requeue(id);
        }
        let end = self.bbs[id].addr.expect("mapped") + self.bbs[id].nblocks;
        if end > self.tail {
            self.tail = end;
        }
    }

    /// `erofs_mapbh`: gives addresses to every unmapped buffer block up to
    /// and including `id` (all of them for `None`).
    pub(crate) fn map(&mut self, id: Option<BbId>) {
        if let Some(id) = id
            && self.bbs[id].addr.is_some()
        {
            return;
        }
        let mut t = match self.last {
            Some(l) => self.bbs[l].next,
            None => self.head,
        };
        while let Some(cur) = t {
            self.map_one(cur);
            if Some(cur) == id {
                break;
            }
            t = self.bbs[cur].next;
        }
    }

    /// `erofs_bdrop` of a buffer block's only buffer (`erofs_bfree`):
    /// removes it from the list; its blocks are not reused.
    pub(crate) fn release(&mut self, id: BbId) {
        let (prev, next) = (self.bbs[id].prev, self.bbs[id].next);
        if self.last == Some(id) {
            self.last = prev;
        }
        self.unqueue(id);
        match prev {
            Some(p) => self.bbs[p].next = next,
            None => self.head = next,
        }
        match next {
            Some(n) => self.bbs[n].prev = prev,
            None => self.end = prev,
        }
    }
}
