//! Progress: a bar (bytes, bytes/s, ETA) when standard error is a
//! terminal (faked with `script`), none when it is not, none with `-q`.

mod common;

use std::process::Command;

const ID: &str = "acme/progress@00112233445566778899aabbccddeeff00112233";

fn model() -> tempfile::TempDir {
    // tmpfs when there is one: the outputs are fsynced.
    let shm = std::path::Path::new("/dev/shm");
    let tmp = if shm.is_dir() {
        tempfile::tempdir_in(shm).unwrap()
    } else {
        tempfile::tempdir().unwrap()
    };
    std::fs::create_dir(tmp.path().join("m")).unwrap();
    // Big enough (sparse) to take a while, so the bar is drawn.
    let f = std::fs::File::create(tmp.path().join("m/weights.bin")).unwrap();
    f.set_len(1 << 30).unwrap();
    tmp
}

fn on_a_terminal(tmp: &tempfile::TempDir, extra: &str) -> String {
    let script = common::tool("script").expect("script (bsdutils) is part of Debian");
    let cmd = format!(
        "{} pack {} --identity {ID} -o {} {extra}",
        env!("CARGO_BIN_EXE_mpk"),
        tmp.path().join("m").display(),
        tmp.path().join(format!("out{}.mpk", extra.len())).display()
    );
    let o = Command::new(script)
        .args(["-qec", &cmd, "/dev/null"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn bar_on_a_terminal_only() {
    let tmp = model();
    let tty = on_a_terminal(&tmp, "");
    assert!(tty.contains("packing") && tty.contains("ETA"), "{tty:?}");
    let quiet = on_a_terminal(&tmp, "-q");
    assert!(!quiet.contains("ETA"), "{quiet:?}");
    let o = common::mpk()
        .arg("pack")
        .arg(tmp.path().join("m"))
        .args(["--identity", ID, "-o"])
        .arg(tmp.path().join("plain.mpk"))
        .output()
        .unwrap();
    assert!(o.status.success());
    assert!(
        o.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}
