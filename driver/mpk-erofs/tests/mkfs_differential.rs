//! Differential test of the planner against the real `mkfs.erofs` 1.5:
//! random trees are written to disk, packed by both, and compared byte for
//! byte. Fails (not skips) when the tool is missing and
//! `MPK_REQUIRE_TOOLS=1`.

use mpk_erofs::reader::Image;
use mpk_erofs::{NodeId, NodeKind, Tree, plan};
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

fn mkfs() -> Option<PathBuf> {
    mpk_testutil::tool("mkfs.erofs")
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

fn assemble(g: &Gen) -> Vec<u8> {
    plan(&g.tree, UUID)
        .expect("plan")
        .to_bytes(|n| g.contents[&n.0].as_slice())
}

fn reference(tool: &Path, dir: &Path, out: &Path) -> Vec<u8> {
    let st = Command::new(tool)
        .env_remove("SOURCE_DATE_EPOCH")
        .arg("--all-root")
        .arg("-T0")
        .arg(format!("-U{UUID_STR}"))
        .arg(out)
        .arg(dir)
        .output()
        .unwrap();
    assert!(st.status.success(), "mkfs.erofs failed: {st:?}");
    std::fs::read(out).unwrap()
}

fn first_diff(a: &[u8], b: &[u8]) -> Option<usize> {
    a.iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .or_else(|| (a.len() != b.len()).then(|| a.len().min(b.len())))
}

fn check(seed: u64, g: &Gen, tool: &Path) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("root");
    write_tree(g, &dir);
    let want = reference(tool, &dir, &tmp.path().join("ref.img"));
    let got = assemble(g);
    if let Some(off) = first_diff(&got, &want) {
        panic!(
            "seed {seed}: image differs from mkfs.erofs at byte {off} (block {}, +{}); lengths {} vs {}",
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
fn random_trees_match_mkfs_erofs() {
    let Some(tool) = mkfs() else { return };
    for seed in 0..60u64 {
        let max = if seed % 10 == 0 { 1500 } else { 120 };
        check(seed, &gen_tree(seed, max), &tool);
    }
}

#[test]
fn edge_cases_match_mkfs_erofs() {
    let Some(tool) = mkfs() else { return };
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
        check(1000 + i as u64, g, &tool);
    }
}
