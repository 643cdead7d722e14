//! The kernel and `fsck.erofs` read back what `mpk pack` wrote: mount the
//! image (root only; this kernel mounts EROFS straight from a file) and
//! compare every file with the normalised source; `fsck.erofs` accepts the
//! image and its `--extract` gives the same tree.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

use common::tree::{
    self, mkdir, mpk_pack_ok, output_text, random_bytes, set_mode, test_identity, write,
};

/// A raw (unnormalised) source tree and its packed image.
struct Packed {
    _tmp: tempfile::TempDir,
    src: PathBuf,
    image: PathBuf,
}

fn packed(seed: u64) -> Packed {
    packed_as(seed, &[])
}

/// [`packed`] with `mpk pack` arguments `args`; with `--schema
/// modelwrap-v2` the tree also holds what only 1.8.6 stores (`lost+found`,
/// a 255-byte name).
fn packed_as(seed: u64, args: &[&str]) -> Packed {
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("src");
    tree::random_tree(&src, seed);
    // Edge files, plus things mpk must normalise.
    write(&src.join("edge/tail-4065.bin"), &random_bytes(1, 4065));
    write(&src.join("edge/4096.bin"), &random_bytes(2, 4096));
    write(&src.join("edge/empty"), b"");
    write(&src.join("edge/ mixed é 日本 ~!+-"), b"names");
    let big = src.join("edge/big-dir");
    mkdir(&big);
    for i in 0..300 {
        write(
            &big.join(format!("entry-{i:04}-padding-name")),
            &random_bytes(i, i as usize % 9),
        );
    }
    write(&src.join("private.bin"), &random_bytes(3, 5000));
    set_mode(&src.join("private.bin"), 0o600);
    set_mode(&src.join("edge"), 0o700);
    let outside = tmp.path().join("outside.bin");
    write(&outside, &random_bytes(4, 8191));
    symlink(&outside, src.join("linked.bin")).expect("symlink");
    fs::hard_link(&outside, src.join("hard.bin")).expect("link");
    write(&src.join(".cache/huggingface/x"), b"left out");
    if args.contains(&"modelwrap-v2") {
        write(&src.join("lost+found/x"), b"kept by 1.8.6");
        write(&src.join("edge").join("n".repeat(255)), b"255");
    }
    let image = tmp.path().join("out/model.mpk");
    mkdir(image.parent().expect("parent"));
    let mut args = args.to_vec();
    args.push("--allow-external-symlinks");
    mpk_pack_ok(&src, &test_identity(seed), &image, &args);
    Packed {
        _tmp: tmp,
        src,
        image,
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Node {
    File(Vec<u8>),
    Dir,
}

/// The normalised view of a source tree: symlinks followed, top-level
/// `.cache` left out.
fn expected_view(src: &Path) -> BTreeMap<PathBuf, Node> {
    let mut m = BTreeMap::new();
    collect(src, src, true, true, &mut m);
    m
}

/// What an extracted or mounted tree holds; checks modes 0644/0755 (and
/// owner root when `check_owner`).
fn actual_view(root: &Path, check_owner: bool) -> BTreeMap<PathBuf, Node> {
    let meta = fs::symlink_metadata(root).expect("stat root");
    assert_eq!(
        meta.permissions().mode() & 0o7777,
        0o755,
        "root folder mode"
    );
    let mut m = BTreeMap::new();
    collect(root, root, false, false, &mut m);
    if check_owner {
        check_owners(root);
    }
    m
}

fn check_owners(dir: &Path) {
    for e in fs::read_dir(dir).expect("readdir") {
        let p = e.expect("entry").path();
        let meta = fs::symlink_metadata(&p).expect("lstat");
        assert_eq!((meta.uid(), meta.gid()), (0, 0), "{} owner", p.display());
        if meta.is_dir() {
            check_owners(&p);
        }
    }
}

fn collect(root: &Path, dir: &Path, follow: bool, top: bool, m: &mut BTreeMap<PathBuf, Node>) {
    for e in fs::read_dir(dir).expect("readdir") {
        let e = e.expect("entry");
        if follow && top && e.file_name() == ".cache" {
            continue;
        }
        let p = e.path();
        let meta = if follow {
            fs::metadata(&p)
        } else {
            fs::symlink_metadata(&p)
        }
        .expect("stat");
        let rel = p.strip_prefix(root).expect("prefix").to_path_buf();
        let mode = meta.permissions().mode() & 0o7777;
        if meta.is_dir() {
            if !follow {
                assert_eq!(mode, 0o755, "{} folder mode", rel.display());
            }
            m.insert(rel, Node::Dir);
            collect(root, &p, follow, false, m);
        } else if meta.is_file() {
            if !follow {
                assert_eq!(mode, 0o644, "{} file mode", rel.display());
                assert_eq!(
                    meta.nlink(),
                    1,
                    "{} should not be a hardlink",
                    rel.display()
                );
            }
            m.insert(rel, Node::File(fs::read(&p).expect("read")));
        } else {
            panic!("unexpected file type at {}", p.display());
        }
    }
}

fn assert_same_view(want: &BTreeMap<PathBuf, Node>, got: &BTreeMap<PathBuf, Node>, what: &str) {
    let missing: Vec<_> = want.keys().filter(|k| !got.contains_key(*k)).collect();
    let extra: Vec<_> = got.keys().filter(|k| !want.contains_key(*k)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{what}: missing {missing:?}, extra {extra:?}"
    );
    for (k, v) in want {
        let g = &got[k];
        if v != g {
            match (v, g) {
                (Node::File(a), Node::File(b)) => panic!(
                    "{what}: {} differs (sizes {} vs {}, first difference at {:?})",
                    k.display(),
                    a.len(),
                    b.len(),
                    a.iter().zip(b).position(|(x, y)| x != y)
                ),
                _ => panic!("{what}: {} has the wrong type", k.display()),
            }
        }
    }
    eprintln!("{what}: {} entries identical", want.len());
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Unmounts on drop, so a failed assertion does not leave a mount behind.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Mounts `image` read-only at `dir`: straight from the file first, then
/// through a loop device. `None` (skip) if this machine cannot; panics
/// instead under `MPK_REQUIRE_TOOLS=1`.
fn mount(image: &Path, dir: &Path) -> Option<Mounted> {
    let mut errors = String::new();
    for opts in ["ro", "ro,loop"] {
        let o = Command::new("mount")
            .args(["-t", "erofs", "-o", opts])
            .arg(image)
            .arg(dir)
            .output()
            .expect("run mount");
        if o.status.success() {
            return Some(Mounted(dir.to_path_buf()));
        }
        errors.push_str(&format!("mount -o {opts}: {}", output_text(&o)));
    }
    assert!(
        !common::tools_required(),
        "cannot mount EROFS and MPK_REQUIRE_TOOLS=1:\n{errors}"
    );
    eprintln!("SKIP: cannot mount EROFS here:\n{errors}");
    None
}

#[test]
fn mounted_image_matches_source() {
    if !is_root() {
        assert!(
            !common::tools_required(),
            "the mount test needs root and MPK_REQUIRE_TOOLS=1"
        );
        eprintln!("SKIP: not root, cannot mount");
        return;
    }
    for seed in [1u64, 2, 3] {
        let p = packed(seed);
        let mnt = p._tmp.path().join("mnt");
        mkdir(&mnt);
        let Some(guard) = mount(&p.image, &mnt) else {
            return;
        };
        let got = actual_view(&mnt, true);
        drop(guard);
        assert_same_view(
            &expected_view(&p.src),
            &got,
            &format!("mount (seed {seed})"),
        );
    }
}

/// The kernel reads a `modelwrap-v2` (mkfs.erofs 1.8.6 layout) image too:
/// the guest needs no schema.
#[test]
fn mounted_modelwrap_v2_image_matches_source() {
    if !is_root() {
        assert!(
            !common::tools_required(),
            "the mount test needs root and MPK_REQUIRE_TOOLS=1"
        );
        eprintln!("SKIP: not root, cannot mount");
        return;
    }
    for seed in [7u64, 8] {
        let p = packed_as(seed, &["--schema", "modelwrap-v2"]);
        let mnt = p._tmp.path().join("mnt");
        mkdir(&mnt);
        let Some(guard) = mount(&p.image, &mnt) else {
            return;
        };
        let got = actual_view(&mnt, true);
        drop(guard);
        assert_same_view(
            &expected_view(&p.src),
            &got,
            &format!("mount of a v2 image (seed {seed})"),
        );
    }
}

#[test]
fn fsck_accepts_image() {
    let Some(fsck) = common::tool("fsck.erofs") else {
        return;
    };
    for seed in [4u64, 5] {
        let p = packed(seed);
        let o = Command::new(&fsck)
            .arg(&p.image)
            .output()
            .expect("run fsck.erofs");
        assert!(
            o.status.success(),
            "fsck.erofs rejected the image:\n{}",
            output_text(&o)
        );
    }
}

#[test]
fn fsck_extract_matches_source() {
    let Some(fsck) = common::tool("fsck.erofs") else {
        return;
    };
    let p = packed(6);
    let dest = p._tmp.path().join("extracted");
    let o = Command::new(&fsck)
        .arg(format!("--extract={}", dest.display()))
        .arg("--preserve-perms")
        .arg(&p.image)
        .output()
        .expect("run fsck.erofs");
    assert!(
        o.status.success(),
        "fsck.erofs --extract failed:\n{}",
        output_text(&o)
    );
    let got = actual_view(&dest, false);
    assert_same_view(&expected_view(&p.src), &got, "fsck.erofs --extract");
}
