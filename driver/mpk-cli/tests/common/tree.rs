//! Test trees and the reference pipeline.
//!
//! * [`random_tree`]: a deterministic (seeded) generator of normalised trees
//!   (files 0644, folders 0755) that stress the EROFS 1.5 layout rules:
//!   empty files, every kind of tail, multi-block directories, names that
//!   sort around `.`/`..`, UTF-8 names, long names, deep nesting.
//! * [`reference_pack`]: the Modelwrap schema 1 reference pipeline
//!   (`mkfs.erofs` 1.5 + `veritysetup format`) run on an honest normalised
//!   staging copy of a tree; [`reference_pack_as`] for either schema
//!   (schema 2: `mkfs.erofs` 1.8.6 from `$MPK_MKFS_EROFS_186`).
//! * [`compare_files`]: byte comparison that reports the first differing
//!   offset and block instead of a giant diff.
//! * [`mpk_pack`]: runs `mpk pack` (the binary under test).

use std::collections::HashSet;
use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, RngCore, SeedableRng};
use sha2::{Digest, Sha256};

/// Block size of EROFS 1.5 images and of the verity trees.
pub const BLOCK: u64 = 4096;

/// Limits for [`random_tree_with`].
#[derive(Debug, Clone, Copy)]
pub struct TreeOptions {
    /// Upper bound on the number of entries (files + folders, root excluded).
    pub max_entries: usize,
    /// Upper bound on the total file bytes.
    pub max_bytes: u64,
    /// Deepest nesting of ordinary random folders (deep chains go further).
    pub max_depth: usize,
}

impl Default for TreeOptions {
    fn default() -> Self {
        Self {
            max_entries: 700,
            max_bytes: 1 << 20,
            max_depth: 5,
        }
    }
}

/// What [`random_tree`] wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TreeStats {
    /// Regular files written.
    pub files: usize,
    /// Folders written (root excluded).
    pub dirs: usize,
    /// Total file bytes.
    pub bytes: u64,
    /// Deepest folder level reached (root = 0).
    pub depth: usize,
    /// Largest number of entries in one folder.
    pub widest: usize,
}

/// Writes a random normalised tree at `root` (created, mode 0755) with the
/// default [`TreeOptions`]. The same seed always gives the same tree.
pub fn random_tree(root: &Path, seed: u64) -> TreeStats {
    random_tree_with(root, seed, TreeOptions::default())
}

/// Writes a random normalised tree at `root` (created, mode 0755).
pub fn random_tree_with(root: &Path, seed: u64, opts: TreeOptions) -> TreeStats {
    fs::create_dir_all(root).unwrap_or_else(|e| panic!("mkdir {}: {e}", root.display()));
    set_mode(root, 0o755);
    let mut g = Gen {
        rng: StdRng::seed_from_u64(seed ^ 0x6d70_6b5f_7472_6565),
        opts,
        stats: TreeStats::default(),
        big_dirs: 0,
        deep_chains: 0,
    };
    g.fill_dir(root, 0);
    g.stats
}

/// Edge-case file sizes around the 4096-byte block and the inline limits
/// (tail ≤ 4064 inline for a compact inode, ≤ 4032 for an extended one).
pub const EDGE_SIZES: &[u64] = &[
    1,
    4095,
    4096,
    4097,
    4064,
    4065,
    4032,
    4033,
    8191,
    8192,
    12288,
    3 * 4096 + 4064,
    2 * 4096 + 4065,
    4096 + 4033,
    4096 + 1,
    4096 + 4095,
];

/// Name fragments chosen for their byte-wise sort position (around `.` 0x2E
/// and `..`), plus multi-byte UTF-8.
const PIECES: &[&str] = &[
    " ",
    "!",
    "-",
    "+",
    ".",
    "~",
    "é",
    "日本",
    "#",
    "$",
    "%",
    "&",
    "'",
    "(",
    ")",
    ",",
    "_",
    "=",
    "@",
    "[",
    "]",
    "{",
    "}",
    ";",
    "^",
    "`",
    "a",
    "b",
    "z",
    "A",
    "Z",
    "0",
    "9",
    "model",
    "weights",
    "config",
    ".hidden",
    "safetensors",
    "ü",
    "Ω",
    "😀",
    "tokenizer",
    "README",
    "x",
];

