//! On a reflink filesystem (XFS with `reflink=1`, loop-mounted), `mpk pack`
//! shares the files' whole blocks with the image (`copy_file_range`
//! clones them) instead of copying, and the bytes are the same as a
//! packed copy on any other filesystem.

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

#[test]
fn xfs_pack_shares_blocks_and_matches() {
    let root = Command::new("id").arg("-u").output().unwrap();
    if String::from_utf8_lossy(&root.stdout).trim() != "0" {
        assert!(
            !common::tools_required(),
            "the reflink test needs root (loop mount)"
        );
        eprintln!("SKIP: not root");
        return;
    }
    let (Some(mkfs), Some(filefrag)) = (common::tool("mkfs.xfs"), common::tool("filefrag")) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let img = tmp.path().join("xfs.img");
    std::fs::File::create(&img)
        .unwrap()
        .set_len(512 << 20)
        .unwrap();
    let st = Command::new(mkfs)
        .args(["-q", "-m", "reflink=1"])
        .arg(&img)
        .status()
        .unwrap();
    assert!(st.success(), "mkfs.xfs failed");
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let st = Command::new("mount")
        .args(["-o", "loop"])
        .arg(&img)
        .arg(&mnt)
        .status()
        .unwrap();
    assert!(st.success(), "cannot loop-mount XFS");
    let _guard = Mounted(mnt.clone());

    let model = mnt.join("model");
    std::fs::create_dir(&model).unwrap();
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

    let on_xfs = mnt.join("m.mpk");
    pack(&model, &on_xfs);
    let elsewhere = tmp.path().join("m.mpk");
    pack(&model, &elsewhere);
    assert!(
        std::fs::read(&on_xfs).unwrap() == std::fs::read(&elsewhere).unwrap(),
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
