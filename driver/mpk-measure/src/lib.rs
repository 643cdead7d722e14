//! Expected launch measurements for confidential VMs, computed from bytes
//! and typed parameters only: no file paths, no hex parsing, no I/O.
//!
//! - [`snp`]: the AMD SEV-SNP launch digest (`MEASUREMENT` of the
//!   attestation report) as QEMU launches a guest, bit-compatible with
//!   `sev-snp-measure` 0.0.13 in modes `snp` and `snp:ovmf-hash`.
//! - [`tdx`]: Intel TDX MRTD (from a TDVF image), RTMR1 and RTMR2 for a
//!   direct boot under QEMU, as Tinfoil's `tdx-measure` computes them.
//! - [`cpio`]: the reproducible initrd (cpio newc) a base image measures,
//!   written by `mpk initrd` and the guest tests.
#![forbid(unsafe_code)]

pub mod cpio;
pub mod snp;
pub mod tdx;

pub use snp::{
    LaunchDigest, SevHashes, SnpError, SnpLaunch, VcpuType, cpu_signature, firmware_digest,
    launch_digest,
};