/// Characters that sort before `.` (0x2E) byte-wise.
const BEFORE_DOT: &[&str] = &[" ", "!", "#", "$", "%", "&", "'", "(", ")", "+", ",", "-"];

const EXTS: &[&str] = &[
    ".bin",
    ".json",
    ".safetensors",
    ".md",
    ".txt",
    ".gguf",
    "",
    "",
    "",
];

struct Gen {
    rng: StdRng,
    opts: TreeOptions,
    stats: TreeStats,
    big_dirs: usize,
    deep_chains: usize,
}

impl Gen {
    fn room(&self) -> usize {
        self.opts
            .max_entries
            .saturating_sub(self.stats.files + self.stats.dirs)
    }

    fn fill_dir(&mut self, dir: &Path, depth: usize) {
        self.stats.depth = self.stats.depth.max(depth);
        let mut names: HashSet<Vec<u8>> = HashSet::new();
        let roll = self.rng.gen_range(0..100);
        // Root sometimes gets enough entries to push its inline dirents past
        // 2912 bytes (root nid >= 128) or into full blocks.
        let (count, big) = if roll < 6 && self.big_dirs < 2 && self.room() > 150 {
            self.big_dirs += 1;
            (self.rng.gen_range(150..=400.min(self.room())), true)
        } else if depth == 0 && roll < 30 {
            // Enough root dirents for a tail past 2912 bytes, or full blocks.
            (self.rng.gen_range(100..=220).min(self.room()), false)
        } else if depth == 0 {
            (self.rng.gen_range(3..=14).min(self.room()), false)
        } else {
            let max = 10usize.saturating_sub(depth) + 2;
            (self.rng.gen_range(0..=max).min(self.room()), false)
        };
        self.stats.widest = self.stats.widest.max(count);

        // Occasionally one deep chain of nested folders.
        if depth <= 1 && self.deep_chains == 0 && self.room() > 45 && self.rng.gen_bool(0.25) {
            self.deep_chains += 1;
            let levels = self.rng.gen_range(10..=40);
            let mut p = dir.to_path_buf();
            let name = self.unique_name(&mut names, dir, depth == 0, false);
            p.push(&name);
            for level in 0..levels {
                if level > 0 {
                    let n = if self.rng.gen_bool(0.5) {
                        format!("d{level}")
                    } else {
                        self.short_name()
                    };
                    p.push(n);
                }
                mkdir(&p);
                self.stats.dirs += 1;
            }
            self.stats.depth = self.stats.depth.max(depth + levels);
            let size = self.pick_size(false);
            self.write_file(&p.join("leaf.bin"), size);
        }

        for _ in 0..count {
            if self.room() == 0 {
                break;
            }
            let subdir = !big
                && depth < self.opts.max_depth
                && self.rng.gen_bool(match depth {
                    0 => 0.3,
                    1 => 0.25,
                    _ => 0.15,
                });
            let name = self.unique_name(&mut names, dir, depth == 0, big);
            let path = dir.join(&name);
            if subdir {
                mkdir(&path);
                self.stats.dirs += 1;
                self.fill_dir(&path, depth + 1);
            } else {
                let size = self.pick_size(big);
                self.write_file(&path, size);
            }
        }
    }

    fn short_name(&mut self) -> String {
        (*PIECES.choose(&mut self.rng).expect("pieces")).to_owned()
    }

