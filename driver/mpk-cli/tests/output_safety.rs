//! Output safety under failure: an interrupted pack (SIGINT, SIGTERM) and
//! a full disk (ENOSPC) leave no `.mpk`, no `.info` and no temporary file.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const ID: &str = "acme/safety@00112233445566778899aabbccddeeff00112233";

fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn interrupted_by(signal: &str, code: i32) {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("model");
    std::fs::create_dir(&model).unwrap();
    // A big sparse file keeps the pack busy for seconds.
    let f = std::fs::File::create(model.join("weights.bin")).unwrap();
    f.set_len(8 << 30).unwrap();
    let out = tmp.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let mut child = common::mpk()
        .arg("pack")
        .arg(&model)
        .args(["--identity", ID, "--threads", "1", "-o"])
        .arg(out.join("m.mpk"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while listing(&out).is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "pack never started writing"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "pack ended before it was interrupted"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    let tmpname = listing(&out).join(",");
    assert!(
        tmpname.starts_with(".m.mpk.") && tmpname.ends_with(".tmp"),
        "{tmpname}"
    );
    let st = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let o = child.wait_with_output().unwrap();
    assert_eq!(
        o.status.code(),
        Some(code),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("interrupted"));
    assert_eq!(
        listing(&out),
        Vec::<String>::new(),
        "leftovers after SIG{signal}"
    );
}

#[test]
fn sigint_leaves_nothing() {
    interrupted_by("INT", 130);
}

#[test]
fn sigterm_leaves_nothing() {
    interrupted_by("TERM", 130);
}

#[test]
fn full_disk_leaves_nothing() {
    if running_as_root().is_none() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("model");
    std::fs::create_dir(&model).unwrap();
    std::fs::write(model.join("weights.bin"), vec![7u8; 3 << 20]).unwrap();
    let out = tmp.path().join("small");
    std::fs::create_dir(&out).unwrap();
    let m = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&out)
        .status()
        .unwrap();
    assert!(m.success(), "cannot mount a small tmpfs");
    let o = common::mpk()
        .arg("pack")
        .arg(&model)
        .args(["--identity", ID, "-o"])
        .arg(out.join("m.mpk"))
        .output()
        .unwrap();
    let left = listing(&out);
    let _ = Command::new("umount").arg(&out).status();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("No space left on device"), "{err}");
    assert!(
        err.contains("offset"),
        "the message names where the write failed: {err}"
    );
    assert_eq!(left, Vec::<String>::new());
}

/// `Some(())` when running as root; otherwise skips (or fails under
/// MPK_REQUIRE_TOOLS=1, where CI runs as root).
fn running_as_root() -> Option<()> {
    let uid = Command::new("id").arg("-u").output().unwrap();
    if String::from_utf8_lossy(&uid.stdout).trim() == "0" {
        return Some(());
    }
    assert!(
        !common::tools_required(),
        "the ENOSPC test needs root (tmpfs mount)"
    );
    eprintln!("SKIP: not root, cannot mount a small tmpfs");
    None
}
