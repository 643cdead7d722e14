//! A model of erofs-utils 1.5's buffer-block allocator (`lib/cache.c`),
//! which decides where every inode, inline tail and data block lands.
//!
//! The rules are those of `erofs-1.5-layout.md` §5: an ordered list of
//! buffer blocks (META or DATA), a `tail` block pointer, the last mapped
//! buffer block, and per-`used mod 4096` FIFO buckets of mapped META blocks.
//! Only positions are modelled; no bytes are held here.

use std::collections::BTreeMap;

const B: u64 = crate::format::BLOCK_SIZE;

/// Buffer-block kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Meta,
    Data,
}

/// Index of a buffer block in the arena (never reused, even after release).
pub(crate) type BbId = usize;

#[derive(Debug)]
struct Bb {
    kind: Kind,
    addr: Option<u64>,
    used: u64,
    prev: Option<BbId>,
    next: Option<BbId>,
    in_list: bool,
    /// (bucket, sequence) while queued in a META bucket.
    queued: Option<(u64, u64)>,
}

/// The allocator state.
#[derive(Debug)]
pub(crate) struct Alloc {
    bbs: Vec<Bb>,
    head: Option<BbId>,
    end: Option<BbId>,
    last: Option<BbId>,
    tail: u64,
    buckets: Vec<BTreeMap<u64, BbId>>,
    seq: u64,
}

