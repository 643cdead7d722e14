//! The CLI contract (README, "Exit codes"): 0 success; 1 a negative
//! finding (the bytes were read and are not what they must be); 2 the
//! check could not be made (bad arguments, missing, unreadable or refused
//! input); 130 interrupted (`output_safety.rs`); 141 standard output
//! closed, quietly. Also: `measure deployment -o` replaces a file only
//! with `--force`.

mod common;

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const ID: &str = "acme/contract@00112233445566778899aabbccddeeff00112233";

fn run(args: &[&str]) -> Output {
    common::mpk().args(args).output().unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn says(o: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A packed model in its own folder: (folder, model dir, .mpk, reference).
fn packed() -> (tempfile::TempDir, PathBuf, PathBuf, String) {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("model");
    std::fs::create_dir(&model).unwrap();
    std::fs::write(model.join("weights.bin"), vec![3u8; 5 * 4096 + 7]).unwrap();
    std::fs::write(model.join("config.json"), b"{}\n").unwrap();
    let mpk = tmp.path().join("m.mpk");
    let o = run(&["pack", s(&model), "--identity", ID, "-o", s(&mpk)]);
    assert_eq!(o.status.code(), Some(0), "{}", says(&o));
    let reference = String::from_utf8(o.stdout).unwrap().trim().to_string();
    (tmp, model, mpk, reference)
}

#[test]
fn verify_ok_tampered_truncated_and_unreadable() {
    let (tmp, _, mpk, r) = packed();
    let ok = run(&["verify", s(&mpk), "--ref", &r, "--identity", ID]);
    assert_eq!(ok.status.code(), Some(0), "{}", says(&ok));
    // A small image has one hash block, and says so in good English.
    let said = String::from_utf8_lossy(&ok.stdout);
    assert!(said.contains(" data blocks and 1 hash block of "), "{said}");
    // A flipped data byte: the bytes were read and are wrong.
    let f = std::fs::OpenOptions::new().write(true).open(&mpk).unwrap();
    f.write_all_at(&[0xff], 4096 * 2 + 5).unwrap();
    let bad = run(&["verify", s(&mpk), "--ref", &r, "--identity", ID]);
    assert_eq!(bad.status.code(), Some(1), "{}", says(&bad));
    // Truncated: also a finding.
    f.set_len(4096 * 3).unwrap();
    let short = run(&["verify", s(&mpk), "--ref", &r, "--identity", ID]);
    assert_eq!(short.status.code(), Some(1), "{}", says(&short));
    assert!(says(&short).contains("truncated"), "{}", says(&short));
    // Missing file, malformed reference, bad identity: could not check.
    let gone = tmp.path().join("gone.mpk");
    for args in [
        vec!["verify", s(&gone), "--ref", &r, "--identity", ID],
        vec![
            "verify",
            s(&mpk),
            "--ref",
            "not-a-reference",
            "--identity",
            ID,
        ],
        vec!["verify", s(&mpk), "--ref", &r, "--identity", "a/b@123"],
        vec!["verify"],
        vec!["no-such-command"],
    ] {
        let o = run(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}\n{}", says(&o));
    }
}

#[test]
fn reproduce_differs_is_a_finding() {
    let (_tmp, model, _, r) = packed();
    let same = run(&[
        "reproduce",
        "--dir",
        s(&model),
        "--identity",
        ID,
        "--expect",
        &r,
        "-q",
    ]);
    assert_eq!(same.status.code(), Some(0), "{}", says(&same));
    let other = format!("{}{}", &"0".repeat(64), &r[64..]);
    let differs = run(&[
        "reproduce",
        "--dir",
        s(&model),
        "--identity",
        ID,
        "--expect",
        &other,
        "-q",
    ]);
    assert_eq!(differs.status.code(), Some(1), "{}", says(&differs));
    assert!(says(&differs).contains("differs"), "{}", says(&differs));
    let missing = run(&[
        "reproduce",
        "--dir",
        "/nonexistent/model",
        "--identity",
        ID,
        "--expect",
        &r,
    ]);
    assert_eq!(missing.status.code(), Some(2), "{}", says(&missing));
}

/// A reader that closes the pipe early: mpk ends quietly with 141, no
/// panic and nothing on standard error.
#[test]
fn a_closed_pipe_ends_quietly() {
    let (_tmp, model, _, _) = packed();
    let mut child = common::mpk()
        .args(["identity", s(&model)])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Close the read end before mpk prints.
    drop(child.stdout.take());
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(141), "stderr: {err}");
    assert!(err.is_empty(), "nothing on stderr: {err}");
}

#[test]
fn deployment_output_is_replaced_only_with_force() {
    let (tmp, _, mpk, _) = packed();
    let info = mpk.with_extension("info");
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../vm-images/example");
    let out = tmp.path().join("d.json");
    std::fs::write(&out, b"keep me").unwrap();
    let args = |force: bool| {
        let mut v = vec![
            "measure".to_string(),
            "deployment".into(),
            "--base".into(),
            base.to_str().unwrap().into(),
            "--model".into(),
            s(&info).into(),
            "--identity".into(),
            ID.into(),
            "-o".into(),
            s(&out).into(),
        ];
        if force {
            v.push("--force".into());
        }
        v
    };
    let o = common::mpk().args(args(false)).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", says(&o));
    assert!(says(&o).contains("--force"), "{}", says(&o));
    assert_eq!(std::fs::read(&out).unwrap(), b"keep me");
    let o = common::mpk().args(args(true)).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", says(&o));
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(doc["identity"], ID);
    // Only the document is there: no temporary beside it.
    let mut names: Vec<String> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["d.json", "m.info", "m.mpk", "model"]);
}

