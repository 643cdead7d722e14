//! The SEV hashes table QEMU places in the firmware's kernel-hashes page for
//! direct boot (QEMU `target/i386/sev.c`, `SevHashTable`; OVMF
//! `OvmfPkg/AmdSev/BlobVerifierLibSevHashes`).

use sha2::{Digest, Sha256};
use uuid::{Uuid, uuid};
use zerocopy::little_endian::U16;
use zerocopy::{Immutable, IntoBytes, KnownLayout, Unaligned};

/// Header GUID of the table.
pub const TABLE_HEADER_GUID: Uuid = uuid!("9438d606-4f22-4cc9-b479-a793d411fd21");
/// Entry GUID of the kernel command line hash.
pub const CMDLINE_GUID: Uuid = uuid!("97d02dd8-bd20-4c94-aa78-e7714d36ab2a");
/// Entry GUID of the initrd hash.
pub const INITRD_GUID: Uuid = uuid!("44baf731-3a2f-4bd7-9af1-41e29169781d");
/// Entry GUID of the kernel hash.
pub const KERNEL_GUID: Uuid = uuid!("4de79437-abd2-427f-b835-d5b172d2045b");

/// One entry, 50 bytes, packed.
#[derive(IntoBytes, Immutable, KnownLayout, Unaligned)]
#[repr(C)]
struct Entry {
    guid: [u8; 16], // 0x00 GUID, little-endian (bytes_le) form
    length: U16,    // 0x10 = 50
    hash: [u8; 32], // 0x12 SHA-256
}
const _: () = assert!(size_of::<Entry>() == 50);

/// The table, zero padded to a multiple of 16 bytes (176).
#[derive(IntoBytes, Immutable, KnownLayout, Unaligned)]
#[repr(C)]
struct PaddedTable {
    guid: [u8; 16],   // 0x00 TABLE_HEADER_GUID
    length: U16,      // 0x10 = 168, the unpadded size
    cmdline: Entry,   // 0x12
    initrd: Entry,    // 0x44
    kernel: Entry,    // 0x76
    padding: [u8; 8], // 0xA8 zero
}
const _: () = assert!(size_of::<PaddedTable>() == 176);

/// Size of the padded table in the kernel-hashes page.
pub(crate) const TABLE_LEN: usize = size_of::<PaddedTable>();

/// The three SHA-256 digests QEMU puts in the hashes table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SevHashes {
    /// SHA-256 of the command line bytes followed by one NUL.
    pub cmdline: [u8; 32],
    /// SHA-256 of the initrd (of nothing when there is none).
    pub initrd: [u8; 32],
    /// SHA-256 of the unmodified kernel (bzImage) file.
    pub kernel: [u8; 32],
}

impl SevHashes {
    /// Hashes the direct-boot inputs as `sev-snp-measure` does. The command
    /// line is used exactly as given (never trimmed); `None` and `Some("")`
    /// both hash a single NUL, and a missing initrd hashes as empty.
    pub fn new(kernel: &[u8], initrd: Option<&[u8]>, cmdline: Option<&str>) -> Self {
        let mut c = Sha256::new();
        c.update(cmdline.unwrap_or("").as_bytes());
        c.update([0u8]);
        Self {
            cmdline: c.finalize().into(),
            initrd: Sha256::digest(initrd.unwrap_or(&[])).into(),
            kernel: Sha256::digest(kernel).into(),
        }
    }

    /// The padded table bytes (176).
    pub fn table(&self) -> [u8; TABLE_LEN] {
        let entry = |guid: Uuid, hash: [u8; 32]| Entry {
            guid: guid.to_bytes_le(),
            length: U16::new(size_of::<Entry>() as u16),
            hash,
        };
        let t = PaddedTable {
            guid: TABLE_HEADER_GUID.to_bytes_le(),
            length: U16::new((TABLE_LEN - 8) as u16),
            cmdline: entry(CMDLINE_GUID, self.cmdline),
            initrd: entry(INITRD_GUID, self.initrd),
            kernel: entry(KERNEL_GUID, self.kernel),
            padding: [0; 8],
        };
        let mut out = [0u8; TABLE_LEN];
        out.copy_from_slice(t.as_bytes());
        out
    }
}
