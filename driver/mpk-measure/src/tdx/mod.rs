//! Intel TDX launch measurements for direct boot under QEMU: MRTD from a
//! TDVF image, RTMR1 (the kernel as QEMU patches it) and RTMR2 (command
//! line and initrd), as `../shared/reference/measurement.md` describes and
//! as the reference tool (Tinfoil's `tdx-measure`, a dstack-mr fork)
//! computes them.
//!
//! - [`mod@mrtd`]: one running SHA-384 over 128-byte `MEM.PAGE.ADD` and
//!   `MR.EXTEND` records, per TDVF section ([`tdvf`]), in the order the
//!   host's QEMU/KVM uses ([`MrtdOrder`]).
//! - [`rtmr1`]: five EFI events, the first the Authenticode SHA-384
//!   ([`kernel::authenticode_sha384`]) of the bzImage with QEMU's boot
//!   header patch ([`kernel::qemu_patch`]).
//! - [`rtmr2`]: the command line as UTF-16LE with ` initrd=initrd`, then
//!   the initrd.
//!
//! RTMR0 (TD HOB, ACPI tables, boot variables) depends on the platform and
//! is out of scope; RTMR3 is zero at launch.

pub mod kernel;
pub mod mrtd;
pub mod tdvf;

use std::fmt;

use sha2::{Digest, Sha384};

pub use kernel::{ACPI_DATA_SIZE, RUNTIME_MEMORY};
pub use mrtd::{MrtdOrder, mrtd};
pub use tdvf::{TdvfSection, TdvfSectionType, tdvf_sections};

/// A 48-byte SHA-384 TDX measurement register value (MRTD or an RTMR).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TdxDigest(pub [u8; 48]);

impl TdxDigest {
    /// The value every RTMR starts from.
    pub const ZERO: TdxDigest = TdxDigest([0; 48]);

    /// `RTMR = SHA-384(RTMR || event digest)`.
    pub fn extended(self, event: &[u8; 48]) -> TdxDigest {
        let mut h = Sha384::new();
        h.update(self.0);
        h.update(event);
        TdxDigest(h.finalize().into())
    }
}

impl fmt::Display for TdxDigest {
    /// 96 lowercase hex digits.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for TdxDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TdxDigest({self})")
    }
}

/// Why a TDX measurement cannot be computed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum TdxError {
    /// The footer table could not be read.
    #[error("reading the OVMF footer table: {0}")]
    Footer(#[source] crate::snp::SnpError),
    /// No footer table at all.
    #[error("firmware has no OVMF footer table, so no TDX metadata (not a TDVF image)")]
    NoFooterTable,
    /// Footer table without the TDX metadata entry.
    #[error(
        "firmware has no TDX metadata (no footer table entry {}); not a TDVF image",
        tdvf::TDX_METADATA_GUID
    )]
    NoTdxMetadata,
    /// The TDX metadata entry is shorter than its u32 offset.
    #[error("TDX metadata footer entry has {0} data bytes, needs 4")]
    ShortTdxMetadataEntry(usize),
    /// The descriptor offset points outside the file.
    #[error(
        "TDVF descriptor offset {offset_from_end} from the end is outside the {len}-byte firmware"
    )]
    DescriptorOutOfBounds {
        /// Offset from the end of the file.
        offset_from_end: u32,
        /// File size.
        len: usize,
    },
    /// The descriptor does not start with `TDVF`.
    #[error("wrong TDVF descriptor signature {0:?} (expected \"TDVF\")")]
    BadSignature([u8; 4]),
    /// The descriptor version is not 1.
    #[error("wrong TDVF descriptor version {0} (expected 1)")]
    BadVersion(u32),
    /// The sections do not fit in the descriptor or the file.
    #[error(
        "truncated TDVF descriptor: {sections} sections do not fit in its length {length} or the file"
    )]
    TruncatedDescriptor {
        /// Sections announced.
        sections: u32,
        /// Length field.
        length: u32,
    },
    /// A section type outside BFV, CFV, TD_HOB, TEMP_MEM.
    #[error("TDVF section {index} has unknown type {section_type}")]
    UnknownSectionType {
        /// Index of the section.
        index: usize,
        /// Its type.
        section_type: u32,
    },
    /// A section that is not page aligned, or whose raw data does not fit.
    #[error("TDVF section {index} is malformed: {why}")]
    BadSection {
        /// Index of the section.
        index: usize,
        /// What is wrong.
        why: &'static str,
    },
    /// The kernel is shorter than its headers say.
    #[error("kernel image is truncated: {what} at offset {offset:#x} is beyond its {len} bytes")]
    KernelTruncated {
        /// The field that is missing.
        what: &'static str,
        /// Where it should be.
        offset: usize,
        /// Kernel size.
        len: usize,
    },
    /// No `HdrS` boot header.
    #[error("kernel is not a bzImage (no \"HdrS\" boot header at 0x202)")]
    NotBzImage,
    /// No `PE\0\0` signature where the DOS header points.
    #[error("kernel is not a PE image (no PE signature at {0:#x}); EFI stub kernels only")]
    NotPe(u32),
    /// QEMU refuses an initrd with boot protocol < 2.00.
    #[error("kernel boot protocol {0:#x} is too old for an initrd")]
    ProtocolTooOldForInitrd(u16),
    /// The initrd does not fit below the initrd limit.
    #[error("initrd of {size} bytes does not fit below the initrd limit {max:#x}")]
    InitrdTooLarge {
        /// Initrd size.
        size: u64,
        /// Highest address QEMU may use.
        max: u32,
    },
    /// Guest memory too small to hold the ACPI data QEMU reserves.
    #[error("guest memory of {0} bytes is too small")]
    MemoryTooSmall(u64),
}

