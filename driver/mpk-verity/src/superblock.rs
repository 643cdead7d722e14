//! The 512-byte on-disk verity superblock written by `veritysetup format`
//! at the hash offset (unless `--no-superblock`).
//!
//! The kernel never reads it (its table gives every parameter), so a
//! consumer must not trust it; `mpk verify` compares it with the reference.

use crate::{BLOCK, Error, MAX_SALT, SUPERBLOCK_SIZE};

// On-disk layout, little-endian, packed. Byte offsets of each field:
/// `[u8; 8]` signature, `"verity\0\0"`.
const MAGIC: usize = 0;
/// `u32` superblock version, 1.
const VERSION: usize = 8;
/// `u32` hash type: 1 normal (format 1), 0 Chrome OS.
const HASH_TYPE: usize = 12;
/// `[u8; 16]` UUID, raw bytes.
const UUID: usize = 16;
/// `[u8; 32]` hash algorithm name, lowercase, NUL padded (`"sha256"`).
const ALGORITHM: usize = 32;
/// `u32` data block size in bytes.
const DATA_BLOCK_SIZE: usize = 64;
/// `u32` hash block size in bytes.
const HASH_BLOCK_SIZE: usize = 68;
/// `u64` number of data blocks.
const DATA_BLOCKS: usize = 72;
/// `u16` salt size in bytes.
const SALT_SIZE: usize = 80;
/// `[u8; 6]` reserved, zero.
const PAD1: usize = 82;
/// `[u8; 256]` salt, zero padded.
const SALT: usize = 88;
/// `[u8; 168]` reserved, zero.
const PAD2: usize = 344;
/// End of the superblock.
const END: usize = 512;

const _: () = assert!(
    VERSION == MAGIC + 8
        && HASH_TYPE == VERSION + 4
        && UUID == HASH_TYPE + 4
        && ALGORITHM == UUID + 16
        && DATA_BLOCK_SIZE == ALGORITHM + 32
        && HASH_BLOCK_SIZE == DATA_BLOCK_SIZE + 4
        && DATA_BLOCKS == HASH_BLOCK_SIZE + 4
        && SALT_SIZE == DATA_BLOCKS + 8
        && PAD1 == SALT_SIZE + 2
        && SALT == PAD1 + 6
        && PAD2 == SALT + MAX_SALT
        && END == PAD2 + 168
        && END == SUPERBLOCK_SIZE
);

/// The signature at offset 0.
pub const SUPERBLOCK_MAGIC: &[u8; 8] = b"verity\0\0";

/// A decoded verity superblock. Every field is kept as stored (nothing is
/// validated beyond what decoding needs), so a caller can report exactly
/// which field disagrees with the expected one (see
/// [`Superblock::mismatches`]). A successfully parsed superblock re-encodes
/// to the identical 512 bytes ([`Superblock::to_bytes`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Superblock {
    /// Superblock version (1).
    pub version: u32,
    /// Hash type: 1 = normal (format 1), 0 = Chrome OS.
    pub hash_type: u32,
    /// UUID, raw 16 bytes.
    pub uuid: [u8; 16],
    /// Hash algorithm name, NUL padded (`"sha256"`).
    pub algorithm: [u8; 32],
    /// Data block size in bytes (4096).
    pub data_block_size: u32,
    /// Hash block size in bytes (4096).
    pub hash_block_size: u32,
    /// Number of data blocks.
    pub data_blocks: u64,
    /// The salt (at most 256 bytes).
    pub salt: Vec<u8>,
}

impl Superblock {
    /// The superblock `veritysetup format` writes for mpk's configuration:
    /// version 1, hash type 1, sha256, 4096-byte blocks.
    pub fn new(uuid: [u8; 16], salt: &[u8], data_blocks: u64) -> Result<Self, Error> {
        if salt.len() > MAX_SALT {
            return Err(Error::SaltTooLong { len: salt.len() });
        }
        if data_blocks == 0 {
            return Err(Error::NoDataBlocks);
        }
        let mut algorithm = [0u8; 32];
        algorithm[..6].copy_from_slice(b"sha256");
        Ok(Self {
            version: 1,
            hash_type: 1,
            uuid,
            algorithm,
            data_block_size: BLOCK as u32,
            hash_block_size: BLOCK as u32,
            data_blocks,
            salt: salt.to_vec(),
        })
    }