    fn unique_name(
        &mut self,
        taken: &mut HashSet<Vec<u8>>,
        dir: &Path,
        top: bool,
        big: bool,
    ) -> String {
        let dir_len = dir.as_os_str().len();
        loop {
            let mut name = if dir_len > 3300 {
                format!("p{}", self.rng.gen_range(0..100_000))
            } else if big {
                // Medium-long names so the folder spans several blocks.
                let mut s = self.name();
                while s.len() < 16 {
                    s.push_str(&self.short_name());
                }
                s
            } else {
                self.name()
            };
            truncate_utf8(&mut name, 254);
            let bad = name.is_empty()
                || name == "."
                || name == ".."
                || name.contains('/')
                || name.starts_with("lost+found")
                || (top && name == ".cache");
            if !bad && taken.insert(name.as_bytes().to_vec()) {
                return name;
            }
        }
    }

    fn name(&mut self) -> String {
        let roll = self.rng.gen_range(0..100);
        match roll {
            // A few pieces and an extension.
            0..=54 => {
                let n = self.rng.gen_range(1..=4);
                let mut s = String::new();
                for _ in 0..n {
                    s.push_str(PIECES.choose(&mut self.rng).expect("pieces"));
                }
                s.push_str(EXTS.choose(&mut self.rng).expect("exts"));
                s
            }
            // Leading byte below '.', so it sorts before "." and "..".
            55..=69 => {
                let mut s = (*BEFORE_DOT.choose(&mut self.rng).expect("before")).to_owned();
                s.push_str(&self.short_name());
                s
            }
            // Long names, up to the 254-byte limit.
            70..=79 => {
                let target = if self.rng.gen_bool(0.3) {
                    254
                } else {
                    self.rng.gen_range(60..=254)
                };
                let mut s = String::new();
                while s.len() < target {
                    if self.rng.gen_bool(0.1) {
                        s.push_str(PIECES.choose(&mut self.rng).expect("pieces"));
                    } else {
                        s.push(self.rng.gen_range(b'a'..=b'z') as char);
                    }
                }
                truncate_utf8(&mut s, target);
                s
            }
            // Single piece.
            80..=89 => self.short_name(),
            // Numbers and hidden files.
            90..=94 => format!("{}", self.rng.gen_range(0..1_000_000u32)),
            _ => format!(".{}", self.short_name()),
        }
    }

    fn pick_size(&mut self, small: bool) -> u64 {
        let left = self.opts.max_bytes.saturating_sub(self.stats.bytes);
        let roll = self.rng.gen_range(0..100);
        let size = if small {
            match roll {
                0..=59 => 0,
                60..=89 => self.rng.gen_range(1..=64),
                _ => *EDGE_SIZES.choose(&mut self.rng).expect("edge"),
            }
        } else {
            match roll {
                0..=17 => 0,
                18..=42 => self.rng.gen_range(1..=300),
                43..=64 => *EDGE_SIZES.choose(&mut self.rng).expect("edge"),
                65..=76 => BLOCK * self.rng.gen_range(1..=4),
                // Any tail: small inline, near the 4032/4064 limits, tail block.
                _ => {
                    let tail = match self.rng.gen_range(0..4) {
                        0 => self.rng.gen_range(1..BLOCK),
                        1 => self.rng.gen_range(4000..BLOCK),
                        2 => self.rng.gen_range(4030..=4068),
                        _ => self.rng.gen_range(1..64),
                    };
                    BLOCK * self.rng.gen_range(0..=3) + tail
                }
            }
        };
        if size > left {
            self.rng.gen_range(0..=left.min(100))
        } else {
            size
        }
    }

    fn write_file(&mut self, path: &Path, size: u64) {
        let len = usize::try_from(size).expect("size fits usize");
        let mut data = vec![0u8; len];
        match self.rng.gen_range(0..10) {
            // All zeros (sparseness must not matter).
            0 => {}
            // A repeated 4096-byte block (no deduplication in 1.5).
            1 => {
                let mut block = [0u8; 4096];
                self.rng.fill_bytes(&mut block);
                for chunk in data.chunks_mut(4096) {
                    chunk.copy_from_slice(&block[..chunk.len()]);
                }
            }
            _ => self.rng.fill_bytes(&mut data),
        }
        fs::write(path, &data).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        set_mode(path, 0o644);
        self.stats.files += 1;
        self.stats.bytes += size;
    }
}

