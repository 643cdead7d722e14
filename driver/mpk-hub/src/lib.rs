//! The Hugging Face Hub edge of mpk: lock files (`lock`), the Hub's
//! hashes (`oid`), the HTTP client (`client`), the standard Hugging Face
//! cache layout (`cache`), the transfer scheduler (`sched`: connections,
//! ranges, resume, reorder window), verified downloads into the cache
//! (`fetch`) and ranged reads that bypass it (`stream`); `names` validates every value from
//! the Hub or a lock before it reaches a path, a URL or a size.
//!
//! This crate does HTTP and files; it knows nothing of images. Every URL it
//! builds for a file names the 40-hex commit, never a branch, and every
//! byte it hands out was checked against the lock and the Hub's own oid.

pub mod cache;
pub mod client;
pub mod error;
pub mod fetch;
pub mod lock;
#[cfg(feature = "mock")]
pub mod mock;
pub mod names;
pub mod oid;
pub mod sched;
pub mod stream;

pub use cache::HfCache;
pub use client::{Hub, HubConfig};
pub use error::Error;
pub use lock::{Lock, LockedFile};

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
