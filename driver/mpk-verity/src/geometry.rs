//! Tree geometry (levels, their sizes and positions) and where the tree
//! starts on the hash device.

use crate::{BLOCK_U64, DIGESTS_PER_BLOCK, Error, SUPERBLOCK_SIZE};

/// `DIGESTS_PER_BLOCK` as a `u64`.
const FANOUT: u64 = DIGESTS_PER_BLOCK as u64;

/// Shape of the hash tree for a given number of data blocks.
///
/// Level 0 holds the digests of the data blocks (the leaves); level `i + 1`
/// holds the digests of level `i`'s blocks; the top level has exactly one
/// block. On disk the levels are stored top first, leaves last, so level
/// `levels() - 1` starts at tree block 0. With a single data block there
/// are no levels at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeGeometry {
    data_blocks: u64,
    /// `level_blocks[i]`: number of hash blocks of level `i` (0 = leaves).
    level_blocks: Vec<u64>,
    /// `level_start[i]`: first block of level `i`, relative to the tree
    /// start.
    level_start: Vec<u64>,
}

impl TreeGeometry {
    /// The geometry for `data_blocks` data blocks (at least 1).
    pub fn new(data_blocks: u64) -> Result<Self, Error> {
        if data_blocks == 0 {
            return Err(Error::NoDataBlocks);
        }
        let mut level_blocks = Vec::new();
        let mut below = data_blocks;
        while below > 1 {
            below = below.div_ceil(FANOUT);
            level_blocks.push(below);
        }
        // Top level first: level i starts after all levels above it. The
        // sum cannot overflow: it is smaller than `data_blocks`.
        let mut level_start = vec![0; level_blocks.len()];
        let mut next = 0u64;
        for (i, &n) in level_blocks.iter().enumerate().rev() {
            level_start[i] = next;
            next += n;
        }
        Ok(Self {
            data_blocks,
            level_blocks,
            level_start,
        })
    }

    /// Number of data blocks covered.
    pub fn data_blocks(&self) -> u64 {
        self.data_blocks
    }

    /// Number of hash levels (0 when there is a single data block).
    pub fn levels(&self) -> usize {
        self.level_blocks.len()
    }

    /// Number of hash blocks of `level` (0 = leaves). Panics if
    /// `level >= levels()`.
    pub fn level_blocks(&self, level: usize) -> u64 {
        self.level_blocks[level]
    }

    /// First block of `level`, relative to the tree start. Panics if
    /// `level >= levels()`.
    pub fn level_start(&self, level: usize) -> u64 {
        self.level_start[level]
    }

    /// Total number of hash blocks in the tree.
    pub fn total_hash_blocks(&self) -> u64 {
        self.level_blocks.iter().sum()
    }

    /// Total size of the tree in bytes, or `None` on `u64` overflow.
    pub fn total_hash_bytes(&self) -> Option<u64> {
        self.total_hash_blocks().checked_mul(BLOCK_U64)
    }
}

/// Checks a hash offset the way veritysetup does: it must be a multiple of
/// 512 bytes (with or without a superblock).
pub fn check_hash_offset(hash_offset: u64) -> Result<(), Error> {
    if hash_offset.is_multiple_of(512) {
        Ok(())
    } else {
        Err(Error::UnalignedHashOffset {
            offset: hash_offset,
        })
    }
}

/// The hash block (4096-byte units from the start of the hash device) where
/// the tree starts, for a hash offset in bytes, as veritysetup computes it:
///
/// * with a superblock: the first block boundary at or after the end of the
///   512-byte superblock, `ceil((hash_offset + 512) / 4096)`;
/// * without: `floor(hash_offset / 4096)` (an unaligned offset is rounded
///   down, so the tree may start before `hash_offset`).
pub fn tree_start_block(hash_offset: u64, superblock: bool) -> u64 {
    let whole = hash_offset / BLOCK_U64;
    if superblock {
        // Split to avoid overflow near u64::MAX.
        whole + (hash_offset % BLOCK_U64 + SUPERBLOCK_SIZE as u64).div_ceil(BLOCK_U64)
    } else {
        whole
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(n: u64) -> (Vec<u64>, Vec<u64>, u64) {
        let g = TreeGeometry::new(n).unwrap();
        let blocks = (0..g.levels()).map(|i| g.level_blocks(i)).collect();
        let starts = (0..g.levels()).map(|i| g.level_start(i)).collect();
        (blocks, starts, g.total_hash_blocks())
    }

    #[test]
    fn geometry_table() {
        assert_eq!(shape(1), (vec![], vec![], 0));
        assert_eq!(shape(2), (vec![1], vec![0], 1));
        assert_eq!(shape(127), (vec![1], vec![0], 1));
        assert_eq!(shape(128), (vec![1], vec![0], 1));
        assert_eq!(shape(129), (vec![2, 1], vec![1, 0], 3));
        assert_eq!(shape(16384), (vec![128, 1], vec![1, 0], 129));
        assert_eq!(shape(16385), (vec![129, 2, 1], vec![3, 1, 0], 132));
        // formats.md: 335 blocks -> 4 hash blocks; 262,145 -> 3 levels, 2067.
        assert_eq!(shape(335), (vec![3, 1], vec![1, 0], 4));
        let g = TreeGeometry::new(262_145).unwrap();
        assert_eq!((g.levels(), g.total_hash_blocks()), (3, 2067));
        assert_eq!(g.total_hash_bytes(), Some(2067 * 4096));
        assert_eq!(g.data_blocks(), 262_145);
    }

    #[test]
    fn geometry_extremes() {
        assert_eq!(TreeGeometry::new(0), Err(Error::NoDataBlocks));
        let g = TreeGeometry::new(u64::MAX).unwrap();
        // 2^64 - 1 blocks: ceil(log_128(2^64)) = 10 levels.
        assert_eq!(g.levels(), 10);
        assert_eq!(g.level_blocks(9), 1);
        assert_eq!(g.level_start(9), 0);
        assert_eq!(g.total_hash_bytes(), None);
    }

    #[test]
    fn tree_start() {
        // With a superblock: ceil((off + 512) / 4096).
        assert_eq!(tree_start_block(0, true), 1);
        assert_eq!(tree_start_block(512, true), 1);
        assert_eq!(tree_start_block(3584, true), 1);
        assert_eq!(tree_start_block(4096, true), 2);
        assert_eq!(tree_start_block(4608, true), 2);
        assert_eq!(tree_start_block(1_372_160, true), 336);
        // Without: floor(off / 4096).
        assert_eq!(tree_start_block(0, false), 0);
        assert_eq!(tree_start_block(3584, false), 0);
        assert_eq!(tree_start_block(4096, false), 1);
        assert_eq!(tree_start_block(4608, false), 1);
        // No overflow at the top of the range.
        let top = u64::MAX - 511;
        assert_eq!(tree_start_block(top, true), u64::MAX / 4096 + 1);
        assert_eq!(tree_start_block(top, false), u64::MAX / 4096);
    }

    #[test]
    fn hash_offset_alignment() {
        assert_eq!(check_hash_offset(0), Ok(()));
        assert_eq!(check_hash_offset(512), Ok(()));
        assert_eq!(
            check_hash_offset(100),
            Err(Error::UnalignedHashOffset { offset: 100 })
        );
    }
}
