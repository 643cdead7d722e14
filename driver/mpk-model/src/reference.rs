//! The reference string `<64 hex root>_<hash offset>_<uuid>` that names an
//! `.mpk` (Modelwrap's `.info` contents), parsed strictly, and the length
//! arithmetic of the `.mpk` it names: `[0, H)` EROFS image, `[H, H+4096)`
//! verity superblock block, then the hash tree.

use std::fmt;
use std::str::FromStr;

use crate::names::is_lower_hex;

/// dm-verity data and hash block size of every pack.
pub const BLOCK: u64 = 4096;

/// What the reference grammar expects, for error messages.
const FORM: &str = "expected <64 lowercase hex root>_<hash offset>_<uuid>";

/// Why a string is not a reference. Each variant names the reference and
/// the field at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    /// Not three `_`-separated fields.
    #[error("reference `{0}` does not have three `_`-separated parts: {FORM}")]
    Fields(String),
    /// The root is not 64 lowercase hex digits.
    #[error("reference `{0}`: root hash `{1}` is not 64 lowercase hex digits")]
    Root(String, String),
    /// The hash offset is not a canonical decimal `u64`.
    #[error("reference `{0}`: hash offset `{1}` is not a decimal number below 2^64")]
    OffsetSyntax(String, String),
    /// The hash offset is zero or not block-aligned.
    #[error("reference `{0}`: hash offset {1} is not a positive multiple of 4096")]
    OffsetValue(String, u64),
    /// The `.mpk` this offset implies would not fit in 64 bits.
    #[error(
        "reference `{0}`: hash offset {1} is too large for a .mpk (its length overflows 64 bits)"
    )]
    OffsetTooLarge(String, u64),
    /// The UUID is malformed or not in lowercase hyphenated form.
    #[error("reference `{0}`: uuid `{1}` must be a lowercase hyphenated UUID")]
    Uuid(String, String),
}

/// A parsed reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Reference {
    /// dm-verity root hash.
    pub root: [u8; 32],
    /// Byte offset of the verity superblock (= EROFS image length): a
    /// positive multiple of 4096 whose `.mpk` length fits in a `u64`.
    pub hash_offset: u64,
    /// EROFS and verity UUID (plain), or GPT partition GUID (encrypted).
    pub uuid: uuid::Uuid,
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}_{}_{}",
            hex::encode(self.root),
            self.hash_offset,
            self.uuid.hyphenated()
        )
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;

    fn from_str(s: &str) -> Result<Self, ReferenceError> {
        let parts: Vec<&str> = s.split('_').collect();
        let [root, off, uuid] = parts.as_slice() else {
            return Err(ReferenceError::Fields(s.into()));
        };
        if !is_lower_hex(root, 64) {
            return Err(ReferenceError::Root(s.into(), (*root).into()));
        }
        let mut r = [0u8; 32];
        hex::decode_to_slice(root, &mut r).expect("checked hex");
        let offset_syntax = || ReferenceError::OffsetSyntax(s.into(), (*off).into());
        if off.is_empty()
            || !off.bytes().all(|b| b.is_ascii_digit())
            || (off.len() > 1 && off.starts_with('0'))
        {
            return Err(offset_syntax());
        }
        let hash_offset: u64 = off.parse().map_err(|_| offset_syntax())?;
        if hash_offset == 0 || !hash_offset.is_multiple_of(BLOCK) {
            return Err(ReferenceError::OffsetValue(s.into(), hash_offset));
        }
        if mpk_len(hash_offset / BLOCK).is_none() {
            return Err(ReferenceError::OffsetTooLarge(s.into(), hash_offset));
        }
        let u = uuid::Uuid::parse_str(uuid)
            .ok()
            .filter(|u| u.hyphenated().to_string() == *uuid)
            .ok_or_else(|| ReferenceError::Uuid(s.into(), (*uuid).into()))?;
        Ok(Self {
            root: r,
            hash_offset,
            uuid: u,
        })
    }
}

impl Reference {
    /// Number of 4096-byte data blocks (the EROFS image, `[0, H)`).
    pub fn data_blocks(&self) -> u64 {
        self.hash_offset / BLOCK
    }

    /// Length of the whole `.mpk` in bytes (checked when parsed, so this
    /// cannot overflow for a parsed reference).
    pub fn mpk_len(&self) -> u64 {
        mpk_len(self.data_blocks()).expect("checked when the reference was made")
    }
}

/// Bytes of the dm-verity hash tree (format 1, sha256, 4096-byte blocks)
/// over `data_blocks` blocks, without the superblock block; `None` for no
/// blocks or on overflow.
pub fn tree_bytes(data_blocks: u64) -> Option<u64> {
    let g = mpk_verity::TreeGeometry::new(data_blocks).ok()?;
    g.total_hash_bytes()
}

/// The full length of an `.mpk` whose image has `data_blocks` blocks: the
/// image, the superblock block and the hash tree; `None` for no blocks or
/// when the length overflows a `u64`.
pub fn mpk_len(data_blocks: u64) -> Option<u64> {
    data_blocks
        .checked_add(1)?
        .checked_mul(BLOCK)?
        .checked_add(tree_bytes(data_blocks)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_published() {
        let s = "17c6605f3becf63a63da37cc6958b2d18f8abc750f9f546b9f57133db40c4326_2142208_905785b4-b198-5ed6-b97d-e7c36a0be1df";
        let r: Reference = s.parse().unwrap();
        assert_eq!(r.hash_offset, 2142208);
        assert_eq!(r.data_blocks(), 523);
        // 523 leaves → 5 leaf hash blocks → 1 top block.
        assert_eq!(r.mpk_len(), 2142208 + 4096 + 6 * 4096);
        assert_eq!(r.to_string(), s);
    }

    #[test]
    fn lengths() {
        assert_eq!(tree_bytes(1), Some(0));
        assert_eq!(tree_bytes(128), Some(4096));
        assert_eq!(tree_bytes(129), Some(3 * 4096));
        assert_eq!(mpk_len(0), None);
        assert_eq!(mpk_len(1), Some(8192));
        assert_eq!(mpk_len(u64::MAX / 4096), None);
        assert_eq!(mpk_len(u64::MAX), None);
    }

    #[test]
    fn refusals() {
        let good_root = "17c6605f3becf63a63da37cc6958b2d18f8abc750f9f546b9f57133db40c4326";
        let u = "905785b4-b198-5ed6-b97d-e7c36a0be1df";
        for (bad, want) in [
            (format!("{good_root}_2142208"), "three"),
            (
                format!("{}_2142208_{u}", good_root.to_uppercase()),
                "root hash",
            ),
            (format!("{good_root}_2142209_{u}"), "positive multiple"),
            (format!("{good_root}_0_{u}"), "positive multiple"),
            (format!("{good_root}_02142208_{u}"), "decimal"),
            (format!("{good_root}_18446744073709551616_{u}"), "decimal"),
            (format!("{good_root}_18446744073709547520_{u}"), "too large"),
            (
                format!("{good_root}_2142208_905785B4-b198-5ed6-b97d-e7c36a0be1df"),
                "uuid",
            ),
            (
                format!("{good_root}_2142208_905785b4b1985ed6b97de7c36a0be1df"),
                "uuid",
            ),
        ] {
            let e = bad.parse::<Reference>().unwrap_err().to_string();
            assert!(e.contains(want), "{bad}: {e}");
        }
    }
}
