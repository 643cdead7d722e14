//! Publishing outputs, the one way every command writes a file: the bytes
//! go into an unnamed file (`O_TMPFILE`) in the output's own folder, which
//! is fsynced and linked into place (`linkat`) only when complete, so no
//! partial file ever carries the final name, and a process killed even by
//! SIGKILL leaves nothing behind (the kernel frees an unnamed file). Where
//! the filesystem refuses `O_TMPFILE`, a named temporary
//! `.<name>.mpk-tmp.<random>` is used instead: it is removed on any error
//! and on an interrupt ([`remove_pending`]), and stale ones of the same
//! output (from a SIGKILL) are removed at the next run.
//!
//! An existing file is replaced only when asked to (`--force`); without it
//! the final link refuses to overwrite even a file that appeared meanwhile.

use anyhow::{Context, Result, bail};
use camino::{Utf8Path, Utf8PathBuf};
use nix::fcntl::{AT_FDCWD, AtFlags, OFlag};
use nix::sys::stat::Mode;
use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::Mutex;

/// Named temporaries that exist right now, removed if the process is
/// interrupted (Ctrl-C, SIGTERM, SIGHUP) before they are published.
static PENDING: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// An output that exists already and may not be replaced.
#[derive(Debug, thiserror::Error)]
#[error("`{0}` already exists; pass --force to replace it")]
pub struct Exists(pub Utf8PathBuf);

/// The infix of named temporaries: `.<final name>.mpk-tmp.<random>`.
const TMP_INFIX: &str = ".mpk-tmp.";

/// Deletes the named temporaries that exist right now: for a front end's
/// interrupt handler, just before it exits. (Unnamed ones need nothing.)
pub fn remove_pending() {
    let pending = PENDING.lock().map(|p| p.clone()).unwrap_or_default();
    for p in pending {
        let _ = std::fs::remove_file(&p);
    }
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

/// The folder holding `path` (`.` for a bare name).
fn folder_of(path: &Utf8Path) -> Utf8PathBuf {
    match path.parent() {
        Some(p) if !p.as_str().is_empty() => p.to_owned(),
        _ => Utf8PathBuf::from("."),
    }
}

/// A named temporary beside `final_name` in `dir`, tracked for interrupt
/// cleanup and deleted when dropped.
fn named_temp(dir: &Utf8Path, final_name: &str) -> Result<tempfile::NamedTempFile> {
    let t = tempfile::Builder::new()
        .prefix(&format!(".{final_name}{TMP_INFIX}"))
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a temporary file in `{dir}`"))?;
    track(t.path());
    Ok(t)
}

/// Removes `.<final_name>.mpk-tmp.*` left in `dir` by a killed run.
fn remove_stale(dir: &Utf8Path, final_name: &str) {
    let prefix = format!(".{final_name}{TMP_INFIX}");
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(n) = name.to_str() else { continue };
        let is_file = e.file_type().is_ok_and(|t| t.is_file());
        if is_file && n.starts_with(&prefix) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// An output being written: unnamed until [`Pending::publish`].
#[derive(Debug)]
pub struct Pending {
    file: File,
    dir: Utf8PathBuf,
    /// The named temporary, where `O_TMPFILE` was refused.
    named: Option<tempfile::TempPath>,
}

impl Pending {
    /// A new, empty output that will be published as `path` (in its
    /// folder, so the final link never crosses filesystems). Stale named
    /// temporaries of the same output are removed first.
    pub fn new(path: &Utf8Path) -> Result<Self> {
        let (dir, name) = Self::place(path)?;
        match nix::fcntl::open(
            dir.as_std_path(),
            OFlag::O_TMPFILE | OFlag::O_RDWR | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o600),
        ) {
            Ok(fd) => Ok(Self {
                file: File::from(fd),
                dir,
                named: None,
            }),
            // Filesystems without O_TMPFILE answer EOPNOTSUPP (or EISDIR,
            // on kernels that do not know the flag).
            Err(nix::errno::Errno::EOPNOTSUPP | nix::errno::Errno::EISDIR) => {
                Self::named(dir, name)
            }
            Err(e) => {
                Err(e).with_context(|| format!("cannot create a file in output folder `{dir}`"))
            }
        }
    }

    /// The folder and file name of `path`, after removing stale named
    /// temporaries of it.
    fn place(path: &Utf8Path) -> Result<(Utf8PathBuf, &str)> {
        let dir = folder_of(path);
        let name = path
            .file_name()
            .with_context(|| format!("output `{path}` names no file"))?;
        remove_stale(&dir, name);
        Ok((dir, name))
    }

    /// The fallback: a named temporary `.<name>.mpk-tmp.<random>` in `dir`.
    fn named(dir: Utf8PathBuf, name: &str) -> Result<Self> {
        let (file, named) = named_temp(&dir, name)?.into_parts();
        Ok(Self {
            file,
            dir,
            named: Some(named),
        })
    }

    /// The file, for writing.
    pub fn as_file(&self) -> &File {
        &self.file
    }

    /// A path another process can open the file by (a `/proc` link of this
    /// process for an unnamed file).
    pub fn path(&self) -> PathBuf {
        match &self.named {
            Some(p) => p.to_path_buf(),
            None => PathBuf::from(format!(
                "/proc/{}/fd/{}",
                std::process::id(),
                self.file.as_raw_fd()
            )),
        }
    }

    /// Fsyncs the file, makes it world-readable (0644, as any file a user
    /// creates) and gives it the name `to` (in the folder it was created
    /// in), replacing an existing file only with `replace`. Then fsyncs
    /// the folder.
    pub fn publish(self, to: &Utf8Path, replace: bool) -> Result<()> {
        self.publish_mode(to, replace, 0o644)
    }

    /// [`Pending::publish`] with another mode (0600 for a key file: it is
    /// created 0600 and never had another).
    pub fn publish_mode(mut self, to: &Utf8Path, replace: bool, mode: u32) -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        self.file
            .sync_all()
            .with_context(|| format!("cannot fsync `{to}`"))?;
        self.file
            .set_permissions(std::fs::Permissions::from_mode(mode))
            .with_context(|| format!("cannot set the mode of `{to}`"))?;
        let exists = |e: &std::io::Error| e.kind() == std::io::ErrorKind::AlreadyExists;
        match (self.named.take(), replace) {
            (Some(named), true) => {
                let tmp = named.to_path_buf();
                let renamed = named.persist(to).map_err(|e| e.error);
                untrack(&tmp);
                renamed.with_context(|| format!("cannot rename the finished output to `{to}`"))?;
            }
            (Some(named), false) => {
                let tmp = named.to_path_buf();
                let linked = std::fs::hard_link(&tmp, to);
                drop(named);
                untrack(&tmp);
                match linked {
                    Err(e) if exists(&e) => return Err(Exists(to.to_owned()).into()),
                    r => r.with_context(|| format!("cannot name the finished output `{to}`"))?,
                }
            }
            (None, false) => match link_unnamed(&self.file, to) {
                Err(e) if exists(&e) => return Err(Exists(to.to_owned()).into()),
                r => r.with_context(|| format!("cannot name the finished output `{to}`"))?,
            },
            (None, true) => {
                // Link under a temporary name, then rename over the old
                // file: readers see the old or the new file, never none.
                let name = to.file_name().unwrap_or("out");
                let tmp = loop {
                    let t = self
                        .dir
                        .join(format!(".{name}{TMP_INFIX}{:016x}", rand_suffix()));
                    match link_unnamed(&self.file, &t) {
                        Err(e) if exists(&e) => continue,
                        r => r.with_context(|| format!("cannot name the finished output `{t}`"))?,
                    }
                    break t;
                };
                track(tmp.as_std_path());
                let renamed = std::fs::rename(&tmp, to);
                if renamed.is_err() {
                    let _ = std::fs::remove_file(&tmp);
                }
                untrack(tmp.as_std_path());
                renamed.with_context(|| format!("cannot rename the finished output to `{to}`"))?;
            }
        }
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .with_context(|| format!("cannot fsync folder `{}`", self.dir))
    }
}