    /// The algorithm name up to its first NUL (lossy UTF-8).
    pub fn algorithm_name(&self) -> String {
        let end = self.algorithm.iter().position(|&b| b == 0).unwrap_or(32);
        String::from_utf8_lossy(&self.algorithm[..end]).into_owned()
    }

    /// Encodes the 512 on-disk bytes. Panics if the salt is longer than 256
    /// bytes (impossible for values from [`Superblock::new`] or
    /// [`parse_superblock`]).
    pub fn to_bytes(&self) -> [u8; SUPERBLOCK_SIZE] {
        assert!(
            self.salt.len() <= MAX_SALT,
            "salt longer than {MAX_SALT} bytes"
        );
        let mut b = [0u8; SUPERBLOCK_SIZE];
        b[MAGIC..VERSION].copy_from_slice(SUPERBLOCK_MAGIC);
        b[VERSION..HASH_TYPE].copy_from_slice(&self.version.to_le_bytes());
        b[HASH_TYPE..UUID].copy_from_slice(&self.hash_type.to_le_bytes());
        b[UUID..ALGORITHM].copy_from_slice(&self.uuid);
        b[ALGORITHM..DATA_BLOCK_SIZE].copy_from_slice(&self.algorithm);
        b[DATA_BLOCK_SIZE..HASH_BLOCK_SIZE].copy_from_slice(&self.data_block_size.to_le_bytes());
        b[HASH_BLOCK_SIZE..DATA_BLOCKS].copy_from_slice(&self.hash_block_size.to_le_bytes());
        b[DATA_BLOCKS..SALT_SIZE].copy_from_slice(&self.data_blocks.to_le_bytes());
        b[SALT_SIZE..PAD1].copy_from_slice(&(self.salt.len() as u16).to_le_bytes());
        b[SALT..SALT + self.salt.len()].copy_from_slice(&self.salt);
        b
    }

    /// Names of the fields that differ from `expected`, in on-disk order
    /// (empty when the superblocks are equal).
    pub fn mismatches(&self, expected: &Superblock) -> Vec<&'static str> {
        let mut out = Vec::new();
        let mut check = |name, differs: bool| {
            if differs {
                out.push(name);
            }
        };
        check("version", self.version != expected.version);
        check("hash_type", self.hash_type != expected.hash_type);
        check("uuid", self.uuid != expected.uuid);
        check("algorithm", self.algorithm != expected.algorithm);
        check(
            "data_block_size",
            self.data_block_size != expected.data_block_size,
        );
        check(
            "hash_block_size",
            self.hash_block_size != expected.hash_block_size,
        );
        check("data_blocks", self.data_blocks != expected.data_blocks);
        check("salt", self.salt != expected.salt);
        out
    }
}

/// The 512-byte superblock `veritysetup format` writes (format 1, sha256,
/// 4096-byte blocks). Fails if the salt exceeds 256 bytes or `data_blocks`
/// is 0.
pub fn superblock(
    uuid: [u8; 16],
    salt: &[u8],
    data_blocks: u64,
) -> Result<[u8; SUPERBLOCK_SIZE], Error> {
    Ok(Superblock::new(uuid, salt, data_blocks)?.to_bytes())
}

