//! Reproducing a reference without writing an image: from a folder, or
//! (feature `hub`) from a lock's files streamed from the Hub or read in
//! place from the cache. The same pipeline as packing runs with no output;
//! each file's SHA-256, computed in the same pass, must equal the lock's.
//! Also the content-derived revision of a folder (`mpk identity`).

use anyhow::{Context, Result, bail};
use camino::Utf8Path;
use mpk_erofs::{NodeId, NodeKind};
use mpk_model::{Identity, PackKind, Reference};
use sha2::{Digest, Sha256};

use crate::{Finding, Progress, Schema, scan};

/// The content-derived revision of a folder: the first 20 bytes (40
/// lowercase hex) of SHA-256 over `path NUL size NUL sha256hex LF` for
/// every regular file, sorted by path bytes; paths are `/`-separated and
/// relative, after `mpk pack`'s normalisation (top-level `.cache` left
/// out, symlinks followed), sizes decimal, hashes lowercase hex.
pub fn content_revision(dir: &Utf8Path, symlinks: scan::Symlinks) -> Result<String> {
    let scan = scan::scan(dir.as_std_path(), symlinks)?;
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

/// How a computed reference compares with the expected one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Comparison {
    /// The computed reference (with the expected UUID when the expected
    /// one is an encrypted pack's: encryption leaves the plaintext
    /// commitment, root and hash offset, unchanged).
    pub computed: Reference,
    /// The expected reference.
    pub expected: Reference,
}

impl Comparison {
    /// Compares `got` (a plaintext reference) with `expect` for `identity`.
    pub fn new(identity: &Identity, got: Reference, expect: Reference) -> Self {
        let computed = match identity.pack_kind(&expect.uuid) {
            Some(PackKind::Encrypted) => Reference {
                uuid: expect.uuid,
                ..got
            },
            _ => got,
        };
        Self {
            computed,
            expected: expect,
        }
    }

    /// Whether they are equal.
    pub fn matches(&self) -> bool {
        self.computed == self.expected
    }

    /// `Ok` when they match, else a [`Finding`] naming both.
    pub fn check(&self) -> Result<()> {
        if self.matches() {
            Ok(())
        } else {
            Err(Finding::error(format!(
                "computed reference {} differs from the expected {}",
                self.computed, self.expected
            )))
        }
    }
}

/// Which schemas a reproduction tries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schemas {
    /// Exactly this one.
    One(Schema),
    /// Each of [`Schema::ALL`] in order until one matches the expected
    /// reference (a reference does not name its schema). A schema whose
    /// planned image length differs from the expected hash offset cannot
    /// match and is not hashed at all.
    Auto,
}

impl Default for Schemas {
    fn default() -> Self {
        Self::One(Schema::default())
    }
}

/// A reproduced reference and the schema it was computed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reproduced {
    /// The computed (plaintext) reference.
    pub reference: Reference,
    /// The schema that produced it: with [`Schemas::Auto`], the one that
    /// matched, or the first one tried when none did.
    pub schema: Schema,
}

/// The reference `mpk pack` would write for `dir`, computed without
/// writing anything, with the schema(s) `schemas` picks (`expect` is the
/// expected reference `Schemas::Auto` compares with).
pub fn reproduce_dir(
    dir: &std::path::Path,
    symlinks: scan::Symlinks,
    identity: &Identity,
    schemas: Schemas,
    expect: &Reference,
    threads: Option<usize>,
    progress: &dyn Progress,
) -> Result<Reproduced> {
    let scan = scan::scan(dir, symlinks)?;
    reproduce_scan_as(&scan, identity, schemas, expect, threads, progress, false)
        .with_context(|| format!("cannot reproduce `{}`", dir.display()))
        .map(|(r, _)| r)
}

/// Per file, its SHA-256 (when computed).
type FileHashes = std::collections::HashMap<NodeId, [u8; 32]>;

/// The schemas a reproduction tries, in order. `Auto` plans each (cheap:
/// sizes only) and keeps those whose image length is the expected hash
/// offset; with none, the first that can lay the files out at all (to
/// show what it computes).
fn candidates(
    schemas: Schemas,
    tree: &mpk_erofs::Tree,
    uuid: [u8; 16],
    expect: &Reference,
) -> Vec<Schema> {
    if let Schemas::One(s) = schemas {
        return vec![s];
    }
    let lens: Vec<(Schema, Option<u64>)> = Schema::ALL
        .into_iter()
        .map(|s| {
            let len = mpk_erofs::plan_for(s.mkfs(), tree, uuid).map(|l| l.image_len());
            (s, len.ok())
        })
        .collect();
    let fit: Vec<Schema> = lens
        .iter()
        .filter(|(_, len)| *len == Some(expect.hash_offset))
        .map(|(s, _)| *s)
        .collect();
    if fit.is_empty() {
        let plannable = lens.iter().find(|(_, len)| len.is_some());
        vec![plannable.map_or(Schema::ALL[0], |(s, _)| *s)]
    } else {
        fit
    }
}

