//! Hugging Face Hub commands, flattened into the top level: `mpk lock`,
//! `mpk fetch`, `mpk build`, `mpk reproduce` and `mpk identity`. The Hub
//! and cache work is `mpk_hub`'s; this module composes it with the pack
//! engine (`build` is lock → fetch → pack; `reproduce` streams the same
//! pack without writing an image).

use anyhow::{Context, Result, bail};
use camino::{Utf8Path, Utf8PathBuf};
use clap::{Args, Subcommand};
use mpk_erofs::{NodeId, NodeKind};
use mpk_hub::fetch::{Event, Expected, fetch_lock, lock_repo, verify_cached};
use mpk_hub::names::{Etag, RepoId, Revision};
use mpk_hub::{HfCache, Hub, HubConfig, Lock};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::scan;
use mpk_model::Identity;
use mpk_model::Reference;
use mpk_pack::pack::{Backend, PackOptions, SCHEMA};

/// Hub subcommands, flattened into the top level.
#[derive(Debug, Subcommand)]
pub enum HubCommand {
    /// Pin a Hub repo at a commit: write a lock file (JSON, schema version 1).
    Lock(LockArgs),
    /// Download every file of a lock into the Hugging Face cache, verified.
    Fetch(FetchArgs),
    /// Lock (or use --lock), fetch and pack: `OUTDIR/<org>/<name>/<commit>.{mpk,info,manifest.json}`.
    Build(BuildArgs),
    /// Recompute a reference without writing an image; exit 0 only if it equals --expect.
    Reproduce(ReproduceArgs),
    /// Print the content-derived revision of a folder (for private weights).
    Identity(IdentityArgs),
}

/// Arguments of `mpk lock`.
#[derive(Debug, Args)]
pub struct LockArgs {
    /// `ORG/NAME[@REV]` (REV: branch, tag or commit; default `main`).
    pub repo: String,
    /// Write the lock here (default: standard output).
    #[arg(short = 'o', long = "output")]
    pub output: Option<Utf8PathBuf>,
    /// Pin only the files these patterns select (repeatable; `*`, `?`, `**`, `dir/`).
    #[arg(long)]
    pub include: Vec<String>,
    /// No progress lines.
    #[arg(long, short)]
    pub quiet: bool,
}

/// Arguments of `mpk fetch`.
#[derive(Debug, Args)]
pub struct FetchArgs {
    /// The lock file.
    pub lock: Utf8PathBuf,
    /// No progress lines.
    #[arg(long, short)]
    pub quiet: bool,
}

/// Arguments of `mpk build`.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// `ORG/NAME[@REV]` (REV: branch, tag or commit; default `main`, or the lock's).
    pub repo: String,
    /// Output folder; files go to `<org>/<name>/<commit>.*` below it.
    #[arg(short = 'o', long = "output")]
    pub output: Utf8PathBuf,
    /// Use this lock instead of locking now.
    #[arg(long)]
    pub lock: Option<Utf8PathBuf>,
    /// Pin only the files these patterns select (without --lock).
    #[arg(long)]
    pub include: Vec<String>,
    /// Hashing threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Replace existing outputs.
    #[arg(long)]
    pub force: bool,
    /// No progress lines.
    #[arg(long, short)]
    pub quiet: bool,
    /// Print the manifest (JSON) instead of the bare reference.
    #[arg(long)]
    pub json: bool,
    /// A base image folder (`vm-images/<name>`, holding `image.json`); for each,
    /// `<commit>.<name>.deployment.json` is written (as `mpk measure
    /// deployment` would). Repeatable.
    #[arg(long = "base", value_name = "DIR")]
    pub bases: Vec<std::path::PathBuf>,
    /// Write `<commit>.empk` (encrypted, as `mpk pack --encrypt`) instead
    /// of `<commit>.mpk`; `<commit>.info` holds the encrypted reference and
    /// the deployments' command lines mark the model `:crypt`.
    #[arg(long, requires = "key_file")]
    pub encrypt: bool,
    /// The master key for --encrypt (64 bytes, from `mpk keygen`).
    #[arg(long = "key-file", requires = "encrypt")]
    pub key_file: Option<Utf8PathBuf>,
}

