//! The `mpk.model=` / `mpk.next=` / `mpk.keyagent=` words of the measured
//! kernel command line: built on the host (`mpk measure deployment`) and
//! parsed by the guest init (`mpk-init`) with this same code, strictly,
//! since the command line is the only input the guest trusts.
//!
//! Syntax (issues 4 and 8): space-separated words.
//!
//! - `mpk.model=<org>/<name>@<40 lowercase hex>:<64 lowercase hex
//!   root>_<hash offset decimal>_<uuid lowercase>` names one plain model
//!   (the reference exactly as in `.info`; org and name as on the Hub:
//!   letters, digits, `-`, `_`, `.`). The UUID must be UUIDv5 of the URL
//!   namespace over `identity + "-inner"` ([`Identity::uuid`]).
//! - `mpk.model=<org>/<name>@<rev>:<root>_<hash offset>_<partuuid>:crypt`
//!   names one encrypted model (an `.empk`: the `.mpk` encrypted with
//!   dm-crypt `aes-xts-plain64` in the single partition of a GPT disk). Root
//!   and hash offset are those of the plaintext `.mpk`; the UUID is the GPT
//!   partition GUID and must be UUIDv5 of the URL namespace over `identity +
//!   "-emwp-outer"` ([`Identity::partition_uuid`]). The third `:`-separated field
//!   must be exactly `crypt`. The key is never on the command line (see
//!   `mpk-guest`'s `init` module for how it reaches the guest).
//! - `mpk.next=<absolute path>` (optional) names the program to hand over
//!   to.
//! - `mpk.keyagent=<absolute path>` (optional) names a program the guest
//!   init runs once, before mapping any disk, to deliver the master keys of
//!   encrypted models.
//!
//! Every other word belongs to the kernel and is ignored, except unknown
//! `mpk.` words, which are refused (a typo must not silently drop a model);
//! the same `<org>/<name>` twice is refused.
//!
//! Parsing also checks each UUID against its identity (the rule above that
//! matches `:crypt` or its absence), so a mismatch is refused before the
//! guest touches any disk, and before the host measures such a line.
//! Identity and reference are parsed by [`Identity`] and [`Reference`]
//! themselves: there is no second copy of their rules.

use std::fmt;
use thiserror::Error;
use zeroize::Zeroizing;

use crate::identity::{Identity, IdentityError};
use crate::reference::{Reference, ReferenceError};

/// The third `:`-separated field that marks an encrypted model.
pub const CRYPT_SUFFIX: &str = "crypt";

/// First 512-byte sector of the encrypted payload on an `.empk` disk: its
/// only GPT partition starts at 1 MiB.
pub const CRYPT_PAYLOAD_SECTOR: u64 = mpk_crypt::layout::PARTITION_START;

/// The dm-crypt cipher of encrypted packs.
pub const CRYPT_CIPHER: &str = "aes-xts-plain64";

/// dm-crypt sector size of encrypted packs, in bytes.
pub const CRYPT_SECTOR_SIZE: u64 = mpk_crypt::CRYPT_SECTOR as u64;

/// Hex digits of a dm-crypt key of encrypted packs (512 bits).
pub const CRYPT_KEY_HEX_LEN: usize = 128;

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
        "model `{identity}`: uuid {found} does not match the identity (expected {expected} = {}); refusing before touching any disk",
        uuid_rule(*.encrypted)
    )]
    UuidMismatch {
        /// The identity.
        identity: String,
        /// UUIDv5 of `identity + "-inner"` (plain) or `identity +
        /// "-emwp-outer"` (encrypted).
        expected: String,
        /// The UUID on the command line.
        found: String,
        /// Whether the word ends in `:crypt` (which rule applied).
        encrypted: bool,
    },
    /// `mpk.next=` or `mpk.keyagent=` is not an absolute path, or is given
    /// twice.
    #[error("`{word}`: {reason}")]
    BadNext {
        /// The offending word.
        word: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An `mpk.` word this init does not know.
    #[error("unknown parameter `{0}` (known: mpk.model=, mpk.next=, mpk.keyagent=)")]
    Unknown(String),
    /// No `mpk.model=` word at all.
    #[error("no mpk.model= on the kernel command line; refusing to boot without a model")]
    NoModels,
}

