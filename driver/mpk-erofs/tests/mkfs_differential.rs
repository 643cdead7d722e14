//! Differential test of both layout models against the real `mkfs.erofs`
//! 1.5 (on PATH) and 1.8.6 (`$MPK_MKFS_EROFS_186`): random trees are written
//! to disk, packed by both, and compared byte for byte. Fails (not skips)
//! when a tool is missing and `MPK_REQUIRE_TOOLS=1`.

use mpk_erofs::reader::Image;
use mpk_erofs::{Mkfs, NodeId, NodeKind, Tree, plan_for};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

const UUID: [u8; 16] = [
    0x90, 0x57, 0x85, 0xb4, 0xb1, 0x98, 0x5e, 0xd6, 0xb9, 0x7d, 0xe7, 0xc3, 0x6a, 0x0b, 0xe1, 0xdf,
];
const UUID_STR: &str = "905785b4-b198-5ed6-b97d-e7c36a0be1df";

/// A reference mkfs.erofs and the model that must match it.
struct Ref {
    path: PathBuf,
    mkfs: Mkfs,
    /// `--workers=` for 1.8.6 (the layout must not depend on it).
    workers: u32,
}

fn mkfs15() -> Option<Ref> {
    mpk_testutil::tool("mkfs.erofs").map(|path| Ref {
        path,
        mkfs: Mkfs::V1_5,
        workers: 0,
    })
}

fn mkfs186() -> Option<Ref> {
    mpk_testutil::tool_from_env("MPK_MKFS_EROFS_186", "1.8.6").map(|path| Ref {
        path,
        mkfs: Mkfs::V1_8_6,
        workers: 1,
    })
}

/// Content of file `seed` with `size` bytes (deterministic).
fn content(seed: u64, size: u64) -> Vec<u8> {
    let mut r = StdRng::seed_from_u64(seed);
    (0..size).map(|_| r.r#gen()).collect()
}

struct Gen {
    tree: Tree,
    contents: HashMap<usize, Vec<u8>>,
}

const NAME_CHARS: &[&str] = &[
    "a", "b", "Z", "0", "9", " ", "!", "-", "+", ".", "_", "~", "é", "日", "#", ",", "(", "%",
];

fn name(r: &mut StdRng) -> Vec<u8> {
    let len = match r.gen_range(0..10) {
        0 => r.gen_range(60..200),
        _ => r.gen_range(1..12),
    };
    let mut s = String::new();
    while s.len() < len {
        s.push_str(NAME_CHARS[r.gen_range(0..NAME_CHARS.len())]);
    }
    if s == "." || s == ".." || s.starts_with("lost+found") {
        s.push('x');
    }
    s.into_bytes()
}

fn size(r: &mut StdRng) -> u64 {
    match r.gen_range(0..12) {
        0 => 0,
        1 => [1, 4095, 4096, 4097, 4064, 4065, 4032, 4033, 8191, 8192][r.gen_range(0..10)],
        2 => r.gen_range(0..5) * 4096 + r.gen_range(4000..4096),
        3 => r.gen_range(1..6) * 4096,
        4 => r.gen_range(0..40000),
        _ => r.gen_range(0..3000),
    }
}

fn gen_tree(seed: u64, max_entries: usize) -> Gen {
    let mut r = StdRng::seed_from_u64(seed);
    let mut g = Gen {
        tree: Tree::new(0o755),
        contents: HashMap::new(),
    };
    let mut dirs = vec![Tree::ROOT];
    let n = r.gen_range(0..max_entries);
    let mut names: HashMap<usize, std::collections::HashSet<Vec<u8>>> = HashMap::new();
    for i in 0..n {
        // Bias towards a few big directories.
        let parent = if r.gen_bool(0.5) {
            dirs[r.gen_range(0..dirs.len().min(3))]
        } else {
            dirs[r.gen_range(0..dirs.len())]
        };
        let nm = name(&mut r);
        if !names.entry(parent.0).or_default().insert(nm.clone()) {
            continue;
        }
        if r.gen_bool(0.2) {
            let d = g.tree.add_dir(parent, &nm, 0o755).unwrap();
            dirs.push(d);
        } else {
            let sz = size(&mut r);
            let f = g.tree.add_file(parent, &nm, 0o644, sz).unwrap();
            g.contents.insert(f.0, content(seed * 1000 + i as u64, sz));
        }
    }
    g
}

fn write_tree(g: &Gen, root: &Path) {
    fn rec(g: &Gen, id: NodeId, path: &Path) {
        let node = g.tree.node(id);
        match &node.kind {
            NodeKind::Dir { children } => {
                std::fs::create_dir_all(path).unwrap();
                for &c in children {
                    let cn = g.tree.node(c);
                    let p = path.join(std::str::from_utf8(&cn.name).unwrap());
                    rec(g, c, &p);
                }
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(node.perm.into()))
                    .unwrap();
            }
            NodeKind::File { .. } => {
                std::fs::write(path, &g.contents[&id.0]).unwrap();
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(node.perm.into()))
                    .unwrap();
            }
        }
    }
    rec(g, Tree::ROOT, root);
}

