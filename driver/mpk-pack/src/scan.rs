//! Turns a model folder into an [`mpk_erofs::Tree`] plus the source of
//! every file, applying mpk's documented normalisation: files 0644,
//! folders 0755, owner root, no xattrs, mtimes ignored, a top-level
//! `.cache` folder left out, symlinks followed to the regular file they
//! name, hardlinks packed as separate files. Anything that cannot be
//! represented faithfully is refused with the offending path.

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
    /// (device, inode, mtime seconds, mtime nanoseconds) at scan time, to
    /// detect a file that changes while it is packed.
    pub stamp: (u64, u64, i64, i64),
    /// Read from here instead of `path` (which then only names the file in
    /// messages); such bytes are never cloned and have no stamp to check.
    pub remote: Option<std::sync::Arc<dyn Remote>>,
}

impl Source {
    /// The stamp of a file's metadata.
    pub fn stamp_of(m: &Metadata) -> (u64, u64, i64, i64) {
        (m.dev(), m.ino(), m.mtime(), m.mtime_nsec())
    }
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

/// Scans `dir`.
pub fn scan(dir: &Path) -> Result<Scan> {
    let meta = std::fs::metadata(dir)
        .with_context(|| format!("cannot read model folder `{}`", dir.display()))?;
    if !meta.is_dir() {
        bail!("`{}` is not a folder", dir.display());
    }
    let mut s = Scan {
        tree: Tree::new(DIR_PERM),
        sources: vec![None],
    };
    walk(&mut s, dir, Tree::ROOT, true)?;
    Ok(s)
}

fn walk(s: &mut Scan, dir: &Path, node: NodeId, top: bool) -> Result<()> {
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
            walk(s, &path, child, false)?;
        } else if meta.is_file() {
            s.tree
                .add_file(node, name_str.as_bytes(), FILE_PERM, meta.len())
                .with_context(|| format!("in `{}`", dir.display()))?;
            s.sources.push(Some(Source {
                path: std::fs::canonicalize(&path).unwrap_or(path.clone()),
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
