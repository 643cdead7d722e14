//! Lock files: the exact file set of one Hub commit, pinned by the Hub's own
//! hashes plus a plain SHA-256 of every file.
//!
//! # Schema, version 1
//!
//! A lock is a UTF-8 JSON object (written pretty-printed, two-space indent,
//! keys in this order, one trailing newline; unknown keys are refused):
//!
//! ```json
//! {
//!   "version": 1,
//!   "identity": "org/name@<40 lowercase hex commit>",
//!   "revision": "main",
//!   "include": null,
//!   "files": [
//!     {
//!       "path": "model.safetensors",
//!       "size": 90868376,
//!       "git_oid": "<40 hex: git blob SHA-1 (of the LFS pointer for LFS files)>",
//!       "lfs_sha256": "<64 hex: the Hub's lfs.oid; only for LFS files>",
//!       "sha256": "<64 hex: SHA-256 of the contents, always>"
//!     }
//!   ]
//! }
//! ```
//!
//! - `version`: 1. A reader refuses any other value.
//! - `identity`: `org/name@commit`, the model identity mpk derives salt and
//!   UUID from; always the full repo's commit, also when `include` pins only
//!   part of it.
//! - `revision`: what was asked for when locking (branch, tag or commit);
//!   informative, and what `mpk build --lock` compares against the Hub.
//! - `include`: `null` for the whole repo, or the list of patterns the file
//!   list was filtered with (`*` and `?` match within one path segment, `**`
//!   across segments, a trailing `/` matches everything below a folder).
//! - `files`: every file, sorted by path bytes, no duplicates; paths are
//!   relative, `/`-separated, without empty, `.` or `..` segments or
//!   control characters or `\`, at most 4096 bytes (255 per segment); sizes at
//!   most 4 TiB; `revision` follows git's ref-name rules (see
//!   [`crate::names`]).
//!   `git_oid` is the tree's `oid`; for LFS files it must equal the git blob
//!   SHA-1 of the canonical pointer built from `lfs_sha256` and `size`, and
//!   `sha256` must equal `lfs_sha256`.
//!
//! The lock digest is the SHA-256 of the canonical serialization
//! ([`Lock::to_json`]).

use serde::{Deserialize, Serialize};
use std::path::Path;

use crate::names::{Commit, RepoId, RepoPath, Revision, check_size};
use crate::oid::{git_blob_sha1, is_hex, lfs_pointer, sha256_hex};
use crate::{Error, Result};

/// The only schema version this code reads and writes.
pub const VERSION: u32 = 1;

/// A lock file (schema version 1, see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lock {
    /// Schema version: 1.
    pub version: u32,
    /// `org/name@<40 hex commit>`.
    pub identity: String,
    /// The revision asked for when locking (branch, tag or commit).
    pub revision: String,
    /// Include patterns, or `None` for the whole repo.
    pub include: Option<Vec<String>>,
    /// Every pinned file, sorted by path bytes.
    pub files: Vec<LockedFile>,
}

/// One pinned file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedFile {
    /// Path in the repo.
    pub path: String,
    /// Size of the contents in bytes.
    pub size: u64,
    /// Git blob SHA-1 (of the pointer file for LFS files): the tree's `oid`.
    pub git_oid: String,
    /// The LFS SHA-256 of the contents, for LFS files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lfs_sha256: Option<String>,
    /// SHA-256 of the contents.
    pub sha256: String,
}

impl LockedFile {
    /// The name of this file's blob in the Hugging Face cache (the Hub's
    /// ETag): the LFS SHA-256, or else the git blob SHA-1.
    pub fn etag(&self) -> &str {
        self.lfs_sha256.as_deref().unwrap_or(&self.git_oid)
    }
}

/// Checks a repo id `org/name` ([`RepoId`]).
pub fn check_repo(repo: &str) -> Result<()> {
    RepoId::parse(repo).map(drop)
}

/// Checks a path inside a repo ([`RepoPath`]: relative, no empty, `.` or
/// `..` segments, no control characters, bounded length).
pub fn check_path(p: &str) -> Result<()> {
    RepoPath::parse(p).map(drop)
}

