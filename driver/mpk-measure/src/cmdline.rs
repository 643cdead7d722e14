//! The `mpk.model=` / `mpk.next=` words of the measured kernel command
//! line: built on the host (`mpk measure deployment`) and parsed by the
//! guest init (`mpk-init`) with this same code, strictly, since the command
//! line is the only input the guest trusts.
//!
//! Syntax (issue 4): space-separated words; each `mpk.model=<org>/<name>@<40
//! lowercase hex>:<64 lowercase hex root>_<hash offset decimal>_<uuid
//! lowercase>` names one model (the reference exactly as in `.info`; org and
//! name as on the Hub: letters, digits, `-`, `_`, `.`), and an optional
//! `mpk.next=<absolute path>` names the program to hand over to. Every other
//! word belongs to the kernel and is ignored, except unknown `mpk.` words,
//! which are refused (a typo must not silently drop a model); the same
//! `<org>/<name>` twice is refused.
//!
//! Parsing also checks each UUID against its identity (UUIDv5 of the URL
//! namespace over `identity + "-inner"`), so a mismatch is refused before
//! the guest touches any disk, and before the host measures such a line.
//! The validation rules mirror `mpk-cli/src/identity.rs` and
//! `mpk-cli/src/reference.rs`; a test in mpk-guest compares them on the same
//! inputs.

use sha2::{Digest, Sha256};
use std::fmt;
use thiserror::Error;

/// Why the command line was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum CmdlineError {
    /// A `mpk.model=` word is malformed; `reason` says which part.
    #[error("`{word}`: {reason}")]
    BadModel {
        /// The offending word.
        word: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The same `<org>/<name>` appears twice.
    #[error("model `{0}` is named twice on the command line")]
    DuplicateModel(String),
    /// The UUID does not derive from the identity.
    #[error(
        "model `{identity}`: uuid {found} does not match the identity (expected {expected}); refusing before touching any disk"
    )]
    UuidMismatch {
        /// The identity.
        identity: String,
        /// UUIDv5 of `identity + "-inner"`.
        expected: String,
        /// The UUID on the command line.
        found: String,
    },
    /// `mpk.next=` is not an absolute path, or is given twice.
    #[error("`{word}`: {reason}")]
    BadNext {
        /// The offending word.
        word: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An `mpk.` word this init does not know.
    #[error("unknown parameter `{0}` (known: mpk.model=, mpk.next=)")]
    Unknown(String),
    /// No `mpk.model=` word at all.
    #[error("no mpk.model= on the kernel command line; refusing to boot without a model")]
    NoModels,
}

/// One model from the command line, with every dm-verity parameter the
/// guest will use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelSpec {
    /// Hub organisation.
    pub org: String,
    /// Model name.
    pub name: String,
    /// 40 lowercase hex commit.
    pub rev: String,
    /// dm-verity root hash.
    pub root: [u8; 32],
    /// Byte offset of the verity superblock (= EROFS image length).
    pub hash_offset: u64,
    /// EROFS and verity UUID (checked against the identity).
    pub uuid: uuid::Uuid,
}

impl ModelSpec {
    /// `org/name@rev`.
    pub fn identity(&self) -> String {
        format!("{}/{}@{}", self.org, self.name, self.rev)
    }

    /// The dm-verity salt: SHA-256 of the identity.
    pub fn salt(&self) -> [u8; 32] {
        Sha256::digest(self.identity().as_bytes()).into()
    }

    /// Number of 4096-byte data blocks (the EROFS image, `[0, H)`).
    pub fn data_blocks(&self) -> u64 {
        self.hash_offset / 4096
    }

    /// Length of the mapping in 512-byte sectors.
    pub fn sectors(&self) -> u64 {
        self.data_blocks() * 8
    }

    /// The `verity` target parameters for data and hash on the same device
    /// `dev` (a `major:minor` or a path): format 1, 4096-byte blocks, the
    /// hash tree one block past `H` (the on-disk superblock is skipped,
    /// never read), sha256, root and salt from the command line only.
    pub fn verity_params(&self, dev: &str) -> String {
        let n = self.data_blocks();
        format!(
            "1 {dev} {dev} 4096 4096 {n} {} sha256 {} {}",
            n + 1,
            hex::encode(self.root),
            hex::encode(self.salt())
        )
    }

