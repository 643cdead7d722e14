//! Verified downloads into the Hugging Face cache, and locking a repo.
//!
//! A file is fetched by commit, never by branch: `HEAD resolve/<commit>/…`
//! must agree with the lock (commit, ETag, size), then the bytes go, range
//! by range on several connections ([`crate::sched`]), to
//! `blobs/<etag>.mpk-partial` (under the blob's `.locks` lock; resumed
//! range by range, each kept range re-hashed), are hashed (size, SHA-256,
//! and the git blob SHA-1 or the LFS SHA-256 the Hub publishes) and only
//! then renamed to `blobs/<etag>`
//! and linked from `snapshots/<commit>/`. A copy that fails a check is
//! deleted, so the cache never holds a bad blob under a valid name; a
//! cached blob (from any client) is re-verified before it is used.

use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::cache::HfCache;
use crate::client::{FileMeta, Hub, TreeFile};
use crate::lock::{Lock, LockedFile, included};
use crate::names::{Commit, Etag, GitOid, RepoId, RepoPath, Revision, Sha256Hex, check_size};
use crate::oid::{GitBlobHasher, git_blob_sha1, lfs_pointer};
use crate::{Error, Result};

/// What is known about a file before it is fetched, validated.
#[derive(Debug, Clone)]
pub struct Expected {
    /// Path in the repo.
    pub path: RepoPath,
    /// Size of the contents.
    pub size: u64,
    /// Git blob SHA-1 (of the pointer for LFS files).
    pub git_oid: GitOid,
    /// LFS SHA-256, for LFS files.
    pub lfs_sha256: Option<Sha256Hex>,
    /// Plain SHA-256, when a lock recorded it.
    pub sha256: Option<Sha256Hex>,
}

impl TryFrom<&LockedFile> for Expected {
    type Error = Error;
    fn try_from(f: &LockedFile) -> Result<Self> {
        let at = |e: Error| Error::InvalidLock(format!("`{}`: {e}", f.path.escape_debug()));
        Ok(Self {
            path: RepoPath::parse(&f.path).map_err(at)?,
            size: check_size("size", f.size).map_err(at)?,
            git_oid: GitOid::parse(&f.git_oid).map_err(at)?,
            lfs_sha256: f
                .lfs_sha256
                .as_deref()
                .map(Sha256Hex::parse)
                .transpose()
                .map_err(at)?,
            sha256: Some(Sha256Hex::parse(&f.sha256).map_err(at)?),
        })
    }
}

impl From<&TreeFile> for Expected {
    fn from(f: &TreeFile) -> Self {
        Self {
            path: f.path.clone(),
            size: f.size,
            git_oid: f.oid.clone(),
            lfs_sha256: f.lfs.clone(),
            sha256: None,
        }
    }
}

impl Expected {
    /// The blob name in the cache: the LFS SHA-256, else the git oid.
    pub fn etag(&self) -> Etag {
        match &self.lfs_sha256 {
            Some(l) => l.into(),
            None => (&self.git_oid).into(),
        }
    }
}

