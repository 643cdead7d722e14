//! On-disk EROFS structures as written by mkfs.erofs 1.5 and 1.8.6 for
//! uncompressed images (the same fields and values in both): superblock,
//! compact and extended inodes, directory entries.
//!
//! Each struct is declared once, with the byte offsets of the kernel's
//! `fs/erofs/erofs_fs.h` in comments, and encodes/decodes itself to a fixed
//! little-endian byte array whose size is asserted at compile time.

/// Filesystem block size. erofs-utils 1.5 always uses 4096; it is part of
/// the schema (a different size changes every byte after the superblock).
pub const BLOCK_SIZE: u64 = 4096;
/// log2 of [`BLOCK_SIZE`], stored in the superblock's `blkszbits`.
pub const BLOCK_SIZE_BITS: u8 = 12;
/// Byte offset of the superblock inside block 0.
pub const SUPERBLOCK_OFFSET: u64 = 1024;
/// End of the 1.5 superblock (1024 + 128): the first byte free for inodes.
pub const SUPERBLOCK_END: u64 = SUPERBLOCK_OFFSET + Superblock::SIZE as u64;
/// `EROFS_SUPER_MAGIC_V1`.
pub const EROFS_SUPER_MAGIC_V1: u32 = 0xE0F5_E1E2;
/// `EROFS_FEATURE_COMPAT_SB_CHKSUM`: the superblock carries a CRC-32C.
pub const FEATURE_COMPAT_SB_CHKSUM: u32 = 0x1;
/// `EROFS_FEATURE_COMPAT_MTIME`: set by mkfs.erofs 1.5 on every image.
pub const FEATURE_COMPAT_MTIME: u32 = 0x2;
/// Inode slots are 32 bytes: nid = byte offset / 32 (from `meta_blkaddr`).
pub const ISLOT_BITS: u32 = 5;
/// `raw_blkaddr` of an inline-only file (no full data blocks): `NULL_ADDR`.
pub const NULL_ADDR: u32 = 0xFFFF_FFFF;

/// `EROFS_INODE_FLAT_PLAIN`: data in contiguous blocks from `raw_blkaddr`.
pub const LAYOUT_FLAT_PLAIN: u16 = 0;
/// `EROFS_INODE_FLAT_INLINE`: full blocks, then the tail right after the inode.
pub const LAYOUT_FLAT_INLINE: u16 = 2;

/// `EROFS_FT_REG_FILE` in a directory entry.
pub const FT_REG_FILE: u8 = 1;
/// `EROFS_FT_DIR` in a directory entry.
pub const FT_DIR: u8 = 2;

/// `S_IFMT` and the two file types this crate handles.
pub const S_IFMT: u16 = 0o170000;
/// Directory file type bits.
pub const S_IFDIR: u16 = 0o040000;
/// Regular file type bits.
pub const S_IFREG: u16 = 0o100000;

/// The 128-byte superblock at byte 1024 (erofs-utils 1.5 layout).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Superblock {
    // 0: magic u32 (EROFS_SUPER_MAGIC_V1)
    /// 4: CRC-32C of bytes 1024..4096 with this field zero (no final XOR).
    pub checksum: u32,
    /// 8: compatible feature bits.
    pub feature_compat: u32,
    /// 12: log2(block size).
    pub blkszbits: u8,
    /// 13: superblock extension slots (0).
    pub sb_extslots: u8,
    /// 14: nid of the root directory.
    pub root_nid: u16,
    /// 16: number of inodes.
    pub inos: u64,
    /// 24: build time, seconds (u64); 32: nanoseconds (u32).
    pub build_time: u64,
    /// 32: build time nanoseconds.
    pub build_time_nsec: u32,
    /// 36: image size in blocks.
    pub blocks: u32,
    /// 40: start block of the metadata area (nid 0).
    pub meta_blkaddr: u32,
    /// 44: start block of shared xattrs.
    pub xattr_blkaddr: u32,
    /// 48: filesystem UUID, raw bytes in text order.
    pub uuid: [u8; 16],
    // 64: volume_name[16]; 80: feature_incompat u32; 84: u1 u16;
    // 86: extra_devices u16; 88: devt_slotoff u16; 90..128: reserved.
    // All zero for uncompressed 1.5 images; decode() checks incompat is 0.
}

