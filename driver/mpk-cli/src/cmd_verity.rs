//! `mpk verity …`: dm-verity tools. `format` parses its arguments as
//! `veritysetup format` does and runs [`mpk_pack::verity_format::format`],
//! which writes the same bytes as cryptsetup 2.6.1.

use std::path::PathBuf;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Subcommand};
use mpk_pack::verity_format::FormatOptions;
use mpk_verity::MAX_SALT;

/// dm-verity subcommands.
#[derive(Debug, Subcommand)]
pub enum VerityCommand {
    /// Build the hash tree (and superblock) of DATA into HASH, byte for byte
    /// as `veritysetup format` (format 1, sha256, 4096-byte blocks) does,
    /// and print the root hash.
    Format(FormatArgs),
}

/// Arguments of `mpk verity format`, named as in `veritysetup format`.
#[derive(Debug, Args)]
pub struct FormatArgs {
    /// Data file (or device). A trailing partial 4096-byte block is ignored.
    pub data: PathBuf,
    /// Hash file: created if missing (mode 0600), never truncated; only the
    /// superblock's 4096-byte block and the tree are written. May be the
    /// data file itself, with --hash-offset at or past the end of the data.
    pub hash: PathBuf,
    /// Salt in hex (at most 256 bytes); `-` or an empty string for none.
    #[arg(long, value_name = "HEX")]
    pub salt: String,
    /// UUID stored in the superblock (36-character hyphenated form).
    /// Required unless --no-superblock.
    #[arg(long, required_unless_present = "no_superblock")]
    pub uuid: Option<String>,
    /// Byte offset of the superblock (or, with --no-superblock, of the tree,
    /// rounded down to 4096) in HASH. Must be a multiple of 512.
    #[arg(long, value_name = "BYTES", default_value_t = 0)]
    pub hash_offset: u64,
    /// Number of 4096-byte data blocks to cover; default (and 0, as in
    /// veritysetup): all whole blocks of DATA.
    #[arg(long, value_name = "N")]
    pub data_blocks: Option<u64>,
    /// Do not write the superblock.
    #[arg(long)]
    pub no_superblock: bool,
    /// Also write the root hash (64 lowercase hex digits, no newline) here.
    #[arg(long, value_name = "FILE")]
    pub root_hash_file: Option<PathBuf>,
}

/// Runs a verity subcommand.
pub fn run(c: VerityCommand) -> anyhow::Result<()> {
    match c {
        VerityCommand::Format(a) => {
            let root = mpk_pack::verity_format::format(&a.options()?)?;
            outln!("{}", hex::encode(root));
            Ok(())
        }
    }
}

impl FormatArgs {
    /// The engine's options: salt and UUID parsed as veritysetup parses
    /// them.
    pub fn options(&self) -> Result<FormatOptions> {
        let uuid = if self.no_superblock {
            // veritysetup ignores the UUID here; a malformed one is still an error.
            self.uuid.as_deref().map(parse_uuid).transpose()?;
            None
        } else {
            let u = self
                .uuid
                .as_deref()
                .context("--uuid is required unless --no-superblock")?;
            Some(parse_uuid(u)?)
        };
        Ok(FormatOptions {
            data: self.data.clone(),
            hash: self.hash.clone(),
            salt: parse_salt(&self.salt)?,
            uuid,
            hash_offset: self.hash_offset,
            data_blocks: self.data_blocks,
            root_hash_file: self.root_hash_file.clone(),
        })
    }
}

/// Parses a veritysetup-style salt: hex (either case), or `-`/empty for none.
fn parse_salt(s: &str) -> Result<Vec<u8>> {
    if s.is_empty() || s == "-" {
        return Ok(Vec::new());
    }
    let salt = hex::decode(s).map_err(|e| {
        anyhow!("invalid --salt: {e}; expected an even number of hex digits, or `-` for no salt")
    })?;
    if salt.len() > MAX_SALT {
        bail!(
            "--salt is {} bytes long; dm-verity allows at most {MAX_SALT} bytes ({} hex digits)",
            salt.len(),
            2 * MAX_SALT
        );
    }
    Ok(salt)
}

/// Parses a UUID as veritysetup (libuuid's `uuid_parse`) does: only the
/// 36-character hyphenated form, either case.
fn parse_uuid(s: &str) -> Result<[u8; 16]> {
    let hyphenated = s.len() == 36
        && s.bytes().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == b'-',
            _ => c.is_ascii_hexdigit(),
        });
    if !hyphenated {
        bail!("invalid --uuid {s:?}: expected the form xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx");
    }
    let uuid = uuid::Uuid::parse_str(s).with_context(|| format!("invalid --uuid {s:?}"))?;
    Ok(uuid.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn salt_parsing() {
        assert_eq!(parse_salt("-").unwrap(), Vec::<u8>::new());
        assert_eq!(parse_salt("").unwrap(), Vec::<u8>::new());
        assert_eq!(parse_salt("00Ff").unwrap(), vec![0, 0xff]);
        assert_eq!(parse_salt(&"ab".repeat(256)).unwrap().len(), 256);
        let e = parse_salt(&"ab".repeat(257)).unwrap_err().to_string();
        assert!(e.contains("257 bytes") && e.contains("at most 256"), "{e}");
        for bad in ["0", "abc", "zz", "0x00"] {
            let e = parse_salt(bad).unwrap_err().to_string();
            assert!(e.contains("invalid --salt"), "{bad}: {e}");
        }
    }

    #[test]
    fn uuid_parsing() {
        let b = parse_uuid("12345678-1234-5678-9ABC-def012345678").unwrap();
        assert_eq!(hex::encode(b), "12345678123456789abcdef012345678");
        for bad in [
            "12345678123456789abcdef012345678",
            "{12345678-1234-5678-9abc-def012345678}",
            "urn:uuid:12345678-1234-5678-9abc-def012345678",
            "12345678-1234-5678-9abc-def01234567g",
            "nonsense",
        ] {
            assert!(parse_uuid(bad).is_err(), "{bad}");
        }
    }
}