    /// Where the model is mounted: `/models/<org>/<name>`.
    pub fn mount_point(&self) -> String {
        format!("/models/{}/{}", self.org, self.name)
    }
}

impl fmt::Display for ModelSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}_{}_{}",
            self.identity(),
            hex::encode(self.root),
            self.hash_offset,
            self.uuid.hyphenated()
        )
    }
}

/// Everything the init takes from the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootConfig {
    /// The models, in command-line order (at least one).
    pub models: Vec<ModelSpec>,
    /// `mpk.next=`, if given.
    pub next: Option<String>,
}

impl ModelSpec {
    /// The `mpk.model=` word of this model.
    pub fn word(&self) -> String {
        format!("mpk.model={self}")
    }
}

impl BootConfig {
    /// The words, space-separated: the models in order, then `mpk.next=`.
    pub fn to_words(&self) -> String {
        let mut words: Vec<String> = self.models.iter().map(ModelSpec::word).collect();
        words.extend(self.next.iter().map(|n| format!("mpk.next={n}")));
        words.join(" ")
    }
}

/// UUIDv5(NAMESPACE_URL, identity + "-inner").
pub fn identity_uuid(identity: &str) -> uuid::Uuid {
    uuid::Uuid::new_v5(
        &uuid::Uuid::NAMESPACE_URL,
        format!("{identity}-inner").as_bytes(),
    )
}

/// True when `s` is exactly `len` lowercase hexadecimal digits.
pub fn is_lower_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// True for a Hub organisation or repository name: 1 to 96 letters,
/// digits, `-`, `_`, `.`, and not `.` or `..`.
pub fn hub_name_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 96
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        && s != "."
        && s != ".."
}

fn parse_model(word: &str, value: &str) -> Result<ModelSpec, CmdlineError> {
    let bad = |reason: String| CmdlineError::BadModel {
        word: word.to_string(),
        reason,
    };
    let (identity, reference) = value.split_once(':').ok_or_else(|| {
        bad("expected <org>/<name>@<40 hex>:<64 hex root>_<hash offset>_<uuid>".into())
    })?;
    let (repo, rev) = identity
        .split_once('@')
        .ok_or_else(|| bad(format!("identity `{identity}` has no `@<rev>`")))?;
    let (org, name) = repo
        .split_once('/')
        .ok_or_else(|| bad(format!("identity `{identity}` has no `/`")))?;
    if !hub_name_ok(org) {
        return Err(bad(format!(
            "organisation `{org}` may hold only letters, digits, `-`, `_` and `.`"
        )));
    }
    if !hub_name_ok(name) {
        return Err(bad(format!(
            "name `{name}` may hold only letters, digits, `-`, `_` and `.`"
        )));
    }
    if !is_lower_hex(rev, 40) {
        return Err(bad(format!(
            "revision `{rev}` is not 40 lowercase hex digits"
        )));
    }
    let parts: Vec<&str> = reference.split('_').collect();
    let [root_hex, off, uuid_s] = parts.as_slice() else {
        return Err(bad(format!(
            "reference `{reference}` does not have three `_`-separated parts"
        )));
    };
    if !is_lower_hex(root_hex, 64) {
        return Err(bad(format!(
            "root hash `{root_hex}` is not 64 lowercase hex digits"
        )));
    }
    let mut root = [0u8; 32];
    hex::decode_to_slice(root_hex, &mut root).map_err(|e| bad(e.to_string()))?;
    if off.is_empty()
        || !off.bytes().all(|b| b.is_ascii_digit())
        || (off.len() > 1 && off.starts_with('0'))
    {
        return Err(bad(format!("hash offset `{off}` is not a decimal number")));
    }
    let hash_offset: u64 = off
        .parse()
        .map_err(|e| bad(format!("hash offset `{off}`: {e}")))?;
    if hash_offset == 0 || hash_offset % 4096 != 0 {
        return Err(bad(format!(
            "hash offset {hash_offset} is not a positive multiple of 4096"
        )));
    }
    let uuid = uuid::Uuid::parse_str(uuid_s).map_err(|e| bad(format!("uuid `{uuid_s}`: {e}")))?;
    if uuid.hyphenated().to_string() != *uuid_s {
        return Err(bad(format!(
            "uuid `{uuid_s}` must be lowercase and hyphenated"
        )));
    }
    let expected = identity_uuid(identity);
    if uuid != expected {
        return Err(CmdlineError::UuidMismatch {
            identity: identity.to_string(),
            expected: expected.hyphenated().to_string(),
            found: uuid_s.to_string(),
        });
    }
    Ok(ModelSpec {
        org: org.into(),
        name: name.into(),
        rev: rev.into(),
        root,
        hash_offset,
        uuid,
    })
}

