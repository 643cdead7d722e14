//! Streaming hash-tree builder: takes leaf digests in data order and emits
//! each hash block as soon as it is complete.

use crate::{BLOCK, BLOCK_U64, DIGEST, DIGESTS_PER_BLOCK, Error, Hasher, MAX_SALT, TreeGeometry};

/// The block being filled at one level.
struct Level {
    /// Digests accumulated so far; the unused tail stays zero.
    buf: Box<[u8; BLOCK]>,
    /// Number of digests in `buf`.
    fill: usize,
    /// Index within the level of the block in `buf`.
    index: u64,
}

/// Builds a dm-verity tree from the digests of the data blocks, pushed in
/// order, using one 4096-byte buffer per level.
///
/// Every completed hash block is handed to the `emit` callback together with
/// its block index relative to the tree start (see
/// [`crate::tree_start_block`]); write it at
/// `(tree_start + index) * 4096`. Blocks of one level complete in order, but
/// emission interleaves levels. [`TreeBuilder::finish`] emits the zero-padded
/// last block of every level and returns the root digest. Every hash block
/// is emitted exactly once.
///
/// `emit` returns `Result<(), E>`, so an I/O error stops the build; `E` must
/// be constructible from this crate's [`Error`] (e.g. `anyhow::Error`, or
/// `Error` itself).
pub struct TreeBuilder {
    hasher: Hasher,
    geometry: TreeGeometry,
    levels: Vec<Level>,
    pushed: u64,
    root: Option<[u8; DIGEST]>,
}

impl TreeBuilder {
    /// A builder for `data_blocks` data blocks hashed with `salt` (at most
    /// 256 bytes).
    pub fn new(salt: &[u8], data_blocks: u64) -> Result<Self, Error> {
        if salt.len() > MAX_SALT {
            return Err(Error::SaltTooLong { len: salt.len() });
        }
        let geometry = TreeGeometry::new(data_blocks)?;
        let levels = (0..geometry.levels())
            .map(|_| Level {
                buf: Box::new([0; BLOCK]),
                fill: 0,
                index: 0,
            })
            .collect();
        Ok(Self {
            hasher: Hasher::new(salt),
            geometry,
            levels,
            pushed: 0,
            root: None,
        })
    }

    /// The salted hasher; use it to compute the leaf digests
    /// (`hasher().hash(data_block)`).
    pub fn hasher(&self) -> &Hasher {
        &self.hasher
    }

    /// The tree's geometry.
    pub fn geometry(&self) -> &TreeGeometry {
        &self.geometry
    }

    /// Number of digests pushed so far.
    pub fn pushed(&self) -> u64 {
        self.pushed
    }

    /// Adds the digest of the next data block, emitting any hash blocks it
    /// completes.
    pub fn push<E, F>(&mut self, leaf_digest: [u8; DIGEST], mut emit: F) -> Result<(), E>
    where
        E: From<Error>,
        F: FnMut(u64, &[u8; BLOCK]) -> Result<(), E>,
    {
        self.push_one(leaf_digest, &mut emit)
    }

    /// Adds the digests of the next data blocks, in order.
    pub fn push_all<E, F>(&mut self, leaf_digests: &[[u8; DIGEST]], mut emit: F) -> Result<(), E>
    where
        E: From<Error>,
        F: FnMut(u64, &[u8; BLOCK]) -> Result<(), E>,
    {
        leaf_digests
            .iter()
            .try_for_each(|d| self.push_one(*d, &mut emit))
    }

    /// Flushes the partial (zero-padded) last block of every level, emitting
    /// them, and returns the root digest. Fails if fewer digests than data
    /// blocks were pushed.
    pub fn finish<E, F>(mut self, mut emit: F) -> Result<[u8; DIGEST], E>
    where
        E: From<Error>,
        F: FnMut(u64, &[u8; BLOCK]) -> Result<(), E>,
    {
        let data_blocks = self.geometry.data_blocks();
        if self.pushed != data_blocks {
            return Err(Error::TooFewDigests {
                pushed: self.pushed,
                data_blocks,
            }
            .into());
        }
        // Bottom-up: flushing level i may add (and even complete) a block of
        // level i + 1, which is then flushed in turn.
        for level in 0..self.levels.len() {
            if self.levels[level].fill > 0 {
                let digest = self.complete(level, &mut emit)?;
                self.carry(level + 1, digest, &mut emit)?;
            }
        }
        debug_assert!(
            self.levels
                .iter()
                .enumerate()
                .all(|(i, l)| l.index == self.geometry.level_blocks(i) && l.fill == 0)
        );
        Ok(self
            .root
            .expect("a complete tree always yields a root digest"))
    }

