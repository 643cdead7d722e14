//! AMD SEV-SNP launch digest, as `sev-snp-measure` 0.0.13 computes it for
//! VMM type QEMU (modes `snp` and `snp:ovmf-hash`).
//!
//! Order of page updates:
//! 1. every 4 KiB page of the firmware as NORMAL at `4 GiB - len + offset`
//!    (or a precomputed digest of exactly that, [`SnpLaunch::firmware_digest`]);
//! 2. the SEV metadata sections in file order (never sorted): SEC_MEM and
//!    SVSM_CAA as ZERO pages, SECRETS and CPUID as one page of that type,
//!    KERNEL_HASHES as one NORMAL page holding the hashes table when a
//!    kernel is given, else ZERO pages;
//! 3. one VMSA per vCPU: vCPU 0 at the reset vector 0xFFFFFFF0, the others
//!    at the SEV-ES reset block's EIP.

mod gctx;
mod hashes;
mod ovmf;
mod vcpu;
mod vmsa;

use std::fmt;

use uuid::Uuid;

use gctx::{Gctx, PAGE, PageType};
pub use hashes::SevHashes;
pub use ovmf::{
    FOOTER_GUID, Firmware, SEV_ES_RESET_BLOCK_GUID, SEV_HASH_TABLE_GUID, SEV_METADATA_GUID,
    Section, SectionType,
};
pub use vcpu::{VcpuType, cpu_signature};

/// A 48-byte SHA-384 launch digest (the report's `MEASUREMENT`).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct LaunchDigest(pub [u8; 48]);

impl LaunchDigest {
    /// The digest a launch starts from.
    pub const ZERO: LaunchDigest = LaunchDigest([0; 48]);
}

impl fmt::Display for LaunchDigest {
    /// 96 lowercase hex digits, as `sev-snp-measure` prints it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for LaunchDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LaunchDigest({self})")
    }
}

/// Everything an SNP launch under QEMU measures.
#[derive(Debug, Clone)]
pub struct SnpLaunch<'a> {
    /// The OVMF image (AmdSev build with a kernel-hashes section for direct
    /// boot). Its footer table and SEV metadata are always read.
    pub firmware: &'a [u8],
    /// A precomputed digest of the firmware pages ([`firmware_digest`]);
    /// when given, the firmware pages are not hashed again
    /// (`--snp-ovmf-hash`).
    pub firmware_digest: Option<LaunchDigest>,
    /// Direct boot: the hashes of kernel, initrd and command line.
    pub hashes: Option<SevHashes>,
    /// Number of vCPUs (one VMSA each).
    pub vcpus: u32,
    /// CPUID signature placed in RDX (see [`VcpuType`], [`cpu_signature`]).
    pub vcpu_signature: u32,
    /// The VMSA's `SEV_FEATURES` (guest features; 0x1 = SNPActive).
    pub guest_features: u64,
}

/// The most vCPUs a VM can have: KVM's `KVM_MAX_VCPUS` on x86-64 (4096
/// since Linux 5.15). Larger counts are refused before any work (each vCPU
/// is one VMSA page in the digest; 2^32 of them would run for hours).
pub const MAX_VCPUS: u32 = 4096;

