//! The standard Hugging Face cache layout, shared with `huggingface_hub`
//! (Python) and the `hf-hub` crate, so files cached by any client are
//! reused and ours are theirs:
//!
//! ```text
//! <cache>/models--<org>--<name>/blobs/<etag>              content
//! <cache>/models--<org>--<name>/blobs/<etag>.incomplete   other clients' partial download
//! <cache>/models--<org>--<name>/blobs/<etag>.mpk-partial  ours: ranges at their offsets (sparse)
//! <cache>/models--<org>--<name>/blobs/<etag>.mpk-ranges   SHA-256 of each range written to it
//! <cache>/models--<org>--<name>/snapshots/<commit>/<path> → ../../blobs/<etag>
//! <cache>/models--<org>--<name>/refs/<branch>             the commit, no newline
//! <cache>/.locks/models--<org>--<name>/<etag>.lock        held while downloading
//! ```
//!
//! `<etag>` is the LFS SHA-256 for LFS files and the git blob SHA-1
//! otherwise. The cache folder is, in order: `HF_HUB_CACHE`,
//! `HUGGINGFACE_HUB_CACHE`, `$HF_HOME/hub`, `$XDG_CACHE_HOME/huggingface/hub`,
//! `~/.cache/huggingface/hub` (the order of `huggingface_hub` and hf-hub 1.0).
//!
//! This is the only module that builds paths inside the cache, and it
//! takes only validated values ([`crate::names`]): a repo id, a commit, a
//! 40- or 64-hex ETag, a revision under git's ref-name rules and a path
//! under the lock's rules, so every path it returns is below the cache
//! folder. Files it writes are opened without following symlinks.

use std::fs::File;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::names::{Commit, Etag, RepoId, RepoPath, Revision};
use crate::{Error, Result};

/// A held download lock of one blob (see [`HfCache::lock_blob`]).
#[derive(Debug)]
pub struct BlobLock {
    _held: nix::fcntl::Flock<std::fs::File>,
}

/// A Hugging Face cache folder.
#[derive(Debug, Clone)]
pub struct HfCache {
    root: PathBuf,
}

fn env(k: &str) -> Option<String> {
    std::env::var(k).ok().filter(|v| !v.is_empty())
}

impl HfCache {
    /// The cache at `root` (the folder holding `models--*`).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The cache the environment names (see the module documentation).
    pub fn from_env() -> Self {
        let root = env("HF_HUB_CACHE")
            .or_else(|| env("HUGGINGFACE_HUB_CACHE"))
            .map(PathBuf::from)
            .or_else(|| env("HF_HOME").map(|h| Path::new(&h).join("hub")))
            .or_else(|| env("XDG_CACHE_HOME").map(|x| Path::new(&x).join("huggingface/hub")))
            .unwrap_or_else(|| {
                Path::new(&env("HOME").unwrap_or_else(|| "/".into())).join(".cache/huggingface/hub")
            });
        Self::new(root)
    }

    /// The cache folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `models--<org>--<name>`.
    pub fn repo_dir(&self, repo: &RepoId) -> PathBuf {
        self.root.join(repo.folder())
    }

    /// The blob of a file with this ETag.
    pub fn blob_path(&self, repo: &RepoId, etag: &Etag) -> PathBuf {
        self.repo_dir(repo).join("blobs").join(etag.as_str())
    }

    /// Where a blob is written while it downloads.
    pub fn incomplete_path(&self, repo: &RepoId, etag: &Etag) -> PathBuf {
        self.repo_dir(repo)
            .join("blobs")
            .join(format!("{etag}.incomplete"))
    }

    /// The download lock file of a blob.
    pub fn lock_path(&self, repo: &RepoId, etag: &Etag) -> PathBuf {
        self.root
            .join(".locks")
            .join(repo.folder())
            .join(format!("{etag}.lock"))
    }

