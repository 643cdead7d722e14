//! Guest side of mpk: everything that runs inside the confidential VM.
//!
//! - [`cmdline`]: the measured kernel command line, parsed strictly (pure;
//!   re-exported from `mpk-measure`, which builds the same words).
//! - [`init`]: the boot-time init that maps each model through dm-verity
//!   (over dm-crypt for an encrypted `:crypt` model, with a master key from
//!   `/run/mpk/keys/<partuuid>`) with parameters from the command line only
//!   and mounts it read-only.
//! - [`sys`]: the few raw kernel calls (the crate's only `unsafe`).
//! - [`cpio`]: a reproducible initrd (cpio newc) writer, used on the host
//!   (re-exported from `mpk-measure`, so `mpk initrd` needs no guest code).

pub use mpk_measure::cpio;
pub use mpk_model::cmdline;
pub mod init;
pub mod sys;
