//! Output safety: `OUT.mpk` and `OUT.info` are written under temporary
//! names in the same folder, fsynced, and renamed into place only when
//! complete; a failure at any point drops (deletes) the temporaries, so no
//! partial file ever carries the final name. Existing outputs are kept
//! unless `--force`.

use anyhow::{Context, Result, bail};
use camino::{Utf8Path, Utf8PathBuf};
use std::io::Write;
use tempfile::NamedTempFile;

/// The pair of output paths of one pack.
#[derive(Debug)]
pub struct Outputs {
    mpk: Utf8PathBuf,
    info: Utf8PathBuf,
    dir: Utf8PathBuf,
}

impl Outputs {
    /// Validates the output path (`.mpk` suffix, existing folder, no
    /// existing outputs unless `force`).
    pub fn new(mpk: &Utf8Path, force: bool) -> Result<Self> {
        let info = crate::cmd_pack::info_path(mpk)?;
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
        let name = self.mpk.file_name().unwrap_or("out.mpk");
        tempfile::Builder::new()
            .prefix(&format!(".{name}."))
            .suffix(".tmp")
            .tempfile_in(&self.dir)
            .with_context(|| format!("cannot create a temporary file in `{}`", self.dir))
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
        mpk.persist(&self.mpk)
            .with_context(|| format!("cannot rename the image to `{}`", self.mpk))?;
        info.persist(&self.info)
            .with_context(|| format!("cannot rename to `{}`", self.info))?;
        std::fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .with_context(|| format!("cannot fsync folder `{}`", self.dir))?;
        Ok(())
    }
}

/// Temporary files are created 0600; published outputs are world-readable
/// (0644), as any file a user creates would be.
fn set_mode(p: &std::path::Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o644))
        .with_context(|| format!("cannot set the mode of `{}`", p.display()))
}