/// [`reproduce_scan`] with each schema `schemas` picks, in order, until
/// one gives `expect` (compared as [`Comparison`] does).
pub fn reproduce_scan_as(
    scan: &scan::Scan,
    identity: &Identity,
    schemas: Schemas,
    expect: &Reference,
    threads: Option<usize>,
    progress: &dyn Progress,
    hash_files: bool,
) -> Result<(Reproduced, FileHashes)> {
    let uuid = *identity.uuid().as_bytes();
    let candidates = candidates(schemas, &scan.tree, uuid, expect);
    let mut first = None;
    for schema in candidates {
        let (reference, sha256) =
            reproduce_scan(scan, identity, schema, threads, progress, hash_files)
                .with_context(|| format!("schema {schema}"))?;
        let got = Reproduced { reference, schema };
        if Comparison::new(identity, reference, *expect).matches() {
            return Ok((got, sha256));
        }
        first.get_or_insert((got, sha256));
    }
    Ok(first.expect("at least one schema tried"))
}

/// Streams `scan` through `schema`'s layout and the hash tree with no
/// output; returns the reference and (with `hash_files`) each file's
/// SHA-256.
pub fn reproduce_scan(
    scan: &scan::Scan,
    identity: &Identity,
    schema: Schema,
    threads: Option<usize>,
    progress: &dyn Progress,
    hash_files: bool,
) -> Result<(Reference, FileHashes)> {
    if threads == Some(0) {
        bail!("--threads must be at least 1");
    }
    let uuid = identity.uuid();
    let layout = mpk_erofs::plan_for(schema.mkfs(), &scan.tree, *uuid.as_bytes())
        .context("cannot lay out the files")?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads.unwrap_or(0))
        .build()
        .context("cannot start the hashing threads")?;
    progress.begin("reproducing", layout.image_len());
    let packed = crate::pipeline::pack_into(
        scan,
        &layout,
        &crate::pipeline::PackParams {
            salt: &identity.salt(),
            uuid: *uuid.as_bytes(),
            out: None,
            encrypt: None,
            hash_files,
            progress: &|n| progress.advance(n),
        },
        &pool,
    );
    progress.end();
    let packed = packed?;
    let reference = Reference {
        root: packed.root,
        hash_offset: packed.hash_offset,
        uuid,
    };
    Ok((reference, packed.sha256))
}

/// Reproduction from the Hub or the cache (feature `hub`).
#[cfg(feature = "hub")]
mod from_hub {
    use super::*;
    use mpk_hub::fetch::{Expected, verify_cached};
    use mpk_hub::{HfCache, Hub, Lock};

    /// A locked file read straight from the Hub: its full blocks through
    /// the ordered prefetch window (several connections, ranges out of
    /// order, handed out in image order), anything else (tails) by a
    /// ranged request of its own.
    #[derive(Debug)]
    struct HubRemote {
        file: mpk_hub::stream::RemoteFile,
        window: Option<std::sync::Arc<mpk_hub::sched::Prefetch>>,
    }

