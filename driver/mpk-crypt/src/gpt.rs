//! The GPT container, byte-compatible with `sgdisk --clear
//! --disk-guid=D --new=1:2048:END --typecode=1:8300 --partition-guid=1:P
//! --change-name=1:emwp` on a zeroed image (gdisk 1.0.9): a protective MBR
//! (LBA 0), the primary header (LBA 1) and its 128-entry array (LBA 2-33),
//! the backup entry array (the 32 sectors before the last) and the backup
//! header (the last sector). Every on-disk structure is declared once
//! below, its byte offsets in comments and its size asserted.

use crate::LBA;

/// Number of partition entries (sgdisk's default).
pub const ENTRIES: u32 = 128;
/// Bytes of one partition entry.
pub const ENTRY_SIZE: usize = 128;
/// Bytes of the GPT header proper (the rest of its sector is zero).
pub const HEADER_SIZE: usize = 92;
/// Sectors of one entry array (128 × 128 bytes / 512).
pub const ENTRY_SECTORS: u64 = (ENTRIES as u64 * ENTRY_SIZE as u64) / LBA;
/// Bytes of the protective MBR.
pub const MBR_SIZE: usize = 512;

/// Partition type "Linux filesystem" (gdisk code 8300).
pub const LINUX_FS: uuid::Uuid = uuid::uuid!("0fc63daf-8483-4772-8e79-3d69d8477de4");

/// The protective MBR (LBA 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtectiveMbr {
    // 0..440 boot code (zero), 440..444 disk signature (zero),
    // 444..446 zero, 446..462 partition record 1:
    //   446 status (0), 447..450 start CHS, 450 type (0xEE),
    //   451..454 end CHS, 454..458 start LBA (u32 LE), 458..462 sectors
    //   (u32 LE); 462..510 records 2-4 (zero); 510..512 0x55 0xAA.
    /// Total sectors of the disk.
    pub disk_sectors: u64,
}

/// A GPT header (primary at LBA 1, backup at the last LBA).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    // 0 "EFI PART", 8 revision 0x00010000 (u32), 12 header size 92 (u32),
    // 16 header CRC32 (u32, computed with this field zero), 20 reserved (u32)
    /// 24: LBA of this header (u64).
    pub my_lba: u64,
    /// 32: LBA of the other header (u64).
    pub alternate_lba: u64,
    /// 40: first usable LBA (u64).
    pub first_usable: u64,
    /// 48: last usable LBA (u64).
    pub last_usable: u64,
    /// 56..72: disk GUID (mixed-endian).
    pub disk_guid: uuid::Uuid,
    /// 72: first LBA of this header's entry array (u64).
    pub entries_lba: u64,
    // 80 number of entries (u32), 84 entry size (u32),
    /// 88: CRC32 of the entry array (u32). 92: end.
    pub entries_crc: u32,
}

/// One partition entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// 0..16: partition type GUID (mixed-endian).
    pub type_guid: uuid::Uuid,
    /// 16..32: unique partition GUID (mixed-endian).
    pub guid: uuid::Uuid,
    /// 32: first LBA (u64).
    pub first_lba: u64,
    /// 40: last LBA, inclusive (u64).
    pub last_lba: u64,
    // 48: attributes (u64, zero)
    /// 56..128: name, UTF-16LE, zero padded (at most 36 units).
    pub name: String,
}

/// A little-endian writer that checks each field lands at its offset.
struct Put<'a>(&'a mut [u8], usize);

impl Put<'_> {
    fn at(&mut self, offset: usize, bytes: &[u8]) {
        assert_eq!(self.1, offset, "field written at the wrong offset");
        self.0[offset..offset + bytes.len()].copy_from_slice(bytes);
        self.1 = offset + bytes.len();
    }
}

/// CHS address of `lba` as gdisk computes it (255 heads, 63 sectors per
/// track; 0xFF 0xFF 0xFF once it does not fit 1024 cylinders, as sgdisk
/// 1.0.9 writes it).
pub fn chs(lba: u64) -> [u8; 3] {
    const HEADS: u64 = 255;
    const SPT: u64 = 63;
    if lba == 0 {
        return [0; 3];
    }
    if lba >= HEADS * SPT * 1024 {
        return [0xff, 0xff, 0xff];
    }
    let cyl = lba / (HEADS * SPT);
    let rem = lba - cyl * HEADS * SPT;
    let head = rem / SPT;
    let sector = rem - head * SPT;
    [
        head as u8,
        ((sector + 1) + (cyl >> 8) * 64) as u8,
        (cyl & 0xff) as u8,
    ]
}

