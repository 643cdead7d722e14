//! Validated names: every string that arrives from the Hub or from a lock
//! and later reaches a cache path, a URL or a size computation is parsed
//! into one of these newtypes first. [`crate::cache`] builds paths only
//! from them, so a hostile `oid` (`../x`, `/etc/passwd`, `a\0b`), revision
//! (`../../x`, `a/../../b`) or file path can never name a file outside the
//! cache.
//!
//! The rules:
//! - [`RepoId`]: `org/name`, each part 1–96 of `[A-Za-z0-9._-]`, not `.`
//!   or `..`.
//! - [`Commit`] and [`GitOid`]: 40 lowercase hex digits.
//! - [`Sha256Hex`]: 64 lowercase hex digits.
//! - [`Etag`]: a cache blob name, a [`GitOid`] or a [`Sha256Hex`].
//! - [`Revision`]: git's ref-name rules (`git check-ref-format`), which
//!   allow `/` (the Hub's `refs/pr/1`): 1–255 bytes; no control character,
//!   space, `~`, `^`, `:`, `?`, `*`, `[` or `\`; no `..`, `@{`, `//`; not
//!   `@`; no leading `/`; no trailing `/` or `.`; no segment starting with
//!   `.` or ending in `.lock`.
//! - [`RepoPath`]: a lock path: relative, `/`-separated, no empty, `.` or
//!   `..` segment, no control character or `\`, at most [`MAX_PATH_LEN`] bytes and
//!   [`MAX_SEGMENT_LEN`] bytes per segment.
//! - sizes: at most [`MAX_FILE_SIZE`] ([`check_size`]).

use std::fmt;

use crate::{Error, Result};

/// The largest file size accepted from the Hub or a lock (4 TiB): large
/// enough for any model shard, small enough that no offset computation
/// over a file can overflow.
pub const MAX_FILE_SIZE: u64 = 1 << 42;

/// The longest path in a repo, in bytes (Linux's `PATH_MAX`).
pub const MAX_PATH_LEN: usize = 4096;

/// The longest path segment, in bytes (Linux's `NAME_MAX`).
pub const MAX_SEGMENT_LEN: usize = 255;

/// The longest revision, in bytes.
pub const MAX_REVISION_LEN: usize = 255;

/// How a refused value is shown in an error: quoted and escaped (no raw
/// control characters reach a terminal), cut at 80 characters.
fn shown(v: &str) -> String {
    let cut: String = v.chars().take(80).collect();
    if cut.len() < v.len() {
        format!("{cut:?}… ({} bytes)", v.len())
    } else {
        format!("{cut:?}")
    }
}

fn invalid(field: &'static str, v: &str, why: &str) -> Error {
    Error::Invalid {
        field,
        value: shown(v),
        why: why.to_owned(),
    }
}

fn hex(field: &'static str, s: &str, n: usize) -> Result<String> {
    if crate::oid::is_hex(s, n) {
        Ok(s.to_owned())
    } else {
        Err(invalid(field, s, &format!("not {n} lowercase hex digits")))
    }
}