    impl scan::Remote for HubRemote {
        fn range(&self, from: u64, to: u64) -> Box<dyn std::io::Read + Send> {
            match &self.window {
                Some(w) => {
                    let f = self.file.clone();
                    Box::new(w.reader(
                        self.file.target(),
                        from,
                        to,
                        Box::new(move |pos| Box::new(f.range(pos, to))),
                    ))
                }
                None => Box::new(self.file.range(from, to)),
            }
        }
        fn read_exact_at(&self, buf: &mut [u8], off: u64) -> std::io::Result<()> {
            self.file.read_exact_at(buf, off)
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

    /// The tree of a lock's files, each read from the Hub at the lock's
    /// commit (resolved once, here): the full blocks of every file through
    /// one [`mpk_hub::sched::Prefetch`] planned in image order.
    fn remote_scan(
        hub: std::sync::Arc<Hub>,
        lock: &Lock,
        identity: &Identity,
        plan_schema: impl FnOnce(&mpk_erofs::Tree) -> Schema,
    ) -> Result<(scan::Scan, Vec<Option<usize>>)> {
        use std::sync::Arc;
        let (repo, commit) = (lock.repo_id()?, lock.commit_id()?);
        // Resolve every file first, on the scheduler's connections: one
        // HEAD per file, not one round trip after another.
        let n = hub.config().connections.max(1);
        let next = std::sync::atomic::AtomicUsize::new(0);
        let resolved: Vec<std::sync::Mutex<Option<Result<mpk_hub::stream::RemoteFile>>>> =
            lock.files.iter().map(|_| Default::default()).collect();
        std::thread::scope(|s| {
            for _ in 0..n.min(lock.files.len()) {
                s.spawn(|| {
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(f) = lock.files.get(i) else {
                            return;
                        };
                        if f.path.starts_with(".cache/") {
                            continue; // left out of the image (`lock_scan`)
                        }
                        let r = Expected::try_from(f)
                            .and_then(|e| {
                                mpk_hub::stream::RemoteFile::open(
                                    Arc::clone(&hub),
                                    &repo,
                                    &commit,
                                    &e,
                                )
                            })
                            .with_context(|| format!("cannot open `{}` on the Hub", f.path));
                        let failed = r.is_err();
                        *resolved[i].lock().unwrap_or_else(|p| p.into_inner()) = Some(r);
                        if failed {
                            // Stop the others early; the first error is reported.
                            next.store(usize::MAX / 2, std::sync::atomic::Ordering::Relaxed);
                            return;
                        }
                    }
                });
            }
        });
        let mut files = Vec::new();
        let (mut scan, index) = lock_scan(lock, |i, f| {
            let remote = resolved[i]
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take()
                .unwrap_or_else(|| {
                    Err(anyhow::anyhow!(
                        "`{}` was not resolved (an earlier file failed)",
                        f.path
                    ))
                })?;
            files.push(remote);
            Ok(scan::Source {
                path: f.path.clone().into(),
                size: f.size,
                stamp: scan::Stamp::default(),
                remote: None,
            })
        })?;
        // Nodes in the order `lock_scan` made them: files in lock order.
        let mut by_node = std::collections::HashMap::new();
        let mut it = files.into_iter();
        for (id, s) in scan.sources.iter().enumerate() {
            if s.is_some() {
                by_node.insert(id, it.next().expect("one remote per file"));
            }
        }
        // The order the pipeline reads full blocks in: the layout's, of the
        // schema tried first (`plan_schema`: the first of `candidates`; a
        // later attempt reads what the window does not hold straight from
        // the Hub).
        let uuid = *identity.uuid().as_bytes();
        let schema = plan_schema(&scan.tree);
        let layout = mpk_erofs::plan_for(schema.mkfs(), &scan.tree, uuid)
            .context("cannot lay out the files")?;
        let plan: Vec<_> = layout
            .extents()
            .into_iter()
            .filter_map(|e| match e {
                mpk_erofs::Extent::File {
                    node,
                    file_block,
                    count,
                    ..
                } => by_node.get(&node.0).map(|f| {
                    (
                        Arc::clone(f.target()),
                        file_block * 4096,
                        (file_block + count) * 4096,
                    )
                }),
                mpk_erofs::Extent::Meta { .. } => None,
            })
            .collect();
        let window = Arc::new(mpk_hub::sched::Prefetch::start(Arc::clone(&hub), &plan));
        for (id, s) in scan.sources.iter_mut().enumerate() {
            if let (Some(s), Some(f)) = (s, by_node.remove(&id)) {
                s.remote = Some(Arc::new(HubRemote {
                    file: f,
                    window: Some(Arc::clone(&window)),
                }));
            }
        }
        Ok((scan, index))
    }

    /// The reference of `lock`'s files read in place from the cache (each
    /// blob verified first, then re-hashed in the pass), writing nothing.
    pub fn reproduce_cached(
        cache: &HfCache,
        lock: &Lock,
        identity: &Identity,
        schemas: Schemas,
        expect: &Reference,
        threads: Option<usize>,
        progress: &dyn Progress,
    ) -> Result<Reproduced> {
        let (scan, index) = cached_scan(cache, lock)?;
        check_scan(
            &scan, &index, lock, identity, schemas, expect, threads, progress,
        )
    }

    /// The tree of `lock`'s files read in place from the cache, each blob
    /// verified first (nothing written).
    fn cached_scan(cache: &HfCache, lock: &Lock) -> Result<(scan::Scan, Vec<Option<usize>>)> {
        let blobs = verify_cached(cache, lock)
            .with_context(|| format!("cannot use the cached files of {}", lock.identity))?;
        blob_scan(lock, &blobs)
    }

