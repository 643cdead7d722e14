//! Verified downloads into the Hugging Face cache, and locking a repo.
//!
//! A file is fetched by commit, never by branch: `HEAD resolve/<commit>/…`
//! must agree with the lock (commit, ETag, size), then the bytes go to
//! `blobs/<etag>.incomplete` (under the blob's `.locks` lock; resumed with `Range` after a dropped
//! connection), are hashed (size, SHA-256, and the git blob SHA-1 or the
//! LFS SHA-256 the Hub publishes) and only then renamed to `blobs/<etag>`
//! and linked from `snapshots/<commit>/`. A copy that fails a check is
//! deleted, so the cache never holds a bad blob under a valid name; a
//! cached blob (from any client) is re-verified before it is used.

use sha2::{Digest, Sha256};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::cache::HfCache;
use crate::client::{Attempt, FileMeta, Hub};
use crate::lock::{Lock, LockedFile, included};
use crate::oid::{GitBlobHasher, git_blob_sha1, lfs_pointer};
use crate::{Error, Result};

/// What is known about a file before it is fetched.
#[derive(Debug, Clone)]
pub struct Expected<'a> {
    /// Path in the repo.
    pub path: &'a str,
    /// Size of the contents.
    pub size: u64,
    /// Git blob SHA-1 (of the pointer for LFS files).
    pub git_oid: &'a str,
    /// LFS SHA-256, for LFS files.
    pub lfs_sha256: Option<&'a str>,
    /// Plain SHA-256, when a lock recorded it.
    pub sha256: Option<&'a str>,
}

impl<'a> From<&'a LockedFile> for Expected<'a> {
    fn from(f: &'a LockedFile) -> Self {
        Self {
            path: &f.path,
            size: f.size,
            git_oid: &f.git_oid,
            lfs_sha256: f.lfs_sha256.as_deref(),
            sha256: Some(&f.sha256),
        }
    }
}

impl Expected<'_> {
    fn etag(&self) -> &str {
        self.lfs_sha256.unwrap_or(self.git_oid)
    }
}

/// Progress notifications.
#[derive(Debug, Clone, Copy)]
pub enum Event<'a> {
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

/// Hashes a file and checks it against `exp`; returns the SHA-256 hex.
fn verify(path: &Path, exp: &Expected<'_>, note: &'static str) -> Result<String> {
    let mut f = File::open(path).map_err(Error::io(path))?;
    let len = f.metadata().map_err(Error::io(path))?.len();
    let mismatch = |kind, expected: String, actual: String| Error::HashMismatch {
        path: exp.path.to_owned(),
        kind,
        expected,
        actual,
        note,
    };
    if len != exp.size {
        return Err(mismatch(
            "size",
            format!("{} bytes", exp.size),
            format!("{len} bytes (truncated or wrong)"),
        ));
    }
    let mut sha = Sha256::new();
    let mut git = exp.lfs_sha256.is_none().then(|| GitBlobHasher::new(len));
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(Error::io(path))?;
        if n == 0 {
            break;
        }
        sha.update(&buf[..n]);
        if let Some(g) = &mut git {
            g.update(&buf[..n]);
        }
    }
    let sha = hex::encode(sha.finalize());
    if let Some(l) = exp.lfs_sha256 {
        if sha != l {
            return Err(mismatch(
                "LFS sha256 (the Hub's lfs.oid)",
                l.to_owned(),
                sha,
            ));
        }
    }
    if let Some(g) = git {
        let g = g.finish();
        if g != exp.git_oid {
            return Err(mismatch(
                "git blob sha1 (the Hub's oid)",
                exp.git_oid.to_owned(),
                g,
            ));
        }
    }
    if let Some(s) = exp.sha256 {
        if sha != s {
            return Err(mismatch("sha256 (the lock's)", s.to_owned(), sha));
        }
    }
    Ok(sha)
}

const DELETED: &str = "; the bad copy was deleted";