/// The UUID rule of a plain or an encrypted model, as error messages say it.
fn uuid_rule(encrypted: bool) -> &'static str {
    if encrypted {
        "UUIDv5(URL, identity + \"-emwp-outer\"), the rule for an encrypted `:crypt` model"
    } else {
        "UUIDv5(URL, identity + \"-inner\"), the rule for a plain model"
    }
}

/// One model from the command line, with every dm-verity (and, when
/// encrypted, dm-crypt) parameter the guest will use. Holds no key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelSpec {
    /// The model identity.
    pub identity: Identity,
    /// The reference: root hash, hash offset and UUID. Plain: the EROFS
    /// and verity UUID. Encrypted: the GPT partition GUID. Checked against
    /// the identity either way.
    pub reference: Reference,
    /// The word ends in `:crypt`: the `.mpk` is dm-crypt encrypted inside
    /// a GPT disk image (`.empk`).
    pub encrypted: bool,
}

impl ModelSpec {
    /// The dm-verity salt: SHA-256 of the identity.
    pub fn salt(&self) -> [u8; 32] {
        self.identity.salt()
    }

    /// The dm-verity root hash.
    pub fn root(&self) -> &[u8; 32] {
        &self.reference.root
    }

    /// The reference's UUID (see [`ModelSpec::reference`]).
    pub fn uuid(&self) -> uuid::Uuid {
        self.reference.uuid
    }

    /// Number of 4096-byte data blocks (the EROFS image, `[0, H)`).
    pub fn data_blocks(&self) -> u64 {
        self.reference.data_blocks()
    }

    /// Length of the verity mapping in 512-byte sectors.
    pub fn sectors(&self) -> u64 {
        self.data_blocks() * 8
    }

    /// Length of the whole `.mpk` in bytes: the image, the verity
    /// superblock block and the hash tree (the encrypted payload of an
    /// `.empk` has exactly this length).
    pub fn mpk_len(&self) -> u64 {
        self.reference.mpk_len()
    }

    /// The `crypt` target parameters for an encrypted model whose disk is
    /// `dev` (a `major:minor`), with the dm-crypt key as `key_hex` (128
    /// hex digits; pass `"<key>"` to get a printable form):
    /// `aes-xts-plain64 <key> 0 <dev> 2048 1 sector_size:4096`. IV offset 0
    /// and no `iv_large_sectors`, so the IV is the 512-byte sector number
    /// counted from the payload start, as `mpk encrypt` writes it. The
    /// table length is [`Self::crypt_sectors`].
    pub fn crypt_params(&self, dev: &str, key_hex: &str) -> CryptParams {
        let head = format!("{CRYPT_CIPHER} ");
        let tail = format!(" 0 {dev} {CRYPT_PAYLOAD_SECTOR} 1 sector_size:{CRYPT_SECTOR_SIZE}");
        // Sized up front: pushing never reallocates, so no copy of the key
        // is left behind in freed memory.
        let mut s = Zeroizing::new(String::with_capacity(
            head.len() + key_hex.len() + tail.len(),
        ));
        s.push_str(&head);
        s.push_str(key_hex);
        s.push_str(&tail);
        CryptParams(s)
    }

    /// Length of the `crypt` mapping in 512-byte sectors: the whole `.mpk`.
    pub fn crypt_sectors(&self) -> u64 {
        self.mpk_len() / 512
    }

    /// Bytes an `.empk` disk must have at least: the 1 MiB GPT head and
    /// the payload (the backup GPT after it is not needed). Cannot
    /// overflow: parsing refuses a reference whose `.mpk` would come
    /// within 1 MiB of 2^64.
    pub fn crypt_disk_min(&self) -> u64 {
        CRYPT_PAYLOAD_SECTOR * 512 + self.mpk_len()
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
            hex::encode(self.root()),
            hex::encode(self.salt())
        )
    }

    /// Where the model is mounted: `/models/<org>/<name>`.
    pub fn mount_point(&self) -> String {
        format!("/models/{}/{}", self.identity.org(), self.identity.name())
    }
}

