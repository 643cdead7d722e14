//! `build`: a Hub model at a commit becomes `OUTDIR/<org>/<name>/<commit>.mpk`
//! (or `.empk`), `.info`, `.manifest.json` and one deployment document per
//! base image: lock (or load the lock) → fetch into the Hugging Face cache,
//! verified → pack the cached blobs in place (named by the lock),
//! every file re-hashed against the lock in the same pass → manifest →
//! deployments. All or nothing. (Feature `hub`.)

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use camino::{Utf8Path, Utf8PathBuf};
use mpk_crypt::MasterKey;
use mpk_hub::fetch::{Progress, fetch_lock, lock_repo};
use mpk_hub::names::{Etag, RepoId, Revision};
use mpk_hub::{HfCache, Hub, Lock};
use mpk_model::Identity;
use serde::Serialize;

use crate::Schema;
use crate::pack::{Backend, EncryptionReport, FileReport, PackInput, PackOptions};

/// Resolves the lock `build`/`reproduce` work from; without a lock file,
/// locks now (writing to `cache` only when one is given).
pub fn resolve_lock(
    hub: &Hub,
    cache: Option<&HfCache>,
    repo_arg: &str,
    lock: Option<&Utf8Path>,
    include: Vec<String>,
    events: Progress<'_>,
) -> Result<Lock> {
    let (repo, rev) = split_repo(repo_arg);
    let Some(path) = lock else {
        let include = (!include.is_empty()).then_some(include);
        return lock_repo(hub, cache, repo, rev.unwrap_or("main"), include, events)
            .with_context(|| format!("cannot lock {repo_arg}"));
    };
    let lock = Lock::load(path.as_std_path())?;
    if repo != lock.repo() {
        bail!("`{path}` locks {}, not {repo}", lock.repo());
    }
    if let Some(rev) = rev {
        if rev != lock.commit() {
            if mpk_hub::oid::is_hex(rev, 40) {
                bail!(
                    "`{path}` pins commit {}, but commit {rev} was asked for",
                    lock.commit()
                );
            }
            let now = hub
                .revision(&RepoId::parse(repo)?, &Revision::parse(rev)?)
                .with_context(|| format!("cannot resolve {repo}@{rev}"))?;
            if now.as_str() != lock.commit() {
                return Err(mpk_hub::Error::RevisionMoved {
                    repo: repo.into(),
                    rev: rev.into(),
                    hub: now.to_string(),
                    lock: lock.commit().into(),
                }
                .into());
            }
        }
    }
    Ok(lock)
}

/// The manifest beside a built image.
#[derive(Debug, Serialize)]
pub struct Manifest {
    /// `mpk-manifest/1`.
    pub manifest: &'static str,
    /// The model identity.
    pub identity: String,
    /// The reference (`.info` contents).
    pub reference: String,
    /// Image schema.
    pub schema: Schema,
    /// SHA-256 of the canonical lock.
    pub lock_digest: String,
    /// The lock's include list.
    pub include: Option<Vec<String>>,
    /// Per file, depth-first in byte order of names.
    pub files: Vec<FileReport>,
    /// With `--encrypt`: the container (its `encrypted_reference` is what
    /// `<commit>.info` holds; `reference` above stays the public one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encryption: Option<EncryptionReport>,
    /// mpk version.
    pub mpk_version: &'static str,
}

/// What `build` makes: a lock's model fetched, packed and measured.
pub struct BuildOptions {
    /// `ORG/NAME[@REV]` (REV: branch, tag or commit; default `main`, or
    /// the lock's).
    pub repo: String,
    /// Output folder; files go to `<org>/<name>/<commit>.*` below it.
    pub output: Utf8PathBuf,
    /// Use this lock instead of locking now.
    pub lock: Option<Utf8PathBuf>,
    /// Pin only the files these patterns select (without `lock`).
    pub include: Vec<String>,
    /// Hashing threads (`None`: all cores).
    pub threads: Option<usize>,
    /// Replace existing outputs.
    pub force: bool,
    /// The schema (which mkfs.erofs the image is byte-identical to).
    pub schema: Schema,
    /// Base image folders; a deployment document is written for each.
    pub bases: Vec<PathBuf>,
    /// With a key: `<commit>.empk` instead of `<commit>.mpk`.
    pub key: Option<MasterKey>,
}

