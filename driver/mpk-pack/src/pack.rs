//! Packing a model folder: `OUT.mpk` (EROFS image + dm-verity superblock
//! and tree) and `OUT.info` (the reference string), or with a key an
//! encrypted `OUT.empk`; written unnamed and linked into place only when
//! complete and checked. The report lists every file with its placement
//! (and SHA-256 when asked for).

use anyhow::{Context, Result, bail};
use camino::Utf8PathBuf;
use mpk_crypt::MasterKey;
use mpk_erofs::{NodeId, NodeKind};
use mpk_model::{Identity, Reference};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::FileExt;

use crate::output::Outputs;
use crate::{Finding, Progress, Schema, pipeline, scan, tools};

/// How the image is produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backend {
    /// mpk's own single-pass writer (default).
    #[default]
    Native,
    /// The reference pipeline (the schema's mkfs.erofs + veritysetup) on a
    /// normalised staging copy, for cross-checking.
    Tools,
}

/// The files to pack.
#[derive(Debug)]
pub enum PackInput {
    /// A model folder (e.g. a Hugging Face snapshot folder), scanned with
    /// the given symlink rule.
    Folder {
        /// The folder.
        dir: Utf8PathBuf,
        /// Which symlinks are followed.
        symlinks: scan::Symlinks,
    },
    /// Files already gathered (`mpk build`: a lock's verified cache blobs,
    /// named by the lock, with no folder of links in between).
    Files(scan::Scan),
}

/// What to pack and how.
pub struct PackOptions {
    /// The files.
    pub input: PackInput,
    /// The model identity; salt and UUID derive from it.
    pub identity: Identity,
    /// The schema (which mkfs.erofs the image is byte-identical to).
    pub schema: Schema,
    /// Output file: `.mpk`, or `.empk` with `key`. `OUT.info` goes beside it.
    pub output: Utf8PathBuf,
    /// Hashing threads (`None`: all cores). The output never depends on it.
    pub threads: Option<usize>,
    /// Replace existing output files.
    pub force: bool,
    /// Which implementation writes the image.
    pub backend: Backend,
    /// Compute every file's SHA-256 in the same pass (for the report).
    pub hash_files: bool,
    /// With a master key: write an encrypted `.empk` (no plaintext image
    /// anywhere).
    pub key: Option<MasterKey>,
    /// With a map path → lowercase hex SHA-256: every file must have it and
    /// the file set must be the same, before anything is published.
    pub expected: Option<BTreeMap<String, String>>,
}

/// One file in the JSON report.
#[derive(Debug, Serialize)]
pub struct FileReport {
    /// Path inside the image.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the contents, lowercase hex (when computed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// First full data block, or null.
    pub first_block: Option<u64>,
    /// Block holding the tail (inline after the inode, or a tail block), or null.
    pub tail_block: Option<u64>,
}

/// The JSON report of `mpk pack --json`.
#[derive(Debug, Serialize)]
pub struct PackReport {
    /// `<root>_<hash offset>_<uuid>`.
    pub reference: String,
    /// dm-verity root hash, hex.
    pub root_hash: String,
    /// Byte offset of the verity superblock (= image length).
    pub hash_offset: u64,
    /// EROFS and verity UUID.
    pub uuid: String,
    /// dm-verity salt, hex.
    pub salt: String,
    /// The schema.
    pub schema: Schema,
    /// The model identity.
    pub identity: String,
    /// Every regular file, depth-first in byte order of names.
    pub files: Vec<FileReport>,
    /// With `--encrypt`: the encrypted container.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encryption: Option<EncryptionReport>,
}

/// The encrypted container of `mpk pack --encrypt`.
#[derive(Debug, Serialize)]
pub struct EncryptionReport {
    /// `<root>_<hash offset>_<partition uuid>`: what `OUT.info` holds and
    /// the guest's `mpk.model=…:crypt` word carries. The root is the
    /// plaintext `.mpk`'s, so the public commitment is unchanged.
    pub encrypted_reference: String,
    /// The partition's unique GUID (UUIDv5 of identity + `-emwp-outer`).
    pub partition_uuid: String,
    /// The disk GUID (UUIDv5 of the root hash hex + `-emwp-disk`).
    pub disk_guid: String,
    /// dm-crypt cipher.
    pub cipher: &'static str,
    /// dm-crypt sector size.
    pub sector_size: u32,
    /// Byte offset of the encrypted payload (the `.mpk` bytes) in the image.
    pub payload_offset: u64,
    /// Length of the whole `.empk`.
    pub image_len: u64,
}

