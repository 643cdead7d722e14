//! Model identities (`org/name@<40 lowercase hex>`) and the values
//! Modelwrap schema 1 derives from them: the UUID (UUIDv5 of the URL
//! namespace over `identity + "-inner"`) and the salt (SHA-256 of the
//! identity bytes).

use anyhow::{Result, bail};
use sha2::{Digest, Sha256};
use std::fmt;
use std::str::FromStr;

/// A validated model identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    org: String,
    name: String,
    rev: String,
}

// The same validation rules as the command-line words the guest parses.
pub use mpk_measure::cmdline::{hub_name_ok, is_lower_hex};

impl FromStr for Identity {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        let expect = "expected ORG/NAME@REV with REV the full 40-character lowercase hex commit";
        let Some((repo, rev)) = s.split_once('@') else {
            bail!("identity `{s}` has no `@REV`: {expect}");
        };
        let Some((org, name)) = repo.split_once('/') else {
            bail!("identity `{s}` has no `/` between organisation and name: {expect}");
        };
        if !hub_name_ok(org) {
            bail!(
                "identity `{s}`: organisation `{org}` may hold only letters, digits, `-`, `_` and `.`"
            );
        }
        if !hub_name_ok(name) {
            bail!("identity `{s}`: name `{name}` may hold only letters, digits, `-`, `_` and `.`");
        }
        if rev.len() != 40
            || !rev
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            bail!("identity `{s}`: revision `{rev}` is not 40 lowercase hex digits ({expect})");
        }
        Ok(Self {
            org: org.into(),
            name: name.into(),
            rev: rev.into(),
        })
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}@{}", self.org, self.name, self.rev)
    }
}

impl Identity {
    /// `UUIDv5(NAMESPACE_URL, identity + "-inner")`: the EROFS and verity UUID.
    pub fn uuid(&self) -> uuid::Uuid {
        uuid::Uuid::new_v5(
            &uuid::Uuid::NAMESPACE_URL,
            format!("{self}-inner").as_bytes(),
        )
    }

    /// SHA-256 of the identity: the dm-verity salt.
    pub fn salt(&self) -> [u8; 32] {
        Sha256::digest(self.to_string().as_bytes()).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modelwrap_published_uuid() {
        // modelwrap.md: the published reference of this identity ends in
        // this UUID.
        let id: Identity =
            "hf-internal-testing/tiny-random-GPT2Model@d6694b0d8fe17978761c9305dc151780506b192e"
                .parse()
                .unwrap();
        assert_eq!(
            id.uuid().to_string(),
            "905785b4-b198-5ed6-b97d-e7c36a0be1df"
        );
        let id: Identity = "google/gemma-4-31B-it@439edf5652646a0d1bd8b46bfdc1d3645761a445"
            .parse()
            .unwrap();
        assert_eq!(
            id.uuid().to_string(),
            "27fb23ac-db9b-5e25-991a-90fdf2c9b3a7"
        );
    }

    #[test]
    fn refusals() {
        for bad in [
            "a/b",
            "a@0000000000000000000000000000000000000000",
            "a/b@0000000000000000000000000000000000000000x",
            "a/b@000000000000000000000000000000000000000",
            "a/b@ABCDEF0000000000000000000000000000000000",
            "a b/c@0000000000000000000000000000000000000000",
            "a/b/c@0000000000000000000000000000000000000000",
            "/b@0000000000000000000000000000000000000000",
        ] {
            assert!(bad.parse::<Identity>().is_err(), "{bad} accepted");
        }
    }
}
