//! Turns a model folder into an [`mpk_erofs::Tree`] plus the source of
//! every file, applying mpk's documented normalisation: files 0644,
//! folders 0755, owner root, no xattrs, mtimes ignored, a top-level
//! `.cache` folder left out, symlinks followed to the regular file they
//! name (only where [`Symlinks`] allows), hardlinks packed as separate
//! files. Anything that cannot be represented faithfully is refused with
//! the offending path.

use anyhow::{Context, Result, bail};
use mpk_erofs::{NodeId, Tree};
use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Mode bits of every packed regular file.
pub const FILE_PERM: u16 = 0o644;
/// Mode bits of every packed folder, the root included.
pub const DIR_PERM: u16 = 0o755;

/// A file whose bytes are read from elsewhere than a local path (the Hub,
/// for `mpk reproduce` without disk space for the weights).
pub trait Remote: std::fmt::Debug + Send + Sync {
    /// A reader of bytes `[from, to)`.
    fn range(&self, from: u64, to: u64) -> Box<dyn std::io::Read + Send>;
    /// Reads exactly `buf.len()` bytes at `off`.
    fn read_exact_at(&self, buf: &mut [u8], off: u64) -> std::io::Result<()>;
}

/// Where a file's bytes come from and what it looked like when scanned.
#[derive(Debug, Clone)]
pub struct Source {
    /// The path to open (symlinks already resolved to a regular file).
    pub path: PathBuf,
    /// Size at scan time.
    pub size: u64,
    /// What the file looked like at scan time, to detect a file that
    /// changes while it is packed.
    pub stamp: Stamp,
    /// Read from here instead of `path` (which then only names the file in
    /// messages); such bytes are never cloned and have no stamp to check.
    pub remote: Option<std::sync::Arc<dyn Remote>>,
}

/// Device, inode, mtime and ctime of a file. The ctime is what catches a
/// rewrite whose writer put the size and mtime back (`touch -r`, `utimes`):
/// no unprivileged call sets it, every write and every `utimes` moves it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stamp {
    dev: u64,
    ino: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Source {
    /// The stamp of a file's metadata.
    pub fn stamp_of(m: &Metadata) -> Stamp {
        Stamp {
            dev: m.dev(),
            ino: m.ino(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        }
    }
}

/// Which symlinks a scan follows. A folder prepared by someone else must
/// not pull an arbitrary host file (a private key, say) into an image that
/// is then published, so by default a link is followed only when its final
/// target (every hop resolved) stays inside the folder, or, when the folder
/// lies inside a Hugging Face cache snapshot
/// (`…/models--ORG--NAME/snapshots/REV/…`), inside that repository's own
/// `blobs/` folder, where the snapshot's links point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Symlinks {
    /// Inside the folder or its snapshot's `blobs/` only (the default).
    #[default]
    Contained,
    /// Any regular file on the host (`--allow-external-symlinks`).
    Any,
}

/// The folders a contained symlink may end in: the scanned folder itself
/// and, for a snapshot folder (or a folder inside one), its repository's
/// `blobs/`. All canonical.
fn link_roots(dir: &Path) -> Result<Vec<PathBuf>> {
    let dir = std::fs::canonicalize(dir)
        .with_context(|| format!("cannot resolve `{}`", dir.display()))?;
    let mut roots = vec![dir.clone()];
    let mut a = dir.as_path();
    while let Some(parent) = a.parent() {
        let repo = parent.parent();
        let repo_name = repo.and_then(|r| r.file_name()).and_then(|n| n.to_str());
        if parent.file_name().is_some_and(|n| n == "snapshots")
            && repo_name.is_some_and(|n| {
                ["models--", "datasets--", "spaces--"]
                    .iter()
                    .any(|k| n.starts_with(k))
            })
        {
            let blobs = repo.expect("has a name").join("blobs");
            if let Ok(b) = std::fs::canonicalize(&blobs) {
                roots.push(b);
            }
            break;
        }
        a = parent;
    }
    Ok(roots)
}

/// A scanned folder.
#[derive(Debug)]
pub struct Scan {
    /// Names, modes and sizes.
    pub tree: Tree,
    /// Per node id: the file's source (`None` for folders).
    pub sources: Vec<Option<Source>>,
}

impl Scan {
    /// The source of a file node.
    pub fn source(&self, id: NodeId) -> &Source {
        self.sources[id.0]
            .as_ref()
            .expect("a file node has a source")
    }
}

