//! Pure EROFS: planners/writers that reproduce `mkfs.erofs` 1.5 and 1.8.6
//! byte for byte (uncompressed, `--all-root -T0 -U<uuid>`, 1.8.6 also with
//! `-b4096`; no xattrs), chosen by [`Mkfs`], and a reader that lists,
//! extracts and maps blocks back to files for both.
//!
//! No I/O happens here: the planner takes a [`Tree`] of names, modes and
//! sizes and returns a [`Layout`]; the caller streams file contents into
//! the places it names. The reader works on any [`reader::Source`] of
//! blocks.
#![forbid(unsafe_code)]

mod alloc;
mod alloc186;
pub mod format;
mod plan186;
pub mod reader;
pub mod tree;
pub mod writer;

pub use tree::{NodeId, NodeKind, Tree};
pub use writer::{Extent, Layout, Placement, plan};

/// The `mkfs.erofs` whose layout a plan reproduces byte for byte. Both are
/// run as `--all-root -T0 -U<uuid>` (1.8.6 also with `-b4096`, and any
/// `--workers`); the file and directory rules are the same, the placement
/// of inodes, tails and blocks differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mkfs {
    /// erofs-utils 1.5 (Debian 1.5-1): `erofs-1.5-layout.md`.
    V1_5,
    /// erofs-utils 1.8.6 (Debian 1.8.6-1): `erofs-1.8.6-layout.md`.
    V1_8_6,
}

/// Plans the image `mkfs` would make of `tree` with filesystem UUID `uuid`.
pub fn plan_for(mkfs: Mkfs, tree: &Tree, uuid: [u8; 16]) -> Result<Layout, Error> {
    match mkfs {
        Mkfs::V1_5 => writer::plan(tree, uuid),
        Mkfs::V1_8_6 => plan186::plan(tree, uuid),
    }
}

/// Errors of planning and reading.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// A name that cannot be stored faithfully.
    #[error("cannot pack `{path}`: name {reason}")]
    BadName {
        /// Path of the offending entry.
        path: String,
        /// Why.
        reason: &'static str,
    },
    /// Two entries of one directory have the same name.
    #[error("duplicate name `{0}`")]
    DuplicateName(String),
    /// A child was added to a file.
    #[error("`{0}` is not a directory")]
    NotADirectory(String),
    /// More than 2^32 inodes.
    #[error("more than 2^32 inodes")]
    TooManyInodes,
    /// The image or a file exceeds the 32-bit block addresses of the format.
    #[error("`{0}` is too large for an EROFS image with 4096-byte blocks")]
    TooLarge(String),
    /// The root directory's inode would land above nid 65535, which makes
    /// mkfs.erofs 1.5 move `meta_blkaddr` and wrap the nids of earlier
    /// inodes (an image the kernel was never shown to read).
    #[error(
        "the root directory is too large (its inline entries push the root inode past nid 65535); \
         mkfs.erofs 1.5 would write wrapped inode numbers: move some entries into a subfolder"
    )]
    MetaBlkaddr,
    /// The image is not a readable EROFS image.
    #[error("corrupt image: {0}")]
    Corrupt(String),
}
