//! Guest side of mpk: everything that runs inside the confidential VM.
//!
//! - [`cmdline`]: the measured kernel command line, parsed strictly (pure).
//! - [`init`]: the boot-time init that maps each model through dm-verity
//!   with parameters from the command line only and mounts it read-only.
//! - [`sys`]: the few raw kernel calls (the crate's only `unsafe`).
//! - [`cpio`]: a reproducible initrd (cpio newc) writer, used on the host.

pub mod cmdline;
pub mod cpio;
pub mod init;
pub mod sys;