fn assemble(g: &Gen, mkfs: Mkfs) -> Vec<u8> {
    plan_for(mkfs, &g.tree, UUID)
        .expect("plan")
        .to_bytes(|n| g.contents[&n.0].as_slice())
}

/// Runs the reference mkfs.erofs on `dir` into `out`.
fn run_reference(tool: &Ref, dir: &Path, out: &Path) {
    let mut cmd = Command::new(&tool.path);
    cmd.env_remove("SOURCE_DATE_EPOCH")
        .arg("--all-root")
        .arg("-T0")
        .arg(format!("-U{UUID_STR}"));
    if tool.mkfs == Mkfs::V1_8_6 {
        cmd.arg("-b4096").arg(format!("--workers={}", tool.workers));
    }
    let st = cmd.arg(out).arg(dir).output().unwrap();
    assert!(st.status.success(), "mkfs.erofs failed: {st:?}");
}

fn reference(tool: &Ref, dir: &Path, out: &Path) -> Vec<u8> {
    run_reference(tool, dir, out);
    std::fs::read(out).unwrap()
}

fn first_diff(a: &[u8], b: &[u8]) -> Option<usize> {
    a.iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .or_else(|| (a.len() != b.len()).then(|| a.len().min(b.len())))
}

fn check(seed: u64, g: &Gen, tool: &Ref) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("root");
    write_tree(g, &dir);
    let want = reference(tool, &dir, &tmp.path().join("ref.img"));
    let got = assemble(g, tool.mkfs);
    if let Some(off) = first_diff(&got, &want) {
        panic!(
            "{:?} seed {seed}: image differs from mkfs.erofs at byte {off} (block {}, +{}); lengths {} vs {}",
            tool.mkfs,
            off / 4096,
            off % 4096,
            got.len(),
            want.len()
        );
    }
    // The reader sees the same files with the same bytes.
    let mut img = Image::open(got.as_slice()).unwrap();
    let entries = img.walk().unwrap();
    assert_eq!(entries.len(), g.tree.len(), "seed {seed}: entry count");
    for e in entries.iter().filter(|e| !e.is_dir()) {
        let mut data = Vec::new();
        img.read(e.nid, |c| data.extend_from_slice(c)).unwrap();
        let on_disk = std::fs::read(dir.join(e.display_path())).unwrap();
        assert_eq!(
            data,
            on_disk,
            "seed {seed}: contents of {}",
            e.display_path()
        );
    }
}

#[test]
fn random_trees_match_mkfs_erofs_15() {
    let Some(tool) = mkfs15() else { return };
    random_trees(&tool);
}

#[test]
fn random_trees_match_mkfs_erofs_186() {
    let Some(tool) = mkfs186() else { return };
    random_trees(&tool);
}

fn random_trees(tool: &Ref) {
    for seed in 0..60u64 {
        let max = if seed % 10 == 0 { 1500 } else { 120 };
        check(seed, &gen_tree(seed, max), tool);
    }
}

#[test]
fn edge_cases_match_mkfs_erofs_15() {
    let Some(tool) = mkfs15() else { return };
    edge_cases(&tool);
}

#[test]
fn edge_cases_match_mkfs_erofs_186() {
    let Some(tool) = mkfs186() else { return };
    edge_cases(&tool);
}

