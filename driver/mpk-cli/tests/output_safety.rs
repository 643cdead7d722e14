//! Output safety under failure: an interrupted pack (SIGINT, SIGTERM), a
//! killed one (SIGKILL) and a full disk (ENOSPC) leave no `.mpk`, no
//! `.info` and no temporary file. (The named-temporary fallback for
//! filesystems without `O_TMPFILE` is tested in `mpk_pack::output`: every
//! filesystem this kernel mounts has `O_TMPFILE`.)

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

/// The open files of process `pid` that live in `dir` (an unnamed output
/// shows as `<dir>/#<inode> (deleted)`).
fn open_in(pid: u32, dir: &Path) -> Vec<String> {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    fds.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|t| t.starts_with(dir))
        .map(|t| t.to_string_lossy().into_owned())
        .collect()
}

/// Starts `mpk pack` of a large sparse model into `out/m.mpk` and returns
/// once it holds its output open (busy writing).
fn busy_pack(model: &Path, out: &Path) -> std::process::Child {
    let mut child = common::mpk()
        .arg("pack")
        .arg(model)
        .args(["--identity", ID, "--threads", "1", "--force", "-o"])
        .arg(out.join("m.mpk"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while open_in(child.id(), out).is_empty() {
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
    child
}

fn sparse_model(tmp: &Path) -> std::path::PathBuf {
    let model = tmp.join("model");
    std::fs::create_dir(&model).unwrap();
    // A big sparse file keeps the pack busy for seconds.
    let f = std::fs::File::create(model.join("weights.bin")).unwrap();
    f.set_len(8 << 30).unwrap();
    model
}

fn kill(signal: &str, child: &std::process::Child) {
    let st = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
}

fn interrupted_by(signal: &str, code: i32) {
    let tmp = tempfile::tempdir().unwrap();
    let model = sparse_model(tmp.path());
    let out = tmp.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let child = busy_pack(&model, &out);
    // Written unnamed: nothing is visible in the folder while it runs.
    assert_eq!(listing(&out), Vec::<String>::new());
    let open = open_in(child.id(), &out).join(",");
    assert!(open.contains("(deleted)"), "{open}");
    kill(signal, &child);
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
fn sigkill_leaves_nothing() {
    use std::os::unix::process::ExitStatusExt;
    let tmp = tempfile::tempdir().unwrap();
    let model = sparse_model(tmp.path());
    let out = tmp.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let child = busy_pack(&model, &out);
    kill("KILL", &child);
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.signal(), Some(9));
    assert_eq!(
        listing(&out),
        Vec::<String>::new(),
        "leftovers after SIGKILL"
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