/// Whether `path` matches one include pattern: `*` and `?` within one
/// path segment, `**` across segments (`**/` = zero or more whole
/// segments), a trailing `/` = everything in that folder.
///
/// Runs as a set of pattern positions advanced once per byte of `path`
/// (a Thompson NFA), so the work is at most (pattern length + 1) × (path
/// length + 1) steps whatever the pattern; backtracking took exponential
/// time on patterns with many `**`.
pub fn glob_match(pattern: &str, path: &str) -> bool {
    if let Some(dir) = pattern.strip_suffix('/') {
        return path.starts_with(pattern) || glob_match(&format!("{dir}/**"), path);
    }
    let tokens = glob_tokens(pattern.as_bytes());
    let n = tokens.len();
    // `on[k]`: the NFA is at the start of token k (k == n: the whole
    // pattern matched). `inside[k]`: within a `**/` token k, after at
    // least one byte (it may end only after a `/`).
    let (mut on, mut inside) = (vec![false; n + 1], vec![false; n + 1]);
    let (mut next, mut next_inside) = (vec![false; n + 1], vec![false; n + 1]);
    on[0] = true;
    close(&tokens, &mut on);
    for &c in path.as_bytes() {
        next.fill(false);
        next_inside.fill(false);
        for k in 0..n {
            if inside[k] {
                next_inside[k] = true;
                next[k + 1] |= c == b'/';
            }
            if !on[k] {
                continue;
            }
            match tokens[k] {
                Glob::Byte(b) if b == c => next[k + 1] = true,
                Glob::One if c != b'/' => next[k + 1] = true,
                Glob::Star if c != b'/' => next[k] = true,
                Glob::AnyDepth => next[k] = true,
                Glob::Segments => {
                    next_inside[k] = true;
                    next[k + 1] |= c == b'/';
                }
                _ => {}
            }
        }
        close(&tokens, &mut next);
        std::mem::swap(&mut on, &mut next);
        std::mem::swap(&mut inside, &mut next_inside);
        if !on.contains(&true) && !inside.contains(&true) {
            return false;
        }
    }
    on[n]
}

/// One element of an include pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Glob {
    /// This byte.
    Byte(u8),
    /// `?`: one byte other than `/`.
    One,
    /// `*`: any bytes other than `/`.
    Star,
    /// `**` not followed by `/`: any bytes.
    AnyDepth,
    /// `**/`: nothing, or any bytes ending in `/`.
    Segments,
}

fn glob_tokens(p: &[u8]) -> Vec<Glob> {
    let mut out = Vec::with_capacity(p.len());
    let mut i = 0;
    while i < p.len() {
        let (t, len) = match &p[i..] {
            [b'*', b'*', b'/', ..] => (Glob::Segments, 3),
            [b'*', b'*', ..] => (Glob::AnyDepth, 2),
            [b'*', ..] => (Glob::Star, 1),
            [b'?', ..] => (Glob::One, 1),
            [c, ..] => (Glob::Byte(*c), 1),
            [] => unreachable!("i < len"),
        };
        out.push(t);
        i += len;
    }
    out
}

/// Adds the positions reachable without consuming a byte: past every
/// `*`, `**` and `**/` at whose start the NFA is (each may match nothing).
fn close(tokens: &[Glob], on: &mut [bool]) {
    for k in 0..tokens.len() {
        if on[k] && matches!(tokens[k], Glob::Star | Glob::AnyDepth | Glob::Segments) {
            on[k + 1] = true;
        }
    }
}

/// Whether `path` is selected by `include` (`None`: everything).
pub fn included(include: Option<&[String]>, path: &str) -> bool {
    include.is_none_or(|pats| pats.iter().any(|p| glob_match(p, path)))
}

impl Lock {
    /// `org/name`.
    pub fn repo(&self) -> &str {
        self.identity.split_once('@').map_or("", |(r, _)| r)
    }

    /// The 40-hex commit.
    pub fn commit(&self) -> &str {
        self.identity.split_once('@').map_or("", |(_, c)| c)
    }

    /// The repo id, validated.
    pub fn repo_id(&self) -> Result<RepoId> {
        RepoId::parse(self.repo()).map_err(|e| Error::InvalidLock(format!("identity: {e}")))
    }

    /// The commit, validated.
    pub fn commit_id(&self) -> Result<Commit> {
        Commit::parse(self.commit()).map_err(|e| Error::InvalidLock(format!("identity: {e}")))
    }