impl fmt::Display for ModelSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.identity, self.reference)?;
        if self.encrypted {
            write!(f, ":{CRYPT_SUFFIX}")?;
        }
        Ok(())
    }
}

/// A `crypt` target parameter string, which holds a key: zeroized on drop,
/// redacted in `Debug`, no `Display`.
pub struct CryptParams(Zeroizing<String>);

impl CryptParams {
    /// The parameters, key included; only for the `DM_TABLE_LOAD` buffer.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for CryptParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CryptParams(<redacted>)")
    }
}

/// Everything the init takes from the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootConfig {
    /// The models, in command-line order (at least one).
    pub models: Vec<ModelSpec>,
    /// `mpk.next=`, if given.
    pub next: Option<String>,
    /// `mpk.keyagent=`, if given.
    pub keyagent: Option<String>,
}

impl ModelSpec {
    /// The `mpk.model=` word of this model.
    pub fn word(&self) -> String {
        format!("mpk.model={self}")
    }
}

impl BootConfig {
    /// The words, space-separated: the models in order, then
    /// `mpk.keyagent=`, then `mpk.next=`.
    pub fn to_words(&self) -> String {
        let mut words: Vec<String> = self.models.iter().map(ModelSpec::word).collect();
        words.extend(self.keyagent.iter().map(|n| format!("mpk.keyagent={n}")));
        words.extend(self.next.iter().map(|n| format!("mpk.next={n}")));
        words.join(" ")
    }
}

fn parse_model(word: &str, value: &str) -> Result<ModelSpec, CmdlineError> {
    let bad = |reason: String| CmdlineError::BadModel {
        word: word.to_string(),
        reason,
    };
    let fields: Vec<&str> = value.split(':').collect();
    let (identity, reference, encrypted) = match fields.as_slice() {
        [identity, reference] => (*identity, *reference, false),
        [identity, reference, suffix] if *suffix == CRYPT_SUFFIX => (*identity, *reference, true),
        [_, _, suffix] => {
            return Err(bad(format!(
                "third field `{suffix}` is not `{CRYPT_SUFFIX}` (the only one allowed)"
            )));
        }
        _ => {
            return Err(bad(
                "expected <org>/<name>@<40 hex>:<64 hex root>_<hash offset>_<uuid>[:crypt]".into(),
            ));
        }
    };
    let identity: Identity = identity
        .parse()
        .map_err(|e: IdentityError| bad(e.to_string()))?;
    let reference: Reference = reference
        .parse()
        .map_err(|e: ReferenceError| bad(e.to_string()))?;
    // A `.empk` disk holds the `.mpk` 1 MiB in; its end must fit in 64 bits.
    if encrypted
        && reference
            .mpk_len()
            .checked_add(CRYPT_PAYLOAD_SECTOR * 512)
            .is_none()
    {
        return Err(bad(format!(
            "hash offset {} is too large for a disk",
            reference.hash_offset
        )));
    }
    let expected = if encrypted {
        identity.partition_uuid()
    } else {
        identity.uuid()
    };
    if reference.uuid != expected {
        return Err(CmdlineError::UuidMismatch {
            identity: identity.to_string(),
            expected: expected.hyphenated().to_string(),
            found: reference.uuid.hyphenated().to_string(),
            encrypted,
        });
    }
    Ok(ModelSpec {
        identity,
        reference,
        encrypted,
    })
}

/// Checks the value of `mpk.next=` or `mpk.keyagent=` (an absolute path
/// without `..`), given at most once.
fn parse_path(word: &str, value: &str, slot: &mut Option<String>) -> Result<(), CmdlineError> {
    let bad = |reason: &str| CmdlineError::BadNext {
        word: word.to_string(),
        reason: reason.to_string(),
    };
    let key = word.split('=').next().unwrap_or(word);
    if slot.is_some() {
        return Err(bad(&format!("{key}= is given twice")));
    }
    if !value.starts_with('/') || value.len() < 2 {
        return Err(bad("expected an absolute path"));
    }
    if value.split('/').any(|c| c == "..") {
        return Err(bad("the path must not contain `..`"));
    }
    *slot = Some(value.to_string());
    Ok(())
}

