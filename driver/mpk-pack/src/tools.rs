//! `--backend tools`: the reference pipeline itself (mkfs.erofs 1.5 then
//! veritysetup 2.6.1, run through `duct`) on a normalised staging copy of
//! the scanned tree, for cross-checking the native writer.

use anyhow::{Context, Result, bail};
use std::path::Path;

use crate::scan::{DIR_PERM, FILE_PERM, Scan};
use mpk_erofs::{NodeId, NodeKind, Tree};
use mpk_model::Identity;

/// The mkfs.erofs banner of the pinned version.
pub const MKFS_EROFS_VERSION: &str = "mkfs.erofs 1.5";
/// The veritysetup version line prefix of the pinned version.
pub const VERITYSETUP_VERSION: &str = "veritysetup 2.6.1";

fn missing(tool: &str, e: std::io::Error) -> anyhow::Error {
    if e.kind() == std::io::ErrorKind::NotFound {
        anyhow::anyhow!(
            "`{tool}` is not installed (the tools backend needs erofs-utils 1.5 and cryptsetup 2.6.1; on Debian: apt-get install erofs-utils cryptsetup-bin)"
        )
    } else {
        anyhow::Error::new(e).context(format!("cannot run `{tool}`"))
    }
}

/// Checks that `veritysetup` is the pinned version.
pub fn check_veritysetup() -> Result<()> {
    let out = duct::cmd!("veritysetup", "--version")
        .stdout_capture()
        .stderr_capture()
        .unchecked()
        .run()
        .map_err(|e| missing("veritysetup", e))?;
    let v = String::from_utf8_lossy(&out.stdout);
    if !v.starts_with(&format!("{VERITYSETUP_VERSION} ")) {
        bail!(
            "`veritysetup --version` says `{}`; schema modelwrap-v1 needs {VERITYSETUP_VERSION}",
            v.trim()
        );
    }
    Ok(())
}

/// Copies the scanned tree into `stage` with normalised modes.
fn stage_tree(scan: &Scan, id: NodeId, dst: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let node = scan.tree.node(id);
    match &node.kind {
        NodeKind::Dir { children } => {
            if id != Tree::ROOT {
                std::fs::create_dir(dst)
                    .with_context(|| format!("cannot create `{}`", dst.display()))?;
            }
            for &c in children {
                let name =
                    std::str::from_utf8(&scan.tree.node(c).name).expect("scanned names are UTF-8");
                stage_tree(scan, c, &dst.join(name))?;
            }
            std::fs::set_permissions(dst, std::fs::Permissions::from_mode(DIR_PERM.into()))?;
        }
        NodeKind::File { .. } => {
            let src = scan.source(id);
            std::fs::copy(&src.path, dst).with_context(|| {
                format!("cannot copy `{}` to the staging folder", src.path.display())
            })?;
            std::fs::set_permissions(dst, std::fs::Permissions::from_mode(FILE_PERM.into()))?;
        }
    }
    Ok(())
}

/// Runs the reference pipeline into `out` (an existing empty file) and
/// returns the root hash.
pub fn reference_pack(scan: &Scan, identity: &Identity, out: &Path) -> Result<[u8; 32]> {
    check_veritysetup()?;
    let stage = tempfile::tempdir().context("cannot create a staging folder")?;
    stage_tree(scan, Tree::ROOT, stage.path())?;
    let uuid = identity.uuid().hyphenated().to_string();
    let mk = duct::cmd!(
        "mkfs.erofs",
        "--all-root",
        "-T0",
        format!("-U{uuid}"),
        out,
        stage.path()
    )
    .env_remove("SOURCE_DATE_EPOCH")
    .stdout_capture()
    .stderr_capture()
    .unchecked()
    .run()
    .map_err(|e| missing("mkfs.erofs", e))?;
    let banner = String::from_utf8_lossy(&mk.stdout);
    let first = banner.lines().next().unwrap_or("");
    if first != MKFS_EROFS_VERSION {
        bail!("mkfs.erofs says `{first}`; schema modelwrap-v1 needs exactly {MKFS_EROFS_VERSION}");
    }
    if !mk.status.success() {
        bail!(
            "mkfs.erofs failed: {}",
            String::from_utf8_lossy(&mk.stderr).trim()
        );
    }
    let h = std::fs::metadata(out)?.len();
    let root_tmp = tempfile::NamedTempFile::new().context("cannot create a temporary file")?;
    let vs = duct::cmd!(
        "veritysetup",
        format!("--salt={}", hex::encode(identity.salt())),
        format!("--uuid={uuid}"),
        format!("--hash-offset={h}"),
        format!("--root-hash-file={}", root_tmp.path().display()),
        "format",
        out,
        out
    )
    .stdout_capture()
    .stderr_capture()
    .unchecked()
    .run()
    .map_err(|e| missing("veritysetup", e))?;
    if !vs.status.success() {
        bail!(
            "veritysetup format failed: {}",
            String::from_utf8_lossy(&vs.stderr).trim()
        );
    }
    let text = std::fs::read_to_string(root_tmp.path())?;
    let mut root = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut root)
        .context("veritysetup wrote a malformed root hash file")?;
    Ok(root)
}
