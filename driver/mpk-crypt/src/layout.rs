//! Layout of an `.empk` (in 512-byte sectors): GPT head in sectors
//! 0-2047, the encrypted payload (the `.mpk`, `n` = its length / 512
//! sectors) in the only partition, sectors 2048 to 2048 + n - 1, then 40
//! sectors: 7 zero sectors, the backup entry array (32) and the backup
//! header (1). Image length = (2048 + n + 40) × 512.

use crate::gpt::{ENTRY_SECTORS, Entry, Header, LINUX_FS, ProtectiveMbr};
use crate::{CRYPT_SECTOR, Error, LBA};

/// First sector of the partition.
pub const PARTITION_START: u64 = 2048;
/// Sectors after the partition.
pub const TAIL_SECTORS: u64 = 40;
/// Partition name.
pub const PARTITION_NAME: &str = "emwp";

/// The geometry and GUIDs of one encrypted pack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Payload (plaintext `.mpk`) length in bytes.
    pub payload_len: u64,
    /// Disk GUID.
    pub disk_guid: uuid::Uuid,
    /// Partition GUID (the encrypted reference's UUID).
    pub partition_guid: uuid::Uuid,
}

impl Layout {
    /// The layout of a payload of `payload_len` bytes with the given GUIDs.
    pub fn new(
        payload_len: u64,
        disk_guid: uuid::Uuid,
        partition_guid: uuid::Uuid,
    ) -> Result<Self, Error> {
        if payload_len == 0 || !payload_len.is_multiple_of(CRYPT_SECTOR as u64) {
            return Err(Error::PayloadSize(payload_len));
        }
        (payload_len / LBA)
            .checked_add(PARTITION_START + TAIL_SECTORS)
            .and_then(|s| s.checked_mul(LBA))
            .ok_or(Error::TooLarge(payload_len))?;
        Ok(Self {
            payload_len,
            disk_guid,
            partition_guid,
        })
    }

    /// Total sectors of the image.
    pub fn disk_sectors(&self) -> u64 {
        PARTITION_START + self.payload_len / LBA + TAIL_SECTORS
    }

    /// Image length in bytes.
    pub fn image_len(&self) -> u64 {
        self.disk_sectors() * LBA
    }

    /// Byte offset of the payload in the image.
    pub fn payload_offset(&self) -> u64 {
        PARTITION_START * LBA
    }

    /// Last sector of the partition (inclusive; sgdisk's `<end>`).
    pub fn partition_last(&self) -> u64 {
        PARTITION_START + self.payload_len / LBA - 1
    }

    fn entries(&self) -> (Vec<u8>, u32) {
        let mut a = vec![0u8; (ENTRY_SECTORS * LBA) as usize];
        let e = Entry {
            type_guid: LINUX_FS,
            guid: self.partition_guid,
            first_lba: PARTITION_START,
            last_lba: self.partition_last(),
            name: PARTITION_NAME.into(),
        };
        a[..crate::gpt::ENTRY_SIZE].copy_from_slice(&e.to_bytes());
        let crc = crc32fast::hash(&a);
        (a, crc)
    }

    fn header(&self, primary: bool, entries_crc: u32) -> Vec<u8> {
        let last = self.disk_sectors() - 1;
        let h = Header {
            my_lba: if primary { 1 } else { last },
            alternate_lba: if primary { last } else { 1 },
            first_usable: 2 + ENTRY_SECTORS,
            last_usable: last - 1 - ENTRY_SECTORS,
            disk_guid: self.disk_guid,
            entries_lba: if primary { 2 } else { last - ENTRY_SECTORS },
            entries_crc,
        };
        let mut s = vec![0u8; LBA as usize];
        s[..crate::gpt::HEADER_SIZE].copy_from_slice(&h.to_bytes());
        s
    }

    /// The bytes before the payload (`payload_offset()` bytes): MBR,
    /// primary header, primary entries, zeros.
    pub fn head(&self) -> Vec<u8> {
        let mut b = vec![0u8; self.payload_offset() as usize];
        let mbr = ProtectiveMbr {
            disk_sectors: self.disk_sectors(),
        };
        b[..512].copy_from_slice(&mbr.to_bytes());
        let (entries, crc) = self.entries();
        b[512..1024].copy_from_slice(&self.header(true, crc));
        b[1024..1024 + entries.len()].copy_from_slice(&entries);
        b
    }

    /// The bytes after the payload (40 sectors): zeros, backup entries,
    /// backup header.
    pub fn tail(&self) -> Vec<u8> {
        let mut b = vec![0u8; (TAIL_SECTORS * LBA) as usize];
        let (entries, crc) = self.entries();
        let hdr = self.header(false, crc);
        let end = b.len();
        b[end - 512..].copy_from_slice(&hdr);
        b[end - 512 - entries.len()..end - 512].copy_from_slice(&entries);
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn math() {
        let l = Layout::new(80 * 512, uuid::Uuid::nil(), uuid::Uuid::nil()).unwrap();
        assert_eq!(l.disk_sectors(), 2168);
        assert_eq!(l.partition_last(), 2127);
        assert_eq!(l.head().len() as u64, l.payload_offset());
        assert_eq!(
            l.head().len() as u64 + l.payload_len + l.tail().len() as u64,
            l.image_len()
        );
        assert!(Layout::new(0, uuid::Uuid::nil(), uuid::Uuid::nil()).is_err());
        assert!(Layout::new(512, uuid::Uuid::nil(), uuid::Uuid::nil()).is_err());
        assert!(Layout::new(u64::MAX - 4095, uuid::Uuid::nil(), uuid::Uuid::nil()).is_err());
    }
}