/// Parses a kernel command line (the contents of `/proc/cmdline`).
pub fn parse(cmdline: &str) -> Result<BootConfig, CmdlineError> {
    let mut models: Vec<ModelSpec> = Vec::new();
    let mut next: Option<String> = None;
    let mut keyagent: Option<String> = None;
    for word in cmdline.split_ascii_whitespace() {
        if let Some(value) = word.strip_prefix("mpk.model=") {
            let m = parse_model(word, value)?;
            if models
                .iter()
                .any(|o| o.identity.repo() == m.identity.repo())
            {
                return Err(CmdlineError::DuplicateModel(m.identity.repo()));
            }
            models.push(m);
        } else if let Some(value) = word.strip_prefix("mpk.next=") {
            parse_path(word, value, &mut next)?;
        } else if let Some(value) = word.strip_prefix("mpk.keyagent=") {
            parse_path(word, value, &mut keyagent)?;
        } else if word.starts_with("mpk.") {
            return Err(CmdlineError::Unknown(word.to_string()));
        }
    }
    if models.is_empty() {
        return Err(CmdlineError::NoModels);
    }
    Ok(BootConfig {
        models,
        next,
        keyagent,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::tree_bytes as tree_bytes_checked;
    use sha2::{Digest, Sha256};

    fn identity_uuid(id: &str) -> uuid::Uuid {
        id.parse::<Identity>().unwrap().uuid()
    }

    fn partition_uuid(id: &str) -> uuid::Uuid {
        id.parse::<Identity>().unwrap().partition_uuid()
    }

    fn tree_bytes(blocks: u64) -> u64 {
        tree_bytes_checked(blocks).unwrap()
    }

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
        assert_eq!(m.identity.to_string(), ID);
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
        assert_eq!(cfg.models[1].reference.hash_offset, 62578688000);
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
            // Below 2^64, but the .mpk it implies is not (it used to wrap).
            format!("mpk.model={ID}:{root}_18446744073709547520_{u}"),
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
    fn tree_sizes() {
        assert_eq!(tree_bytes(1), 0);
        assert_eq!(tree_bytes(2), 4096);
        assert_eq!(tree_bytes(128), 4096);
        assert_eq!(tree_bytes(129), 3 * 4096);
        // formats.md: 262,145 blocks -> 2067 hash blocks.
        assert_eq!(tree_bytes(262_145), 2067 * 4096);
        // formats.md: 335 blocks -> 4 hash blocks.
        assert_eq!(tree_bytes(335), 4 * 4096);
    }

    fn crypt_word(id: &str, suffix: &str) -> String {
        let root = &REF[..64];
        format!(
            "mpk.model={id}:{root}_2142208_{}{suffix}",
            partition_uuid(id)
        )
    }

    #[test]
    fn encrypted_round_trip() {
        let w = crypt_word(ID, ":crypt");
        let line = format!("console=ttyS0 {w} mpk.keyagent=/bin/agent {}", good());
        // The second word names the same model: refused as ever.
        assert!(matches!(parse(&line), Err(CmdlineError::DuplicateModel(_))));
        let id2 = "a/b@0000000000000000000000000000000000000000";
        let line = format!(
            "mpk.next=/sbin/init {w} mpk.keyagent=/bin/agent {}",
            crypt_word(id2, "").replace(
                &partition_uuid(id2).to_string(),
                &identity_uuid(id2).to_string()
            )
        );
        let cfg = parse(&line).unwrap();
        assert_eq!(cfg.keyagent.as_deref(), Some("/bin/agent"));
        let [m, plain] = cfg.models.as_slice() else {
            panic!()
        };
        assert!(m.encrypted && !plain.encrypted);
        assert_eq!(m.uuid(), partition_uuid(ID));
        // Python: uuid.uuid5(uuid.NAMESPACE_URL, ID + "-emwp-outer").
        assert_eq!(m.uuid().to_string(), "9701bf21-6de2-59a2-bdea-141aaae05fc3");
        assert_eq!(m.word(), w);
        assert!(m.to_string().ends_with(":crypt"));
        assert!(!plain.to_string().contains(":crypt"));
        assert_eq!(
            cfg.to_words(),
            format!(
                "{w} {} mpk.keyagent=/bin/agent mpk.next=/sbin/init",
                plain.word()
            )
        );
        assert_eq!(parse(&cfg.to_words()).unwrap(), cfg);
        // dm-crypt table: the whole .mpk (image, superblock block, tree)
        // from sector 2048 of the disk.
        let len = 2142208 + 4096 + tree_bytes(523);
        assert_eq!(m.mpk_len(), len);
        assert_eq!(m.crypt_sectors(), len / 512);
        assert_eq!(m.crypt_disk_min(), (1 << 20) + len);
        let p = m.crypt_params("252:0", "<key>");
        assert_eq!(
            p.expose(),
            "aes-xts-plain64 <key> 0 252:0 2048 1 sector_size:4096"
        );
        let k = "ab".repeat(64);
        let p = m.crypt_params("252:0", &k);
        assert!(p.expose().contains(&k));
        assert_eq!(format!("{p:?}"), "CryptParams(<redacted>)");
        // Verity on top of the crypt device: the same table as plain.
        assert_eq!(
            m.verity_params("253:0"),
            format!(
                "1 253:0 253:0 4096 4096 523 524 sha256 {} {}",
                &REF[..64],
                hex::encode(m.salt())
            )
        );
    }

    #[test]
    fn uuid_rule_follows_the_suffix_both_ways() {
        // An encrypted word carrying the plain (-inner) UUID.
        let e = parse(&format!("mpk.model={ID}:{REF}:crypt")).unwrap_err();
        assert_eq!(
            e,
            CmdlineError::UuidMismatch {
                identity: ID.into(),
                expected: partition_uuid(ID).to_string(),
                found: identity_uuid(ID).to_string(),
                encrypted: true,
            }
        );
        let msg = e.to_string();
        assert!(
            msg.contains("-emwp-outer") && msg.contains(":crypt"),
            "{msg}"
        );
        assert!(msg.contains("before touching any disk"), "{msg}");
        // A plain word carrying the partition UUID.
        let e = parse(&crypt_word(ID, "")).unwrap_err();
        assert_eq!(
            e,
            CmdlineError::UuidMismatch {
                identity: ID.into(),
                expected: identity_uuid(ID).to_string(),
                found: partition_uuid(ID).to_string(),
                encrypted: false,
            }
        );
        let msg = e.to_string();
        assert!(
            msg.contains("-inner") && msg.contains("plain model"),
            "{msg}"
        );
    }

    #[test]
    fn bad_suffixes_are_refused() {
        for suffix in [
            ":",
            ":Crypt",
            ":CRYPT",
            ":crypt:",
            ":crypt:crypt",
            ":x",
            ":crypted",
            "::crypt",
            ":plain",
        ] {
            let w = crypt_word(ID, suffix);
            match parse(&w) {
                Err(CmdlineError::BadModel { .. }) => {}
                other => panic!("{w}: {other:?}"),
            }
        }
        let e = parse(&crypt_word(ID, ":x")).unwrap_err().to_string();
        assert!(e.contains("third field `x` is not `crypt`"), "{e}");
    }

    #[test]
    fn keyagent_words() {
        let w = good();
        for bad in [
            "mpk.keyagent=",
            "mpk.keyagent=bin/agent",
            "mpk.keyagent=/",
            "mpk.keyagent=/a/../b",
            "mpk.keyagent=/a mpk.keyagent=/a",
        ] {
            assert!(
                matches!(
                    parse(&format!("{w} {bad}")),
                    Err(CmdlineError::BadNext { .. })
                ),
                "{bad}"
            );
        }
        let e = parse(&format!("{w} mpk.keyagent=/a mpk.keyagent=/b")).unwrap_err();
        assert!(
            e.to_string().contains("mpk.keyagent= is given twice"),
            "{e}"
        );
        assert!(matches!(
            parse(&format!("{w} mpk.keyagents=/a")),
            Err(CmdlineError::Unknown(_))
        ));
        assert_eq!(parse(&w).unwrap().keyagent, None);
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