/// What `build` published.
pub struct Built {
    /// The manifest.
    pub manifest: Manifest,
    /// Its JSON text, as written to `<commit>.manifest.json`.
    pub manifest_json: String,
}

/// Locks (or loads the lock), fetches into the cache, packs with every
/// file re-hashed against the lock, and writes the manifest and one
/// deployment document per base image: all or nothing.
pub fn build(
    a: BuildOptions,
    hub: &Hub,
    cache: &HfCache,
    events: Progress<'_>,
    progress: &dyn crate::Progress,
) -> Result<Built> {
    let lock = resolve_lock(
        hub,
        Some(cache),
        &a.repo,
        a.lock.as_deref(),
        a.include,
        &mut *events,
    )?;
    fetch_lock(hub, cache, &lock, events)
        .with_context(|| format!("cannot fetch {}", lock.identity))?;
    let identity: Identity = lock.identity.parse()?;
    let base = documents_base(&a.output, &lock, a.force)?;
    // Packed straight from the verified blobs, named by the lock: no
    // folder of links whose targets a folder scan would have to trust.
    let repo = lock.repo_id()?;
    let blobs = lock
        .files
        .iter()
        .map(|f| Ok(cache.blob_path(&repo, &Etag::parse(f.etag())?)))
        .collect::<Result<Vec<_>>>()?;
    let (files, _) = crate::reproduce::blob_scan(&lock, &blobs)?;
    let encrypt = a.key.is_some();
    // The single pass re-hashes every file; they must still be what the
    // lock (and so the Hub) says, or nothing is renamed into place.
    let expected = lock
        .files
        .iter()
        .map(|f| (f.path.clone(), f.sha256.clone()))
        .collect();
    let options = PackOptions {
        input: PackInput::Files(files),
        identity,
        schema: a.schema,
        output: base.with_extension(if encrypt { "empk" } else { "mpk" }),
        threads: a.threads,
        force: a.force,
        backend: Backend::Native,
        hash_files: true,
        key: a.key,
        expected: Some(expected),
    };
    let report = crate::pack::pack(options, progress)
        .context("the fetched files changed between their verification and packing")?;
    let m = Manifest {
        manifest: "mpk-manifest/1",
        identity: report.identity.clone(),
        reference: report.reference.clone(),
        schema: a.schema,
        lock_digest: lock.digest(),
        include: lock.include.clone(),
        files: report.files,
        mpk_version: env!("CARGO_PKG_VERSION"),
        encryption: report.encryption,
    };
    publish(
        m,
        &base,
        &a.bases,
        &["mpk", "empk", "info", "manifest.json"],
    )
}

/// `OUTDIR/<org>/<name>/<commit>`, the stem of a lock's documents (its
/// folder created); an existing manifest is replaced only with `force`.
fn documents_base(output: &Utf8Path, lock: &Lock, force: bool) -> Result<Utf8PathBuf> {
    let (org, name) = lock.repo().split_once('/').expect("validated repo");
    let dir = output.join(org).join(name);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create `{dir}`"))?;
    let base = dir.join(lock.commit());
    let manifest_path = base.with_extension("manifest.json");
    if !force && manifest_path.exists() {
        bail!("`{manifest_path}` already exists; pass --force to replace it");
    }
    Ok(base)
}