/// Makes `path` of `repo` at `commit` present and verified in the cache
/// and linked from the snapshot; returns its SHA-256 hex.
pub fn fetch_file(
    hub: &Hub,
    cache: &HfCache,
    repo: &str,
    commit: &str,
    exp: &Expected<'_>,
    progress: Progress<'_>,
) -> Result<String> {
    let etag = exp.etag();
    let blob = cache.blob_path(repo, etag);
    // One download per blob across processes: whoever holds the lock
    // downloads, the others wait and then find the verified blob.
    let _lock = if hub.config().offline {
        None
    } else {
        Some(cache.lock_blob(repo, etag)?)
    };
    if blob.exists() {
        match verify(&blob, exp, DELETED) {
            Ok(sha) => {
                cache.link_snapshot(repo, commit, exp.path, etag)?;
                progress(Event::Cached(exp.path, exp.size));
                return Ok(sha);
            }
            Err(e) => {
                // Never keep a bad blob under a valid name.
                std::fs::remove_file(&blob).map_err(Error::io(&blob))?;
                if hub.config().offline {
                    return Err(e);
                }
            }
        }
    }
    if hub.config().offline {
        return Err(Error::Offline(format!("{repo}@{commit}/{}", exp.path)));
    }
    let meta = hub.file_meta(repo, commit, exp.path)?;
    check_meta(&meta, commit, exp)?;
    let part = cache.incomplete_path(repo, etag);
    let dir = part.parent().expect("blobs folder");
    std::fs::create_dir_all(dir).map_err(Error::io(dir))?;
    download(hub, &meta.url, &part, exp, progress)?;
    let sha = match verify(&part, exp, DELETED) {
        Ok(s) => s,
        Err(e) => {
            let _ = std::fs::remove_file(&part);
            return Err(e);
        }
    };
    std::fs::rename(&part, &blob).map_err(Error::io(&blob))?;
    cache.link_snapshot(repo, commit, exp.path, etag)?;
    progress(Event::Done(exp.path));
    Ok(sha)
}