/// Cuts `s` to at most `max` bytes on a character boundary.
pub fn truncate_utf8(s: &mut String, max: usize) {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
}

/// Creates a folder (and parents) with mode 0755.
pub fn mkdir(path: &Path) {
    fs::create_dir_all(path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
    set_mode(path, 0o755);
}

/// Writes a file (creating parents, 0755) with mode 0644.
pub fn write(path: &Path, data: &[u8]) {
    if let Some(parent) = path.parent() {
        if !parent.exists() {
            mkdir(parent);
        }
    }
    fs::write(path, data).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    set_mode(path, 0o644);
}

/// chmod.
pub fn set_mode(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

/// Deterministic pseudo-random bytes.
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    StdRng::seed_from_u64(seed).fill_bytes(&mut v);
    v
}

/// A valid identity for tests: `mpk-test/tree-<seed>@<40 lowercase hex>`.
pub fn test_identity(seed: u64) -> String {
    let rev = hex::encode(&Sha256::digest(format!("rev-{seed}").as_bytes())[..20]);
    format!("mpk-test/tree_{seed}.v1@{rev}")
}

/// UUIDv5(NAMESPACE_URL, identity + "-inner"), lowercase hyphenated.
pub fn identity_uuid(identity: &str) -> String {
    uuid::Uuid::new_v5(
        &uuid::Uuid::NAMESPACE_URL,
        format!("{identity}-inner").as_bytes(),
    )
    .hyphenated()
    .to_string()
}

/// SHA-256(identity bytes), lowercase hex.
pub fn identity_salt_hex(identity: &str) -> String {
    hex::encode(Sha256::digest(identity.as_bytes()))
}

/// The `.info` file next to `out` (same stem).
pub fn info_path(out: &Path) -> PathBuf {
    out.with_extension("info")
}

/// Parses `<root>_<H>_<uuid>` into its parts.
pub fn parse_reference(reference: &str) -> (String, u64, String) {
    let mut parts = reference.splitn(3, '_');
    let root = parts.next().expect("root").to_owned();
    let h = parts
        .next()
        .expect("hash offset")
        .parse()
        .unwrap_or_else(|e| panic!("bad hash offset in {reference:?}: {e}"));
    let uuid = parts.next().expect("uuid").to_owned();
    (root, h, uuid)
}

/// Copies `src` to `dst` the way Modelwrap normalises a download: regular
/// files 0644, folders 0755 (root too), top-level `.cache` left out,
/// symlinks followed to the regular file they name (wherever it is),
/// hardlinks become separate files. Panics on anything the contract
/// refuses (special files, dangling links, links to folders). Holes are
/// kept (zero 1 MiB runs are skipped), so 4 GiB sparse files stay cheap.
pub fn stage_normalised(src: &Path, dst: &Path) {
    stage_dir(src, dst, true);
}

fn stage_dir(src: &Path, dst: &Path, top: bool) {
    fs::create_dir(dst).unwrap_or_else(|e| panic!("mkdir {}: {e}", dst.display()));
    set_mode(dst, 0o755);
    let entries = fs::read_dir(src).unwrap_or_else(|e| panic!("readdir {}: {e}", src.display()));
    for entry in entries {
        let entry = entry.expect("readdir entry");
        let name = entry.file_name();
        if top && name == ".cache" {
            continue;
        }
        let from = entry.path();
        let to = dst.join(&name);
        let lmeta = fs::symlink_metadata(&from).expect("lstat");
        let meta = fs::metadata(&from)
            .unwrap_or_else(|e| panic!("staging: cannot follow {}: {e}", from.display()));
        if meta.is_dir() {
            assert!(
                !lmeta.file_type().is_symlink(),
                "staging: symlink to a folder: {}",
                from.display()
            );
            stage_dir(&from, &to, false);
        } else if meta.is_file() {
            sparse_copy(&from, &to);
            set_mode(&to, 0o644);
        } else {
            panic!("staging: special file {}", from.display());
        }
    }
}

fn sparse_copy(from: &Path, to: &Path) {
    let mut r = fs::File::open(from).unwrap_or_else(|e| panic!("open {}: {e}", from.display()));
    let mut w = fs::File::create(to).unwrap_or_else(|e| panic!("create {}: {e}", to.display()));
    let mut buf = vec![0u8; 1 << 20];
    // Slice equality is a memcmp, fast even in debug builds.
    let zeros = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = read_full(&mut r, &mut buf);
        if n == 0 {
            break;
        }
        if buf[..n] == zeros[..n] {
            w.seek(SeekFrom::Current(n as i64)).expect("seek");
        } else {
            w.write_all(&buf[..n]).expect("write");
        }
        total += n as u64;
    }
    w.set_len(total).expect("set_len");
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> usize {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => panic!("read: {e}"),
        }
    }
    n
}