/// Packs `o.dir` into `o.output` (and its `.info`) and returns the report.
/// With `o.expected`, every file's SHA-256 computed in the single pass must
/// equal it, and the set of files must be the same, before anything is
/// published: a mismatch ([`Finding`]) leaves no output. Nothing is left at
/// the output paths on any failure.
pub fn pack(o: PackOptions, progress: &dyn Progress) -> Result<PackReport> {
    let PackOptions {
        input,
        identity,
        schema,
        output,
        threads,
        force,
        backend,
        hash_files,
        key,
        expected,
    } = o;
    let expected = expected.as_ref();
    let hash_files = hash_files || expected.is_some();
    if threads == Some(0) {
        bail!("--threads must be at least 1");
    }
    if key.is_some() && backend == Backend::Tools {
        bail!(
            "--backend tools writes a plaintext image first; --encrypt needs the native backend, which never does"
        );
    }
    let outputs = Outputs::new(&output, if key.is_some() { "empk" } else { "mpk" }, force)?;
    let uuid = identity.uuid();
    let salt = identity.salt();
    let (scan, what) = match input {
        PackInput::Folder { dir, symlinks } => (scan::scan(dir.as_std_path(), symlinks)?, dir),
        PackInput::Files(scan) => (scan, Utf8PathBuf::from("the files")),
    };
    let layout = mpk_erofs::plan_for(schema.mkfs(), &scan.tree, *uuid.as_bytes())
        .with_context(|| format!("cannot lay out `{what}`"))?;
    let threads = threads.unwrap_or(0);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .context("cannot start the hashing threads")?;
    let native = |out: Option<&std::fs::File>,
                  encrypt: Option<pipeline::Encrypt<'_>>,
                  hash_files: bool,
                  what: &str|
     -> Result<pipeline::Packed> {
        progress.begin(what, layout.image_len());
        let packed = pipeline::pack_into(
            &scan,
            &layout,
            &pipeline::PackParams {
                salt: &salt,
                uuid: *uuid.as_bytes(),
                out,
                encrypt,
                hash_files,
                progress: &|n| progress.advance(n),
            },
            &pool,
        );
        progress.end();
        packed
    };

    if let Some(key) = key {
        // The dm-crypt key derives from the root hash (Modelwrap's HKDF
        // salt), so the root must be known before the first ciphertext
        // byte: one hashing pass writes nothing (and checks the expected
        // file hashes), the second encrypts as it packs. The alternative,
        // one pass that encrypts a plaintext image afterwards, would put
        // the plaintext on disk.
        let first = native(None, None, hash_files, "hashing")?;
        let reference = Reference {
            root: first.root,
            hash_offset: layout.image_len(),
            uuid,
        };
        let mut report = report(&scan, &layout, &reference, &identity, schema, &first.sha256);
        check_expected(&report, expected)?;
        let (cipher, container, enc) = crate::encrypted::pack_crypto(&key, &reference, &identity)?;
        drop(key);
        let tmp = outputs.temp_mpk()?;
        let f = tmp.as_file();
        let base = container.payload_offset();
        let write_err = || format!("cannot write `{output}`");
        f.write_all_at(&container.head(), 0)
            .with_context(write_err)?;
        let second = native(
            Some(f),
            Some(pipeline::Encrypt {
                cipher: &cipher,
                base,
            }),
            false,
            "encrypting",
        )?;
        if second.root != first.root {
            bail!(
                "the input changed between the hashing and the encrypting pass (root {} then {}); nothing was written",
                hex::encode(first.root),
                hex::encode(second.root)
            );
        }
        f.write_all_at(&container.tail(), base + container.payload_len)
            .with_context(write_err)?;
        report.encryption = Some(EncryptionReport {
            encrypted_reference: enc.to_string(),
            partition_uuid: enc.uuid.to_string(),
            disk_guid: container.disk_guid.to_string(),
            cipher: "aes-xts-plain64",
            sector_size: mpk_crypt::CRYPT_SECTOR as u32,
            payload_offset: base,
            image_len: container.image_len(),
        });
        outputs.commit(tmp, &enc.to_string())?;
        return Ok(report);
    }

    let (mpk_tmp, root, sha256) = match backend {
        Backend::Native => {
            let tmp = outputs.temp_mpk()?;
            let packed = native(Some(tmp.as_file()), None, hash_files, "packing")?;
            (tmp, packed.root, packed.sha256)
        }
        Backend::Tools => {
            let tmp = outputs.temp_mpk()?;
            let root = tools::reference_pack(&scan, &identity, schema, &tmp.path())?;
            let sha256 = if hash_files {
                crate::hashing::file_sha256s(&scan)?
            } else {
                Default::default()
            };
            (tmp, root, sha256)
        }
    };
    let reference = Reference {
        root,
        hash_offset: layout.image_len(),
        uuid,
    };
    let report = report(&scan, &layout, &reference, &identity, schema, &sha256);
    check_expected(&report, expected)?;
    outputs.commit(mpk_tmp, &reference.to_string())?;
    Ok(report)
}

