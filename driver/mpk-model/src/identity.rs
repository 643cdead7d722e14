//! Model identities (`org/name@<40 lowercase hex>`) and the values
//! Modelwrap derives from them: the UUID of a plain pack (UUIDv5 of the URL
//! namespace over `identity + "-inner"`), the GPT partition GUID of an
//! encrypted pack (over `identity + "-emwp-outer"`) and the dm-verity salt
//! (SHA-256 of the identity bytes).

use sha2::{Digest, Sha256};
use std::fmt;
use std::str::FromStr;

use crate::names::{hub_name_ok, is_lower_hex};

/// What the identity grammar expects, for error messages.
const EXPECT: &str = "expected ORG/NAME@REV with REV the full 40-character lowercase hex commit";

/// Why a string is not an identity. Each variant names the identity and
/// the part at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// No `@`.
    #[error("identity `{0}` has no `@REV`: {EXPECT}")]
    NoRevision(String),
    /// No `/` before the `@`.
    #[error("identity `{0}` has no `/` between organisation and name: {EXPECT}")]
    NoSlash(String),
    /// The organisation breaks the Hub's name rule.
    #[error("identity `{0}`: organisation `{1}` may hold only letters, digits, `-`, `_` and `.`")]
    Organisation(String, String),
    /// The name breaks the Hub's name rule.
    #[error("identity `{0}`: name `{1}` may hold only letters, digits, `-`, `_` and `.`")]
    Name(String, String),
    /// The revision is not a full commit.
    #[error("identity `{0}`: revision `{1}` is not 40 lowercase hex digits ({EXPECT})")]
    Revision(String, String),
}

/// A validated model identity.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identity {
    org: String,
    name: String,
    rev: String,
}

impl FromStr for Identity {
    type Err = IdentityError;

    fn from_str(s: &str) -> Result<Self, IdentityError> {
        let Some((repo, rev)) = s.split_once('@') else {
            return Err(IdentityError::NoRevision(s.into()));
        };
        let Some((org, name)) = repo.split_once('/') else {
            return Err(IdentityError::NoSlash(s.into()));
        };
        if !hub_name_ok(org) {
            return Err(IdentityError::Organisation(s.into(), org.into()));
        }
        if !hub_name_ok(name) {
            return Err(IdentityError::Name(s.into(), name.into()));
        }
        if !is_lower_hex(rev, 40) {
            return Err(IdentityError::Revision(s.into(), rev.into()));
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
    /// The Hub organisation.
    pub fn org(&self) -> &str {
        &self.org
    }

    /// The repository name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The 40 lowercase hex commit.
    pub fn rev(&self) -> &str {
        &self.rev
    }

    /// `org/name`, the repository on the Hub.
    pub fn repo(&self) -> String {
        format!("{}/{}", self.org, self.name)
    }

    /// `UUIDv5(NAMESPACE_URL, identity + "-inner")`: the EROFS and verity
    /// UUID of a plain pack.
    pub fn uuid(&self) -> uuid::Uuid {
        uuid::Uuid::new_v5(
            &uuid::Uuid::NAMESPACE_URL,
            format!("{self}-inner").as_bytes(),
        )
    }

    /// `UUIDv5(NAMESPACE_URL, identity + "-emwp-outer")`: the GPT
    /// partition GUID of an encrypted pack, and the UUID of its reference.
    pub fn partition_uuid(&self) -> uuid::Uuid {
        uuid::Uuid::new_v5(
            &uuid::Uuid::NAMESPACE_URL,
            format!("{self}-emwp-outer").as_bytes(),
        )
    }

    /// SHA-256 of the identity: the dm-verity salt.
    pub fn salt(&self) -> [u8; 32] {
        Sha256::digest(self.to_string().as_bytes()).into()
    }

    /// Whether a reference's UUID marks a plain pack, an encrypted one, or
    /// neither (`None`: it belongs to another identity).
    pub fn pack_kind(&self, uuid: &uuid::Uuid) -> Option<PackKind> {
        if *uuid == self.uuid() {
            Some(PackKind::Plain)
        } else if *uuid == self.partition_uuid() {
            Some(PackKind::Encrypted)
        } else {
            None
        }
    }
}

/// A plain `.mpk` or an encrypted `.empk`, as told by a reference's UUID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PackKind {
    /// The UUID is [`Identity::uuid`].
    Plain,
    /// The UUID is [`Identity::partition_uuid`].
    Encrypted,
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
        assert_eq!(id.pack_kind(&id.uuid()), Some(PackKind::Plain));
        assert_eq!(
            id.pack_kind(&id.partition_uuid()),
            Some(PackKind::Encrypted)
        );
        assert_eq!(id.pack_kind(&uuid::Uuid::nil()), None);
        let id: Identity = "google/gemma-4-31B-it@439edf5652646a0d1bd8b46bfdc1d3645761a445"
            .parse()
            .unwrap();
        assert_eq!(
            id.uuid().to_string(),
            "27fb23ac-db9b-5e25-991a-90fdf2c9b3a7"
        );
        assert_eq!(id.repo(), "google/gemma-4-31B-it");
    }

    #[test]
    fn refusals() {
        for (bad, want) in [
            ("a/b", "has no `@REV`"),
            ("a@0000000000000000000000000000000000000000", "has no `/`"),
            (
                "a/b@0000000000000000000000000000000000000000x",
                "revision `",
            ),
            ("a/b@000000000000000000000000000000000000000", "revision `"),
            ("a/b@ABCDEF0000000000000000000000000000000000", "revision `"),
            (
                "a b/c@0000000000000000000000000000000000000000",
                "organisation `a b`",
            ),
            (
                "a/b/c@0000000000000000000000000000000000000000",
                "name `b/c`",
            ),
            (
                "/b@0000000000000000000000000000000000000000",
                "organisation ``",
            ),
            (
                "./b@0000000000000000000000000000000000000000",
                "organisation `.`",
            ),
        ] {
            let e = bad.parse::<Identity>().unwrap_err().to_string();
            assert!(e.contains(want), "{bad}: {e}");
        }
    }
}