    /// Takes the download lock of a blob (`.locks/<repo folder>/<etag>.lock`,
    /// an exclusive `flock`, as `huggingface_hub` does), waiting while
    /// another process downloads the same blob; released when dropped.
    pub fn lock_blob(&self, repo: &RepoId, etag: &Etag) -> Result<BlobLock> {
        let path = self.lock_path(repo, etag);
        let dir = path.parent().expect("a lock has a folder");
        std::fs::create_dir_all(dir).map_err(Error::io(dir))?;
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
            .open(&path)
            .map_err(Error::io(&path))?;
        let lock = nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, e)| Error::io(&path)(e.into()))?;
        Ok(BlobLock { _held: lock })
    }

    /// Where mpk writes a blob's ranges while it downloads: not
    /// `.incomplete`, which `huggingface_hub` resumes from its length
    /// (ours is sparse and filled out of order).
    pub fn partial_path(&self, repo: &RepoId, etag: &Etag) -> PathBuf {
        self.repo_dir(repo)
            .join("blobs")
            .join(format!("{etag}.mpk-partial"))
    }

    /// The digests of the ranges written to [`HfCache::partial_path`].
    pub fn ranges_path(&self, repo: &RepoId, etag: &Etag) -> PathBuf {
        self.repo_dir(repo)
            .join("blobs")
            .join(format!("{etag}.mpk-ranges"))
    }

    /// Opens (or creates) a blob's partial download, `size` bytes long
    /// (sparse), never through a symlink; one that is not a regular file
    /// of that size is started again. Returns it and its path.
    pub fn open_partial(&self, repo: &RepoId, etag: &Etag, size: u64) -> Result<(File, PathBuf)> {
        let part = self.partial_path(repo, etag);
        let dir = part.parent().expect("blobs folder");
        std::fs::create_dir_all(dir).map_err(Error::io(dir))?;
        let open = || {
            std::fs::OpenOptions::new()
                .create(true)
                .read(true)
                .write(true)
                .truncate(false)
                .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
                .open(&part)
        };
        let f = match open() {
            Ok(f) => f,
            Err(_) => {
                // A link or a folder planted there: not ours to resume.
                let _ = std::fs::remove_file(&part);
                let _ = std::fs::remove_dir_all(&part);
                let _ = std::fs::remove_file(self.ranges_path(repo, etag));
                open().map_err(Error::io(&part))?
            }
        };
        let m = f.metadata().map_err(Error::io(&part))?;
        if !m.is_file() {
            return Err(Error::io(&part)(std::io::Error::other(
                "not a regular file",
            )));
        }
        if m.len() != size {
            let _ = std::fs::remove_file(self.ranges_path(repo, etag));
            f.set_len(0).map_err(Error::io(&part))?;
            f.set_len(size).map_err(Error::io(&part))?;
        }
        Ok((f, part))
    }

    /// Opens a blob's ranges file for appending (emptied when `fresh`),
    /// never through a symlink.
    pub fn open_ranges(&self, repo: &RepoId, etag: &Etag, fresh: bool) -> Result<File> {
        let p = self.ranges_path(repo, etag);
        let open = || {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .truncate(false)
                .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
                .open(&p)
        };
        let f = open().or_else(|_| {
            let _ = std::fs::remove_file(&p);
            open()
        });
        let f = f.map_err(Error::io(&p))?;
        if fresh {
            f.set_len(0).map_err(Error::io(&p))?;
        }
        Ok(f)
    }

    /// The snapshot folder of a commit.
    pub fn snapshot_dir(&self, repo: &RepoId, commit: &Commit) -> PathBuf {
        self.repo_dir(repo).join("snapshots").join(commit.as_str())
    }

    /// Points `snapshots/<commit>/<path>` at `blobs/<etag>` (relative link),
    /// replacing whatever was there.
    pub fn link_snapshot(
        &self,
        repo: &RepoId,
        commit: &Commit,
        path: &RepoPath,
        etag: &Etag,
    ) -> Result<PathBuf> {
        let snap = self.snapshot_dir(repo, commit);
        let link = snap.join(path.as_str());
        let parent = link.parent().expect("a snapshot path has a parent");
        std::fs::create_dir_all(&snap).map_err(Error::io(&snap))?;
        // Folders below the snapshot are ours: one that is a link (planted
        // in the cache) is replaced, never followed.
        let mut dir = snap.clone();
        for seg in path.as_str().split('/').take(path.depth()) {
            dir.push(seg);
            match std::fs::symlink_metadata(&dir) {
                Ok(m) if m.is_dir() => continue,
                Ok(_) => std::fs::remove_file(&dir).map_err(Error::io(&dir))?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(&dir)(e)),
            }
            std::fs::create_dir(&dir).map_err(Error::io(&dir))?;
        }
        debug_assert_eq!(dir, parent);
        let target = format!("{}blobs/{etag}", "../".repeat(path.depth() + 2));
        match std::fs::symlink_metadata(&link) {
            Ok(_) => std::fs::remove_file(&link).map_err(Error::io(&link))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(&link)(e)),
        }
        std::os::unix::fs::symlink(&target, &link).map_err(Error::io(&link))?;
        Ok(link)
    }

    /// Where branch or tag `rev` is recorded (`refs/<rev>`).
    pub fn ref_path(&self, repo: &RepoId, rev: &Revision) -> PathBuf {
        self.repo_dir(repo).join("refs").join(rev.as_str())
    }

    /// Records that branch or tag `rev` pointed to `commit` (`refs/<rev>`).
    pub fn write_ref(&self, repo: &RepoId, rev: &Revision, commit: &Commit) -> Result<()> {
        if rev.as_str() == commit.as_str() {
            return Ok(());
        }
        let p = self.ref_path(repo, rev);
        let parent = p.parent().expect("a ref has a parent");
        std::fs::create_dir_all(parent).map_err(Error::io(parent))?;
        std::fs::write(&p, commit.as_str()).map_err(Error::io(&p))
    }
}