impl Drop for Pending {
    /// An unpublished named temporary is deleted (by its `TempPath`) and
    /// forgotten by the interrupt cleanup.
    fn drop(&mut self) {
        if let Some(n) = &self.named {
            untrack(n);
        }
    }
}

/// Gives the unnamed `file` the name `to`.
fn link_unnamed(file: &File, to: &Utf8Path) -> std::io::Result<()> {
    nix::unistd::linkat(
        AT_FDCWD,
        format!("/proc/self/fd/{}", file.as_raw_fd()).as_str(),
        AT_FDCWD,
        to.as_std_path(),
        AtFlags::AT_SYMLINK_FOLLOW,
    )
    .map_err(std::io::Error::from)
}

/// 64 random bits for temporary names.
fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now())
}

/// Writes `bytes` to `path` through a [`Pending`] output: complete or not
/// at all, replacing an existing file only with `replace`; mode 0644.
pub fn write_file(path: &Utf8Path, bytes: &[u8], replace: bool) -> Result<()> {
    write_file_mode(path, bytes, replace, 0o644)
}

/// [`write_file`] with another mode.
pub fn write_file_mode(path: &Utf8Path, bytes: &[u8], replace: bool, mode: u32) -> Result<()> {
    let p = Pending::new(path)?;
    p.as_file()
        .write_all(bytes)
        .with_context(|| format!("cannot write `{path}`"))?;
    p.publish_mode(path, replace, mode)
}

/// The pair of output paths of one pack: the image and its `.info`.
#[derive(Debug)]
pub struct Outputs {
    mpk: Utf8PathBuf,
    info: Utf8PathBuf,
    force: bool,
}