fn edge_cases(tool: &Ref) {
    let mut cases: Vec<Gen> = Vec::new();
    // Empty root.
    cases.push(Gen {
        tree: Tree::new(0o755),
        contents: HashMap::new(),
    });
    // One file of each interesting size, alone in the root.
    for sz in [
        0u64,
        1,
        4064,
        4065,
        4095,
        4096,
        4097,
        8191,
        8192,
        12288 + 4070,
    ] {
        let mut t = Tree::new(0o755);
        let f = t.add_file(Tree::ROOT, b"f", 0o644, sz).unwrap();
        cases.push(Gen {
            tree: t,
            contents: HashMap::from([(f.0, content(sz, sz))]),
        });
    }
    // A root whose inline dirents exceed 2912 bytes.
    let mut t = Tree::new(0o755);
    let mut contents = HashMap::new();
    for i in 0..140 {
        let f = t
            .add_file(
                Tree::ROOT,
                format!("file-{i:04}-xxxxxxxx").as_bytes(),
                0o644,
                10,
            )
            .unwrap();
        contents.insert(f.0, content(i, 10));
    }
    cases.push(Gen { tree: t, contents });
    // Deep nesting.
    let mut t = Tree::new(0o755);
    let mut d = Tree::ROOT;
    let mut contents = HashMap::new();
    for i in 0..40 {
        d = t.add_dir(d, format!("d{i}").as_bytes(), 0o755).unwrap();
        let f = t.add_file(d, b"x", 0o644, 5000).unwrap();
        contents.insert(f.0, content(i, 5000));
    }
    cases.push(Gen { tree: t, contents });
    // Non-default modes.
    let mut t = Tree::new(0o700);
    let f = t.add_file(Tree::ROOT, b"m", 0o600, 3).unwrap();
    cases.push(Gen {
        tree: t,
        contents: HashMap::from([(f.0, vec![1, 2, 3])]),
    });
    for (i, g) in cases.iter().enumerate() {
        check(1000 + i as u64, g, tool);
    }
}

/// A folder of files of `base + t` bytes for every tail size `t`.
fn every_tail(g: &mut Gen, parent: NodeId, base: u64) {
    for t in 0..4096u64 {
        let sz = base + t;
        let f = g
            .tree
            .add_file(parent, format!("t{t:04}").as_bytes(), 0o644, sz)
            .unwrap();
        g.contents.insert(f.0, content(sz, sz));
    }
}

fn every_tail_tree() -> Gen {
    let mut g = Gen {
        tree: Tree::new(0o755),
        contents: HashMap::new(),
    };
    let a = g.tree.add_dir(Tree::ROOT, b"a", 0o755).unwrap();
    every_tail(&mut g, a, 0);
    let b = g.tree.add_dir(Tree::ROOT, b"b", 0o755).unwrap();
    every_tail(&mut g, b, 4096);
    g
}

#[test]
fn every_tail_size_matches_mkfs_erofs_15() {
    let Some(tool) = mkfs15() else { return };
    check(2000, &every_tail_tree(), &tool);
}

#[test]
fn every_tail_size_matches_mkfs_erofs_186() {
    let Some(tool) = mkfs186() else { return };
    check(2000, &every_tail_tree(), &tool);
}

/// Wide (one folder of 5,000 entries), deep (200 nested folders, each with
/// a file) and flat-and-empty (2,000 empty files and folders) trees.
fn shapes() -> Vec<Gen> {
    let mut out = Vec::new();
    let mut g = Gen {
        tree: Tree::new(0o755),
        contents: HashMap::new(),
    };
    let mut r = StdRng::seed_from_u64(7);
    for i in 0..5000u64 {
        let nm = format!("{i:05}-{}", "w".repeat(r.gen_range(0..40)));
        if i % 9 == 0 {
            g.tree.add_dir(Tree::ROOT, nm.as_bytes(), 0o755).unwrap();
        } else {
            let sz = size(&mut r);
            let f = g
                .tree
                .add_file(Tree::ROOT, nm.as_bytes(), 0o644, sz)
                .unwrap();
            g.contents.insert(f.0, content(i, sz));
        }
    }
    out.push(g);
    let mut g = Gen {
        tree: Tree::new(0o755),
        contents: HashMap::new(),
    };
    let mut d = Tree::ROOT;
    for i in 0..200u64 {
        d = g
            .tree
            .add_dir(d, format!("d{i}").as_bytes(), 0o755)
            .unwrap();
        let f = g.tree.add_file(d, b"f", 0o644, i * 100).unwrap();
        g.contents.insert(f.0, content(i, i * 100));
    }
    out.push(g);
    let mut g = Gen {
        tree: Tree::new(0o755),
        contents: HashMap::new(),
    };
    for i in 0..1000u64 {
        let f = g
            .tree
            .add_file(Tree::ROOT, format!("e{i}").as_bytes(), 0o644, 0)
            .unwrap();
        g.contents.insert(f.0, Vec::new());
        g.tree
            .add_dir(Tree::ROOT, format!("E{i}").as_bytes(), 0o755)
            .unwrap();
    }
    out.push(g);
    out
}

