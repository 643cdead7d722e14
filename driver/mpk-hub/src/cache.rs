//! The standard Hugging Face cache layout, shared with `huggingface_hub`
//! (Python) and the `hf-hub` crate, so files cached by any client are
//! reused and ours are theirs:
//!
//! ```text
//! <cache>/models--<org>--<name>/blobs/<etag>              content
//! <cache>/models--<org>--<name>/blobs/<etag>.incomplete   while downloading
//! <cache>/models--<org>--<name>/snapshots/<commit>/<path> → ../../blobs/<etag>
//! <cache>/models--<org>--<name>/refs/<branch>             the commit, no newline
//! <cache>/.locks/models--<org>--<name>/<etag>.lock        held while downloading
//! ```
//!
//! `<etag>` is the LFS SHA-256 for LFS files and the git blob SHA-1
//! otherwise. The cache folder is, in order: `HF_HUB_CACHE`,
//! `HUGGINGFACE_HUB_CACHE`, `$HF_HOME/hub`, `$XDG_CACHE_HOME/huggingface/hub`,
//! `~/.cache/huggingface/hub` (the order of `huggingface_hub` and hf-hub 1.0).

use std::path::{Path, PathBuf};

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
    pub fn repo_dir(&self, repo: &str) -> PathBuf {
        self.root
            .join(format!("models--{}", repo.replace('/', "--")))
    }

    /// The blob of a file with this ETag.
    pub fn blob_path(&self, repo: &str, etag: &str) -> PathBuf {
        self.repo_dir(repo).join("blobs").join(etag)
    }

    /// Where a blob is written while it downloads.
    pub fn incomplete_path(&self, repo: &str, etag: &str) -> PathBuf {
        self.repo_dir(repo)
            .join("blobs")
            .join(format!("{etag}.incomplete"))
    }

    /// Takes the download lock of a blob (`.locks/<repo folder>/<etag>.lock`,
    /// an exclusive `flock`, as `huggingface_hub` does), waiting while
    /// another process downloads the same blob; released when dropped.
    pub fn lock_blob(&self, repo: &str, etag: &str) -> Result<BlobLock> {
        let dir = self
            .root
            .join(".locks")
            .join(format!("models--{}", repo.replace('/', "--")));
        std::fs::create_dir_all(&dir).map_err(Error::io(&dir))?;
        let path = dir.join(format!("{etag}.lock"));
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(Error::io(&path))?;
        let lock = nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, e)| Error::io(&path)(e.into()))?;
        Ok(BlobLock { _held: lock })
    }

    /// The snapshot folder of a commit.
    pub fn snapshot_dir(&self, repo: &str, commit: &str) -> PathBuf {
        self.repo_dir(repo).join("snapshots").join(commit)
    }

    /// Points `snapshots/<commit>/<path>` at `blobs/<etag>` (relative link),
    /// replacing whatever was there.
    pub fn link_snapshot(
        &self,
        repo: &str,
        commit: &str,
        path: &str,
        etag: &str,
    ) -> Result<PathBuf> {
        let link = self.snapshot_dir(repo, commit).join(path);
        let parent = link.parent().expect("a snapshot path has a parent");
        std::fs::create_dir_all(parent).map_err(Error::io(parent))?;
        let depth = path.matches('/').count() + 2;
        let target = format!("{}blobs/{etag}", "../".repeat(depth));
        match std::fs::symlink_metadata(&link) {
            Ok(_) => std::fs::remove_file(&link).map_err(Error::io(&link))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(&link)(e)),
        }
        std::os::unix::fs::symlink(&target, &link).map_err(Error::io(&link))?;
        Ok(link)
    }

    /// Records that branch or tag `rev` pointed to `commit` (`refs/<rev>`).
    pub fn write_ref(&self, repo: &str, rev: &str, commit: &str) -> Result<()> {
        if rev == commit {
            return Ok(());
        }
        let p = self.repo_dir(repo).join("refs").join(rev);
        let parent = p.parent().expect("a ref has a parent");
        std::fs::create_dir_all(parent).map_err(Error::io(parent))?;
        std::fs::write(&p, commit).map_err(Error::io(&p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout() {
        let d = tempfile::tempdir().unwrap();
        let c = HfCache::new(d.path());
        let l = c.link_snapshot("o/n", "c0", "a/b.txt", "e1").unwrap();
        assert_eq!(l, d.path().join("models--o--n/snapshots/c0/a/b.txt"));
        assert_eq!(
            std::fs::read_link(&l).unwrap(),
            Path::new("../../../blobs/e1")
        );
        std::fs::create_dir_all(d.path().join("models--o--n/blobs")).unwrap();
        std::fs::write(c.blob_path("o/n", "e1"), b"hi").unwrap();
        assert_eq!(std::fs::read(&l).unwrap(), b"hi");
    }
}