    /// Checks every rule of the schema.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidLock(m));
        let field = |what: &str| {
            let what = what.to_owned();
            move |e: Error| Error::InvalidLock(format!("{what}: {e}"))
        };
        if self.version != VERSION {
            return bad(format!(
                "version {} is not supported (this mpk reads version {VERSION})",
                self.version
            ));
        }
        // The identity's rules are mpk-model's (org and name as on the
        // Hub, a full lowercase commit).
        if let Err(e) = self.identity.parse::<mpk_model::Identity>() {
            return bad(e.to_string());
        }
        Revision::parse(&self.revision).map_err(field("revision"))?;
        if let Some(inc) = &self.include {
            if inc.is_empty() || inc.iter().any(String::is_empty) {
                return bad("include must be null or a list of non-empty patterns".into());
            }
        }
        for (i, f) in self.files.iter().enumerate() {
            RepoPath::parse(&f.path).map_err(field(&format!("file {i}")))?;
            check_size("size", f.size).map_err(field(&format!("`{}`", f.path)))?;
            if i > 0 && self.files[i - 1].path.as_bytes() >= f.path.as_bytes() {
                return bad(format!(
                    "files are not sorted by path without duplicates at `{}`",
                    f.path
                ));
            }
            if !included(self.include.as_deref(), &f.path) {
                return bad(format!("`{}` is not selected by include", f.path));
            }
            if !is_hex(&f.git_oid, 40) || !is_hex(&f.sha256, 64) {
                return bad(format!(
                    "`{}`: git_oid or sha256 is not lowercase hex of the right length",
                    f.path
                ));
            }
            if let Some(l) = &f.lfs_sha256 {
                if l != &f.sha256 {
                    return bad(format!(
                        "`{}`: lfs_sha256 {l} differs from sha256 {}",
                        f.path, f.sha256
                    ));
                }
                let p = git_blob_sha1(lfs_pointer(l, f.size).as_bytes());
                if p != f.git_oid {
                    return bad(format!(
                        "`{}`: git_oid {} is not the blob of the LFS pointer ({p})",
                        f.path, f.git_oid
                    ));
                }
            }
        }
        Ok(())
    }

    /// The canonical serialization: pretty JSON and one newline.
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).expect("a lock serializes");
        s.push('\n');
        s
    }

    /// SHA-256 (hex) of [`Lock::to_json`].
    pub fn digest(&self) -> String {
        sha256_hex(self.to_json().as_bytes())
    }

    /// Parses and validates a lock.
    pub fn parse(text: &str) -> Result<Self> {
        let l: Self = serde_json::from_str(text).map_err(|e| Error::InvalidLock(e.to_string()))?;
        l.validate()?;
        Ok(l)
    }

    /// Reads, parses and validates a lock file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(Error::io(path))?;
        Self::parse(&text).map_err(|e| match e {
            Error::InvalidLock(m) => Error::InvalidLock(format!("{}: {m}", path.display())),
            e => e,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, data: &[u8], lfs: bool) -> LockedFile {
        let sha = sha256_hex(data);
        LockedFile {
            path: path.into(),
            size: data.len() as u64,
            git_oid: if lfs {
                git_blob_sha1(lfs_pointer(&sha, data.len() as u64).as_bytes())
            } else {
                git_blob_sha1(data)
            },
            lfs_sha256: lfs.then(|| sha.clone()),
            sha256: sha,
        }
    }

    fn lock() -> Lock {
        Lock {
            version: 1,
            identity: format!("org/name@{}", "a".repeat(40)),
            revision: "main".into(),
            include: None,
            files: vec![file("a.json", b"{}", false), file("w/x.bin", b"xx", true)],
        }
    }

    #[test]
    fn roundtrip_and_digest() {
        let l = lock();
        l.validate().unwrap();
        let back = Lock::parse(&l.to_json()).unwrap();
        assert_eq!(back, l);
        assert_eq!(back.digest(), l.digest());
        assert!(l.to_json().contains("\"include\": null"));
    }

    #[test]
    fn refusals() {
        let j = lock().to_json();
        for (from, to) in [
            ("\"version\": 1", "\"version\": 2"),
            (
                "\"revision\": \"main\",",
                "\"revision\": \"main\", \"x\": 1,",
            ),
            ("org/name@", "org/name@b"),
            ("a.json", "../a.json"),
            ("a.json", "z.json"),
            ("\"include\": null", "\"include\": [\"*.json\"]"),
        ] {
            assert!(
                Lock::parse(&j.replacen(from, to, 1)).is_err(),
                "{from} → {to}"
            );
        }
        let mut l = lock();
        l.files[1].git_oid = "b".repeat(40);
        assert!(l.validate().is_err());
        let mut l = lock();
        l.files[1].sha256 = "b".repeat(64);
        assert!(l.validate().is_err());
    }

    /// The backtracking matcher glob_match replaced, as the oracle of its
    /// semantics (exponential on many `**`: small inputs only).
    fn backtracking(pattern: &str, path: &str) -> bool {
        fn m(p: &[u8], s: &[u8]) -> bool {
            match p {
                [] => s.is_empty(),
                [b'*', b'*', rest @ ..] => match rest.strip_prefix(b"/") {
                    Some(r) => (0..=s.len()).any(|i| (i == 0 || s[i - 1] == b'/') && m(r, &s[i..])),
                    None => (0..=s.len()).any(|i| m(rest, &s[i..])),
                },
                [b'*', rest @ ..] => (0..=s.len())
                    .take_while(|&i| i == 0 || s[i - 1] != b'/')
                    .any(|i| m(rest, &s[i..])),
                [b'?', rest @ ..] => matches!(s, [c, t @ ..] if *c != b'/' && m(rest, t)),
                [c, rest @ ..] => matches!(s, [d, t @ ..] if c == d && m(rest, t)),
            }
        }
        m(pattern.as_bytes(), path.as_bytes())
    }

    #[test]
    fn the_linear_matcher_agrees_with_the_backtracking_one() {
        // Every pattern and path over a small alphabet, up to a length.
        let pat_alpha = [b'a', b'/', b'*', b'?'];
        let path_alpha = [b'a', b'b', b'/'];
        fn all(alpha: &[u8], max: usize) -> Vec<String> {
            let mut out = vec![String::new()];
            let mut last = vec![String::new()];
            for _ in 0..max {
                let mut grown = Vec::new();
                for s in &last {
                    for &c in alpha {
                        grown.push(format!("{s}{}", c as char));
                    }
                }
                out.extend(grown.iter().cloned());
                last = grown;
            }
            out
        }
        let (pats, paths) = (all(&pat_alpha, 5), all(&path_alpha, 5));
        let mut checked = 0;
        for p in pats.iter().filter(|p| !p.ends_with('/')) {
            for s in &paths {
                assert_eq!(glob_match(p, s), backtracking(p, s), "{p:?} {s:?}");
                checked += 1;
            }
        }
        assert!(checked > 300_000, "{checked}");
    }

    /// Many `**` against a long path that does not match: backtracking
    /// never finished such a case; the NFA does at most
    /// (pattern + 1) x (path + 1) steps. Guarded by a thread with a
    /// generous limit so a regression fails instead of hanging CI.
    #[test]
    fn pathological_patterns_finish() {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let pattern = "**a**a**a**a**a**a**a**a**b".to_string();
            let path = "a".repeat(4000);
            let long = format!("{}/x", "**/".repeat(500));
            tx.send((
                glob_match(&pattern, &path),
                glob_match(&pattern, &format!("{path}b")),
                glob_match(&long, &"a/".repeat(1000)),
            ))
            .unwrap();
        });
        let got = rx
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("the matcher ran for a minute on one path");
        assert_eq!(got, (false, true, false));
    }

    #[test]
    fn globs() {
        for (p, s, want) in [
            ("*.json", "config.json", true),
            ("*.json", "sub/config.json", false),
            ("**/*.json", "sub/config.json", true),
            ("**/*.json", "config.json", true),
            ("**", "a/b/c", true),
            ("1_Pooling/", "1_Pooling/config.json", true),
            ("1_Pooling/", "1_Poolingx", false),
            ("model.safetensors", "model.safetensors", true),
            ("model.?afetensors", "model.safetensors", true),
            ("onnx/**", "onnx/model.onnx", true),
            ("onnx/**", "onnxx/model.onnx", false),
            ("**/x.json", "ax.json", false),
        ] {
            assert_eq!(glob_match(p, s), want, "{p} {s}");
        }
    }
}