    /// The tree of `lock`'s files read in place from `blobs` (one verified
    /// cache blob per locked file, in the lock's order); with, per node,
    /// the index of its file in the lock. No symlink rule applies: the
    /// paths come from the cache's own naming, not from a folder.
    pub(crate) fn blob_scan(
        lock: &Lock,
        blobs: &[std::path::PathBuf],
    ) -> Result<(scan::Scan, Vec<Option<usize>>)> {
        lock_scan(lock, |i, f| {
            let blob = &blobs[i];
            let m = std::fs::metadata(blob)
                .with_context(|| format!("cannot read `{}`", blob.display()))?;
            if !m.is_file() || m.len() != f.size {
                bail!("`{}` changed after its verification", blob.display());
            }
            Ok(scan::Source {
                path: blob.clone(),
                size: f.size,
                stamp: scan::Source::stamp_of(&m),
                remote: None,
            })
        })
    }

    /// The reference of `lock`'s files, streamed from the Hub and never
    /// written: each file's SHA-256, computed in the same pass, must equal the
    /// lock's. The bytes come on `hub.config().connections` connections
    /// through a reorder window of at most
    /// [`mpk_hub::sched::Prefetch::window`] chunks of
    /// [`mpk_hub::sched::CHUNK`] bytes.
    pub fn reproduce_remote(
        hub: std::sync::Arc<Hub>,
        lock: &Lock,
        identity: &Identity,
        schemas: Schemas,
        expect: &Reference,
        threads: Option<usize>,
        progress: &dyn Progress,
    ) -> Result<Reproduced> {
        let uuid = *identity.uuid().as_bytes();
        let plan_schema = |tree: &mpk_erofs::Tree| candidates(schemas, tree, uuid, expect)[0];
        let (scan, index) = remote_scan(hub, lock, identity, plan_schema)?;
        check_scan(
            &scan, &index, lock, identity, schemas, expect, threads, progress,
        )
    }

    /// Where [`reproduce_lock_report`] reads a lock's files.
    pub enum LockFiles<'a> {
        /// Streamed from the Hub, nothing written.
        Hub(std::sync::Arc<Hub>),
        /// The cached blobs, read in place (each verified first).
        Cache(&'a HfCache),
    }

    /// What `mpk build` would report for `lock` with `schema`, without an
    /// image: the reference and every file (path, size, SHA-256 checked
    /// against the lock, placement), for `<commit>.info` and
    /// `<commit>.manifest.json` (`build::publish_reproduced`).
    pub fn reproduce_lock_report(
        files: LockFiles<'_>,
        lock: &Lock,
        identity: &Identity,
        schema: Schema,
        threads: Option<usize>,
        progress: &dyn Progress,
    ) -> Result<(Reference, Vec<crate::pack::FileReport>)> {
        let (scan, index) = match files {
            LockFiles::Hub(hub) => remote_scan(hub, lock, identity, |_| schema)?,
            LockFiles::Cache(cache) => cached_scan(cache, lock)?,
        };
        let (reference, sha256) = reproduce_scan(&scan, identity, schema, threads, progress, true)
            .with_context(|| format!("cannot reproduce {}", lock.identity))?;
        check_hashes(&index, lock, &sha256)?;
        let layout = mpk_erofs::plan_for(schema.mkfs(), &scan.tree, *identity.uuid().as_bytes())
            .context("cannot lay out the files")?;
        Ok((
            reference,
            crate::pack::file_reports(&scan, &layout, &sha256),
        ))
    }

    /// Every file's SHA-256 (`index`: each node's file in the lock) must be
    /// the lock's.
    fn check_hashes(index: &[Option<usize>], lock: &Lock, sha256: &FileHashes) -> Result<()> {
        for (i, j) in index.iter().enumerate() {
            let Some(f) = j.map(|j| &lock.files[j]) else {
                continue;
            };
            let got = hex::encode(sha256[&NodeId(i)]);
            if got != f.sha256 {
                return Err(Finding::error(format!(
                    "`{}` has sha256 {got}, but the lock says {}",
                    f.path, f.sha256
                )));
            }
        }
        Ok(())
    }

    /// Streams `scan` (built from `lock`) through the layout and the hash
    /// tree; each file's SHA-256, computed in the same pass, must equal the
    /// lock's (`index` gives each node's file in the lock).
    #[allow(clippy::too_many_arguments)]
    fn check_scan(
        scan: &scan::Scan,
        index: &[Option<usize>],
        lock: &Lock,
        identity: &Identity,
        schemas: Schemas,
        expect: &Reference,
        threads: Option<usize>,
        progress: &dyn Progress,
    ) -> Result<Reproduced> {
        let (reference, sha256) =
            reproduce_scan_as(scan, identity, schemas, expect, threads, progress, true)
                .with_context(|| format!("cannot reproduce {}", lock.identity))?;
        check_hashes(index, lock, &sha256)?;
        Ok(reference)
    }
}

#[cfg(feature = "hub")]
pub(crate) use from_hub::blob_scan;
#[cfg(feature = "hub")]
pub use from_hub::{LockFiles, reproduce_cached, reproduce_lock_report, reproduce_remote};