fn run_checked(cmd: &mut Command, what: &str) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs the reference pipeline on a normalised staging copy of `dir`:
///
/// ```text
/// env -u SOURCE_DATE_EPOCH mkfs.erofs --all-root -T0 -U<uuid> OUT STAGE
/// veritysetup --salt=<hex> --uuid=<uuid> --hash-offset=<H> \
///     --root-hash-file=ROOT format OUT OUT
/// ```
///
/// writes `OUT.info` (no newline) and returns the reference
/// `<root>_<H>_<uuid>`. Returns `None` (skip) when a tool is missing, which
/// panics instead under `MPK_REQUIRE_TOOLS=1`.
pub fn reference_pack(dir: &Path, identity: &str, out: &Path) -> Option<String> {
    reference_pack_as(Schema::V1, dir, identity, out)
}

/// A Modelwrap schema and its reference mkfs.erofs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schema {
    /// `mkfs.erofs` 1.5 from PATH.
    V1,
    /// `mkfs.erofs` 1.8.6 from `$MPK_MKFS_EROFS_186`, run with `-b4096
    /// --workers=2`.
    V2,
}

impl Schema {
    /// The schema an `mpk pack` argument list asks for.
    pub fn of_args(extra: &[&str]) -> Self {
        if extra.windows(2).any(|w| w == ["--schema", "modelwrap-v2"]) {
            Schema::V2
        } else {
            Schema::V1
        }
    }

    /// The reference mkfs.erofs and its extra arguments (`None`: skip).
    pub fn mkfs(self) -> Option<(PathBuf, Vec<String>)> {
        match self {
            Schema::V1 => super::tool("mkfs.erofs").map(|p| (p, Vec::new())),
            Schema::V2 => mpk_testutil::tool_from_env("MPK_MKFS_EROFS_186", "1.8.6")
                .map(|p| (p, vec!["-b4096".into(), "--workers=2".into()])),
        }
    }
}

/// [`reference_pack`] with `schema`'s mkfs.erofs.
pub fn reference_pack_as(schema: Schema, dir: &Path, identity: &str, out: &Path) -> Option<String> {
    let mkfs = schema.mkfs()?;
    let veritysetup = super::tool("veritysetup")?;
    let scratch = tempfile::tempdir().expect("tempdir");
    let stage = scratch.path().join("stage");
    stage_normalised(dir, &stage);
    Some(reference_pack_staged(
        &mkfs,
        &veritysetup,
        &stage,
        identity,
        out,
        scratch.path(),
    ))
}

/// As [`reference_pack`], but on `dir` exactly as it is (no staging copy):
/// for trees that are normalised already and too big to copy cheaply.
pub fn reference_pack_unstaged(dir: &Path, identity: &str, out: &Path) -> Option<String> {
    let mkfs = Schema::V1.mkfs()?;
    let veritysetup = super::tool("veritysetup")?;
    let scratch = tempfile::tempdir().expect("tempdir");
    Some(reference_pack_staged(
        &mkfs,
        &veritysetup,
        dir,
        identity,
        out,
        scratch.path(),
    ))
}

