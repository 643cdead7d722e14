//! The mpk engine: everything between a model folder (or a pack) and a
//! result, as a library with typed options and reports. No argument
//! parsing, printing, progress bars or signal handling: front ends (the
//! `mpk` CLI) do those.
//!
//! - [`scan`]: a model folder becomes an `mpk_erofs::Tree` and its sources,
//!   normalised, refusing what cannot be packed faithfully.
//! - [`pipeline`]: the streaming read → hash → write pipeline that turns a
//!   scan and its layout into an image and hash tree in one pass.
//! - [`pack`]: packing with options ([`pack::PackOptions`]) into a report,
//!   plain or encrypted, checked against expected file hashes.
//! - [`verify`]: checks every block of an `.mpk` against a reference.
//! - [`encrypted`]: `.empk` containers: encrypt a finished `.mpk`, verify
//!   an `.empk` decrypted in memory.
//! - [`reproduce`]: a reference recomputed without writing an image, from
//!   a folder or (feature `hub`) from the Hub or the cache.
//! - `build` (feature `hub`): lock → fetch → pack → manifest → deployments.
//! - [`deploy`]: the deployment document of a model on a base image.
//! - [`output`]: how outputs are published (never a partial file under a
//!   final name).
//! - [`input`]: whole input files read only when regular and bounded.
//! - [`initrd`]: a base image's reproducible initrd.
//! - [`verity_format`]: `veritysetup format`, byte for byte.
//! - [`schema`]: the pack schemas (which mkfs.erofs the image matches).
//! - [`hashing`], [`tools`]: per-file SHA-256; the reference pipeline
//!   (mkfs.erofs 1.5 or 1.8.6 + veritysetup) for cross-checks.
//!
//! Errors are `anyhow` errors naming the file, offset or field. A
//! *negative finding* (the bytes were read and are not what they must be)
//! is a [`Finding`] somewhere in the chain, so a front end can tell it from
//! an input it could not check.

#[cfg(feature = "hub")]
pub mod build;
pub mod deploy;
pub mod encrypted;
pub mod hashing;
pub mod initrd;
pub mod input;
pub mod output;
pub mod pack;
pub mod pipeline;
pub mod reproduce;
pub mod scan;
pub mod schema;
pub mod tools;
pub mod verify;
pub mod verity_format;

/// A negative finding: the bytes were read and are not what they must be
/// (a bad block, a truncated pack, a file whose hash differs from the lock,
/// a reference that differs). Other errors mean the check could not be
/// made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Finding(pub String);

pub use schema::Schema;

impl Finding {
    /// A finding as an `anyhow` error.
    pub fn error(msg: impl Into<String>) -> anyhow::Error {
        anyhow::Error::new(Finding(msg.into()))
    }

    /// Whether `e`'s chain holds a finding.
    pub fn in_chain(e: &anyhow::Error) -> bool {
        e.chain().any(|c| c.is::<Finding>())
    }
}

/// Progress of long byte-counted stages (packing, hashing, downloading).
/// Every method has a no-op default; [`Silent`] reports nothing.
pub trait Progress: Sync {
    /// A stage of `total` bytes begins (`label`: "packing", "hashing", …).
    fn begin(&self, _label: &str, _total: u64) {}
    /// `bytes` more bytes of the current stage are done.
    fn advance(&self, _bytes: u64) {}
    /// The current stage ended (or failed).
    fn end(&self) {}
}

/// A [`Progress`] that reports nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct Silent;

impl Progress for Silent {}
