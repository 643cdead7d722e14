//! The reference string `<64 hex root>_<hash offset>_<uuid>` that names an
//! `.mpk` (Modelwrap's `.info` contents), parsed strictly.

use anyhow::{Context, Result, bail};
use std::fmt;
use std::str::FromStr;

/// A parsed reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reference {
    /// dm-verity root hash.
    pub root: [u8; 32],
    /// Byte offset of the verity superblock (= EROFS image length).
    pub hash_offset: u64,
    /// EROFS and verity UUID.
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
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        let form = "expected <64 lowercase hex root>_<hash offset>_<uuid>";
        let parts: Vec<&str> = s.split('_').collect();
        let [root, off, uuid] = parts.as_slice() else {
            bail!("reference `{s}` does not have three `_`-separated parts: {form}");
        };
        if !crate::identity::is_lower_hex(root, 64) {
            bail!("reference `{s}`: root hash `{root}` is not 64 lowercase hex digits");
        }
        let mut r = [0u8; 32];
        hex::decode_to_slice(root, &mut r).expect("checked hex");
        if off.is_empty()
            || !off.bytes().all(|b| b.is_ascii_digit())
            || (off.len() > 1 && off.starts_with('0'))
        {
            bail!("reference `{s}`: hash offset `{off}` is not a decimal number");
        }
        let hash_offset: u64 = off
            .parse()
            .with_context(|| format!("reference `{s}`: hash offset `{off}`"))?;
        if hash_offset == 0 || !hash_offset.is_multiple_of(4096) {
            bail!("reference `{s}`: hash offset {hash_offset} is not a positive multiple of 4096");
        }
        let u = uuid::Uuid::parse_str(uuid)
            .with_context(|| format!("reference `{s}`: uuid `{uuid}`"))?;
        if u.hyphenated().to_string() != *uuid {
            bail!("reference `{s}`: uuid `{uuid}` must be lowercase and hyphenated");
        }
        Ok(Self {
            root: r,
            hash_offset,
            uuid: u,
        })
    }
}

impl Reference {
    /// Parses `arg` as a reference string, or else reads it from the file
    /// it names (an `.info` file; one trailing newline is tolerated).
    pub fn load(arg: &str) -> Result<Self> {
        if let Ok(r) = arg.parse() {
            return Ok(r);
        }
        match std::fs::read_to_string(arg) {
            Ok(text) => text
                .strip_suffix('\n')
                .unwrap_or(&text)
                .parse()
                .with_context(|| format!("in `{arg}`")),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                arg.parse::<Self>().with_context(|| {
                    format!("`{arg}` is neither a reference nor an existing .info file")
                })
            }
            Err(e) => Err(e).with_context(|| format!("cannot read `{arg}`")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_published() {
        let s = "17c6605f3becf63a63da37cc6958b2d18f8abc750f9f546b9f57133db40c4326_2142208_905785b4-b198-5ed6-b97d-e7c36a0be1df";
        let r: Reference = s.parse().unwrap();
        assert_eq!(r.hash_offset, 2142208);
        assert_eq!(r.to_string(), s);
    }

    #[test]
    fn refusals() {
        let good_root = "17c6605f3becf63a63da37cc6958b2d18f8abc750f9f546b9f57133db40c4326";
        for bad in [
            format!("{good_root}_2142208"),
            format!(
                "{}_2142208_905785b4-b198-5ed6-b97d-e7c36a0be1df",
                good_root.to_uppercase()
            ),
            format!("{good_root}_2142209_905785b4-b198-5ed6-b97d-e7c36a0be1df"),
            format!("{good_root}_02142208_905785b4-b198-5ed6-b97d-e7c36a0be1df"),
            format!("{good_root}_2142208_905785B4-b198-5ed6-b97d-e7c36a0be1df"),
            format!("{good_root}_2142208_905785b4b1985ed6b97de7c36a0be1df"),
        ] {
            assert!(bad.parse::<Reference>().is_err(), "{bad} accepted");
        }
    }
}