#[test]
fn wide_deep_flat_match_mkfs_erofs_15() {
    let Some(tool) = mkfs15() else { return };
    for (i, g) in shapes().iter().enumerate() {
        check(3000 + i as u64, g, &tool);
    }
}

#[test]
fn wide_deep_flat_match_mkfs_erofs_186() {
    let Some(tool) = mkfs186() else { return };
    for (i, g) in shapes().iter().enumerate() {
        check(3000 + i as u64, g, &tool);
    }
}

/// Erofs-utils 1.8.6 says its worker count never changes the bytes: large
/// multi-file trees packed with 1, 2, 3 and 8 workers all match the model
/// (which has no worker count).
#[test]
fn worker_count_does_not_change_mkfs_erofs_186() {
    let Some(tool) = mkfs186() else { return };
    for seed in 0..3u64 {
        let g = gen_tree(500 + seed, 3000);
        for workers in [1, 2, 3, 8] {
            let tool = Ref {
                path: tool.path.clone(),
                mkfs: tool.mkfs,
                workers,
            };
            check(500 + seed, &g, &tool);
        }
    }
}

/// Names 1.5 cannot store and 1.8.6 can: 255 bytes, `lost+found` and
/// names beginning with it (kept, with their subtrees).
fn names_tree() -> Gen {
    let mut g = Gen {
        tree: Tree::new(0o755),
        contents: HashMap::new(),
    };
    let lf = g.tree.add_dir(Tree::ROOT, b"lost+found", 0o755).unwrap();
    let add = |g: &mut Gen, parent: NodeId, name: &[u8], sz: u64| {
        let f = g.tree.add_file(parent, name, 0o644, sz).unwrap();
        g.contents.insert(f.0, content(sz, sz));
    };
    add(&mut g, lf, b"x", 10);
    add(&mut g, Tree::ROOT, b"lost+found2", 5000);
    add(&mut g, Tree::ROOT, "n".repeat(255).as_bytes(), 100);
    add(&mut g, Tree::ROOT, "n".repeat(254).as_bytes(), 200);
    let sub = g.tree.add_dir(Tree::ROOT, b"sub", 0o755).unwrap();
    add(&mut g, sub, "é".repeat(127).as_bytes(), 3);
    g
}

#[test]
fn names_1_5_cannot_store_match_mkfs_erofs_186() {
    let Some(tool) = mkfs186() else { return };
    check(4000, &names_tree(), &tool);
}

#[test]
fn names_1_5_cannot_store_are_refused_for_1_5() {
    // Each of them alone is refused by the 1.5 model, naming it.
    for (name, culprit) in [
        ("lost+found".to_string(), "lost+found"),
        ("lost+found.txt".to_string(), "lost+found.txt"),
        ("n".repeat(255), "nnnn"),
    ] {
        let mut t = Tree::new(0o755);
        t.add_file(Tree::ROOT, name.as_bytes(), 0o644, 1).unwrap();
        let err = plan_for(Mkfs::V1_5, &t, UUID).unwrap_err().to_string();
        assert!(err.contains(culprit), "{err}");
        assert!(plan_for(Mkfs::V1_8_6, &t, UUID).is_ok());
    }
    // 256 bytes: no EROFS can store it.
    let mut t = Tree::new(0o755);
    assert!(t.add_file(Tree::ROOT, &[b'n'; 256], 0o644, 1).is_err());
}