/// Everything a TDX direct boot under QEMU measures into MRTD, RTMR1, RTMR2.
#[derive(Debug, Clone)]
pub struct TdxLaunch<'a> {
    /// The TDVF (OVMF with TDX metadata); MRTD is computed only when given.
    pub firmware: Option<&'a [u8]>,
    /// Order of page adds and extends for MRTD.
    pub mrtd_order: MrtdOrder,
    /// The bzImage, unmodified.
    pub kernel: &'a [u8],
    /// The initrd.
    pub initrd: &'a [u8],
    /// The kernel command line, exactly as passed to QEMU `-append`.
    pub cmdline: &'a str,
    /// Guest memory in bytes ([`RUNTIME_MEMORY`] as the reference tool's
    /// runtime-only default).
    pub memory: u64,
}

/// MRTD (with a firmware), RTMR1 and RTMR2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TdxMeasurements {
    /// MRTD, when a TDVF was given.
    pub mrtd: Option<TdxDigest>,
    /// RTMR1.
    pub rtmr1: TdxDigest,
    /// RTMR2.
    pub rtmr2: TdxDigest,
}

fn sha384(data: &[u8]) -> [u8; 48] {
    Sha384::digest(data).into()
}

/// RTMR1 for direct boot: Authenticode SHA-384 of the QEMU-patched kernel,
/// then the EFI events "Calling EFI Application from Boot Option", the
/// separator (4 zero bytes), "Exit Boot Services Invocation", "Exit Boot
/// Services Returned with Success".
pub fn rtmr1(kernel: &[u8], initrd_size: u64, memory: u64) -> Result<TdxDigest, TdxError> {
    let patched = kernel::qemu_patch(kernel, initrd_size, memory)?;
    let events = [
        kernel::authenticode_sha384(&patched)?,
        sha384(b"Calling EFI Application from Boot Option"),
        sha384(&[0; 4]),
        sha384(b"Exit Boot Services Invocation"),
        sha384(b"Exit Boot Services Returned with Success"),
    ];
    Ok(events.iter().fold(TdxDigest::ZERO, |r, e| r.extended(e)))
}

/// RTMR2 for direct boot with an initrd: SHA-384 of the UTF-16LE command
/// line with ` initrd=initrd` appended (as OVMF's loader passes it) and a
/// UTF-16 NUL, then SHA-384 of the initrd. The command line is never
/// trimmed.
pub fn rtmr2(cmdline: &str, initrd: &[u8]) -> TdxDigest {
    let mut utf16: Vec<u8> = cmdline
        .encode_utf16()
        .chain(" initrd=initrd".encode_utf16())
        .chain([0])
        .flat_map(u16::to_le_bytes)
        .collect();
    let line = sha384(&utf16);
    utf16.clear();
    [line, sha384(initrd)]
        .iter()
        .fold(TdxDigest::ZERO, |r, e| r.extended(e))
}

/// MRTD (when a firmware is given), RTMR1 and RTMR2 of a direct boot.
pub fn measure(l: &TdxLaunch<'_>) -> Result<TdxMeasurements, TdxError> {
    Ok(TdxMeasurements {
        mrtd: l.firmware.map(|fw| mrtd(fw, l.mrtd_order)).transpose()?,
        rtmr1: rtmr1(l.kernel, l.initrd.len() as u64, l.memory)?,
        rtmr2: rtmr2(l.cmdline, l.initrd),
    })
}