/// Writes `<base>.manifest.json` and one deployment document per base
/// image. All or nothing: on an error, what this run published at `base`
/// (the extensions `ours`, and the deployments written so far) is removed.
fn publish(m: Manifest, base: &Utf8Path, bases: &[PathBuf], ours: &[&str]) -> Result<Built> {
    let manifest_path = base.with_extension("manifest.json");
    let mut text = serde_json::to_string_pretty(&m)?;
    text.push('\n');
    let written = write_atomic(&manifest_path, text.as_bytes())
        .and_then(|()| write_deployments(bases, base, &manifest_path));
    if let Err(e) = written {
        // A base image whose inputs do not match its image.json must not
        // leave a half-published build behind.
        for ext in ours {
            let _ = std::fs::remove_file(base.with_extension(ext));
        }
        return Err(e.context("nothing was kept"));
    }
    Ok(Built {
        manifest: m,
        manifest_json: text,
    })
}

/// Where [`publish_reproduced`] writes, and what else.
#[derive(Debug, Clone)]
pub struct DocumentOptions {
    /// Output folder; files go to `<org>/<name>/<commit>.*` below it.
    pub output: Utf8PathBuf,
    /// Replace existing documents.
    pub force: bool,
    /// Base image folders; a deployment document is written for each.
    pub bases: Vec<PathBuf>,
}

/// Publishes what `build` publishes beside its image, byte for byte, from
/// a reproduction (`reproduce::reproduce_lock_report`) instead of a pack:
/// `<commit>.info`, `<commit>.manifest.json` and the deployment documents.
/// For models larger than the disk: nothing but these documents is
/// written. All or nothing.
pub fn publish_reproduced(
    lock: &Lock,
    reference: &mpk_model::Reference,
    schema: crate::Schema,
    files: Vec<FileReport>,
    o: &DocumentOptions,
) -> Result<Built> {
    let base = documents_base(&o.output, lock, o.force)?;
    let identity: Identity = lock.identity.parse()?;
    crate::output::write_file(
        &base.with_extension("info"),
        reference.to_string().as_bytes(),
        o.force,
    )?;
    let m = Manifest {
        manifest: "mpk-manifest/1",
        identity: identity.to_string(),
        reference: reference.to_string(),
        schema,
        lock_digest: lock.digest(),
        include: lock.include.clone(),
        files,
        mpk_version: env!("CARGO_PKG_VERSION"),
        encryption: None,
    };
    publish(m, &base, &o.bases, &["info", "manifest.json"])
}

/// Writes `<commit>.<base-name>.deployment.json` beside the manifest for
/// each base image; on error removes the ones already written.
fn write_deployments(bases: &[PathBuf], base: &Utf8Path, manifest: &Utf8Path) -> Result<()> {
    let mut written = Vec::new();
    let result = (|| -> Result<()> {
        for b in bases {
            let inputs = crate::deploy::DeploymentInputs {
                base: b.clone(),
                model: crate::deploy::ModelInput::Manifest(manifest.as_std_path().to_owned()),
                overrides: Default::default(),
            };
            let doc = crate::deploy::deployment(&inputs)
                .with_context(|| format!("base image `{}`", b.display()))?;
            // image.json's `name`, else the folder's.
            let path = base.with_extension(format!("{}.deployment.json", doc.base_image));
            write_atomic(&path, doc.to_json().as_bytes())?;
            written.push(path);
        }
        Ok(())
    })();
    if result.is_err() {
        for p in written {
            let _ = std::fs::remove_file(p);
        }
    }
    result
}

/// Publishes a small document (manifest, deployment), replacing the
/// previous one (refreshing is `build`'s purpose).
fn write_atomic(path: &Utf8Path, bytes: &[u8]) -> Result<()> {
    crate::output::write_file(path, bytes, true)
}

/// `ORG/NAME[@REV]` split at the `@`.
pub fn split_repo(s: &str) -> (&str, Option<&str>) {
    match s.split_once('@') {
        Some((r, v)) => (r, Some(v)),
        None => (s, None),
    }
}
