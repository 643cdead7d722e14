//! The SNP guest context: the launch digest folded over one `PAGE_INFO`
//! record per page update (SEV-SNP Firmware ABI spec #56860, section 8.17.2,
//! table "Layout of the PAGE_INFO structure").

use sha2::{Digest, Sha384};
use zerocopy::little_endian::{U16, U64};
use zerocopy::{Immutable, IntoBytes, KnownLayout, Unaligned};

use super::LaunchDigest;

/// Size of one guest page.
pub(crate) const PAGE: usize = 4096;

/// The guest-physical address recorded for VMSA pages: (u64)-1, page
/// aligned, bits above 51 cleared.
const VMSA_GPA: u64 = 0xFFFF_FFFF_F000;

/// Page types of `SNP_LAUNCH_UPDATE`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum PageType {
    /// Measured contents.
    Normal = 1,
    /// A VMSA (measured contents).
    Vmsa = 2,
    /// A zero page (contents not hashed).
    Zero = 3,
    /// The secrets page.
    Secrets = 5,
    /// The CPUID page.
    Cpuid = 6,
}

/// `PAGE_INFO`, 0x70 bytes, little-endian.
#[derive(IntoBytes, Immutable, KnownLayout, Unaligned)]
#[repr(C)]
struct PageInfo {
    digest_cur: [u8; 48], // 0x00 launch digest so far
    contents: [u8; 48],   // 0x30 SHA-384 of the page (NORMAL, VMSA), else zero
    length: U16,          // 0x60 = 0x70
    page_type: u8,        // 0x62
    imi_page: u8,         // 0x63 = 0
    vmpl3_perms: u8,      // 0x64 = 0
    vmpl2_perms: u8,      // 0x65 = 0
    vmpl1_perms: u8,      // 0x66 = 0
    reserved: u8,         // 0x67 = 0
    gpa: U64,             // 0x68
}
const _: () = assert!(size_of::<PageInfo>() == 0x70);

/// The running launch digest.
#[derive(Debug, Clone)]
pub(crate) struct Gctx {
    ld: LaunchDigest,
}

impl Gctx {
    /// Starts from `seed` (48 zero bytes for a fresh launch).
    pub(crate) fn new(seed: LaunchDigest) -> Self {
        Self { ld: seed }
    }

    /// The digest so far.
    pub(crate) fn ld(&self) -> LaunchDigest {
        self.ld
    }

    fn update(&mut self, page_type: PageType, gpa: u64, contents: [u8; 48]) {
        let info = PageInfo {
            digest_cur: self.ld.0,
            contents,
            length: U16::new(0x70),
            page_type: page_type as u8,
            imi_page: 0,
            vmpl3_perms: 0,
            vmpl2_perms: 0,
            vmpl1_perms: 0,
            reserved: 0,
            gpa: U64::new(gpa),
        };
        self.ld = LaunchDigest(Sha384::digest(info.as_bytes()).into());
    }

    /// Measures `data` (a whole number of pages) as NORMAL pages from `gpa`.
    pub(crate) fn normal_pages(&mut self, gpa: u64, data: &[u8]) {
        debug_assert_eq!(data.len() % PAGE, 0);
        for (i, page) in data.chunks_exact(PAGE).enumerate() {
            let d = Sha384::digest(page).into();
            self.update(PageType::Normal, gpa + (i * PAGE) as u64, d);
        }
    }

    /// Records `len` bytes (a whole number of pages) of pages of one
    /// unhashed type from `gpa`.
    pub(crate) fn empty_pages(&mut self, page_type: PageType, gpa: u64, len: u64) {
        debug_assert_eq!(len % PAGE as u64, 0);
        for off in (0..len).step_by(PAGE) {
            self.update(page_type, gpa + off, [0; 48]);
        }
    }

    /// Measures one VMSA page.
    pub(crate) fn vmsa_page(&mut self, page: &[u8; PAGE]) {
        let d = Sha384::digest(page).into();
        self.update(PageType::Vmsa, VMSA_GPA, d);
    }
}