/// A small file's text (at most `max` bytes), opened without following
/// a symlink.
pub(crate) fn read_small(path: &Path, max: u64) -> std::io::Result<String> {
    use std::io::Read;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
        .open(path)?;
    let mut s = String::new();
    f.take(max).read_to_string(&mut s)?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout() {
        let d = tempfile::tempdir().unwrap();
        let c = HfCache::new(d.path());
        let (repo, c0, e1) = (
            RepoId::parse("o/n").unwrap(),
            Commit::parse(&"c".repeat(40)).unwrap(),
            Etag::parse(&"e".repeat(40)).unwrap(),
        );
        let path = RepoPath::parse("a/b.txt").unwrap();
        let l = c.link_snapshot(&repo, &c0, &path, &e1).unwrap();
        assert_eq!(
            l,
            d.path()
                .join(format!("models--o--n/snapshots/{c0}/a/b.txt"))
        );
        assert_eq!(
            std::fs::read_link(&l).unwrap(),
            Path::new(&format!("../../../blobs/{e1}"))
        );
        std::fs::create_dir_all(d.path().join("models--o--n/blobs")).unwrap();
        std::fs::write(c.blob_path(&repo, &e1), b"hi").unwrap();
        assert_eq!(std::fs::read(&l).unwrap(), b"hi");
        // A folder of the snapshot replaced by a link elsewhere is not
        // followed.
        let elsewhere = d.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        let a = d.path().join(format!("models--o--n/snapshots/{c0}/a"));
        std::fs::remove_file(&l).unwrap();
        std::fs::remove_dir(&a).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &a).unwrap();
        c.link_snapshot(&repo, &c0, &path, &e1).unwrap();
        assert!(std::fs::read_dir(&elsewhere).unwrap().next().is_none());
        assert!(std::fs::symlink_metadata(&a).unwrap().is_dir());
    }
}