/// Progress notifications.
#[derive(Debug, Clone, Copy)]
pub enum Event<'a> {
    /// The bytes of every file about to be fetched or checked (sent
    /// once, first).
    Total(u64),
    /// A file was found valid in the cache.
    Cached(&'a str, u64),
    /// A download of a file starts (at byte offset, of size).
    Start(&'a str, u64, u64),
    /// Bytes arrived.
    Bytes(u64),
    /// A file was downloaded and verified.
    Done(&'a str),
    /// A failed attempt will be retried.
    Retry(&'a str, &'a str),
}

/// A progress callback.
pub type Progress<'a> = &'a mut dyn FnMut(Event<'_>);

/// Hashes of one file's bytes, checked against `exp` as they stream.
struct Hashes {
    sha: Sha256,
    git: Option<GitBlobHasher>,
}

impl Hashes {
    fn new(exp: &Expected) -> Self {
        Self {
            sha: Sha256::new(),
            git: exp
                .lfs_sha256
                .is_none()
                .then(|| GitBlobHasher::new(exp.size)),
        }
    }
    fn update(&mut self, b: &[u8]) {
        self.sha.update(b);
        if let Some(g) = &mut self.git {
            g.update(b);
        }
    }
    /// Checks the hashes against `exp`; returns the SHA-256 hex.
    fn check(self, exp: &Expected, note: &'static str) -> Result<String> {
        let mismatch = |kind, expected: &str, actual: String| Error::HashMismatch {
            path: exp.path.to_string(),
            kind,
            expected: expected.to_owned(),
            actual,
            note,
        };
        let sha = hex::encode(self.sha.finalize());
        if let Some(l) = &exp.lfs_sha256 {
            if sha != l.as_str() {
                return Err(mismatch("LFS sha256 (the Hub's lfs.oid)", l.as_str(), sha));
            }
        }
        if let Some(g) = self.git {
            let g = g.finish();
            if g != exp.git_oid.as_str() {
                return Err(mismatch(
                    "git blob sha1 (the Hub's oid)",
                    exp.git_oid.as_str(),
                    g,
                ));
            }
        }
        if let Some(s) = &exp.sha256 {
            if sha != s.as_str() {
                return Err(mismatch("sha256 (the lock's)", s.as_str(), sha));
            }
        }
        Ok(sha)
    }
}

/// Hashes a file and checks it against `exp`; returns the SHA-256 hex.
pub(crate) fn verify(path: &Path, exp: &Expected, note: &'static str) -> Result<String> {
    let mut f = File::open(path).map_err(Error::io(path))?;
    let len = f.metadata().map_err(Error::io(path))?.len();
    if len != exp.size {
        return Err(Error::HashMismatch {
            path: exp.path.to_string(),
            kind: "size",
            expected: format!("{} bytes", exp.size),
            actual: format!("{len} bytes (truncated or wrong)"),
            note,
        });
    }
    let mut h = Hashes::new(exp);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(Error::io(path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    h.check(exp, note)
}

pub(crate) const DELETED: &str = "; the bad copy was deleted";

/// Makes `exp.path` of `repo` at `commit` present and verified in the
/// cache and linked from the snapshot; returns its SHA-256 hex. Offline,
/// only a cached copy (verified) will do; online this is
/// [`crate::sched::fetch_files`] of one file.
pub fn fetch_file(
    hub: &Hub,
    cache: &HfCache,
    repo: &RepoId,
    commit: &Commit,
    exp: &Expected,
    progress: Progress<'_>,
) -> Result<String> {
    if !hub.config().offline {
        let mut shas = crate::sched::fetch_files(
            hub,
            cache,
            repo,
            commit,
            std::slice::from_ref(exp),
            progress,
        )?;
        return Ok(shas.remove(0));
    }
    let etag = exp.etag();
    let blob = cache.blob_path(repo, &etag);
    if std::fs::symlink_metadata(&blob).is_ok() {
        let sha = verify(&blob, exp, DELETED).inspect_err(|_| {
            // Never keep a bad blob under a valid name.
            let _ = std::fs::remove_file(&blob);
        })?;
        cache.link_snapshot(repo, commit, &exp.path, &etag)?;
        progress(Event::Cached(exp.path.as_str(), exp.size));
        return Ok(sha);
    }
    Err(Error::Offline(format!("{repo}@{commit}/{}", exp.path)))
}

/// Checks each file of `lock` in the cache without writing anything (no
/// link, no lock file, a bad blob is left as it is); returns the blob of
/// each file, in the lock's order. For `mpk reproduce` offline.
pub fn verify_cached(cache: &HfCache, lock: &Lock) -> Result<Vec<PathBuf>> {
    lock.validate()?;
    let repo = lock.repo_id()?;
    let mut out = Vec::new();
    for f in &lock.files {
        let exp = Expected::try_from(f)?;
        let blob = cache.blob_path(&repo, &exp.etag());
        if std::fs::symlink_metadata(&blob).is_err() {
            return Err(Error::Offline(format!("{}/{}", lock.identity, exp.path)));
        }
        verify(&blob, &exp, "; the cached copy is bad")?;
        out.push(blob);
    }
    Ok(out)
}

/// Checks what `HEAD resolve/<commit>/<path>` said (commit, ETag, size)
/// against what the lock expects.
pub fn check_meta(meta: &FileMeta, commit: &Commit, exp: &Expected) -> Result<()> {
    if let Some(c) = &meta.commit {
        if c != commit.as_str() {
            return Err(Error::LockMismatch(format!(
                "`{}`: asked for commit {commit}, the Hub answered for {:?}",
                exp.path, c
            )));
        }
    }
    let etag = exp.etag();
    if let Some(e) = &meta.etag {
        if e != etag.as_str() {
            return Err(Error::LockMismatch(format!(
                "`{}`: the Hub's ETag is {e:?}, expected {etag}",
                exp.path
            )));
        }
    }
    if let Some(s) = meta.size {
        if s != exp.size {
            return Err(Error::LockMismatch(format!(
                "`{}`: the Hub says {s} bytes, expected {}",
                exp.path, exp.size
            )));
        }
    }
    Ok(())
}

/// Streams a file from the Hub and hashes it, writing nothing; checks
/// the hashes `exp` has; returns the SHA-256 hex.
pub fn hash_remote(
    hub: &Hub,
    repo: &RepoId,
    commit: &Commit,
    exp: &Expected,
    progress: Progress<'_>,
) -> Result<String> {
    if hub.config().offline {
        return Err(Error::Offline(format!("{repo}@{commit}/{}", exp.path)));
    }
    let t = crate::sched::Target::resolve(hub, repo, commit, exp)?;
    progress(Event::Start(exp.path.as_str(), 0, exp.size));
    let mut h = Hashes::new(exp);
    let mut sink = |off: u64, b: &[u8]| -> Result<()> {
        if off == 0 {
            // A whole-file request starts again at byte 0 after a retry.
            h = Hashes::new(exp);
        }
        h.update(b);
        Ok(())
    };
    let path = exp.path.as_str();
    let mut retried = |e: &Error| progress(Event::Retry(path, &e.to_string()));
    match crate::sched::transfer(
        hub,
        &t,
        (0, exp.size),
        crate::sched::How::Range,
        None,
        &mut sink,
        &mut retried,
    ) {
        Ok(()) => {}
        Err(crate::sched::RangeFail::Err(e)) => return Err(e),
        Err(crate::sched::RangeFail::NoRanges(r)) => {
            // A single range is the whole file, so a 200 is its body.
            crate::sched::transfer(
                hub,
                &t,
                (0, exp.size),
                crate::sched::How::Whole,
                Some(*r),
                &mut sink,
                &mut retried,
            )
            .map_err(|e| match e {
                crate::sched::RangeFail::Err(e) => e,
                _ => Error::Protocol {
                    url: t.url().1,
                    msg: format!("`{path}`: no whole body"),
                },
            })?;
        }
        Err(crate::sched::RangeFail::Skipped) => {}
    }
    let sha = h.check(exp, "")?;
    progress(Event::Bytes(exp.size));
    progress(Event::Done(path));
    Ok(sha)
}

/// Fetches and verifies every file of `lock`, on the scheduler's
/// connections ([`crate::sched::fetch_files`]); returns the snapshot folder
/// (which may hold other files of that commit, cached earlier).
pub fn fetch_lock(
    hub: &Hub,
    cache: &HfCache,
    lock: &Lock,
    progress: Progress<'_>,
) -> Result<PathBuf> {
    lock.validate()?;
    let (repo, commit) = (lock.repo_id()?, lock.commit_id()?);
    let files = lock
        .files
        .iter()
        .map(Expected::try_from)
        .collect::<Result<Vec<_>>>()?;
    crate::sched::fetch_files(hub, cache, &repo, &commit, &files, progress)?;
    Ok(cache.snapshot_dir(&repo, &commit))
}

/// Locks `repo` at `rev`: resolves the commit, lists the tree (all
/// pages), keeps the files `include` selects, and records every file's
/// hashes. Non-LFS files are hashed (and verified against their git blob
/// SHA-1) by downloading them into `cache`, or, when `cache` is `None`,
/// by streaming them: then nothing at all is written.
pub fn lock_repo(
    hub: &Hub,
    cache: Option<&HfCache>,
    repo: &str,
    rev: &str,
    include: Option<Vec<String>>,
    progress: Progress<'_>,
) -> Result<Lock> {
    let repo = RepoId::parse(repo)?;
    let rev = Revision::parse(rev)?;
    let commit = hub.revision(&repo, &rev)?;
    let mut entries: Vec<_> = hub
        .tree(&repo, &commit)?
        .into_iter()
        .filter(|e| included(include.as_deref(), e.path.as_str()))
        .collect();
    entries.sort_by(|a, b| a.path.as_str().as_bytes().cmp(b.path.as_str().as_bytes()));
    // Non-LFS files are hashed by downloading them, on the scheduler's
    // connections: into the cache, or streamed (nothing written).
    let small: Vec<Expected> = entries
        .iter()
        .filter(|e| e.lfs.is_none())
        .map(Expected::from)
        .collect();
    let mut small_sha = match cache {
        Some(c) => crate::sched::fetch_files(hub, c, &repo, &commit, &small, progress)?,
        None => crate::sched::hash_files(hub, &repo, &commit, &small, progress)?,
    }
    .into_iter();
    let mut files = Vec::new();
    for e in entries {
        let sha256 = match &e.lfs {
            Some(l) => {
                let p = git_blob_sha1(lfs_pointer(l.as_str(), e.size).as_bytes());
                if p != e.oid.as_str() {
                    return Err(Error::Protocol {
                        url: hub.resolve_url(&repo, &commit, &e.path),
                        msg: format!(
                            "tree entry `{}`: oid {} is not the blob of its LFS pointer ({p})",
                            e.path, e.oid
                        ),
                    });
                }
                l.to_string()
            }
            None => small_sha.next().expect("one hash per non-LFS file"),
        };
        files.push(LockedFile {
            path: e.path.to_string(),
            size: e.size,
            git_oid: e.oid.to_string(),
            lfs_sha256: e.lfs.as_ref().map(ToString::to_string),
            sha256,
        });
    }
    if let Some(c) = cache {
        c.write_ref(&repo, &rev, &commit)?;
    }
    let lock = Lock {
        version: crate::lock::VERSION,
        identity: format!("{repo}@{commit}"),
        revision: rev.to_string(),
        include,
        files,
    };
    lock.validate()?;
    Ok(lock)
}
