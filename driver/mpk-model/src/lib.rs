//! The rules of mpk, each in one place (pure: bytes and strings in, values
//! out; no I/O, no `unsafe`).
//!
//! - [`names`]: lowercase hex and Hub name rules.
//! - [`identity`]: `org/name@<commit>` and what derives from it: the UUID
//!   of a plain pack, the partition GUID of an encrypted one, the salt.
//! - [`reference`](mod@reference): `<root>_<hash offset>_<uuid>` and the `.mpk` length
//!   arithmetic (checked).
//! - [`cmdline`]: the `mpk.model=` words of the measured kernel command
//!   line, built on the host and parsed by the guest init with this code.
//! - `deployment` (feature `serde`): the typed `image.json` of a base image
//!   and the deployment document `mpk measure` writes and `mpk attest`
//!   reads.
//!
//! The static guest init depends on this crate without the `serde`
//! feature.
#![forbid(unsafe_code)]

pub mod cmdline;
#[cfg(feature = "serde")]
pub mod deployment;
pub mod identity;
pub mod names;
pub mod reference;

pub use identity::{Identity, IdentityError, PackKind};
pub use reference::{Reference, ReferenceError, mpk_len};