/// Why a launch digest cannot be computed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum SnpError {
    /// More vCPUs than a VM can have ([`MAX_VCPUS`]).
    #[error("{0} vCPUs: a VM has at most {MAX_VCPUS} (KVM's x86 limit, KVM_MAX_VCPUS)")]
    TooManyVcpus(u32),
    /// The firmware is empty, not a whole number of 4 KiB pages, or larger
    /// than 4 GiB.
    #[error(
        "firmware size {0} bytes is not a whole number of 4096-byte pages between 4 KiB and 4 GiB"
    )]
    FirmwareSize(usize),
    /// No footer-table GUID 32 bytes before the end.
    #[error(
        "firmware has no OVMF footer table (GUID {FOOTER_GUID} not found 32 bytes before the end), so no SEV metadata"
    )]
    NoFooterTable,
    /// The footer table says it is larger than the file before it.
    #[error(
        "truncated OVMF footer table: its size is {size} bytes but only {available} bytes precede its end"
    )]
    TruncatedFooterTable {
        /// Size the footer claims (its own 18 bytes included).
        size: usize,
        /// Bytes available.
        available: usize,
    },
    /// An entry's length is below 18 or beyond the table.
    #[error(
        "truncated OVMF footer table: entry {guid} has length {len}, but 18..={available} bytes remain"
    )]
    BadFooterEntry {
        /// The entry's GUID.
        guid: Uuid,
        /// Its length field.
        len: usize,
        /// Bytes left in the table.
        available: usize,
    },
    /// The same GUID twice in the footer table.
    #[error("OVMF footer table has entry {0} twice")]
    DuplicateFooterEntry(Uuid),
    /// An entry too short for the values it must hold.
    #[error("OVMF footer table entry {guid} has {len} data bytes, needs {need}")]
    ShortFooterEntry {
        /// The entry's GUID.
        guid: Uuid,
        /// Bytes needed.
        need: usize,
        /// Bytes present.
        len: usize,
    },
    /// Footer table present but without the SEV metadata entry.
    #[error("firmware has no SEV metadata (no footer table entry {SEV_METADATA_GUID})")]
    NoSevMetadata,
    /// The metadata offset points outside the file.
    #[error(
        "SEV metadata offset {offset_from_end} from the end is outside the {len}-byte firmware"
    )]
    MetadataOutOfBounds {
        /// Offset from the end of the file.
        offset_from_end: usize,
        /// File size.
        len: usize,
    },
    /// The metadata does not start with `ASEV`.
    #[error("wrong SEV metadata signature {0:?} (expected \"ASEV\")")]
    BadMetadataSignature([u8; 4]),
    /// The metadata version is not 1.
    #[error("wrong SEV metadata version {0} (expected 1)")]
    BadMetadataVersion(u32),
    /// The section descriptors do not fit.
    #[error("truncated SEV metadata: {num_items} sections do not fit in its size {size}")]
    TruncatedMetadata {
        /// Sections announced.
        num_items: u32,
        /// Size field of the header.
        size: u32,
    },
    /// A section type this calculation does not know.
    #[error("SEV metadata section {index} has unknown type {section_type:#x}")]
    UnknownSectionType {
        /// Index of the section.
        index: usize,
        /// Its type.
        section_type: u32,
    },
    /// A section measured page by page is not a whole number of pages.
    #[error(
        "SEV metadata section {index} ({section_type:?}) size {size:#x} is not a multiple of 4096"
    )]
    SectionNotPages {
        /// Index of the section.
        index: usize,
        /// Its type.
        section_type: SectionType,
        /// Its size.
        size: u32,
    },
    /// A section reaches past 4 GiB (SEV metadata addresses are 32-bit), or
    /// the sections add up to more than the 4 GiB they must fit in: every
    /// page is one step of the digest, so this bounds the work a crafted
    /// firmware can ask for.
    #[error(
        "SEV metadata section {index} (gpa {gpa:#x}, {size:#x} bytes) reaches past 4 GiB, or the sections add up to more than 4 GiB"
    )]
    SectionOutOfRange {
        /// Index of the section.
        index: usize,
        /// Its guest-physical address.
        gpa: u32,
        /// Its size.
        size: u32,
    },
    /// A kernel was given, but the firmware cannot measure one.
    #[error(
        "a kernel was given but the firmware's SEV metadata has no SNP_KERNEL_HASHES section (type 0x10); use an AmdSev OVMF build"
    )]
    NoKernelHashesSection,
    /// The kernel-hashes section is not exactly one page.
    #[error(
        "SNP_KERNEL_HASHES section is {0:#x} bytes, must be exactly 4096 to hold the hashes table"
    )]
    KernelHashesSize(u32),
    /// No SEV hashes table entry in the footer table.
    #[error(
        "a kernel was given but the firmware has no SEV hashes table entry ({SEV_HASH_TABLE_GUID})"
    )]
    NoHashesTable,
    /// The hashes table would cross the end of its page.
    #[error("SEV hashes table at page offset {0:#x} does not fit in the page")]
    HashesTableOverflow(u32),
    /// No SEV-ES reset block in the footer table.
    #[error("firmware has no SEV-ES reset block ({SEV_ES_RESET_BLOCK_GUID}) for the AP reset EIP")]
    NoResetBlock,
    /// The reset block's EIP is 0 and more than one vCPU was asked for.
    #[error("the SEV-ES reset block's AP EIP is 0, so only 1 vCPU can be launched ({0} asked)")]
    ZeroApEip(u32),
}