#[test]
fn help_describes_every_command() {
    let o = Command::new(env!("CARGO_BIN_EXE_mpk"))
        .arg("--help")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0));
    let text = String::from_utf8_lossy(&o.stdout);
    let about = text.lines().next().unwrap();
    for job in [
        "pin",
        "pack",
        "reproduce",
        "verify",
        "measurements",
        "attestations",
    ] {
        assert!(about.contains(job), "the summary leaves out {job}: {about}");
    }
    let commands: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .collect();
    assert!(commands.len() >= 13, "{text}");
    for line in commands {
        let mut words = line.split_whitespace();
        let name = words.next().unwrap();
        assert!(
            words.next().is_some(),
            "`mpk --help` gives no description for `{name}`:\n{text}"
        );
    }
}

/// Messages a new user meets first name what to do.
#[test]
fn first_errors_say_what_to_do() {
    let (_tmp, _, mpk, _) = packed();
    let info = mpk.with_extension("info");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    // No model source: both ways are named.
    let o = run(&[
        "measure",
        "deployment",
        "--base",
        s(&root.join("vm-images/example")),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", says(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("--manifest") && err.contains("--model"),
        "{err}"
    );
    // An unbuilt Nix base image: how to build it.
    let o = run(&[
        "measure",
        "deployment",
        "--base",
        s(&root.join("vm-images/qemu-snp")),
        "--model",
        s(&info),
        "--identity",
        ID,
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", says(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("not built") && err.contains("nix build .#vm-image-qemu-snp"),
        "{err}"
    );
    // A cause is said once, not once per layer.
    let o = run(&["fetch", "/nonexistent/x.lock"]);
    assert_eq!(o.status.code(), Some(2), "{}", says(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.matches("No such file").count(), 1, "{err}");
}

/// Absurd parameters and special files are refused before any work
/// (issue 15): 2^32-1 vCPUs used to run for hours, a FIFO as firmware hung
/// and /dev/zero as an initrd read until memory ran out.
#[test]
fn absurd_measurement_inputs_are_refused_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let fw = tmp.path().join("OVMF.fd");
    std::fs::write(
        &fw,
        mpk_testutil::firmware::build(&mpk_testutil::firmware::Spec::amdsev(8, 7)),
    )
    .unwrap();
    let kernel = tmp.path().join("bzImage");
    std::fs::write(&kernel, b"not a kernel, never read").unwrap();
    let fifo = tmp.path().join("fifo");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let snp = |ovmf: &Path, vcpus: &str, initrd: &str| {
        run(&[
            "measure",
            "snp",
            "--mode",
            "snp",
            "--vcpus",
            vcpus,
            "--vcpu-type",
            "EPYC-v4",
            "--ovmf",
            s(ovmf),
            "--kernel",
            s(&kernel),
            "--initrd",
            initrd,
            "--append",
            "x",
        ])
    };
    let o = snp(&fw, "4294967295", s(&kernel));
    assert_eq!(o.status.code(), Some(2), "{}", says(&o));
    assert!(says(&o).contains("at most 4096"), "{}", says(&o));
    let o = snp(&fifo, "1", s(&kernel));
    assert_eq!(o.status.code(), Some(2), "{}", says(&o));
    assert!(says(&o).contains("not a regular file"), "{}", says(&o));
    let o = snp(&fw, "1", "/dev/zero");
    assert_eq!(o.status.code(), Some(2), "{}", says(&o));
    assert!(says(&o).contains("not a regular file"), "{}", says(&o));
}