/// With `expected` (path → lowercase hex SHA-256): every file's hash must
/// equal it and the set of files must be the same.
fn check_expected(report: &PackReport, expected: Option<&BTreeMap<String, String>>) -> Result<()> {
    let Some(expected) = expected else {
        return Ok(());
    };
    for f in &report.files {
        match expected.get(&f.path) {
            None => {
                return Err(Finding::error(format!(
                    "`{}` is not in the expected file list; nothing was written",
                    f.path
                )));
            }
            Some(want) if f.sha256.as_deref() != Some(want.as_str()) => {
                return Err(Finding::error(format!(
                    "`{}` has sha256 {} but {want} was expected; nothing was written",
                    f.path,
                    f.sha256.as_deref().unwrap_or("?")
                )));
            }
            Some(_) => {}
        }
    }
    if let Some(missing) = expected
        .keys()
        .find(|p| !report.files.iter().any(|f| &f.path == *p))
    {
        return Err(Finding::error(format!(
            "expected file `{missing}` is missing; nothing was written"
        )));
    }
    Ok(())
}

fn report(
    scan: &scan::Scan,
    layout: &mpk_erofs::Layout,
    reference: &Reference,
    identity: &Identity,
    schema: Schema,
    sha256: &HashMap<NodeId, [u8; 32]>,
) -> PackReport {
    PackReport {
        reference: reference.to_string(),
        root_hash: hex::encode(reference.root),
        hash_offset: reference.hash_offset,
        uuid: reference.uuid.to_string(),
        salt: hex::encode(identity.salt()),
        schema,
        identity: identity.to_string(),
        files: file_reports(scan, layout, sha256),
        encryption: None,
    }
}

/// Every file of `scan` with its placement in `layout` (and its SHA-256
/// when `sha256` has it), in the report's order: what `--json` and the
/// manifest list.
pub(crate) fn file_reports(
    scan: &scan::Scan,
    layout: &mpk_erofs::Layout,
    sha256: &HashMap<NodeId, [u8; 32]>,
) -> Vec<FileReport> {
    let mut files = Vec::new();
    // Depth-first with byte-sorted children (the 1.5 planner's image
    // order; 1.8.6 places a folder's files before its subfolders' files).
    let mut stack = vec![mpk_erofs::Tree::ROOT];
    while let Some(id) = stack.pop() {
        match &scan.tree.node(id).kind {
            NodeKind::Dir { children } => {
                let mut c = children.clone();
                c.sort_by(|x, y| scan.tree.node(*y).name.cmp(&scan.tree.node(*x).name));
                stack.extend(c);
            }
            NodeKind::File { size } => {
                let pl = layout.placement(id);
                files.push(FileReport {
                    path: scan.tree.path(id),
                    size: *size,
                    sha256: sha256.get(&id).map(hex::encode),
                    first_block: pl.first_block,
                    tail_block: pl.tail_block(),
                });
            }
        }
    }
    files
}