/// Files over 4 GiB (extended inodes), sparse on disk: the model's
/// metadata blocks and the first and last block of every file run are
/// compared with the reference image (the rest is the file's zeros). A
/// 4040-byte tail does not fit beside a 64-byte inode: a tail block.
fn check_sparse(tool: &Ref, tails: &[u64]) {
    use std::io::{Seek, SeekFrom, Write};
    use std::os::unix::fs::FileExt;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("root");
    std::fs::create_dir(&dir).unwrap();
    let mut tree = Tree::new(0o755);
    let mut paths = HashMap::new();
    for (i, &t) in tails.iter().enumerate() {
        let sz = (1u64 << 32) + t;
        let name = format!("big{i}");
        let p = dir.join(&name);
        let mut f = std::fs::File::create(&p).unwrap();
        f.set_len(sz).unwrap();
        // Some bytes at the start and in the tail, the rest holes.
        f.write_all(b"head").unwrap();
        f.seek(SeekFrom::Start(sz - t.min(9))).unwrap();
        f.write_all(&b"tailbytes"[..t.min(9) as usize]).unwrap();
        let id = tree
            .add_file(Tree::ROOT, name.as_bytes(), 0o644, sz)
            .unwrap();
        paths.insert(id.0, p);
        let small = format!("small{i}");
        std::fs::write(dir.join(&small), content(i as u64, 3000)).unwrap();
        let id = tree
            .add_file(Tree::ROOT, small.as_bytes(), 0o644, 3000)
            .unwrap();
        paths.insert(id.0, dir.join(&small));
    }
    let out = tmp.path().join("ref.img");
    run_reference(tool, &dir, &out);
    let img = std::fs::File::open(&out).unwrap();
    let layout = plan_for(tool.mkfs, &tree, UUID).unwrap();
    assert_eq!(img.metadata().unwrap().len(), layout.image_len(), "length");
    let block_at = |f: &std::fs::File, off: u64| {
        let mut b = vec![0u8; 4096];
        f.read_exact_at(&mut b, off).unwrap();
        b
    };
    for e in layout.extents() {
        match e {
            mpk_erofs::Extent::Meta { image_block, count } => {
                for b in image_block..image_block + count {
                    let want = block_at(&img, b * 4096);
                    let got = layout
                        .meta_block(b, |n, dst: &mut [u8]| -> std::io::Result<()> {
                            let f = std::fs::File::open(&paths[&n.0])?;
                            let len = f.metadata()?.len();
                            f.read_exact_at(dst, len - dst.len() as u64)
                        })
                        .unwrap();
                    assert!(*got == *want, "{:?} sparse: block {b} differs", tool.mkfs);
                }
            }
            mpk_erofs::Extent::File {
                node,
                image_block,
                count,
                ..
            } => {
                let f = std::fs::File::open(&paths[&node.0]).unwrap();
                for k in [0, count - 1] {
                    let want = block_at(&f, k * 4096);
                    assert_eq!(
                        block_at(&img, (image_block + k) * 4096),
                        want,
                        "{:?} sparse: block {k} of a file run",
                        tool.mkfs
                    );
                }
            }
        }
    }
}

#[test]
fn sparse_files_over_4gib_match_mkfs_erofs_186() {
    let Some(tool) = mkfs186() else { return };
    check_sparse(&tool, &[4040]);
}

/// 100,000 small files (every tail inline) in 100 folders.
fn hundred_thousand() -> Gen {
    let mut g = Gen {
        tree: Tree::new(0o755),
        contents: HashMap::new(),
    };
    let mut r = StdRng::seed_from_u64(100_000);
    for d in 0..100u64 {
        let dir = g
            .tree
            .add_dir(Tree::ROOT, format!("shard-{d:03}").as_bytes(), 0o755)
            .unwrap();
        for i in 0..1000u64 {
            let sz = r.gen_range(0..300);
            let f = g
                .tree
                .add_file(dir, format!("f{i:04}.bin").as_bytes(), 0o644, sz)
                .unwrap();
            g.contents.insert(f.0, content(d * 1000 + i, sz));
        }
    }
    g
}

#[test]
fn hundred_thousand_files_match_mkfs_erofs_15() {
    let Some(tool) = mkfs15() else { return };
    check(5000, &hundred_thousand(), &tool);
}

#[test]
fn hundred_thousand_files_match_mkfs_erofs_186() {
    let Some(tool) = mkfs186() else { return };
    check(5000, &hundred_thousand(), &tool);
}

/// 65,534 subfolders in one folder: its `i_nlink` (65,536) does not fit a
/// compact inode and is stored as 1, by both versions.
fn many_subdirs() -> Gen {
    let mut g = Gen {
        tree: Tree::new(0o755),
        contents: HashMap::new(),
    };
    let wide = g.tree.add_dir(Tree::ROOT, b"wide", 0o755).unwrap();
    for i in 0..65_534u32 {
        g.tree
            .add_dir(wide, format!("{i:05}").as_bytes(), 0o755)
            .unwrap();
    }
    let f = g.tree.add_file(Tree::ROOT, b"after", 0o644, 5000).unwrap();
    g.contents.insert(f.0, content(65_534, 5000));
    g
}

#[test]
fn nlink_overflow_matches_mkfs_erofs_186() {
    let Some(tool) = mkfs186() else { return };
    let g = many_subdirs();
    let layout = plan_for(Mkfs::V1_8_6, &g.tree, UUID).unwrap();
    let wide = layout.placement(NodeId(1));
    let img = assemble(&g, Mkfs::V1_8_6);
    let at = wide.inode_offset as usize;
    assert_eq!(u16::from_le_bytes([img[at + 6], img[at + 7]]), 1, "i_nlink");
    check(6000, &g, &tool);
}