macro_rules! newtype {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            /// The validated string.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

newtype!(
    /// A repo id, `org/name`.
    RepoId
);
newtype!(
    /// A commit: 40 lowercase hex digits.
    Commit
);
newtype!(
    /// A git blob SHA-1: 40 lowercase hex digits.
    GitOid
);
newtype!(
    /// A SHA-256: 64 lowercase hex digits.
    Sha256Hex
);
newtype!(
    /// The name of a blob in the cache: a [`GitOid`] or a [`Sha256Hex`].
    Etag
);
newtype!(
    /// A branch, tag, `refs/pr/N` or commit, under git's ref-name rules.
    Revision
);
newtype!(
    /// A path inside a repo, under the lock's path rules.
    RepoPath
);

impl RepoId {
    /// Parses `org/name`.
    pub fn parse(repo: &str) -> Result<Self> {
        let ok = mpk_model::names::hub_name_ok;
        match repo.split_once('/') {
            Some((o, n)) if ok(o) && ok(n) => Ok(Self(repo.to_owned())),
            _ => Err(invalid(
                "repo",
                repo,
                "not ORG/NAME (letters, digits, `-`, `_`, `.`; at most 96 each)",
            )),
        }
    }

    /// The cache folder name, `models--<org>--<name>`.
    pub fn folder(&self) -> String {
        format!("models--{}", self.0.replace('/', "--"))
    }
}

impl Commit {
    /// Parses a 40-hex commit.
    pub fn parse(s: &str) -> Result<Self> {
        hex("commit", s, 40).map(Self)
    }
}

impl GitOid {
    /// Parses a 40-hex git blob SHA-1.
    pub fn parse(s: &str) -> Result<Self> {
        hex("git oid", s, 40).map(Self)
    }
}

impl Sha256Hex {
    /// Parses a 64-hex SHA-256.
    pub fn parse(s: &str) -> Result<Self> {
        hex("sha256", s, 64).map(Self)
    }
}

impl Etag {
    /// Parses a cache blob name (40 or 64 lowercase hex digits).
    pub fn parse(s: &str) -> Result<Self> {
        if crate::oid::is_hex(s, 40) || crate::oid::is_hex(s, 64) {
            Ok(Self(s.to_owned()))
        } else {
            Err(invalid("etag", s, "not 40 or 64 lowercase hex digits"))
        }
    }
}

impl From<&GitOid> for Etag {
    fn from(o: &GitOid) -> Self {
        Self(o.0.clone())
    }
}

impl From<&Sha256Hex> for Etag {
    fn from(o: &Sha256Hex) -> Self {
        Self(o.0.clone())
    }
}

impl Revision {
    /// Parses a revision under git's ref-name rules (module documentation).
    pub fn parse(s: &str) -> Result<Self> {
        let bad = |why: &str| Err(invalid("revision", s, why));
        if s.is_empty() || s.len() > MAX_REVISION_LEN {
            return bad("empty or longer than 255 bytes");
        }
        if let Some(c) = s
            .chars()
            .find(|c| c.is_control() || " ~^:?*[\\".contains(*c))
        {
            return bad(&format!("holds {c:?}"));
        }
        for bad_part in ["..", "@{", "//"] {
            if s.contains(bad_part) {
                return bad(&format!("holds `{bad_part}`"));
            }
        }
        if s == "@" || s.starts_with('/') || s.ends_with('/') || s.ends_with('.') {
            return bad("is `@`, starts with `/` or ends with `/` or `.`");
        }
        if s.split('/')
            .any(|seg| seg.starts_with('.') || seg.ends_with(".lock"))
        {
            return bad("has a segment starting with `.` or ending in `.lock`");
        }
        Ok(Self(s.to_owned()))
    }

    /// The commit, when the revision is one.
    pub fn commit(&self) -> Option<Commit> {
        Commit::parse(&self.0).ok()
    }
}

impl RepoPath {
    /// Parses a path inside a repo (module documentation).
    pub fn parse(p: &str) -> Result<Self> {
        let bad = |why: &str| Err(invalid("path", p, why));
        if p.is_empty() || p.len() > MAX_PATH_LEN {
            return bad("empty or longer than 4096 bytes");
        }
        if p.chars().any(|c| c.is_control() || c == '\\') {
            return bad("holds a control character or `\\`");
        }
        for seg in p.split('/') {
            if seg.is_empty() || seg == "." || seg == ".." {
                return bad("not a relative path without empty, `.` or `..` segments");
            }
            if seg.len() > MAX_SEGMENT_LEN {
                return bad("has a segment longer than 255 bytes");
            }
        }
        Ok(Self(p.to_owned()))
    }

    /// How many `/` the path holds (its depth below the snapshot).
    pub fn depth(&self) -> usize {
        self.0.matches('/').count()
    }
}

/// Checks a size against [`MAX_FILE_SIZE`].
pub fn check_size(field: &'static str, size: u64) -> Result<u64> {
    if size <= MAX_FILE_SIZE {
        Ok(size)
    } else {
        Err(invalid(
            field,
            &size.to_string(),
            "larger than the 4 TiB limit",
        ))
    }
}

/// Every hostile form the tests feed through the parsers: path-like,
/// control characters, wrong case, wrong length.
#[cfg(any(test, feature = "mock"))]
pub fn hostile_strings() -> Vec<String> {
    vec![
        String::new(),
        "/etc/passwd".into(),
        "/".into(),
        "..".into(),
        "../x".into(),
        "../../../../../../tmp/mpk-escape".into(),
        "a/../../b".into(),
        "a/./b".into(),
        "a//b".into(),
        "a\0b".into(),
        "a\nb".into(),
        "a\\..\\b".into(),
        "x".repeat(5000),
        "A".repeat(40),
        "a".repeat(41),
        "a".repeat(39),
        format!("{}/", "a".repeat(39)),
        "..".repeat(20),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_forms_are_refused() {
        for s in hostile_strings() {
            assert!(Commit::parse(&s).is_err(), "commit {s:?}");
            assert!(GitOid::parse(&s).is_err(), "oid {s:?}");
            assert!(Sha256Hex::parse(&s).is_err(), "sha {s:?}");
            assert!(Etag::parse(&s).is_err(), "etag {s:?}");
            assert!(RepoId::parse(&s).is_err(), "repo {s:?}");
        }
        for s in hostile_strings()
            .into_iter()
            .filter(|s| !s.bytes().all(|b| b.is_ascii_alphanumeric()))
        {
            assert!(Revision::parse(&s).is_err(), "revision {s:?}");
            // Forty dots are one odd but harmless file name.
            if s.bytes().any(|b| b != b'.') || s.len() < 3 {
                assert!(RepoPath::parse(&s).is_err(), "path {s:?}");
            }
        }
        assert!(RepoPath::parse(&"x".repeat(5000)).is_err());
        assert!(Revision::parse(&"x".repeat(5000)).is_err());
    }

    #[test]
    fn revisions() {
        for ok in [
            "main",
            "refs/pr/1",
            "v1.0",
            "feature/x-y_z",
            &"a".repeat(40),
        ] {
            Revision::parse(ok).unwrap();
        }
        for bad in [
            "a..b", "/main", "main/", "main.", "a b", "a~1", "a^", "a:b", "a?", "a*", "a[",
            "a@{1}", "@", "x.lock", "a/.b", "a\u{7f}",
        ] {
            assert!(Revision::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn paths_and_sizes() {
        for ok in [
            "config.json",
            "sub/dir/w.bin",
            "tökenizer.json",
            ".gitattributes",
        ] {
            RepoPath::parse(ok).unwrap();
        }
        assert!(RepoPath::parse(&format!("{}/x", "a".repeat(256))).is_err());
        check_size("size", MAX_FILE_SIZE).unwrap();
        let e = check_size("size", u64::MAX).unwrap_err().to_string();
        assert!(
            e.contains("size") && e.contains("18446744073709551615"),
            "{e}"
        );
        let e = GitOid::parse("a\nb").unwrap_err().to_string();
        assert!(e.contains("\"a\\nb\"") && !e.contains("a\nb"), "{e}");
    }
}