fn measure_firmware_pages(firmware: &[u8]) -> Result<LaunchDigest, SnpError> {
    let len = firmware.len();
    if len == 0 || !len.is_multiple_of(PAGE) || len as u64 > 1 << 32 {
        return Err(SnpError::FirmwareSize(len));
    }
    let mut g = Gctx::new(LaunchDigest::ZERO);
    g.normal_pages((1u64 << 32) - len as u64, firmware);
    Ok(g.ld())
}

/// The digest after the firmware pages alone (mode `snp:ovmf-hash`); the
/// footer table and SEV metadata are parsed and checked as the reference
/// does, but not required.
pub fn firmware_digest(firmware: &[u8]) -> Result<LaunchDigest, SnpError> {
    Firmware::parse(firmware)?;
    measure_firmware_pages(firmware)
}

/// The expected SNP launch digest (mode `snp`, VMM type QEMU).
pub fn launch_digest(p: &SnpLaunch<'_>) -> Result<LaunchDigest, SnpError> {
    // Checked before any work: each vCPU costs one VMSA page update.
    if p.vcpus > MAX_VCPUS {
        return Err(SnpError::TooManyVcpus(p.vcpus));
    }
    let fw = Firmware::parse(p.firmware)?;
    if !fw.has_footer_table() {
        return Err(SnpError::NoFooterTable);
    }
    let sections = fw.sections().ok_or(SnpError::NoSevMetadata)?;
    let mut g = Gctx::new(match p.firmware_digest {
        Some(d) => d,
        None => measure_firmware_pages(p.firmware)?,
    });
    let pages = |index: usize, s: &Section| {
        if !(s.size as usize).is_multiple_of(PAGE) {
            return Err(SnpError::SectionNotPages {
                index,
                section_type: s.section_type,
                size: s.size,
            });
        }
        Ok(u64::from(s.size))
    };
    let mut total = 0u64;
    for (index, s) in sections.iter().enumerate() {
        total += u64::from(s.size);
        if u64::from(s.gpa) + u64::from(s.size) > 1 << 32 || total > 1 << 32 {
            return Err(SnpError::SectionOutOfRange {
                index,
                gpa: s.gpa,
                size: s.size,
            });
        }
    }
    for (index, s) in sections.iter().enumerate() {
        let gpa = u64::from(s.gpa);
        match s.section_type {
            SectionType::SnpSecMem | SectionType::SvsmCaa => {
                g.empty_pages(PageType::Zero, gpa, pages(index, s)?);
            }
            SectionType::SnpSecrets => g.empty_pages(PageType::Secrets, gpa, PAGE as u64),
            SectionType::Cpuid => g.empty_pages(PageType::Cpuid, gpa, PAGE as u64),
            SectionType::SnpKernelHashes => match &p.hashes {
                None => g.empty_pages(PageType::Zero, gpa, pages(index, s)?),
                Some(h) => {
                    if s.size as usize != PAGE {
                        return Err(SnpError::KernelHashesSize(s.size));
                    }
                    let at = fw.hashes_table_gpa()?.ok_or(SnpError::NoHashesTable)? & 0xFFF;
                    let table = h.table();
                    let mut page = [0u8; PAGE];
                    page.get_mut(at as usize..at as usize + table.len())
                        .ok_or(SnpError::HashesTableOverflow(at))?
                        .copy_from_slice(&table);
                    g.normal_pages(gpa, &page);
                }
            },
        }
    }
    if p.hashes.is_some()
        && !sections
            .iter()
            .any(|s| s.section_type == SectionType::SnpKernelHashes)
    {
        return Err(SnpError::NoKernelHashesSection);
    }
    let ap_eip = fw.reset_eip()?.ok_or(SnpError::NoResetBlock)?;
    if ap_eip == 0 && p.vcpus > 1 {
        return Err(SnpError::ZeroApEip(p.vcpus));
    }
    let bsp = vmsa::qemu_vmsa(vmsa::BSP_EIP, p.vcpu_signature, p.guest_features);
    let ap = vmsa::qemu_vmsa(ap_eip, p.vcpu_signature, p.guest_features);
    for i in 0..p.vcpus {
        g.vmsa_page(if i == 0 { &bsp } else { &ap });
    }
    Ok(g.ld())
}