/// Scans `dir`, following the symlinks `symlinks` allows.
pub fn scan(dir: &Path, symlinks: Symlinks) -> Result<Scan> {
    let meta = std::fs::metadata(dir)
        .with_context(|| format!("cannot read model folder `{}`", dir.display()))?;
    if !meta.is_dir() {
        bail!("`{}` is not a folder", dir.display());
    }
    let roots = match symlinks {
        Symlinks::Contained => Some(link_roots(dir)?),
        Symlinks::Any => None,
    };
    let mut s = Scan {
        tree: Tree::new(DIR_PERM),
        sources: vec![None],
    };
    walk(&mut s, dir, Tree::ROOT, true, roots.as_deref())?;
    Ok(s)
}

/// Refuses a symlink `path` whose resolved target `real` lies outside every
/// root in `roots` (`None`: any target is allowed).
fn check_link(path: &Path, target: &Path, real: &Path, roots: Option<&[PathBuf]>) -> Result<()> {
    let Some(roots) = roots else {
        return Ok(());
    };
    if roots.iter().any(|r| real.starts_with(r)) {
        return Ok(());
    }
    bail!(
        "cannot pack `{}`: it is a symlink to `{}` ({}), outside the folder{}; \
         pass --allow-external-symlinks to follow links anywhere on this machine",
        path.display(),
        target.display(),
        real.display(),
        if roots.len() > 1 {
            " and its snapshot's blobs/"
        } else {
            ""
        }
    )
}

fn walk(
    s: &mut Scan,
    dir: &Path,
    node: NodeId,
    top: bool,
    roots: Option<&[PathBuf]>,
) -> Result<()> {
    let rd = std::fs::read_dir(dir).with_context(|| format!("cannot list `{}`", dir.display()))?;
    let mut entries = Vec::new();
    for e in rd {
        let e = e.with_context(|| format!("cannot list `{}`", dir.display()))?;
        entries.push(e);
    }
    // Deterministic order for errors; the planner sorts byte-wise anyway.
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let path = e.path();
        let name = e.file_name();
        let Some(name_str) = name.to_str() else {
            bail!(
                "cannot pack `{}`: the name is not valid UTF-8",
                path.display()
            );
        };
        let lmeta = std::fs::symlink_metadata(&path)
            .with_context(|| format!("cannot stat `{}`", path.display()))?;
        let ft = lmeta.file_type();
        if top && name_str == ".cache" && ft.is_dir() {
            continue; // download-client metadata, which Modelwrap deletes too
        }
        let meta = if ft.is_symlink() {
            let target = std::fs::read_link(&path).unwrap_or_default();
            match std::fs::metadata(&path) {
                Ok(m) if m.is_file() => m,
                Ok(m) if m.is_dir() => bail!(
                    "cannot pack `{}`: it is a symlink to a folder (`{}`); only symlinks to regular files are followed",
                    path.display(),
                    target.display()
                ),
                Ok(_) => bail!(
                    "cannot pack `{}`: it is a symlink to a special file (`{}`)",
                    path.display(),
                    target.display()
                ),
                Err(err) if err.raw_os_error() == Some(40) => bail!(
                    "cannot pack `{}`: symlink loop (`{}`)",
                    path.display(),
                    target.display()
                ),
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => bail!(
                    "cannot pack `{}`: dangling symlink (its target `{}` does not exist)",
                    path.display(),
                    target.display()
                ),
                Err(err) => {
                    return Err(err)
                        .with_context(|| format!("cannot follow symlink `{}`", path.display()));
                }
            }
        } else {
            lmeta
        };
        if meta.is_dir() {
            let child = s
                .tree
                .add_dir(node, name_str.as_bytes(), DIR_PERM)
                .with_context(|| format!("in `{}`", dir.display()))?;
            s.sources.push(None);
            walk(s, &path, child, false, roots)?;
        } else if meta.is_file() {
            // The path opened later: every symlink resolved, so what was
            // checked is what is read.
            let real = std::fs::canonicalize(&path)
                .with_context(|| format!("cannot resolve `{}`", path.display()))?;
            if ft.is_symlink() {
                let target = std::fs::read_link(&path).unwrap_or_default();
                check_link(&path, &target, &real, roots)?;
            }
            s.tree
                .add_file(node, name_str.as_bytes(), FILE_PERM, meta.len())
                .with_context(|| format!("in `{}`", dir.display()))?;
            s.sources.push(Some(Source {
                path: real,
                size: meta.len(),
                stamp: Source::stamp_of(&meta),
                remote: None,
            }));
        } else {
            bail!(
                "cannot pack `{}`: it is a special file (fifo, socket or device); only regular files and folders can be packed",
                path.display()
            );
        }
    }
    Ok(())
}