impl Superblock {
    /// Encoded size.
    pub const SIZE: usize = 128;

    /// Encodes to the on-disk byte layout.
    pub fn encode(&self) -> [u8; Self::SIZE] {
        let mut b = [0u8; Self::SIZE];
        b[0..4].copy_from_slice(&EROFS_SUPER_MAGIC_V1.to_le_bytes());
        b[4..8].copy_from_slice(&self.checksum.to_le_bytes());
        b[8..12].copy_from_slice(&self.feature_compat.to_le_bytes());
        b[12] = self.blkszbits;
        b[13] = self.sb_extslots;
        b[14..16].copy_from_slice(&self.root_nid.to_le_bytes());
        b[16..24].copy_from_slice(&self.inos.to_le_bytes());
        b[24..32].copy_from_slice(&self.build_time.to_le_bytes());
        b[32..36].copy_from_slice(&self.build_time_nsec.to_le_bytes());
        b[36..40].copy_from_slice(&self.blocks.to_le_bytes());
        b[40..44].copy_from_slice(&self.meta_blkaddr.to_le_bytes());
        b[44..48].copy_from_slice(&self.xattr_blkaddr.to_le_bytes());
        b[48..64].copy_from_slice(&self.uuid);
        b
    }

    /// Decodes; `None` unless the magic matches and `feature_incompat` is 0
    /// (this crate reads only uncompressed, plain images).
    pub fn decode(b: &[u8; Self::SIZE]) -> Option<Self> {
        if le32(b, 0) != EROFS_SUPER_MAGIC_V1 || le32(b, 80) != 0 {
            return None;
        }
        Some(Self {
            checksum: le32(b, 4),
            feature_compat: le32(b, 8),
            blkszbits: b[12],
            sb_extslots: b[13],
            root_nid: le16(b, 14),
            inos: le64(b, 16),
            build_time: le64(b, 24),
            build_time_nsec: le32(b, 32),
            blocks: le32(b, 36),
            meta_blkaddr: le32(b, 40),
            xattr_blkaddr: le32(b, 44),
            uuid: b[48..64].try_into().expect("16 bytes"),
        })
    }
}

/// An inode in either on-disk form; `extended` selects the 64-byte layout.
///
/// Compact (32 bytes): 0 i_format u16, 2 i_xattr_icount u16, 4 i_mode u16,
/// 6 i_nlink u16, 8 i_size u32, 12 reserved u32, 16 raw_blkaddr u32,
/// 20 i_ino u32, 24 i_uid u16, 26 i_gid u16, 28 reserved u32.
///
/// Extended (64 bytes): 0 i_format u16, 2 i_xattr_icount u16, 4 i_mode u16,
/// 6 reserved u16, 8 i_size u64, 16 raw_blkaddr u32, 20 i_ino u32,
/// 24 i_uid u32, 28 i_gid u32, 32 i_mtime u64, 40 i_mtime_nsec u32,
/// 44 i_nlink u32, 48 reserved\[16\].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inode {
    /// 64-byte extended form (i_format bit 0).
    pub extended: bool,
    /// Data layout (`LAYOUT_*`), i_format bits 1..3.
    pub layout: u16,
    /// File type and permission bits.
    pub mode: u16,
    /// Link count.
    pub nlink: u32,
    /// Size in bytes.
    pub size: u64,
    /// First data block, or [`NULL_ADDR`].
    pub raw_blkaddr: u32,
    /// Inode serial number.
    pub ino: u32,
}

impl Inode {
    /// Size of the compact form.
    pub const COMPACT_SIZE: usize = 32;
    /// Size of the extended form.
    pub const EXTENDED_SIZE: usize = 64;