    fn push_one<E, F>(&mut self, leaf_digest: [u8; DIGEST], emit: &mut F) -> Result<(), E>
    where
        E: From<Error>,
        F: FnMut(u64, &[u8; BLOCK]) -> Result<(), E>,
    {
        let data_blocks = self.geometry.data_blocks();
        if self.pushed == data_blocks {
            return Err(Error::TooManyDigests { data_blocks }.into());
        }
        self.pushed += 1;
        self.carry(0, leaf_digest, emit)
    }

    /// Appends `digest` to `level`, completing blocks upwards as they fill.
    /// A digest "carried" past the top level is the root.
    fn carry<E, F>(
        &mut self,
        mut level: usize,
        mut digest: [u8; DIGEST],
        emit: &mut F,
    ) -> Result<(), E>
    where
        F: FnMut(u64, &[u8; BLOCK]) -> Result<(), E>,
    {
        loop {
            let Some(l) = self.levels.get_mut(level) else {
                // Above the top level (or no levels at all: a single data
                // block, whose digest is the root).
                self.root = Some(digest);
                return Ok(());
            };
            l.buf[l.fill * DIGEST..][..DIGEST].copy_from_slice(&digest);
            l.fill += 1;
            if l.fill < DIGESTS_PER_BLOCK {
                return Ok(());
            }
            digest = self.complete(level, emit)?;
            level += 1;
        }
    }

    /// Emits the current block of `level`, resets it and returns its digest.
    fn complete<E, F>(&mut self, level: usize, emit: &mut F) -> Result<[u8; DIGEST], E>
    where
        F: FnMut(u64, &[u8; BLOCK]) -> Result<(), E>,
    {
        let start = self.geometry.level_start(level);
        let l = &mut self.levels[level];
        emit(start + l.index, &l.buf)?;
        let digest = self.hasher.hash(&l.buf[..]);
        l.buf.fill(0);
        l.fill = 0;
        l.index += 1;
        Ok(digest)
    }
}

impl std::fmt::Debug for TreeBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TreeBuilder")
            .field("geometry", &self.geometry)
            .field("pushed", &self.pushed)
            .finish_non_exhaustive()
    }
}