fn blk_round_up(x: u64) -> u64 {
    x.div_ceil(B)
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
            buckets: vec![BTreeMap::new(); B as usize],
            seq: 0,
        }
    }

    /// The address of a buffer block, once assigned.
    pub(crate) fn addr(&self, id: BbId) -> Option<u64> {
        self.bbs[id].addr
    }

    /// The next free block (`tail_blkaddr`).
    pub(crate) fn tail(&self) -> u64 {
        self.tail
    }

    /// Appends a new, unaddressed buffer block with `used = 0`.
    pub(crate) fn new_bb(&mut self, kind: Kind) -> BbId {
        let id = self.bbs.len();
        self.bbs.push(Bb {
            kind,
            addr: None,
            used: 0,
            prev: self.end,
            next: None,
            in_list: true,
            queued: None,
        });
        match self.end {
            Some(e) => self.bbs[e].next = Some(id),
            None => self.head = Some(id),
        }
        self.end = Some(id);
        id
    }

    fn requeue(&mut self, id: BbId) {
        let bb = &self.bbs[id];
        if bb.addr.is_none() || bb.kind != Kind::Meta {
            return;
        }
        if let Some((bucket, seq)) = bb.queued {
            self.buckets[bucket as usize].remove(&seq);
        }
        let bucket = bb.used % B;
        self.seq += 1;
        self.buckets[bucket as usize].insert(self.seq, id);
        self.bbs[id].queued = Some((bucket, self.seq));
    }

    fn map_one(&mut self, id: BbId) {
        if self.bbs[id].addr.is_none() {
            self.bbs[id].addr = Some(self.tail);
            self.last = Some(id);
            self.requeue(id);
        }
        let end = self.bbs[id].addr.expect("mapped") + blk_round_up(self.bbs[id].used);
        if end > self.tail {
            self.tail = end;
        }
    }

    /// `erofs_mapbh(bb)`: gives addresses to every unaddressed buffer block
    /// up to and including `id` (all of them for `None`).
    pub(crate) fn assign(&mut self, id: Option<BbId>) {
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

    /// `__erofs_battach` in dry-run form: `Some(ret)` (the end offset of the
    /// piece within its block, 1..=4096) when the piece may be attached.
    fn fit(&self, id: BbId, size: u64, align: u64, extra: u64) -> Option<u64> {
        let bb = &self.bbs[id];
        let aligned = round_up(bb.used, align);
        let r = (bb.used.wrapping_sub(1) % B) + 1;
        let need = round_up(r, align) + size + extra;
        if need >= B {
            let overflow = need > B;
            if overflow && bb.next.is_some_and(|n| self.bbs[n].addr.is_some()) {
                return None;
            }
            if let Some(a) = bb.addr {
                let tail_update = self.tail == a + blk_round_up(bb.used);
                if overflow && !tail_update {
                    return None;
                }
            }
        }
        Some((aligned + size - 1) % B + 1)
    }

    /// `__erofs_battach` for real: places `size` bytes at the aligned end of
    /// `id` and returns their offset from the block's first byte.
    pub(crate) fn attach(&mut self, id: BbId, size: u64, align: u64, extra: u64) -> u64 {
        let bb = &self.bbs[id];
        let aligned = round_up(bb.used, align);
        let r = (bb.used.wrapping_sub(1) % B) + 1;
        let need = round_up(r, align) + size + extra;
        let tail_update = need >= B
            && bb
                .addr
                .is_some_and(|a| self.tail == a + blk_round_up(bb.used));
        debug_assert!(self.fit(id, size, align, extra).is_some());
        let bb = &mut self.bbs[id];
        bb.used = aligned + size;
        if tail_update {
            self.tail = bb.addr.expect("addressed") + blk_round_up(bb.used);
        }
        self.requeue(id);
        aligned
    }

    /// DATA allocation of `k >= 1` blocks: a new DATA buffer block, mapped at
    /// once (which maps every META block still waiting before it).
    pub(crate) fn alloc_data(&mut self, k: u64) -> BbId {
        let id = self.new_bb(Kind::Data);
        self.attach(id, k * B, B, 0);
        self.assign(Some(id));
        id
    }

    /// Grows a DATA buffer block by one block (`erofs_bh_balloon(bh, 4096)`).
    pub(crate) fn grow_data(&mut self, id: BbId) {
        self.attach(id, B, 1, 0);
    }

    /// `erofs_bfind_for_attach` + `erofs_balloc(INODE, s, 0, t)`: places an
    /// inode of `s` bytes followed by `t` inline bytes (`s + t <= 4096`).
    /// Returns the buffer block and the offsets of the inode and the tail.
    pub(crate) fn place_inode(&mut self, s: u64, t: u64) -> (BbId, u64, u64) {
        debug_assert!(s + t <= B);
        let used0 = s % B + t;
        let mut best: Option<BbId> = None;
        let mut usedmax = 0;
        if s + t < B {
            // Phase 1: the best-fitting mapped META block, heads of queues only.
            let mut u = (B - s - t) / 32 * 32;
            while u > 0 {
                if let Some((_, &c)) = self.buckets[u as usize].iter().next() {
                    let next_unmapped = self.bbs[c].next.is_none_or(|n| self.bbs[n].addr.is_none());
                    // No let chain: they need Rust 1.88 (the MSRV is 1.87).
                    let fits = if next_unmapped {
                        None
                    } else {
                        self.fit(c, s, 32, t)
                    };
                    if let Some(ret) = fits {
                        best = Some(c);
                        usedmax = ret + t;
                        break;
                    }
                }
                u -= 1;
            }
        }
        // Phase 2: from the last mapped block (which may still grow) onwards.
        let mut cur = match self.last {
            Some(l) => Some(l),
            None => self.head,
        };
        while let Some(c) = cur {
            cur = self.bbs[c].next;
            let bb = &self.bbs[c];
            let used_before = bb.used % B;
            if used_before == 0 || bb.kind != Kind::Meta {
                continue;
            }
            let Some(ret) = self.fit(c, s, 32, t) else {
                continue;
            };
            let used = ret % B + t;
            if used > B || (used < used_before && used < used0) {
                continue;
            }
            if usedmax < used {
                best = Some(c);
                usedmax = used;
            }
        }
        let bb = best.unwrap_or_else(|| self.new_bb(Kind::Meta));
        let ioff = self.attach(bb, s, 32, t);
        let toff = if t > 0 {
            self.attach(bb, t, 1, 0)
        } else {
            ioff + s
        };
        (bb, ioff, toff)
    }

    /// `erofs_bdrop`: removes a DATA buffer block from the list. Its blocks
    /// are not reused.
    pub(crate) fn release(&mut self, id: BbId) {
        let (prev, next) = (self.bbs[id].prev, self.bbs[id].next);
        debug_assert!(self.bbs[id].in_list);
        if self.last == Some(id) {
            self.last = prev;
        }
        match prev {
            Some(p) => self.bbs[p].next = next,
            None => self.head = next,
        }
        match next {
            Some(n) => self.bbs[n].prev = prev,
            None => self.end = prev,
        }
        if let Some((bucket, seq)) = self.bbs[id].queued.take() {
            self.buckets[bucket as usize].remove(&seq);
        }
        self.bbs[id].in_list = false;
    }
}
