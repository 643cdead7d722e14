//! Packing onto real filesystems, loop-mounted: on a reflink filesystem
//! (XFS with `reflink=1`), `mpk pack` shares the files' whole blocks with
//! the image (`copy_file_range` clones them) instead of copying; on ext4 it
//! writes the image with `O_DIRECT` (the image's pages are not left in the
//! page cache) and a full disk fails cleanly. Every image has the same
//! bytes as one packed on tmpfs (ordinary buffered writes).

mod common;

use std::path::Path;
use std::process::Command;

const ID: &str = "acme/reflink@00112233445566778899aabbccddeeff00112233";

struct Mounted(std::path::PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn pack(model: &Path, out: &Path) {
    let o = common::mpk()
        .arg("pack")
        .arg(model)
        .args(["--identity", ID, "-o"])
        .arg(out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

fn is_root() -> bool {
    let root = Command::new("id").arg("-u").output().unwrap();
    if String::from_utf8_lossy(&root.stdout).trim() != "0" {
        assert!(
            !common::tools_required(),
            "the filesystem tests need root (loop mount)"
        );
        eprintln!("SKIP: not root");
        return false;
    }
    true
}

/// Makes a `size`-byte image with `mkfs` and `args`, loop-mounts it under
/// `tmp/mnt`.
fn loop_mount(tmp: &Path, mkfs: &Path, args: &[&str], size: u64) -> (std::path::PathBuf, Mounted) {
    let img = tmp.join("fs.img");
    std::fs::File::create(&img).unwrap().set_len(size).unwrap();
    let st = Command::new(mkfs).args(args).arg(&img).status().unwrap();
    assert!(st.success(), "{} failed", mkfs.display());
    let mnt = tmp.join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let st = Command::new("mount")
        .args(["-o", "loop"])
        .arg(&img)
        .arg(&mnt)
        .status()
        .unwrap();
    assert!(st.success(), "cannot loop-mount {}", img.display());
    (mnt.clone(), Mounted(mnt))
}

/// A packed copy on tmpfs (`/dev/shm`), where mpk writes through the page
/// cache.
fn packed_on_tmpfs(model: &Path) -> Vec<u8> {
    let shm = tempfile::tempdir_in("/dev/shm").unwrap();
    let out = shm.path().join("m.mpk");
    pack(model, &out);
    std::fs::read(out).unwrap()
}

fn write_model(model: &Path) {
    std::fs::create_dir(model).unwrap();
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut bytes = |n: usize| -> Vec<u8> {
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    };
    std::fs::write(model.join("a.safetensors"), bytes(8 << 20)).unwrap();
    std::fs::write(model.join("b.safetensors"), bytes((3 << 20) + 1234)).unwrap();
    std::fs::write(model.join("config.json"), b"{\"hidden\":8}\n").unwrap();
}

#[test]
fn xfs_pack_shares_blocks_and_matches() {
    if !is_root() {
        return;
    }
    let (Some(mkfs), Some(filefrag)) = (common::tool("mkfs.xfs"), common::tool("filefrag")) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (mnt, _guard) = loop_mount(tmp.path(), &mkfs, &["-q", "-m", "reflink=1"], 512 << 20);
    let model = mnt.join("model");
    write_model(&model);

    let on_xfs = mnt.join("m.mpk");
    pack(&model, &on_xfs);
    assert!(
        std::fs::read(&on_xfs).unwrap() == packed_on_tmpfs(&model),
        "the cloned image differs from the copied one"
    );
    let frag = Command::new(filefrag)
        .arg("-v")
        .arg(&on_xfs)
        .output()
        .unwrap();
    let frag = String::from_utf8_lossy(&frag.stdout);
    assert!(
        frag.contains("shared"),
        "no shared extents: the data was copied, not cloned\n{frag}"
    );
}

#[test]
fn ext4_pack_writes_direct_and_matches() {
    if !is_root() {
        return;
    }
    let (Some(mkfs), Some(fincore)) = (common::tool("mkfs.ext4"), common::tool("fincore")) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (mnt, _guard) = loop_mount(tmp.path(), &mkfs, &["-q", "-F"], 256 << 20);
    let model = mnt.join("model");
    write_model(&model);
    let out = mnt.join("m.mpk");
    pack(&model, &out);
    let image = std::fs::read(&out).unwrap();
    // Read before the check below would cache it: drop it again first.
    let _ = Command::new("sh")
        .args(["-c", "sync && echo 1 > /proc/sys/vm/drop_caches"])
        .status();
    assert!(image == packed_on_tmpfs(&model), "the ext4 image differs");
    // A fresh pack: O_DIRECT leaves (almost) none of its pages cached,
    // buffered writes would leave all 11+ MiB of them.
    std::fs::remove_file(&out).unwrap();
    std::fs::remove_file(out.with_extension("info")).unwrap();
    pack(&model, &out);
    let o = Command::new(fincore)
        .args(["--bytes", "--noheadings", "--output", "RES"])
        .arg(&out)
        .output()
        .unwrap();
    let cached: u64 = String::from_utf8_lossy(&o.stdout).trim().parse().unwrap();
    let len = std::fs::metadata(&out).unwrap().len();
    assert!(
        cached < len / 4,
        "{cached} of {len} bytes of the image are in the page cache: not written with O_DIRECT"
    );
}

#[test]
fn ext4_full_disk_fails_and_leaves_nothing() {
    if !is_root() {
        return;
    }
    let Some(mkfs) = common::tool("mkfs.ext4") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("model");
    write_model(&model);
    let (mnt, _guard) = loop_mount(tmp.path(), &mkfs, &["-q", "-F"], 8 << 20);
    let out = mnt.join("m.mpk");
    let o = common::mpk()
        .arg("pack")
        .arg(&model)
        .args(["--identity", ID, "-o"])
        .arg(&out)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "packing 11 MiB onto 8 MiB succeeded");
    assert!(err.contains("No space left"), "{err}");
    let left: Vec<_> = std::fs::read_dir(&mnt)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n != "lost+found")
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}