/// Builds the whole tree of `data` in memory: returns the root digest and
/// the tree bytes (to be stored at the tree start; empty for a single data
/// block). As with veritysetup, a trailing partial block of `data` is
/// ignored. Fails if `data` holds no whole block or the salt is too long.
pub fn build_in_memory(salt: &[u8], data: &[u8]) -> Result<([u8; DIGEST], Vec<u8>), Error> {
    let data_blocks = (data.len() / BLOCK) as u64;
    let mut builder = TreeBuilder::new(salt, data_blocks)?;
    let total = builder.geometry().total_hash_blocks();
    let mut tree = vec![0u8; usize::try_from(total * BLOCK_U64).expect("in-memory tree fits")];
    let mut write = |index: u64, block: &[u8; BLOCK]| -> Result<(), Error> {
        let at = usize::try_from(index).expect("in-memory tree fits") * BLOCK;
        tree[at..at + BLOCK].copy_from_slice(block);
        Ok(())
    };
    for block in data.chunks_exact(BLOCK) {
        let digest = builder.hasher().hash(block);
        builder.push(digest, &mut write)?;
    }
    let root = builder.finish(&mut write)?;
    Ok((root, tree))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash_block;
    use rand::rngs::StdRng;
    use rand::{Rng, RngCore, SeedableRng};
    use sha2::{Digest, Sha256};
    use std::collections::BTreeMap;

    fn sha(salt: &[u8], b: &[u8]) -> [u8; 32] {
        let mut s = Sha256::new();
        s.update(salt);
        s.update(b);
        s.finalize().into()
    }

    /// Independent reference from the leaf digests: build whole levels one
    /// after the other (each zero padded to a block), then lay them out top
    /// first, as the kernel documentation describes.
    fn naive_from_leaves(salt: &[u8], leaves: &[[u8; 32]]) -> ([u8; 32], Vec<u8>) {
        if leaves.len() == 1 {
            return (leaves[0], Vec::new());
        }
        let mut levels: Vec<Vec<u8>> = Vec::new();
        let mut digests: Vec<u8> = leaves.concat();
        loop {
            let mut level = digests;
            level.resize(level.len().div_ceil(4096) * 4096, 0);
            digests = level.chunks(4096).flat_map(|b| sha(salt, b)).collect();
            levels.push(level);
            if digests.len() == 32 {
                break;
            }
        }
        let root: [u8; 32] = digests.try_into().unwrap();
        (root, levels.into_iter().rev().flatten().collect())
    }

    /// Independent reference from the data.
    fn naive(salt: &[u8], data: &[u8]) -> ([u8; 32], Vec<u8>) {
        let leaves: Vec<[u8; 32]> = data.chunks_exact(4096).map(|b| sha(salt, b)).collect();
        naive_from_leaves(salt, &leaves)
    }

    /// The streaming builder fed with `leaves`, writing into a buffer.
    fn streamed(salt: &[u8], leaves: &[[u8; 32]]) -> ([u8; 32], Vec<u8>) {
        let mut b = TreeBuilder::new(salt, leaves.len() as u64).unwrap();
        let mut tree = vec![0u8; b.geometry().total_hash_blocks() as usize * 4096];
        let mut w = |i: u64, blk: &[u8; BLOCK]| -> Result<(), Error> {
            tree[i as usize * 4096..][..4096].copy_from_slice(blk);
            Ok(())
        };
        for d in leaves {
            b.push(*d, &mut w).unwrap();
        }
        let root = b.finish(&mut w).unwrap();
        (root, tree)
    }

    fn random_data(rng: &mut StdRng, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        rng.fill_bytes(&mut v);
        v
    }

    fn random_leaves(rng: &mut StdRng, n: usize) -> Vec<[u8; 32]> {
        (0..n)
            .map(|_| {
                let mut d = [0u8; 32];
                rng.fill_bytes(&mut d);
                d
            })
            .collect()
    }

    #[test]
    fn matches_naive_on_edge_sizes() {
        let mut rng = StdRng::seed_from_u64(1);
        let sizes = [
            1usize, 2, 3, 127, 128, 129, 255, 256, 257, 16383, 16384, 16385,
        ];
        for n in sizes {
            let leaves = random_leaves(&mut rng, n);
            for salt in [&[][..], &[0xab][..], &[0x5a; 32][..], &[0x11; 256][..]] {
                assert_eq!(
                    streamed(salt, &leaves),
                    naive_from_leaves(salt, &leaves),
                    "n={n} salt={}",
                    salt.len()
                );
            }
        }
        // Four levels (128^3 + 1 leaves); cheap, distinct leaves keep this
        // fast in debug builds.
        let n = 2_097_153u64;
        let leaves: Vec<[u8; 32]> = (0..n)
            .map(|i| {
                let mut d = [0x3c; 32];
                d[..8].copy_from_slice(&i.to_le_bytes());
                d
            })
            .collect();
        let ours = streamed(b"s", &leaves);
        assert_eq!(TreeGeometry::new(n).unwrap().levels(), 4);
        assert!(
            ours == naive_from_leaves(b"s", &leaves),
            "n={n}: trees differ"
        );
    }

    #[test]
    fn matches_naive_on_random_sizes() {
        let mut rng = StdRng::seed_from_u64(0x6d706b);
        for _ in 0..30 {
            let n = rng.gen_range(1..40_000usize);
            let salt_len = rng.gen_range(0..=256);
            let salt = random_data(&mut rng, salt_len);
            let leaves = random_leaves(&mut rng, n);
            assert_eq!(
                streamed(&salt, &leaves),
                naive_from_leaves(&salt, &leaves),
                "n={n} salt={salt_len}"
            );
        }
    }

    #[test]
    fn build_in_memory_matches_naive() {
        let mut rng = StdRng::seed_from_u64(2);
        for (n, tail) in [
            (1usize, 0usize),
            (1, 4095),
            (2, 1),
            (128, 0),
            (129, 100),
            (300, 7),
        ] {
            let data = random_data(&mut rng, n * 4096 + tail);
            for salt in [&[][..], &[0xab][..], &[0x5a; 32][..], &[0x11; 256][..]] {
                assert_eq!(
                    build_in_memory(salt, &data).unwrap(),
                    naive(salt, &data),
                    "n={n} tail={tail} salt={}",
                    salt.len()
                );
            }
        }
    }

    #[test]
    fn emits_each_block_once_at_its_index() {
        // The streaming builder's emission order and indices, checked
        // against the geometry: every tree block exactly once, each level's
        // blocks in increasing order.
        let n = 16385u64;
        let mut b = TreeBuilder::new(b"salt", n).unwrap();
        let g = b.geometry().clone();
        let mut seen = BTreeMap::new();
        let mut order = Vec::new();
        let mut record = |i: u64, blk: &[u8; BLOCK]| -> Result<(), Error> {
            assert!(seen.insert(i, *blk).is_none(), "block {i} emitted twice");
            order.push(i);
            Ok(())
        };
        for i in 0..n {
            let d = hash_block(b"salt", &[i as u8; BLOCK]);
            b.push(d, &mut record).unwrap();
        }
        b.finish(&mut record).unwrap();
        assert_eq!(seen.len() as u64, g.total_hash_blocks());
        assert_eq!(
            seen.keys().copied().collect::<Vec<_>>(),
            (0..g.total_hash_blocks()).collect::<Vec<_>>()
        );
        for level in 0..g.levels() {
            let range = g.level_start(level)..g.level_start(level) + g.level_blocks(level);
            let mine: Vec<u64> = order
                .iter()
                .copied()
                .filter(|i| range.contains(i))
                .collect();
            assert_eq!(mine, range.collect::<Vec<_>>());
        }
    }

    #[test]
    fn push_all_equals_push() {
        let mut rng = StdRng::seed_from_u64(3);
        let data = random_data(&mut rng, 300 * 4096);
        let mut b = TreeBuilder::new(&[], 300).unwrap();
        let digests: Vec<[u8; 32]> = data.chunks(4096).map(|c| b.hasher().hash(c)).collect();
        let mut tree = vec![0u8; 4 * 4096];
        let mut w = |i: u64, blk: &[u8; BLOCK]| -> Result<(), Error> {
            tree[i as usize * 4096..][..4096].copy_from_slice(blk);
            Ok(())
        };
        b.push_all(&digests[..100], &mut w).unwrap();
        b.push_all(&digests[100..], &mut w).unwrap();
        assert_eq!(b.pushed(), 300);
        let root = b.finish(&mut w).unwrap();
        assert_eq!((root, tree), naive(&[], &data));
    }

    #[test]
    fn single_block_root_is_leaf_digest() {
        let block = [9u8; BLOCK];
        let (root, tree) = build_in_memory(b"abc", &block).unwrap();
        assert_eq!(root, hash_block(b"abc", &block));
        assert!(tree.is_empty());
    }

    #[test]
    fn errors() {
        let nothing = |_: u64, _: &[u8; BLOCK]| -> Result<(), Error> { Ok(()) };
        assert_eq!(
            TreeBuilder::new(&[0; 257], 1).unwrap_err(),
            Error::SaltTooLong { len: 257 }
        );
        assert_eq!(TreeBuilder::new(&[], 0).unwrap_err(), Error::NoDataBlocks);
        assert_eq!(
            build_in_memory(&[], &[0; 4095]).unwrap_err(),
            Error::NoDataBlocks
        );

        let mut b = TreeBuilder::new(&[], 2).unwrap();
        b.push([0; 32], nothing).unwrap();
        assert_eq!(
            TreeBuilder::new(&[], 2)
                .unwrap()
                .finish(nothing)
                .unwrap_err(),
            Error::TooFewDigests {
                pushed: 0,
                data_blocks: 2
            }
        );
        b.push([0; 32], nothing).unwrap();
        assert_eq!(
            b.push([0; 32], nothing).unwrap_err(),
            Error::TooManyDigests { data_blocks: 2 }
        );
        assert!(b.finish(nothing).is_ok());
    }

    #[test]
    fn emit_errors_propagate() {
        #[derive(Debug, PartialEq)]
        enum MyErr {
            Io,
            Tree(Error),
        }
        impl From<Error> for MyErr {
            fn from(e: Error) -> Self {
                MyErr::Tree(e)
            }
        }
        let mut b = TreeBuilder::new(&[], 129).unwrap();
        let fail = |_: u64, _: &[u8; BLOCK]| -> Result<(), MyErr> { Err(MyErr::Io) };
        for _ in 0..127 {
            b.push([1; 32], fail).unwrap();
        }
        // The 128th digest completes leaf block 0: its write fails.
        assert_eq!(b.push([1; 32], fail), Err(MyErr::Io));
    }
}