/// Decodes a superblock from the first 512 bytes of `bytes`.
///
/// Fails on a short buffer, a wrong signature, a salt size above 256, or a
/// non-zero byte in a reserved area (the padding fields and the salt field
/// beyond the salt size), so that every accepted input round-trips through
/// [`Superblock::to_bytes`] unchanged. Field values (version, algorithm,
/// block sizes, ...) are not judged: compare with the expected superblock.
pub fn parse_superblock(bytes: &[u8]) -> Result<Superblock, Error> {
    let b: &[u8; SUPERBLOCK_SIZE] = bytes
        .get(..SUPERBLOCK_SIZE)
        .and_then(|s| s.try_into().ok())
        .ok_or(Error::SuperblockTooShort { len: bytes.len() })?;
    if &b[MAGIC..VERSION] != SUPERBLOCK_MAGIC {
        return Err(Error::BadMagic);
    }
    let u16_at = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]);
    let u32_at = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().expect("4 bytes"));
    let u64_at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().expect("8 bytes"));
    let salt_size = u16_at(SALT_SIZE);
    if usize::from(salt_size) > MAX_SALT {
        return Err(Error::BadSaltSize { size: salt_size });
    }
    let salt_end = SALT + usize::from(salt_size);
    let reserved = (PAD1..SALT).chain(salt_end..END);
    if let Some(offset) = reserved.into_iter().find(|&o| b[o] != 0) {
        return Err(Error::NonZeroReserved {
            offset,
            value: b[offset],
        });
    }
    Ok(Superblock {
        version: u32_at(VERSION),
        hash_type: u32_at(HASH_TYPE),
        uuid: b[UUID..ALGORITHM].try_into().expect("16 bytes"),
        algorithm: b[ALGORITHM..DATA_BLOCK_SIZE].try_into().expect("32 bytes"),
        data_block_size: u32_at(DATA_BLOCK_SIZE),
        hash_block_size: u32_at(HASH_BLOCK_SIZE),
        data_blocks: u64_at(DATA_BLOCKS),
        salt: b[SALT..salt_end].to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const UUID_BYTES: [u8; 16] = [
        0x12, 0x34, 0x56, 0x78, 0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 0x12, 0x34, 0x56,
        0x78,
    ];

    /// First 0x78 bytes of the superblock veritysetup 2.6.1 wrote for
    /// `--uuid=12345678-1234-5678-9abc-def012345678 --salt=000102…1f`, 335
    /// data blocks (hexdump, formats.md §3); the rest is zero.
    #[test]
    fn matches_veritysetup_hexdump() {
        let salt: Vec<u8> = (0..32).collect();
        let sb = superblock(UUID_BYTES, &salt, 335).unwrap();
        let head = "7665726974790000010000000100000012345678123456789abcdef012345678\
                    7368613235360000000000000000000000000000000000000000000000000000\
                    00100000001000004f010000000000002000000000000000";
        assert_eq!(hex::encode(&sb[..88]), head);
        assert_eq!(&sb[88..120], &salt[..]);
        assert!(sb[120..].iter().all(|&b| b == 0));
    }

    #[test]
    fn roundtrip() {
        for salt_len in [0usize, 1, 32, 255, 256] {
            let salt: Vec<u8> = (0..salt_len).map(|i| (i as u8) | 1).collect();
            let bytes = superblock(UUID_BYTES, &salt, 0x0102_0304_0506).unwrap();
            let sb = parse_superblock(&bytes).unwrap();
            assert_eq!(
                sb,
                Superblock::new(UUID_BYTES, &salt, 0x0102_0304_0506).unwrap()
            );
            assert_eq!(sb.to_bytes(), bytes);
            assert_eq!(sb.algorithm_name(), "sha256");
            assert_eq!((sb.version, sb.hash_type), (1, 1));
            assert_eq!((sb.data_block_size, sb.hash_block_size), (4096, 4096));
            assert!(sb.mismatches(&sb.clone()).is_empty());
            // Parsing ignores anything after the first 512 bytes.
            let mut longer = bytes.to_vec();
            longer.extend_from_slice(&[0xff; 100]);
            assert_eq!(parse_superblock(&longer).unwrap(), sb);
        }
    }

    #[test]
    fn reports_disagreeing_fields() {
        let expected = Superblock::new(UUID_BYTES, b"salt", 100).unwrap();
        let mut bytes = expected.to_bytes();
        bytes[DATA_BLOCKS] = 99; // the truncation attack: fewer data blocks
        bytes[VERSION] = 2;
        let got = parse_superblock(&bytes).unwrap();
        assert_eq!(got.data_blocks, 99);
        assert_eq!(got.mismatches(&expected), ["version", "data_blocks"]);
    }

    #[test]
    fn errors() {
        let good = superblock(UUID_BYTES, b"salt", 1).unwrap();
        assert_eq!(
            superblock(UUID_BYTES, &[0; 257], 1),
            Err(Error::SaltTooLong { len: 257 })
        );
        assert_eq!(superblock(UUID_BYTES, b"", 0), Err(Error::NoDataBlocks));
        assert_eq!(
            parse_superblock(&good[..511]),
            Err(Error::SuperblockTooShort { len: 511 })
        );
        let mut bad = good;
        bad[6] = b'x';
        assert_eq!(parse_superblock(&bad), Err(Error::BadMagic));
        let mut bad = good;
        bad[SALT_SIZE..PAD1].copy_from_slice(&257u16.to_le_bytes());
        assert_eq!(
            parse_superblock(&bad),
            Err(Error::BadSaltSize { size: 257 })
        );
        for offset in [PAD1, SALT + 4, PAD2, END - 1] {
            let mut bad = good;
            bad[offset] = 0xee;
            assert_eq!(
                parse_superblock(&bad),
                Err(Error::NonZeroReserved {
                    offset,
                    value: 0xee
                })
            );
        }
    }
}
