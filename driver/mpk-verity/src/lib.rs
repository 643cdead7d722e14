//! Pure dm-verity hash tree and superblock builder, byte-compatible with
//! `veritysetup format` 2.6.1 for the one configuration mpk uses: format
//! (hash type) 1, sha256, 4096-byte data and hash blocks.
//!
//! The crate does no I/O. Callers hash data blocks (with [`Hasher`], possibly
//! in parallel), push the digests in order into a [`TreeBuilder`], and write
//! the hash blocks it emits at `tree start + index` (see [`tree_start_block`]).
//! Memory use is one 4096-byte block per tree level, whatever the data size.
//!
//! On-disk layout written by `veritysetup format` (all little-endian):
//!
//! * the optional 512-byte superblock ([`superblock`]) at the hash offset;
//! * the tree, starting at hash block [`tree_start_block`]: levels stored
//!   top (root-most) first and leaves (level 0) last, each level starting on
//!   a block boundary, its last block zero padded. Each 32-byte digest is
//!   `SHA256(salt || block)`; 128 digests fill a hash block.
//!
//! The root digest is `SHA256(salt || top-level block)`, or, with a single
//! data block (no hash blocks at all), `SHA256(salt || that data block)`.

mod builder;
mod geometry;
mod hash;
mod superblock;

pub use builder::{TreeBuilder, build_in_memory};
pub use geometry::{TreeGeometry, check_hash_offset, tree_start_block};
pub use hash::{Hasher, hash_block};
pub use superblock::{SUPERBLOCK_MAGIC, Superblock, parse_superblock, superblock};

/// Size in bytes of a data block and of a hash block.
pub const BLOCK: usize = 4096;

/// Size in bytes of a sha256 digest (also the size of its slot in a hash
/// block: 32 is already a power of two, so format 1 adds no padding).
pub const DIGEST: usize = 32;

/// Digests per hash block (`BLOCK / DIGEST`).
pub const DIGESTS_PER_BLOCK: usize = BLOCK / DIGEST;

/// Longest salt the superblock (and veritysetup) accepts, in bytes.
pub const MAX_SALT: usize = 256;

/// Size in bytes of the on-disk verity superblock.
pub const SUPERBLOCK_SIZE: usize = 512;

/// `BLOCK` as a `u64`, for offset arithmetic.
pub(crate) const BLOCK_U64: u64 = BLOCK as u64;

/// Everything that can go wrong in this crate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A verity device needs at least one data block.
    #[error("no data blocks: a dm-verity device needs at least one 4096-byte data block")]
    NoDataBlocks,
    /// The salt is longer than the superblock can hold.
    #[error("salt is {len} bytes long; dm-verity allows at most {MAX_SALT}")]
    SaltTooLong {
        /// The offending length.
        len: usize,
    },
    /// The hash offset is not a multiple of 512 bytes.
    #[error("hash offset {offset} is not a multiple of 512 bytes")]
    UnalignedHashOffset {
        /// The offending offset, in bytes.
        offset: u64,
    },
    /// More digests were pushed than the tree has data blocks.
    #[error("too many digests pushed: the tree covers only {data_blocks} data blocks")]
    TooManyDigests {
        /// Number of data blocks the builder was created for.
        data_blocks: u64,
    },
    /// `finish` was called before every data block's digest was pushed.
    #[error("tree incomplete: {pushed} of {data_blocks} data block digests pushed")]
    TooFewDigests {
        /// Digests pushed so far.
        pushed: u64,
        /// Number of data blocks the builder was created for.
        data_blocks: u64,
    },
    /// The superblock buffer is shorter than 512 bytes.
    #[error("verity superblock truncated: {len} bytes, need {SUPERBLOCK_SIZE}")]
    SuperblockTooShort {
        /// Bytes available.
        len: usize,
    },
    /// The superblock does not start with `"verity\0\0"`.
    #[error("not a verity superblock: bad magic (expected \"verity\\0\\0\")")]
    BadMagic,
    /// The superblock's salt size is larger than its salt field.
    #[error("corrupt verity superblock: salt size {size} exceeds {MAX_SALT}")]
    BadSaltSize {
        /// The recorded salt size.
        size: u16,
    },
    /// A reserved (padding) byte of the superblock is not zero.
    #[error(
        "corrupt verity superblock: reserved byte at offset {offset} is {value:#04x}, not zero"
    )]
    NonZeroReserved {
        /// Offset of the first non-zero reserved byte within the superblock.
        offset: usize,
        /// Its value.
        value: u8,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constants() {
        assert_eq!(DIGESTS_PER_BLOCK, 128);
        assert_eq!(BLOCK_U64, 4096);
    }

    #[test]
    fn errors_display_clearly() {
        assert_eq!(
            Error::SaltTooLong { len: 300 }.to_string(),
            "salt is 300 bytes long; dm-verity allows at most 256"
        );
        assert!(
            Error::UnalignedHashOffset { offset: 100 }
                .to_string()
                .contains("multiple of 512")
        );
    }
}
