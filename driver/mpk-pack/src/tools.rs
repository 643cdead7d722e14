//! `--backend tools`: the reference pipeline itself (the schema's
//! mkfs.erofs, then veritysetup, run through `duct`) on a normalised
//! staging copy of the scanned tree, for cross-checking the native writer.
//!
//! `modelwrap-v1` runs `mkfs.erofs` from PATH and needs 1.5;
//! `modelwrap-v2` runs `$MPK_MKFS_EROFS_186` when set (Debian bookworm has
//! no 1.8.6: `.ci/run` unpacks trixie's into a private prefix), else
//! `mkfs.erofs` from PATH, and needs 1.8.6. Both run `veritysetup` from
//! PATH: 2.6.1, or for v2 also 2.7.5 (Modelwrap's schema-2 image; its
//! output for these parameters is the same).

use anyhow::{Context, Result, bail};
use std::path::Path;

use crate::Schema;
use crate::scan::{DIR_PERM, FILE_PERM, Scan};
use mpk_erofs::{NodeId, NodeKind, Tree};
use mpk_model::Identity;

/// The mkfs.erofs banner of the version `modelwrap-v1` is defined by.
pub const MKFS_EROFS_VERSION: &str = "mkfs.erofs 1.5";
/// The mkfs.erofs banner of the version `modelwrap-v2` is defined by.
pub const MKFS_EROFS_186_VERSION: &str = "mkfs.erofs 1.8.6";
/// The veritysetup version line prefix of the pinned version.
pub const VERITYSETUP_VERSION: &str = "veritysetup 2.6.1";
/// Modelwrap's schema-2 veritysetup (accepted for `modelwrap-v2`).
pub const VERITYSETUP_275_VERSION: &str = "veritysetup 2.7.5";
/// Where `modelwrap-v2`'s mkfs.erofs 1.8.6 is found when not on PATH.
pub const MKFS_EROFS_186_ENV: &str = "MPK_MKFS_EROFS_186";

/// The mkfs.erofs to run for `schema`, its banner and its extra arguments.
fn mkfs_for(schema: Schema) -> (std::ffi::OsString, &'static str, Vec<String>) {
    match schema {
        Schema::ModelwrapV1 => ("mkfs.erofs".into(), MKFS_EROFS_VERSION, Vec::new()),
        Schema::ModelwrapV2 => {
            let cpus = std::thread::available_parallelism().map_or(1, usize::from);
            (
                std::env::var_os(MKFS_EROFS_186_ENV).unwrap_or_else(|| "mkfs.erofs".into()),
                MKFS_EROFS_186_VERSION,
                vec!["-b4096".into(), format!("--workers={cpus}")],
            )
        }
    }
}

/// The veritysetup versions `schema` accepts.
fn veritysetup_for(schema: Schema) -> &'static [&'static str] {
    match schema {
        Schema::ModelwrapV1 => &[VERITYSETUP_VERSION],
        Schema::ModelwrapV2 => &[VERITYSETUP_VERSION, VERITYSETUP_275_VERSION],
    }
}

fn missing(tool: &str, e: std::io::Error) -> anyhow::Error {
    if e.kind() == std::io::ErrorKind::NotFound {
        anyhow::anyhow!(
            "`{tool}` is not installed (the tools backend needs erofs-utils 1.5 (modelwrap-v1) or 1.8.6 (modelwrap-v2, from ${MKFS_EROFS_186_ENV} or PATH) and cryptsetup 2.6.1; on Debian bookworm: apt-get install erofs-utils cryptsetup-bin)"
        )
    } else {
        anyhow::Error::new(e).context(format!("cannot run `{tool}`"))
    }
}

/// Checks that `veritysetup` is a version `schema` accepts.
pub fn check_veritysetup(schema: Schema) -> Result<()> {
    let out = duct::cmd!("veritysetup", "--version")
        .stdout_capture()
        .stderr_capture()
        .unchecked()
        .run()
        .map_err(|e| missing("veritysetup", e))?;
    let v = String::from_utf8_lossy(&out.stdout);
    let ok = veritysetup_for(schema);
    if !ok.iter().any(|want| v.starts_with(&format!("{want} "))) {
        bail!(
            "`veritysetup --version` says `{}`; schema {schema} needs {}",
            v.trim(),
            ok.join(" or ")
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
pub fn reference_pack(
    scan: &Scan,
    identity: &Identity,
    schema: Schema,
    out: &Path,
) -> Result<[u8; 32]> {
    check_veritysetup(schema)?;
    let (mkfs, banner_want, extra) = mkfs_for(schema);
    let stage = tempfile::tempdir().context("cannot create a staging folder")?;
    stage_tree(scan, Tree::ROOT, stage.path())?;
    let uuid = identity.uuid().hyphenated().to_string();
    let mut args: Vec<std::ffi::OsString> = vec![
        "--all-root".into(),
        "-T0".into(),
        format!("-U{uuid}").into(),
    ];
    args.extend(extra.into_iter().map(Into::into));
    args.push(out.into());
    args.push(stage.path().into());
    let mk = duct::cmd(&mkfs, args)
        .env_remove("SOURCE_DATE_EPOCH")
        .stdout_capture()
        .stderr_capture()
        .unchecked()
        .run()
        .map_err(|e| missing(&mkfs.to_string_lossy(), e))?;
    let banner = String::from_utf8_lossy(&mk.stdout);
    let first = banner.lines().next().unwrap_or("");
    if first != banner_want {
        bail!("mkfs.erofs says `{first}`; schema {schema} needs exactly {banner_want}");
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
