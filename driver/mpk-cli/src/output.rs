//! Output safety: `OUT.mpk` and `OUT.info` are written under temporary
//! names in the same folder, fsynced, and renamed into place only when
//! complete; a failure at any point drops (deletes) the temporaries, so no
//! partial file ever carries the final name. Existing outputs are kept
//! unless `--force`.

use anyhow::{Context, Result, bail};
use camino::{Utf8Path, Utf8PathBuf};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;
use tempfile::NamedTempFile;

/// Temporary outputs that exist right now, removed if the process is
/// interrupted (Ctrl-C, SIGTERM, SIGHUP) before they are renamed.
static PENDING: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Installs the handler that deletes pending temporary outputs and exits
/// with status 130 on SIGINT, SIGTERM or SIGHUP. Call once, from `main`.
pub fn install_interrupt_cleanup() -> Result<()> {
    ctrlc::set_handler(|| {
        let pending = PENDING.lock().map(|p| p.clone()).unwrap_or_default();
        for p in pending {
            let _ = std::fs::remove_file(&p);
        }
        eprintln!("error: interrupted; no output was written");
        std::process::exit(130);
    })
    .context("cannot install the interrupt handler")
}

fn track(p: &std::path::Path) {
    if let Ok(mut v) = PENDING.lock() {
        v.push(p.to_path_buf());
    }
}

fn untrack(p: &std::path::Path) {
    if let Ok(mut v) = PENDING.lock() {
        v.retain(|x| x != p);
    }
}

/// A temporary file beside `path` (same folder), tracked for interrupt
/// cleanup.
pub(crate) fn temp_beside(path: &Utf8Path) -> Result<NamedTempFile> {
    let dir = match path.parent() {
        Some(p) if !p.as_str().is_empty() => p.to_owned(),
        _ => Utf8PathBuf::from("."),
    };
    temp_in(&dir, path.file_name().unwrap_or("out"))
}

/// A temporary file in `dir`, tracked for interrupt cleanup.
fn temp_in(dir: &Utf8Path, final_name: &str) -> Result<NamedTempFile> {
    let t = tempfile::Builder::new()
        .prefix(&format!(".{final_name}."))
        .suffix(".tmp")
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a temporary file in `{dir}`"))?;
    track(t.path());
    Ok(t)
}

/// Renames a finished temporary file to its final name.
pub(crate) fn publish(t: NamedTempFile, to: &Utf8Path) -> Result<()> {
    let tmp = t.path().to_path_buf();
    t.persist(to)
        .with_context(|| format!("cannot rename the finished output to `{to}`"))?;
    untrack(&tmp);
    Ok(())
}

/// The pair of output paths of one pack.
#[derive(Debug)]
pub struct Outputs {
    mpk: Utf8PathBuf,
    info: Utf8PathBuf,
    dir: Utf8PathBuf,
}

impl Outputs {
    /// Validates the output path (suffix `.ext`, existing folder, no
    /// existing outputs unless `force`).
    pub fn new(mpk: &Utf8Path, ext: &str, force: bool) -> Result<Self> {
        let info = crate::cmd_pack::info_path(mpk, ext)?;
        let dir = match mpk.parent() {
            Some(p) if !p.as_str().is_empty() => p.to_owned(),
            _ => Utf8PathBuf::from("."),
        };
        if !dir.is_dir() {
            bail!("output folder `{dir}` does not exist");
        }
        if !force {
            for p in [mpk, info.as_path()] {
                if std::fs::symlink_metadata(p).is_ok() {
                    bail!("`{p}` already exists; pass --force to replace it");
                }
            }
        }
        Ok(Self {
            mpk: mpk.to_owned(),
            info,
            dir,
        })
    }

    /// A new, empty temporary file beside the final `.mpk`.
    pub fn temp_mpk(&self) -> Result<NamedTempFile> {
        temp_in(&self.dir, self.mpk.file_name().unwrap_or("out.mpk"))
    }

    /// Fsyncs the finished image, writes the `.info`, and renames both into
    /// place (image first), then fsyncs the folder.
    pub fn commit(&self, mpk: NamedTempFile, info_text: &str) -> Result<()> {
        mpk.as_file()
            .sync_all()
            .with_context(|| format!("cannot fsync the image for `{}`", self.mpk))?;
        let mut info = tempfile::Builder::new()
            .prefix(&format!(
                ".{}.",
                self.info.file_name().unwrap_or("out.info")
            ))
            .suffix(".tmp")
            .tempfile_in(&self.dir)
            .with_context(|| format!("cannot create a temporary file in `{}`", self.dir))?;
        info.write_all(info_text.as_bytes())
            .and_then(|()| info.as_file().sync_all())
            .with_context(|| format!("cannot write `{}`", self.info))?;
        set_mode(mpk.path())?;
        set_mode(info.path())?;
        publish(mpk, &self.mpk)?;
        publish(info, &self.info)?;
        std::fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .with_context(|| format!("cannot fsync folder `{}`", self.dir))?;
        Ok(())
    }
}

/// Temporary files are created 0600; published outputs are world-readable
/// (0644), as any file a user creates would be.
pub(crate) fn set_mode(p: &std::path::Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o644))
        .with_context(|| format!("cannot set the mode of `{}`", p.display()))
}