fn reference_pack_staged(
    (mkfs, mkfs_args): &(PathBuf, Vec<String>),
    veritysetup: &Path,
    stage: &Path,
    identity: &str,
    out: &Path,
    scratch: &Path,
) -> String {
    let uuid = identity_uuid(identity);
    let salt = identity_salt_hex(identity);
    let _ = fs::remove_file(out);
    run_checked(
        Command::new(mkfs)
            .env_remove("SOURCE_DATE_EPOCH")
            .arg("--all-root")
            .arg("-T0")
            .arg(format!("-U{uuid}"))
            .args(mkfs_args)
            .arg(out)
            .arg(stage),
        "mkfs.erofs",
    );
    let h = fs::metadata(out).expect("stat mkfs output").len();
    assert_eq!(h % BLOCK, 0, "mkfs.erofs image size {h} not block aligned");
    let root_file = scratch.join("ROOT");
    run_checked(
        Command::new(veritysetup)
            .arg(format!("--salt={salt}"))
            .arg(format!("--uuid={uuid}"))
            .arg(format!("--hash-offset={h}"))
            .arg(format!("--root-hash-file={}", root_file.display()))
            .arg("format")
            .arg(out)
            .arg(out),
        "veritysetup format",
    );
    let root = fs::read_to_string(&root_file).expect("read root hash file");
    let root = root.trim();
    assert!(
        root.len() == 64 && root.bytes().all(|b| b.is_ascii_hexdigit()),
        "odd root hash {root:?}"
    );
    let reference = format!("{}_{h}_{uuid}", root.to_ascii_lowercase());
    fs::write(info_path(out), reference.as_bytes()).expect("write .info");
    reference
}

/// Runs `mpk pack DIR --identity ID -o OUT [extra…]`.
pub fn mpk_pack(dir: &Path, identity: &str, out: &Path, extra: &[&str]) -> Output {
    super::mpk()
        .arg("pack")
        .arg(dir)
        .arg("--identity")
        .arg(identity)
        .arg("-o")
        .arg(out)
        .args(extra)
        .output()
        .expect("run mpk pack")
}

/// stdout + stderr of a finished command, lossily decoded.
pub fn output_text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Like [`mpk_pack`], but panics with the command's output unless it
/// succeeded. Returns stdout.
pub fn mpk_pack_ok(dir: &Path, identity: &str, out: &Path, extra: &[&str]) -> String {
    let o = mpk_pack(dir, identity, out, extra);
    assert!(
        o.status.success(),
        "mpk pack {} failed ({}):\n{}",
        dir.display(),
        o.status,
        output_text(&o)
    );
    String::from_utf8(o.stdout).expect("stdout is UTF-8")
}

/// Names the region of a `.mpk` that holds `offset`.
pub fn describe_offset(offset: u64, hash_offset: Option<u64>) -> String {
    let block = offset / BLOCK;
    match hash_offset {
        Some(h) if offset >= h + BLOCK => format!(
            "offset {offset} (0x{offset:x}), image block {block}: hash block {} (block offset {})",
            (offset - h - BLOCK) / BLOCK,
            offset % BLOCK
        ),
        Some(h) if offset >= h => format!(
            "offset {offset} (0x{offset:x}), image block {block}: verity superblock byte {}",
            offset - h
        ),
        _ => format!(
            "offset {offset} (0x{offset:x}), EROFS block {block} (block offset {})",
            offset % BLOCK
        ),
    }
}