/// Arguments of `mpk reproduce`.
#[derive(Debug, Args)]
pub struct ReproduceArgs {
    /// `ORG/NAME@REV`: the identity (with --dir), or the repo to lock and fetch.
    pub id: Option<String>,
    /// Local files instead of the Hub.
    #[arg(long, conflicts_with = "lock")]
    pub dir: Option<Utf8PathBuf>,
    /// The lock to fetch (required when it pins part of a repo).
    #[arg(long)]
    pub lock: Option<Utf8PathBuf>,
    /// The identity (with --dir), instead of the positional argument.
    #[arg(long)]
    pub identity: Option<Identity>,
    /// The expected reference, or an `.info` file holding it.
    #[arg(long)]
    pub expect: String,
    /// Hashing threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// No progress lines.
    #[arg(long, short)]
    pub quiet: bool,
    /// Print `{identity, computed, expected, match}` as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `mpk identity`.
#[derive(Debug, Args)]
pub struct IdentityArgs {
    /// The model folder (normalised as `mpk pack` does).
    pub dir: Utf8PathBuf,
}

/// Runs a Hub subcommand.
pub fn run(c: HubCommand) -> Result<()> {
    match c {
        HubCommand::Lock(a) => run_lock(a),
        HubCommand::Fetch(a) => run_fetch(a),
        HubCommand::Build(a) => run_build(a),
        HubCommand::Reproduce(a) => run_reproduce(a),
        HubCommand::Identity(a) => {
            outln!("{}", content_revision(&a.dir)?);
            Ok(())
        }
    }
}

/// The content-derived revision of a folder: the first 20 bytes (40
/// lowercase hex) of SHA-256 over `path NUL size NUL sha256hex LF` for
/// every regular file, sorted by path bytes; paths are `/`-separated and
/// relative, after `mpk pack`'s normalisation (top-level `.cache` left
/// out, symlinks followed), sizes decimal, hashes lowercase hex.
pub fn content_revision(dir: &Utf8Path) -> Result<String> {
    let scan = scan::scan(dir.as_std_path())?;
    let sums = crate::hashing::file_sha256s(&scan)?;
    let mut files: Vec<(String, u64, String)> = (0..scan.tree.len())
        .map(NodeId)
        .filter_map(|id| match scan.tree.node(id).kind {
            NodeKind::File { size } => Some((scan.tree.path(id), size, hex::encode(sums[&id]))),
            NodeKind::Dir { .. } => None,
        })
        .collect();
    files.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    Ok(content_revision_of(&files))
}

/// [`content_revision`] over `(path, size, sha256 hex)`, already sorted.
pub fn content_revision_of(files: &[(String, u64, String)]) -> String {
    let mut h = Sha256::new();
    for (p, size, sha) in files {
        h.update(format!("{p}\0{size}\0{sha}\n").as_bytes());
    }
    hex::encode(&h.finalize()[..20])
}

fn split_repo(s: &str) -> (&str, Option<&str>) {
    match s.split_once('@') {
        Some((r, v)) => (r, Some(v)),
        None => (s, None),
    }
}

/// Download progress: a per-file bar (bytes, bytes/s, ETA) on a terminal,
/// plain lines otherwise, nothing with `--quiet`.
fn printer(quiet: bool) -> impl FnMut(Event<'_>) {
    let mut bar: Option<indicatif::ProgressBar> = None;
    move |e| {
        if quiet {
            return;
        }
        let line = |s: String| match &bar {
            Some(b) => b.println(s),
            None => eprintln!("{s}"),
        };
        match e {
            Event::Cached(p, n) => line(format!("cached     {p} ({n} bytes, verified)")),
            Event::Start(p, from, n) => {
                if from > 0 {
                    line(format!("resuming   {p} at byte {from} of {n}"));
                } else {
                    line(format!("fetching   {p} ({n} bytes)"));
                }
                if let Some(old) = bar.take() {
                    old.finish_and_clear();
                }
                bar = crate::progress::bytes_bar(n, "downloading", false);
                if let Some(b) = &bar {
                    b.set_position(from);
                }
            }
            Event::Done(p) => {
                if let Some(b) = bar.take() {
                    b.finish_and_clear();
                }
                eprintln!("verified   {p}");
            }
            Event::Retry(p, why) => line(format!("retrying   {p}: {why}")),
            Event::Bytes(n) => crate::progress::inc(&bar, n),
        }
    }
}

fn hub() -> Result<(Hub, HfCache)> {
    let cfg = HubConfig::from_env().context("bad Hub settings")?;
    Ok((Hub::new(cfg)?, HfCache::from_env()))
}

fn run_lock(a: LockArgs) -> Result<()> {
    let (hub, cache) = hub()?;
    let (repo, rev) = split_repo(&a.repo);
    let include = (!a.include.is_empty()).then_some(a.include);
    let lock = lock_repo(
        &hub,
        Some(&cache),
        repo,
        rev.unwrap_or("main"),
        include,
        &mut printer(a.quiet),
    )
    .with_context(|| format!("cannot lock {}", a.repo))?;
    match a.output {
        Some(p) => write_atomic(&p, lock.to_json().as_bytes())?,
        None => out!("{}", lock.to_json()),
    }
    Ok(())
}

fn run_fetch(a: FetchArgs) -> Result<()> {
    let (hub, cache) = hub()?;
    let lock = Lock::load(a.lock.as_std_path())?;
    let dir = fetch_lock(&hub, &cache, &lock, &mut printer(a.quiet))
        .with_context(|| format!("cannot fetch {}", lock.identity))?;
    outln!("{}", dir.display());
    Ok(())
}

/// A folder of symlinks to the cached blobs of exactly the lock's files
/// (the snapshot folder may hold more files of that commit).
fn stage(cache: &HfCache, lock: &Lock) -> Result<tempfile::TempDir> {
    let t = tempfile::Builder::new()
        .prefix("mpk-stage.")
        .tempdir()
        .context("cannot create a staging folder")?;
    let repo = lock.repo_id()?;
    for f in &lock.files {
        // Validated by `Lock::load`: relative, no `..`.
        let link = t.path().join(&f.path);
        if let Some(p) = link.parent() {
            std::fs::create_dir_all(p)
                .with_context(|| format!("cannot create `{}`", p.display()))?;
        }
        let blob = cache.blob_path(&repo, &Etag::parse(f.etag())?);
        std::os::unix::fs::symlink(&blob, &link)
            .with_context(|| format!("cannot link `{}`", link.display()))?;
    }
    Ok(t)
}

/// Resolves the lock `build`/`reproduce` work from; without a lock file,
/// locks now (writing to `cache` only when one is given).
fn resolve_lock(
    hub: &Hub,
    cache: Option<&HfCache>,
    repo_arg: &str,
    lock: Option<&Utf8Path>,
    include: Vec<String>,
    quiet: bool,
) -> Result<Lock> {
    let (repo, rev) = split_repo(repo_arg);
    let Some(path) = lock else {
        let include = (!include.is_empty()).then_some(include);
        return lock_repo(
            hub,
            cache,
            repo,
            rev.unwrap_or("main"),
            include,
            &mut printer(quiet),
        )
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
    pub schema: &'static str,
    /// SHA-256 of the canonical lock.
    pub lock_digest: String,
    /// The lock's include list.
    pub include: Option<Vec<String>>,
    /// Per file, in image order.
    pub files: Vec<mpk_pack::pack::FileReport>,
    /// With `--encrypt`: the container (its `encrypted_reference` is what
    /// `<commit>.info` holds; `reference` above stays the public one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encryption: Option<mpk_pack::pack::EncryptionReport>,
    /// mpk version.
    pub mpk_version: &'static str,
}

fn run_build(a: BuildArgs) -> Result<()> {
    let (hub, cache) = hub()?;
    let lock = resolve_lock(
        &hub,
        Some(&cache),
        &a.repo,
        a.lock.as_deref(),
        a.include,
        a.quiet,
    )?;
    fetch_lock(&hub, &cache, &lock, &mut printer(a.quiet))
        .with_context(|| format!("cannot fetch {}", lock.identity))?;
    let identity: Identity = lock.identity.parse()?;
    let (org, name) = lock.repo().split_once('/').expect("validated repo");
    let dir = a.output.join(org).join(name);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create `{dir}`"))?;
    let base = dir.join(lock.commit());
    let manifest_path = base.with_extension("manifest.json");
    if !a.force && manifest_path.exists() {
        bail!("`{manifest_path}` already exists; pass --force to replace it");
    }
    let staging = stage(&cache, &lock)?;
    let key = match &a.key_file {
        Some(k) if a.encrypt => Some(crate::cmd_crypt::read_master_key(k)?),
        _ => None,
    };
    // The single pass re-hashes every file; they must still be what the
    // lock (and so the Hub) says, or nothing is renamed into place.
    let expected = lock
        .files
        .iter()
        .map(|f| (f.path.clone(), f.sha256.clone()))
        .collect();
    let options = PackOptions {
        dir: Utf8PathBuf::from_path_buf(staging.path().to_owned())
            .map_err(|p| anyhow::anyhow!("non-UTF-8 temporary folder {}", p.display()))?,
        identity,
        output: base.with_extension(if a.encrypt { "empk" } else { "mpk" }),
        threads: a.threads,
        force: a.force,
        backend: Backend::Native,
        hash_files: true,
        key,
        expected: Some(expected),
    };
    let report = mpk_pack::pack::pack(options, &crate::progress::Bars::new(a.quiet))
        .context("the fetched files changed between their verification and packing")?;
    let m = Manifest {
        manifest: "mpk-manifest/1",
        identity: report.identity.clone(),
        reference: report.reference.clone(),
        schema: SCHEMA,
        lock_digest: lock.digest(),
        include: lock.include.clone(),
        files: report.files,
        mpk_version: env!("CARGO_PKG_VERSION"),
        encryption: report.encryption,
    };
    let mut text = serde_json::to_string_pretty(&m)?;
    text.push('\n');
    write_atomic(&manifest_path, text.as_bytes())?;
    if let Err(e) = write_deployments(&a.bases, &base, &manifest_path) {
        // All or nothing: a base image whose inputs do not match its
        // image.json must not leave a half-published build behind.
        for ext in ["mpk", "empk", "info", "manifest.json"] {
            let _ = std::fs::remove_file(base.with_extension(ext));
        }
        return Err(e.context("nothing was kept"));
    }
    if a.json {
        out!("{text}");
    } else if let Some(e) = &m.encryption {
        outln!("{}", e.encrypted_reference);
    } else {
        outln!("{}", m.reference);
    }
    Ok(())
}

/// Writes `<commit>.<base-name>.deployment.json` beside the manifest for
/// each base image; on error removes the ones already written.
fn write_deployments(
    bases: &[std::path::PathBuf],
    base: &camino::Utf8Path,
    manifest: &camino::Utf8Path,
) -> Result<()> {
    let mut written = Vec::new();
    let result = (|| -> Result<()> {
        for b in bases {
            let inputs = mpk_pack::deploy::DeploymentInputs {
                base: b.clone(),
                model: mpk_pack::deploy::ModelInput::Manifest(manifest.as_std_path().to_owned()),
                overrides: Default::default(),
            };
            let doc = mpk_pack::deploy::deployment(&inputs)
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

fn run_reproduce(a: ReproduceArgs) -> Result<()> {
    let expect = crate::reference::load(&a.expect)?;
    let (identity, dir) = if let Some(dir) = &a.dir {
        let identity = match (&a.identity, &a.id) {
            (Some(i), None) => i.clone(),
            (None, Some(s)) => s.parse()?,
            (Some(i), Some(s)) if s.parse::<Identity>()? == *i => i.clone(),
            (Some(_), Some(_)) => bail!("the positional identity and --identity differ"),
            (None, None) => bail!("--dir needs the identity: ORG/NAME@REV or --identity"),
        };
        (identity, dir.as_std_path().to_owned())
    } else {
        // From the Hub: nothing is written, not even to the cache (no
        // blob, ref, lock file or snapshot link).
        let (hub, cache) = hub()?;
        let repo_arg = match (&a.id, &a.lock) {
            (Some(s), _) => s.clone(),
            (None, Some(p)) => Lock::load(p.as_std_path())?.repo().to_owned(),
            (None, None) => bail!("give ORG/NAME@REV, --lock FILE or --dir DIR"),
        };
        let lock = resolve_lock(
            &hub,
            None,
            &repo_arg,
            a.lock.as_deref(),
            Vec::new(),
            a.quiet,
        )?;
        let identity: Identity = lock.identity.parse()?;
        let got = if !hub.config().offline {
            // Stream every file from the Hub through the layout and the
            // hash tree, so a model larger than the free disk can be
            // reproduced.
            reproduce_remote(
                std::sync::Arc::new(hub),
                &lock,
                &identity,
                a.threads,
                a.quiet,
            )?
        } else {
            // Offline: read the cached blobs in place, verified first.
            reproduce_cached(&cache, &lock, &identity, a.threads, a.quiet)?
        };
        return verdict(&identity, &got, &expect, a.json);
    };
    let got = reproduce_dir(&dir, &identity, a.threads, a.quiet)?;
    verdict(&identity, &got, &expect, a.json)
}

/// Prints the computed reference (or, with `json`, `{identity, computed,
/// expected, match}`) and fails unless it equals the expected one. An
/// encrypted pack's reference (UUID = the identity's partition GUID)
/// matches when root and hash offset do: encryption leaves the plaintext
/// commitment unchanged.
fn verdict(identity: &Identity, got: &Reference, expect: &Reference, json: bool) -> Result<()> {
    let got = &if expect.uuid == identity.partition_uuid() {
        Reference {
            uuid: expect.uuid,
            ..*got
        }
    } else {
        *got
    };
    if json {
        let v = serde_json::json!({
            "identity": identity.to_string(),
            "computed": got.to_string(),
            "expected": expect.to_string(),
            "match": got == expect,
        });
        outln!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        outln!("{got}");
    }
    if got != expect {
        return Err(mpk_pack::Finding::error(format!(
            "computed reference {got} differs from the expected {expect}"
        )));
    }
    Ok(())
}

/// A locked file read straight from the Hub.
#[derive(Debug)]
struct HubRemote(mpk_hub::stream::RemoteFile);

impl scan::Remote for HubRemote {
    fn range(&self, from: u64, to: u64) -> Box<dyn std::io::Read + Send> {
        Box::new(self.0.range(from, to))
    }
    fn read_exact_at(&self, buf: &mut [u8], off: u64) -> std::io::Result<()> {
        self.0.read_exact_at(buf, off)
    }
}

/// The tree of a lock's files (normalised as `mpk pack` normalises a
/// folder), each read from the source `source` gives it; with, per node,
/// the index of its file in the lock.
fn lock_scan(
    lock: &Lock,
    mut source: impl FnMut(usize, &mpk_hub::LockedFile) -> Result<scan::Source>,
) -> Result<(scan::Scan, Vec<Option<usize>>)> {
    use std::collections::HashMap;
    let mut tree = mpk_erofs::Tree::new(scan::DIR_PERM);
    let mut sources = vec![None];
    let mut index = vec![None];
    let mut dirs: HashMap<String, NodeId> = HashMap::new();
    for (i, f) in lock.files.iter().enumerate() {
        if f.path.starts_with(".cache/") {
            continue; // as `mpk pack` leaves out a top-level .cache folder
        }
        let mut parent = mpk_erofs::Tree::ROOT;
        let (folder, name) = f.path.rsplit_once('/').unwrap_or(("", &f.path));
        let mut prefix = String::new();
        for d in folder.split('/').filter(|d| !d.is_empty()) {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(d);
            parent = match dirs.get(&prefix) {
                Some(&id) => id,
                None => {
                    let id = tree
                        .add_dir(parent, d.as_bytes(), scan::DIR_PERM)
                        .with_context(|| format!("in {}", lock.identity))?;
                    sources.push(None);
                    index.push(None);
                    dirs.insert(prefix.clone(), id);
                    id
                }
            };
        }
        let src = source(i, f)?;
        tree.add_file(parent, name.as_bytes(), scan::FILE_PERM, f.size)
            .with_context(|| format!("in {}", lock.identity))?;
        sources.push(Some(src));
        index.push(Some(i));
    }
    Ok((scan::Scan { tree, sources }, index))
}

/// The tree of a lock's files, each read from the Hub at the lock's commit.
fn remote_scan(hub: std::sync::Arc<Hub>, lock: &Lock) -> Result<(scan::Scan, Vec<Option<usize>>)> {
    let (repo, commit) = (lock.repo_id()?, lock.commit_id()?);
    lock_scan(lock, |_, f| {
        let remote = mpk_hub::stream::RemoteFile::open(
            std::sync::Arc::clone(&hub),
            &repo,
            &commit,
            &Expected::try_from(f)?,
        )
        .with_context(|| format!("cannot open `{}` on the Hub", f.path))?;
        Ok(scan::Source {
            path: f.path.clone().into(),
            size: f.size,
            stamp: (0, 0, 0, 0),
            remote: Some(std::sync::Arc::new(HubRemote(remote))),
        })
    })
}

/// The reference of `lock`'s files read in place from the cache (each
/// blob verified first, then re-hashed in the pass), writing nothing.
fn reproduce_cached(
    cache: &HfCache,
    lock: &Lock,
    identity: &Identity,
    threads: Option<usize>,
    quiet: bool,
) -> Result<Reference> {
    let blobs = verify_cached(cache, lock)
        .with_context(|| format!("cannot use the cached files of {}", lock.identity))?;
    let (scan, index) = lock_scan(lock, |i, f| {
        let blob = &blobs[i];
        let m =
            std::fs::metadata(blob).with_context(|| format!("cannot read `{}`", blob.display()))?;
        if m.len() != f.size {
            bail!("`{}` changed after its verification", blob.display());
        }
        Ok(scan::Source {
            path: blob.clone(),
            size: f.size,
            stamp: scan::Source::stamp_of(&m),
            remote: None,
        })
    })?;
    check_scan(&scan, &index, lock, identity, threads, quiet)
}

/// The reference of `lock`'s files, streamed from the Hub and never
/// written: each file's SHA-256, computed in the same pass, must equal the
/// lock's.
pub fn reproduce_remote(
    hub: std::sync::Arc<Hub>,
    lock: &Lock,
    identity: &Identity,
    threads: Option<usize>,
    quiet: bool,
) -> Result<Reference> {
    let (scan, index) = remote_scan(hub, lock)?;
    check_scan(&scan, &index, lock, identity, threads, quiet)
}

/// Streams `scan` (built from `lock`) through the layout and the hash
/// tree; each file's SHA-256, computed in the same pass, must equal the
/// lock's (`index` gives each node's file in the lock).
fn check_scan(
    scan: &scan::Scan,
    index: &[Option<usize>],
    lock: &Lock,
    identity: &Identity,
    threads: Option<usize>,
    quiet: bool,
) -> Result<Reference> {
    let (reference, sha256) = reproduce_scan(scan, identity, threads, quiet, true)
        .with_context(|| format!("cannot reproduce {}", lock.identity))?;
    for (i, j) in index.iter().enumerate() {
        let Some(f) = j.map(|j| &lock.files[j]) else {
            continue;
        };
        let got = hex::encode(sha256[&NodeId(i)]);
        if got != f.sha256 {
            bail!(
                "`{}` has sha256 {got}, but the lock says {}",
                f.path,
                f.sha256
            );
        }
    }
    Ok(reference)
}

/// The reference `mpk pack` would write for `dir`, computed without
/// writing anything.
pub fn reproduce_dir(
    dir: &std::path::Path,
    identity: &Identity,
    threads: Option<usize>,
    quiet: bool,
) -> Result<Reference> {
    let scan = scan::scan(dir)?;
    reproduce_scan(&scan, identity, threads, quiet, false)
        .with_context(|| format!("cannot reproduce `{}`", dir.display()))
        .map(|(r, _)| r)
}

/// Streams `scan` through the layout and the hash tree with no output;
/// returns the reference and (with `hash_files`) each file's SHA-256.
fn reproduce_scan(
    scan: &scan::Scan,
    identity: &Identity,
    threads: Option<usize>,
    quiet: bool,
    hash_files: bool,
) -> Result<(Reference, std::collections::HashMap<NodeId, [u8; 32]>)> {
    if threads == Some(0) {
        bail!("--threads must be at least 1");
    }
    let uuid = identity.uuid();
    let layout =
        mpk_erofs::plan(&scan.tree, *uuid.as_bytes()).context("cannot lay out the files")?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads.unwrap_or(0))
        .build()
        .context("cannot start the hashing threads")?;
    let bar = crate::progress::bytes_bar(layout.image_len(), "reproducing", quiet);
    let packed = crate::pack::pack_into(
        scan,
        &layout,
        &crate::pack::PackParams {
            salt: &identity.salt(),
            uuid: *uuid.as_bytes(),
            out: None,
            encrypt: None,
            hash_files,
            progress: &|n| crate::progress::inc(&bar, n),
        },
        &pool,
    )?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let reference = Reference {
        root: packed.root,
        hash_offset: packed.hash_offset,
        uuid,
    };
    Ok((reference, packed.sha256))
}

/// Publishes a small document (lock, manifest, deployment), replacing
/// the previous one (refreshing is these commands' purpose).
fn write_atomic(path: &Utf8Path, bytes: &[u8]) -> Result<()> {
    mpk_pack::output::write_file(path, bytes, true)
}