/// Checks what `HEAD resolve/<commit>/<path>` said (commit, ETag, size)
/// against what the lock expects.
pub fn check_meta(meta: &FileMeta, commit: &str, exp: &Expected<'_>) -> Result<()> {
    if let Some(c) = &meta.commit {
        if c != commit {
            return Err(Error::LockMismatch(format!(
                "`{}`: asked for commit {commit}, the Hub answered for {c}",
                exp.path
            )));
        }
    }
    let etag = exp.etag();
    if let Some(e) = &meta.etag {
        if e != etag {
            return Err(Error::LockMismatch(format!(
                "`{}`: the Hub's ETag is {e}, expected {etag}",
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

/// Downloads `url` into `part`, resuming what is there.
fn download(
    hub: &Hub,
    url: &str,
    part: &Path,
    exp: &Expected<'_>,
    progress: Progress<'_>,
) -> Result<()> {
    hub.retry(|attempt| {
        let have = std::fs::metadata(part).map(|m| m.len()).unwrap_or(0);
        let have = if have > exp.size { 0 } else { have };
        if have == exp.size && have > 0 {
            return Ok(());
        }
        let what = format!("`{}`", exp.path);
        let r = hub.request("GET", url, (have > 0).then_some(have), &what);
        let mut r = match r {
            Err(Attempt::Retry(e)) => {
                progress(Event::Retry(exp.path, &e.to_string()));
                return Err(Attempt::Retry(e));
            }
            r => r?,
        };
        let status = r.status().as_u16();
        let resumed = status == 206
            && r.headers()
                .get("content-range")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with(&format!("bytes {have}-")));
        if status == 416 || (status != 200 && !resumed) {
            let _ = std::fs::remove_file(part);
            return Err(Attempt::Retry(Error::Protocol {
                url: url.to_owned(),
                msg: format!("unexpected HTTP {status} to a download (attempt {attempt})"),
            }));
        }
        let mut f = OpenOptions::new()
            .create(true)
            .append(resumed)
            .write(true)
            .truncate(!resumed)
            .open(part)
            .map_err(|e| Attempt::Fatal(Error::io(part)(e)))?;
        progress(Event::Start(
            exp.path,
            if resumed { have } else { 0 },
            exp.size,
        ));
        let mut rd = r.body_mut().as_reader();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = match rd.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) => {
                    let _ = f.sync_all();
                    let e = Error::Network {
                        url: url.to_owned(),
                        source: Box::new(e),
                    };
                    progress(Event::Retry(exp.path, &e.to_string()));
                    return Err(Attempt::Retry(e));
                }
            };
            f.write_all(&buf[..n])
                .map_err(|e| Attempt::Fatal(Error::io(part)(e)))?;
            progress(Event::Bytes(n as u64));
        }
        f.sync_all()
            .map_err(|e| Attempt::Fatal(Error::io(part)(e)))?;
        Ok(())
    })
}

/// Fetches and verifies every file of `lock`; returns the snapshot folder
/// (which may hold other files of that commit, cached earlier).
pub fn fetch_lock(
    hub: &Hub,
    cache: &HfCache,
    lock: &Lock,
    progress: Progress<'_>,
) -> Result<PathBuf> {
    lock.validate()?;
    let (repo, commit) = (lock.repo(), lock.commit());
    for f in &lock.files {
        fetch_file(hub, cache, repo, commit, &f.into(), progress)?;
    }
    Ok(cache.snapshot_dir(repo, commit))
}

/// Locks `repo` at `rev`: resolves the commit, lists the tree (all
/// pages), keeps the files `include` selects, and records every file's
/// hashes; non-LFS files are downloaded into the cache (verified against
/// their git blob SHA-1) to hash them.
pub fn lock_repo(
    hub: &Hub,
    cache: &HfCache,
    repo: &str,
    rev: &str,
    include: Option<Vec<String>>,
    progress: Progress<'_>,
) -> Result<Lock> {
    crate::lock::check_repo(repo)?;
    let commit = hub.revision(repo, rev)?;
    let mut entries: Vec<_> = hub
        .tree(repo, &commit)?
        .into_iter()
        .filter(|e| e.kind == "file" && included(include.as_deref(), &e.path))
        .collect();
    entries.sort_by(|a, b| a.path.as_bytes().cmp(b.path.as_bytes()));
    let mut files = Vec::new();
    for e in entries {
        crate::lock::check_path(&e.path)?;
        let sha256 = match &e.lfs {
            Some(l) => {
                if l.size != e.size {
                    return Err(Error::Protocol {
                        url: hub.resolve_url(repo, &commit, &e.path),
                        msg: format!(
                            "tree entry `{}`: size {} but lfs.size {}",
                            e.path, e.size, l.size
                        ),
                    });
                }
                let p = git_blob_sha1(lfs_pointer(&l.oid, l.size).as_bytes());
                if p != e.oid {
                    return Err(Error::Protocol {
                        url: hub.resolve_url(repo, &commit, &e.path),
                        msg: format!(
                            "tree entry `{}`: oid {} is not the blob of its LFS pointer ({p})",
                            e.path, e.oid
                        ),
                    });
                }
                l.oid.clone()
            }
            None => {
                let exp = Expected {
                    path: &e.path,
                    size: e.size,
                    git_oid: &e.oid,
                    lfs_sha256: None,
                    sha256: None,
                };
                fetch_file(hub, cache, repo, &commit, &exp, progress)?
            }
        };
        files.push(LockedFile {
            path: e.path,
            size: e.size,
            git_oid: e.oid,
            lfs_sha256: e.lfs.map(|l| l.oid),
            sha256,
        });
    }
    cache.write_ref(repo, rev, &commit)?;
    let lock = Lock {
        version: crate::lock::VERSION,
        identity: format!("{repo}@{commit}"),
        revision: rev.to_owned(),
        include,
        files,
    };
    lock.validate()?;
    Ok(lock)
}