/// Compares two files in 1 MiB chunks. On a mismatch returns a short
/// description: sizes, first differing offset and its block/region, and the
/// 16 bytes from there in each file.
pub fn compare_files(
    expected: &Path,
    actual: &Path,
    hash_offset: Option<u64>,
) -> Result<(), String> {
    let mut a =
        fs::File::open(expected).map_err(|e| format!("open {}: {e}", expected.display()))?;
    let mut b = fs::File::open(actual).map_err(|e| format!("open {}: {e}", actual.display()))?;
    let la = a.metadata().map_err(|e| e.to_string())?.len();
    let lb = b.metadata().map_err(|e| e.to_string())?.len();
    let mut ba = vec![0u8; 1 << 20];
    let mut bb = vec![0u8; 1 << 20];
    let mut pos = 0u64;
    loop {
        let na = read_full(&mut a, &mut ba);
        let nb = read_full(&mut b, &mut bb);
        let n = na.min(nb);
        // Slice equality first (a memcmp); search byte by byte only on a
        // mismatch.
        if ba[..n] != bb[..n] {
            let i = (0..n).find(|&i| ba[i] != bb[i]).expect("a difference");
            let off = pos + i as u64;
            let end_a = (i + 16).min(na);
            let end_b = (i + 16).min(nb);
            return Err(format!(
                "{} vs {}: first difference at {}; sizes {la} vs {lb}; expected {:02x?}, got {:02x?}",
                expected.display(),
                actual.display(),
                describe_offset(off, hash_offset),
                &ba[i..end_a],
                &bb[i..end_b]
            ));
        }
        if na != nb {
            return Err(format!(
                "{} vs {}: sizes differ ({la} vs {lb}); equal up to {}",
                expected.display(),
                actual.display(),
                describe_offset(pos + n as u64, hash_offset)
            ));
        }
        if na == 0 {
            return Ok(());
        }
        pos += na as u64;
    }
}

/// Packs `dir` with both the reference pipeline (of the schema `extra`
/// names with `--schema`) and `mpk pack` (into two folders under `work`)
/// and compares `.mpk`, `.info` and stdout. Returns
/// `Ok(None)` when the reference tools are missing (skip), `Ok(Some(ref))`
/// on equality, `Err(description)` otherwise.
pub fn differential(
    dir: &Path,
    identity: &str,
    work: &Path,
    extra: &[&str],
) -> Result<Option<String>, String> {
    let ref_dir = work.join("reference");
    let mpk_dir = work.join("mpk");
    fs::create_dir_all(&ref_dir).expect("mkdir");
    fs::create_dir_all(&mpk_dir).expect("mkdir");
    let ref_out = ref_dir.join("model.mpk");
    let t0 = Instant::now();
    let Some(reference) = reference_pack_as(Schema::of_args(extra), dir, identity, &ref_out) else {
        return Ok(None);
    };
    let t1 = Instant::now();
    let out = mpk_dir.join("model.mpk");
    let o = mpk_pack(dir, identity, &out, extra);
    if !o.status.success() {
        return Err(format!(
            "mpk pack failed ({}): {}",
            o.status,
            output_text(&o)
        ));
    }
    let t2 = Instant::now();
    let (_, h, _) = parse_reference(&reference);
    compare_files(&ref_out, &out, Some(h))?;
    eprintln!(
        "differential: reference {:?}, mpk pack {:?}, compare {:?}",
        t1 - t0,
        t2 - t1,
        t2.elapsed()
    );
    let info = fs::read(info_path(&out)).map_err(|e| format!("read mpk .info: {e}"))?;
    if info != reference.as_bytes() {
        return Err(format!(
            ".info differs: expected {reference:?}, got {:?}",
            String::from_utf8_lossy(&info)
        ));
    }
    if !extra.contains(&"--json") {
        let stdout = String::from_utf8_lossy(&o.stdout);
        if stdout.trim_end() != reference {
            return Err(format!(
                "stdout differs: expected {reference:?}, got {stdout:?}"
            ));
        }
    }
    Ok(Some(reference))
}

/// Every regular file under `root` (relative path with `/`, bytes), sorted.
pub fn list_files(root: &Path) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, PathBuf)>) {
    for entry in fs::read_dir(dir).expect("readdir") {
        let p = entry.expect("entry").path();
        let meta = fs::metadata(&p).expect("stat");
        if meta.is_dir() {
            walk(root, &p, out);
        } else {
            let rel = p
                .strip_prefix(root)
                .expect("prefix")
                .to_str()
                .expect("UTF-8 path")
                .to_owned();
            out.push((rel, p));
        }
    }
}