impl ProtectiveMbr {
    /// The 512 bytes of the MBR.
    pub fn to_bytes(&self) -> [u8; MBR_SIZE] {
        let mut b = [0u8; MBR_SIZE];
        let sectors = u32::try_from(self.disk_sectors - 1).unwrap_or(u32::MAX);
        let mut p = Put(&mut b, 446);
        p.at(446, &[0]);
        p.at(447, &chs(1));
        p.at(450, &[0xee]);
        p.at(451, &chs(self.disk_sectors - 1));
        p.at(454, &1u32.to_le_bytes());
        p.at(458, &sectors.to_le_bytes());
        p.1 = 510;
        p.at(510, &[0x55, 0xaa]);
        b
    }
}

impl Header {
    /// The 92 header bytes, with the header CRC filled in.
    pub fn to_bytes(&self) -> [u8; HEADER_SIZE] {
        let mut b = [0u8; HEADER_SIZE];
        let mut p = Put(&mut b, 0);
        p.at(0, b"EFI PART");
        p.at(8, &0x0001_0000u32.to_le_bytes());
        p.at(12, &(HEADER_SIZE as u32).to_le_bytes());
        p.at(16, &0u32.to_le_bytes());
        p.at(20, &0u32.to_le_bytes());
        p.at(24, &self.my_lba.to_le_bytes());
        p.at(32, &self.alternate_lba.to_le_bytes());
        p.at(40, &self.first_usable.to_le_bytes());
        p.at(48, &self.last_usable.to_le_bytes());
        p.at(56, &self.disk_guid.to_bytes_le());
        p.at(72, &self.entries_lba.to_le_bytes());
        p.at(80, &ENTRIES.to_le_bytes());
        p.at(84, &(ENTRY_SIZE as u32).to_le_bytes());
        p.at(88, &self.entries_crc.to_le_bytes());
        assert_eq!(p.1, HEADER_SIZE);
        let crc = crc32fast::hash(&b);
        b[16..20].copy_from_slice(&crc.to_le_bytes());
        b
    }
}

impl Entry {
    /// The 128 entry bytes.
    pub fn to_bytes(&self) -> [u8; ENTRY_SIZE] {
        let mut b = [0u8; ENTRY_SIZE];
        let mut p = Put(&mut b, 0);
        p.at(0, &self.type_guid.to_bytes_le());
        p.at(16, &self.guid.to_bytes_le());
        p.at(32, &self.first_lba.to_le_bytes());
        p.at(40, &self.last_lba.to_le_bytes());
        p.at(48, &0u64.to_le_bytes());
        for (i, u) in self.name.encode_utf16().take(36).enumerate() {
            p.at(56 + 2 * i, &u.to_le_bytes());
        }
        b
    }
}

const _: () = assert!(HEADER_SIZE == 92 && ENTRY_SIZE == 128 && MBR_SIZE == 512);
const _: () = assert!(ENTRY_SECTORS == 32);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chs_matches_gdisk_examples() {
        // sgdisk 1.0.9 on a 2168-sector image: end CHS 22 1a 00.
        assert_eq!(chs(2167), [0x22, 0x1a, 0x00]);
        assert_eq!(chs(1), [0x00, 0x02, 0x00]);
        assert_eq!(chs(255 * 63 * 1024 - 1), [0xfe, 0xff, 0xff]);
        assert_eq!(chs(255 * 63 * 1024), [0xff, 0xff, 0xff]);
    }

    #[test]
    fn entry_name_is_utf16() {
        let e = Entry {
            type_guid: LINUX_FS,
            guid: uuid::Uuid::nil(),
            first_lba: 2048,
            last_lba: 2127,
            name: "emwp".into(),
        }
        .to_bytes();
        assert_eq!(&e[56..64], b"e\0m\0w\0p\0");
        assert_eq!(&e[0..4], &[0xaf, 0x3d, 0xc6, 0x0f]);
    }
}