/// Parses a kernel command line (the contents of `/proc/cmdline`).
pub fn parse(cmdline: &str) -> Result<BootConfig, CmdlineError> {
    let mut models: Vec<ModelSpec> = Vec::new();
    let mut next: Option<String> = None;
    for word in cmdline.split_ascii_whitespace() {
        if let Some(value) = word.strip_prefix("mpk.model=") {
            let m = parse_model(word, value)?;
            if models.iter().any(|o| o.org == m.org && o.name == m.name) {
                return Err(CmdlineError::DuplicateModel(format!(
                    "{}/{}",
                    m.org, m.name
                )));
            }
            models.push(m);
        } else if let Some(value) = word.strip_prefix("mpk.next=") {
            let bad = |reason: &str| CmdlineError::BadNext {
                word: word.to_string(),
                reason: reason.to_string(),
            };
            if next.is_some() {
                return Err(bad("mpk.next= is given twice"));
            }
            if !value.starts_with('/') || value.len() < 2 {
                return Err(bad("expected an absolute path"));
            }
            if value.split('/').any(|c| c == "..") {
                return Err(bad("the path must not contain `..`"));
            }
            next = Some(value.to_string());
        } else if word.starts_with("mpk.") {
            return Err(CmdlineError::Unknown(word.to_string()));
        }
    }
    if models.is_empty() {
        return Err(CmdlineError::NoModels);
    }
    Ok(BootConfig { models, next })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str =
        "hf-internal-testing/tiny-random-GPT2Model@d6694b0d8fe17978761c9305dc151780506b192e";
    const REF: &str = "17c6605f3becf63a63da37cc6958b2d18f8abc750f9f546b9f57133db40c4326_2142208_905785b4-b198-5ed6-b97d-e7c36a0be1df";

    fn good() -> String {
        format!("mpk.model={ID}:{REF}")
    }

    #[test]
    fn published_reference_parses() {
        let cfg = parse(&format!(
            "console=ttyS0 {} panic=-1 mpk.next=/sbin/init",
            good()
        ))
        .unwrap();
        assert_eq!(cfg.next.as_deref(), Some("/sbin/init"));
        let [m] = cfg.models.as_slice() else { panic!() };
        assert_eq!(m.identity(), ID);
        assert_eq!(m.to_string(), format!("{ID}:{REF}"));
        assert_eq!(m.data_blocks(), 2142208 / 4096);
        assert_eq!(m.sectors(), 2142208 / 512);
        assert_eq!(
            m.mount_point(),
            "/models/hf-internal-testing/tiny-random-GPT2Model"
        );
        assert_eq!(
            m.verity_params("254:0"),
            format!(
                "1 254:0 254:0 4096 4096 523 524 sha256 17c6605f3becf63a63da37cc6958b2d18f8abc750f9f546b9f57133db40c4326 {}",
                hex::encode(Sha256::digest(ID.as_bytes()))
            )
        );
    }

    #[test]
    fn two_models_and_no_next() {
        let id2 = "google/gemma-4-31B-it@439edf5652646a0d1bd8b46bfdc1d3645761a445";
        let ref2 = "718354742d7b263c729ea11fbef3e744d61815c5b05043eea6ba0dd3ee44ea01_62578688000_27fb23ac-db9b-5e25-991a-90fdf2c9b3a7";
        let cfg = parse(&format!("{}  mpk.model={id2}:{ref2}\n", good())).unwrap();
        assert_eq!(cfg.next, None);
        assert_eq!(cfg.models.len(), 2);
        assert_eq!(cfg.models[1].hash_offset, 62578688000);
        // Same name at another revision and uuid: still a duplicate.
        let other_rev =
            "hf-internal-testing/tiny-random-GPT2Model@0000000000000000000000000000000000000000";
        let u = identity_uuid(other_rev);
        let dup = format!(
            "{} mpk.model={other_rev}:{}_4096_{u}",
            good(),
            "0".repeat(64)
        );
        assert_eq!(
            parse(&dup),
            Err(CmdlineError::DuplicateModel(
                "hf-internal-testing/tiny-random-GPT2Model".into()
            ))
        );
    }

    #[test]
    fn uuid_mismatch_is_refused() {
        let wrong = REF.replace("905785b4", "905785b5");
        let e = parse(&format!("mpk.model={ID}:{wrong}")).unwrap_err();
        assert!(matches!(e, CmdlineError::UuidMismatch { .. }), "{e}");
        assert!(e.to_string().contains("before touching any disk"));
    }

    #[test]
    fn malformed_models_are_refused() {
        let root = "17c6605f3becf63a63da37cc6958b2d18f8abc750f9f546b9f57133db40c4326";
        let u = "905785b4-b198-5ed6-b97d-e7c36a0be1df";
        let rev = "d6694b0d8fe17978761c9305dc151780506b192e";
        for bad in [
            "mpk.model=".to_string(),
            format!("mpk.model={ID}"),
            format!("mpk.model={ID}:"),
            format!("mpk.model={ID}:{root}_2142208"),
            format!("mpk.model={ID}:{root}_2142208_{u}_x"),
            format!("mpk.model={ID}:{}_2142208_{u}", root.to_uppercase()),
            format!("mpk.model={ID}:{}_2142208_{u}", &root[1..]),
            format!("mpk.model={ID}:{root}_2142209_{u}"),
            format!("mpk.model={ID}:{root}_02142208_{u}"),
            format!("mpk.model={ID}:{root}_0_{u}"),
            format!("mpk.model={ID}:{root}__{u}"),
            format!("mpk.model={ID}:{root}_+4096_{u}"),
            format!("mpk.model={ID}:{root}_99999999999999999999999_{u}"),
            format!("mpk.model={ID}:{root}_2142208_{}", u.to_uppercase()),
            format!("mpk.model={ID}:{root}_2142208_{}", u.replace('-', "")),
            format!("mpk.model=hf-internal-testing/tiny-random-GPT2Model:{root}_2142208_{u}"),
            format!("mpk.model=tiny-random-GPT2Model@{rev}:{root}_2142208_{u}"),
            format!("mpk.model=a/b/c@{rev}:{root}_2142208_{u}"),
            format!("mpk.model=../x@{rev}:{root}_2142208_{u}"),
            format!("mpk.model=x/..@{rev}:{root}_2142208_{u}"),
            format!("mpk.model=/x@{rev}:{root}_2142208_{u}"),
            format!(
                "mpk.model=hf-internal-testing/tiny-random-GPT2Model@{}:{root}_2142208_{u}",
                rev.to_uppercase()
            ),
            format!(
                "mpk.model=hf-internal-testing/tiny-random-GPT2Model@{}:{root}_2142208_{u}",
                &rev[1..]
            ),
        ] {
            match parse(&bad) {
                Err(CmdlineError::BadModel { .. }) => {}
                other => panic!("{bad}: {other:?}"),
            }
        }
    }

    #[test]
    fn other_words() {
        assert_eq!(parse("console=ttyS0 quiet"), Err(CmdlineError::NoModels));
        assert_eq!(parse(""), Err(CmdlineError::NoModels));
        assert!(matches!(
            parse(&format!("{} mpk.modle=x", good())),
            Err(CmdlineError::Unknown(_))
        ));
        assert!(matches!(
            parse(&format!("{} mpk.next", good())),
            Err(CmdlineError::Unknown(_))
        ));
        for next in [
            "mpk.next=",
            "mpk.next=sbin/init",
            "mpk.next=/",
            "mpk.next=/a/../b",
        ] {
            assert!(
                matches!(
                    parse(&format!("{} {next}", good())),
                    Err(CmdlineError::BadNext { .. })
                ),
                "{next}"
            );
        }
        assert!(matches!(
            parse(&format!("{} mpk.next=/a mpk.next=/b", good())),
            Err(CmdlineError::BadNext { .. })
        ));
        // Kernel words that merely contain `mpk.` are not ours.
        assert!(parse(&format!("{} foo.mpk.model=x", good())).is_ok());
    }
}
