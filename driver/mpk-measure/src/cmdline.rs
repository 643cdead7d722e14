//! The model parameters on the measured kernel command line, built on the
//! host and parsed by the guest init with this same code.
//!
//! Grammar (words are separated by ASCII whitespace; other words are left
//! alone):
//!
//! ```text
//! mpk.model=<org>/<name>@<rev>:<root>_<hashoffset>_<uuid>   one per model
//! mpk.next=<path>                                           at most once
//! ```
//!
//! `<org>`, `<name>`: Hub names (letters, digits, `-`, `_`, `.`; 1..=96
//! bytes; not `.` or `..`). `<rev>`: 40 lowercase hex digits. `<root>`: 64
//! lowercase hex digits (dm-verity root hash). `<hashoffset>`: decimal, a
//! positive multiple of 4096, no leading zero. `<uuid>`: lowercase,
//! hyphenated. The same `<org>/<name>` twice is refused, as is any other
//! `mpk.*` word. `<path>`: absolute, no `..` component, no whitespace.

use std::fmt;

use uuid::Uuid;

/// One `mpk.model=` word.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelWord {
    /// Hub organisation.
    pub org: String,
    /// Hub repository name.
    pub name: String,
    /// The commit (20 bytes, printed as 40 hex digits).
    pub revision: [u8; 20],
    /// dm-verity root hash of the `.mpk`.
    pub root_hash: [u8; 32],
    /// Byte offset of the verity superblock in the `.mpk`.
    pub hash_offset: u64,
    /// EROFS and verity UUID.
    pub uuid: Uuid,
}

/// The model parameters of one command line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ModelParams {
    /// The models, in command-line order.
    pub models: Vec<ModelWord>,
    /// The program the guest init starts afterwards.
    pub next: Option<String>,
}

/// Why model parameters are refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum CmdlineError {
    /// A malformed `mpk.model=` word.
    #[error("bad `{word}`: {why}")]
    BadModel {
        /// The word.
        word: String,
        /// What is wrong.
        why: &'static str,
    },
    /// The same organisation/name twice.
    #[error("model {0} is given twice")]
    DuplicateModel(String),
    /// `mpk.next=` twice.
    #[error("mpk.next= is given twice")]
    DuplicateNext,
    /// A bad `mpk.next=` path.
    #[error("bad mpk.next path `{0}`: must be absolute, without `..` or whitespace")]
    BadNext(String),
    /// An `mpk.` word that is neither `mpk.model=` nor `mpk.next=`.
    #[error("unknown parameter `{0}` (only mpk.model= and mpk.next=)")]
    UnknownParam(String),
}

fn hub_name_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 96
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        && s != "."
        && s != ".."
}

fn lower_hex<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != 2 * N || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

fn next_ok(p: &str) -> bool {
    p.starts_with('/')
        && !p.bytes().any(|b| b.is_ascii_whitespace() || b == 0)
        && !p.split('/').any(|c| c == "..")
}

impl ModelWord {
    /// `org/name`.
    pub fn repo(&self) -> String {
        format!("{}/{}", self.org, self.name)
    }

    /// Parses one word (with its `mpk.model=` prefix).
    pub fn parse(word: &str) -> Result<Self, CmdlineError> {
        let bad = |why| CmdlineError::BadModel {
            word: word.to_string(),
            why,
        };
        let v = word
            .strip_prefix("mpk.model=")
            .ok_or(bad("does not start with mpk.model="))?;
        let (identity, reference) = v
            .split_once(':')
            .ok_or(bad("no `:` before the reference"))?;
        let (repo, rev) = identity.split_once('@').ok_or(bad("no `@<revision>`"))?;
        let (org, name) = repo.split_once('/').ok_or(bad("no `/` in org/name"))?;
        if !hub_name_ok(org) || !hub_name_ok(name) {
            return Err(bad(
                "org and name may hold only letters, digits, `-`, `_`, `.`",
            ));
        }
        let revision =
            lower_hex::<20>(rev).ok_or(bad("revision is not 40 lowercase hex digits"))?;
        let mut parts = reference.split('_');
        let (Some(root), Some(off), Some(u), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad("reference is not <root>_<hashoffset>_<uuid>"));
        };
        let root_hash = lower_hex::<32>(root).ok_or(bad("root is not 64 lowercase hex digits"))?;
        let hash_offset = Some(off)
            .filter(|o| !o.is_empty() && o.bytes().all(|b| b.is_ascii_digit()))
            .filter(|o| !o.starts_with('0'))
            .and_then(|o| o.parse::<u64>().ok())
            .filter(|o| o % 4096 == 0)
            .ok_or(bad(
                "hash offset is not a positive decimal multiple of 4096",
            ))?;
        let uuid = Uuid::try_parse(u)
            .ok()
            .filter(|x| x.hyphenated().to_string() == u)
            .ok_or(bad("uuid is not lowercase and hyphenated"))?;
        Ok(ModelWord {
            org: org.to_string(),
            name: name.to_string(),
            revision,
            root_hash,
            hash_offset,
            uuid,
        })
    }
}

impl fmt::Display for ModelWord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "mpk.model={}/{}@{}:{}_{}_{}",
            self.org,
            self.name,
            hex(&self.revision),
            hex(&self.root_hash),
            self.hash_offset,
            self.uuid.hyphenated()
        )
    }
}

impl ModelParams {
    /// Picks the `mpk.*` words out of a whole kernel command line.
    pub fn parse(cmdline: &str) -> Result<Self, CmdlineError> {
        let mut p = ModelParams::default();
        for word in cmdline.split_ascii_whitespace() {
            if word.starts_with("mpk.model=") {
                p.models.push(ModelWord::parse(word)?);
            } else if let Some(path) = word.strip_prefix("mpk.next=") {
                if p.next.is_some() {
                    return Err(CmdlineError::DuplicateNext);
                }
                p.next = Some(path.to_string());
            } else if word.starts_with("mpk.") {
                return Err(CmdlineError::UnknownParam(word.to_string()));
            }
        }
        p.check()?;
        Ok(p)
    }

    /// Refuses a duplicate org/name, an unusable name or a bad next path.
    pub fn check(&self) -> Result<(), CmdlineError> {
        for (i, m) in self.models.iter().enumerate() {
            let word = m.to_string();
            if ModelWord::parse(&word)? != *m {
                return Err(CmdlineError::BadModel {
                    word,
                    why: "does not read back the same",
                });
            }
            if self.models[..i]
                .iter()
                .any(|o| o.org == m.org && o.name == m.name)
            {
                return Err(CmdlineError::DuplicateModel(m.repo()));
            }
        }
        match &self.next {
            Some(n) if !next_ok(n) => Err(CmdlineError::BadNext(n.clone())),
            _ => Ok(()),
        }
    }

    /// The words, space-separated (models first, then `mpk.next=`).
    pub fn to_words(&self) -> Result<String, CmdlineError> {
        self.check()?;
        let mut words: Vec<String> = self.models.iter().map(ToString::to_string).collect();
        words.extend(self.next.iter().map(|n| format!("mpk.next={n}")));
        Ok(words.join(" "))
    }
}