impl Outputs {
    /// Validates the output path (suffix `.ext`, existing folder, no
    /// existing outputs unless `force`) before any work starts.
    pub fn new(mpk: &Utf8Path, ext: &str, force: bool) -> Result<Self> {
        let info = info_path(mpk, ext)?;
        let dir = folder_of(mpk);
        if !dir.is_dir() {
            bail!("output folder `{dir}` does not exist");
        }
        if !force {
            for p in [mpk, info.as_path()] {
                if std::fs::symlink_metadata(p).is_ok() {
                    return Err(Exists(p.to_owned()).into());
                }
            }
        }
        Ok(Self {
            mpk: mpk.to_owned(),
            info,
            force,
        })
    }

    /// A new, empty, unnamed image file in the output folder.
    pub fn temp_mpk(&self) -> Result<Pending> {
        Pending::new(&self.mpk)
    }

    /// Publishes the finished image, then the `.info` holding `info_text`
    /// (image first: an `.info` never names an image that is not there).
    pub fn commit(&self, mpk: Pending, info_text: &str) -> Result<()> {
        mpk.publish(&self.mpk, self.force)?;
        write_file(&self.info, info_text.as_bytes(), self.force)
    }
}

/// Checks an output path ends in `.ext` (`mpk`, or `empk` for an
/// encrypted pack) and returns its `.info` sibling.
pub fn info_path(mpk: &Utf8Path, ext: &str) -> Result<Utf8PathBuf> {
    if mpk.extension() != Some(ext) || mpk.file_stem().is_none_or(str::is_empty) {
        bail!("output `{mpk}` must end in `.{ext}`");
    }
    Ok(mpk.with_extension("info"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Utf8Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    fn tmpdir() -> (tempfile::TempDir, Utf8PathBuf) {
        let t = tempfile::tempdir().unwrap();
        let p = Utf8PathBuf::from_path_buf(t.path().to_owned()).unwrap();
        (t, p)
    }

    #[test]
    fn unnamed_outputs_appear_only_when_published() {
        let (_t, dir) = tmpdir();
        let out = dir.join("a.bin");
        let p = Pending::new(&out).unwrap();
        assert!(p.named.is_none(), "this filesystem has O_TMPFILE");
        p.as_file().write_all(b"one").unwrap();
        assert_eq!(names(&dir), Vec::<String>::new());
        p.publish(&out, false).unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), b"one");
        // No clobbering without `replace`; the old file stays.
        let e = write_file(&out, b"two", false).unwrap_err();
        assert!(e.to_string().contains("--force"), "{e}");
        assert_eq!(std::fs::read(&out).unwrap(), b"one");
        write_file(&out, b"two", true).unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), b"two");
        assert_eq!(names(&dir), ["a.bin"]);
        // Dropped unpublished: nothing.
        drop(Pending::new(&dir.join("b.bin")).unwrap());
        assert_eq!(names(&dir), ["a.bin"]);
    }

    #[test]
    fn the_named_fallback_cleans_up_after_itself_and_killed_runs() {
        let (_t, dir) = tmpdir();
        let out = dir.join("m.mpk");
        // What a SIGKILLed run on a filesystem without O_TMPFILE leaves;
        // other files are left alone.
        std::fs::write(dir.join(".m.mpk.mpk-tmp.dead"), b"stale").unwrap();
        std::fs::write(dir.join(".other.mpk-tmp.x"), b"not ours").unwrap();
        let (d, name) = Pending::place(&out).unwrap();
        assert_eq!(names(&dir), [".other.mpk-tmp.x"]);
        let p = Pending::named(d.clone(), name).unwrap();
        p.as_file().write_all(b"new").unwrap();
        let seen = names(&dir);
        assert_eq!(seen.len(), 2, "{seen:?}");
        assert!(p.path().starts_with(dir.as_std_path()));
        p.publish(&out, false).unwrap();
        assert_eq!(names(&dir), [".other.mpk-tmp.x", "m.mpk"]);
        // No clobbering; the temporary is removed either way.
        let p = Pending::named(d.clone(), name).unwrap();
        let e = p.publish(&out, false).unwrap_err();
        assert!(e.to_string().contains("--force"), "{e}");
        assert_eq!(names(&dir), [".other.mpk-tmp.x", "m.mpk"]);
        assert_eq!(std::fs::read(&out).unwrap(), b"new");
        let p = Pending::named(d, name).unwrap();
        p.as_file().write_all(b"newer").unwrap();
        p.publish(&out, true).unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), b"newer");
        assert_eq!(names(&dir), [".other.mpk-tmp.x", "m.mpk"]);
        // Nothing of this test is left for the interrupt cleanup (other
        // tests of this process may have their own entries meanwhile).
        let pending = PENDING.lock().unwrap().clone();
        assert!(
            pending.iter().all(|p| !p.starts_with(dir.as_std_path())),
            "{pending:?}"
        );
    }
}