    /// Bytes this inode occupies on disk.
    pub fn disk_size(&self) -> usize {
        if self.extended {
            Self::EXTENDED_SIZE
        } else {
            Self::COMPACT_SIZE
        }
    }

    /// Encodes to 32 or 64 bytes (uid, gid, mtime and xattrs are all zero:
    /// `--all-root -T0`, no xattrs).
    pub fn encode(&self) -> Vec<u8> {
        let format = (self.layout << 1) | u16::from(self.extended);
        let mut b = vec![0u8; self.disk_size()];
        b[0..2].copy_from_slice(&format.to_le_bytes());
        b[4..6].copy_from_slice(&self.mode.to_le_bytes());
        if self.extended {
            b[8..16].copy_from_slice(&self.size.to_le_bytes());
            b[44..48].copy_from_slice(&self.nlink.to_le_bytes());
        } else {
            // Callers choose the compact form only when these fit.
            b[6..8].copy_from_slice(&(self.nlink as u16).to_le_bytes());
            b[8..12].copy_from_slice(&(self.size as u32).to_le_bytes());
        }
        b[16..20].copy_from_slice(&self.raw_blkaddr.to_le_bytes());
        b[20..24].copy_from_slice(&self.ino.to_le_bytes());
        b
    }

    /// Decodes from bytes starting at the inode (at least 32 bytes; 64 when
    /// the format says extended). `None` if too short or an unknown layout.
    pub fn decode(b: &[u8]) -> Option<Self> {
        let format = le16(b.get(..2)?, 0);
        let extended = format & 1 == 1;
        let layout = (format >> 1) & 0x7;
        let size = if extended { 64 } else { 32 };
        let b = b.get(..size)?;
        Some(if extended {
            Self {
                extended,
                layout,
                mode: le16(b, 4),
                nlink: le32(b, 44),
                size: le64(b, 8),
                raw_blkaddr: le32(b, 16),
                ino: le32(b, 20),
            }
        } else {
            Self {
                extended,
                layout,
                mode: le16(b, 4),
                nlink: u32::from(le16(b, 6)),
                size: u64::from(le32(b, 8)),
                raw_blkaddr: le32(b, 16),
                ino: le32(b, 20),
            }
        })
    }
}

/// A 12-byte directory entry: 0 nid u64, 8 nameoff u16, 10 file_type u8,
/// 11 reserved u8. Names follow all dirents of a block, without NULs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dirent {
    /// Target inode number.
    pub nid: u64,
    /// Offset of the name within the directory block (or tail).
    pub nameoff: u16,
    /// `FT_*`.
    pub file_type: u8,
}

impl Dirent {
    /// Encoded size.
    pub const SIZE: usize = 12;

    /// Encodes to the on-disk byte layout.
    pub fn encode(&self) -> [u8; Self::SIZE] {
        let mut b = [0u8; Self::SIZE];
        b[0..8].copy_from_slice(&self.nid.to_le_bytes());
        b[8..10].copy_from_slice(&self.nameoff.to_le_bytes());
        b[10] = self.file_type;
        b
    }

    /// Decodes from the on-disk byte layout.
    pub fn decode(b: &[u8; Self::SIZE]) -> Self {
        Self {
            nid: le64(b, 0),
            nameoff: le16(b, 8),
            file_type: b[10],
        }
    }
}

const _: () = assert!(Superblock::SIZE == 128);
const _: () = assert!(Dirent::SIZE == 12);
const _: () = assert!(SUPERBLOCK_END == 1152);

/// The superblock checksum: CRC-32C (Castagnoli, reflected) seeded with
/// 0xFFFFFFFF and **without** the final XOR, over bytes 1024..4096 of block 0
/// with the checksum field zeroed.
pub fn superblock_checksum(block0_from_1024: &[u8]) -> u32 {
    // crc32c() applies the standard final XOR; undo it.
    !crc32c::crc32c(block0_from_1024)
}

fn le16(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}
fn le32(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(b[o..o + 4].try_into().expect("4 bytes"))
}
fn le64(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().expect("8 bytes"))
}
