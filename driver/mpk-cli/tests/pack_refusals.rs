//! `mpk pack` refusals: every input the contract rejects fails with a
//! message naming the culprit, and leaves no `.mpk`, no `.info` and no
//! temporary file behind (an existing output is left untouched).

mod common;

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::symlink;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::tree::{mkdir, mpk_pack, output_text, random_bytes, test_identity, write};

/// A source tree with some ordinary content, plus an empty output folder.
struct Case {
    _tmp: tempfile::TempDir,
    src: PathBuf,
    outdir: PathBuf,
}

impl Case {
    fn new() -> Self {
        let tmp = tempfile::tempdir().expect("tempdir");
        let src = tmp.path().join("src");
        let outdir = tmp.path().join("out");
        mkdir(&outdir);
        // Ordinary content that sorts before the culprits (which live under
        // `zzz/`), so a streaming packer has already written something when
        // it meets them.
        write(&src.join("a-config.json"), b"{}\n");
        write(&src.join("b-weights.bin"), &random_bytes(1, 3 * 4096 + 100));
        write(&src.join("c/nested.bin"), &random_bytes(2, 4065));
        mkdir(&src.join("zzz"));
        // The tree packs before the culprit is added, so a refusal later is
        // the culprit's doing.
        let base = tmp.path().join("base");
        mkdir(&base);
        let o = mpk_pack(&src, &test_identity(1), &base.join("base.mpk"), &[]);
        assert!(
            o.status.success(),
            "the tree without its culprit should pack:\n{}",
            output_text(&o)
        );
        Self {
            _tmp: tmp,
            src,
            outdir,
        }
    }

    fn out(&self) -> PathBuf {
        self.outdir.join("model.mpk")
    }

    fn pack(&self) -> Output {
        mpk_pack(&self.src, &test_identity(1), &self.out(), &[])
    }
}

fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .expect("readdir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Asserts a clean refusal: non-zero exit (not a panic), stderr naming one
/// of `culprits`, and `outdir` holding exactly `left` afterwards.
fn assert_refused(o: &Output, culprits: &[&str], outdir: &Path, left: &[&str]) {
    let text = output_text(o);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success(),
        "mpk pack should have refused, but succeeded:\n{text}"
    );
    assert_ne!(o.status.code(), Some(101), "mpk pack panicked:\n{text}");
    assert!(
        o.status.code().is_some(),
        "mpk pack was killed by a signal:\n{text}"
    );
    assert!(!stderr.contains("panicked"), "mpk pack panicked:\n{text}");
    assert!(
        culprits.iter().any(|c| stderr.contains(c)),
        "stderr should name one of {culprits:?}:\n{stderr}"
    );
    let mut want: Vec<String> = left.iter().map(|s| (*s).to_owned()).collect();
    want.sort();
    assert_eq!(
        listing(outdir),
        want,
        "output folder after the refusal (no .mpk, .info or temp files may remain)"
    );
}

// ------------------------------------------------------------ tree content --

#[test]
fn fifo_refused() {
    let c = Case::new();
    let fifo = c.src.join("zzz/named-pipe");
    let st = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(st.success());
    assert_refused(&c.pack(), &["named-pipe"], &c.outdir, &[]);
}

#[test]
fn socket_refused() {
    let c = Case::new();
    let _listener = UnixListener::bind(c.src.join("zzz/unix-sock")).expect("bind");
    assert_refused(&c.pack(), &["unix-sock"], &c.outdir, &[]);
}

#[test]
fn dangling_symlink_refused() {
    let c = Case::new();
    symlink("no-such-target", c.src.join("zzz/dangling-link")).expect("symlink");
    assert_refused(&c.pack(), &["dangling-link"], &c.outdir, &[]);
}

#[test]
fn symlink_loop_refused() {
    let c = Case::new();
    symlink("loop-b", c.src.join("zzz/loop-a")).expect("symlink");
    symlink("loop-a", c.src.join("zzz/loop-b")).expect("symlink");
    assert_refused(&c.pack(), &["loop-a", "loop-b"], &c.outdir, &[]);
}

#[test]
fn self_symlink_refused() {
    let c = Case::new();
    symlink("self-link", c.src.join("zzz/self-link")).expect("symlink");
    assert_refused(&c.pack(), &["self-link"], &c.outdir, &[]);
}

#[test]
fn symlink_to_directory_refused() {
    let c = Case::new();
    symlink("../c", c.src.join("zzz/dir-link")).expect("symlink");
    assert_refused(&c.pack(), &["dir-link"], &c.outdir, &[]);
}

#[test]
fn symlink_to_directory_outside_refused() {
    let c = Case::new();
    let outside = c._tmp.path().join("outside-dir");
    write(&outside.join("f"), b"f");
    symlink(&outside, c.src.join("zzz/outside-dir-link")).expect("symlink");
    assert_refused(&c.pack(), &["outside-dir-link"], &c.outdir, &[]);
}

/// Issue 15, case 7: a folder prepared by someone else must not pull a
/// host file (a private key, say) into an image that is then published.
#[test]
fn symlink_to_file_outside_refused_unless_allowed() {
    let c = Case::new();
    let secret = c._tmp.path().join("id_ed25519");
    write(&secret, b"-----BEGIN OPENSSH PRIVATE KEY-----\n");
    symlink(&secret, c.src.join("zzz/innocent.json")).expect("symlink");
    let o = c.pack();
    assert_refused(&o, &["innocent.json"], &c.outdir, &[]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("id_ed25519") && stderr.contains("--allow-external-symlinks"),
        "the refusal names the target and the flag:\n{stderr}"
    );
    // `mpk identity` and `mpk reproduce --dir` scan by the same rule.
    let id = common::mpk()
        .arg("identity")
        .arg(&c.src)
        .output()
        .expect("run mpk identity");
    assert_eq!(id.status.code(), Some(2), "{}", output_text(&id));
    assert!(String::from_utf8_lossy(&id.stderr).contains("innocent.json"));
    // With the flag, the file is packed.
    let o = mpk_pack(
        &c.src,
        &test_identity(1),
        &c.out(),
        &["--allow-external-symlinks", "--json"],
    );
    assert!(o.status.success(), "{}", output_text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("zzz/innocent.json"));
}

#[test]
fn symlink_chain_leaving_the_folder_refused() {
    // The first hop stays inside; the last one does not.
    let c = Case::new();
    let outside = c._tmp.path().join("outside.bin");
    write(&outside, b"outside");
    symlink(&outside, c.src.join("c/hop")).expect("symlink");
    symlink("../c/hop", c.src.join("zzz/chain")).expect("symlink");
    assert_refused(&c.pack(), &["c/hop", "zzz/chain"], &c.outdir, &[]);
}

#[test]
fn symlink_inside_the_folder_followed() {
    let c = Case::new();
    symlink("../b-weights.bin", c.src.join("zzz/alias.bin")).expect("symlink");
    symlink(c.src.join("c/nested.bin"), c.src.join("zzz/absolute.bin")).expect("symlink");
    let o = c.pack();
    assert!(o.status.success(), "{}", output_text(&o));
}

#[test]
fn snapshot_link_into_another_repos_blobs_refused() {
    // A snapshot's links may reach its own repository's blobs/, not a
    // neighbour's.
    let t = tempfile::tempdir().expect("tempdir");
    let rev = "0123456789abcdef0123456789abcdef01234567";
    let ours = t.path().join("models--org--ours");
    let theirs = t.path().join("models--org--theirs");
    let snap = ours.join("snapshots").join(rev);
    write(&ours.join("blobs/aaaa"), b"ours");
    write(&theirs.join("blobs/bbbb"), b"theirs");
    mkdir(&snap);
    symlink("../../blobs/aaaa", snap.join("config.json")).expect("symlink");
    let out = t.path().join("out");
    mkdir(&out);
    let o = mpk_pack(&snap, &test_identity(1), &out.join("ok.mpk"), &[]);
    assert!(o.status.success(), "{}", output_text(&o));
    std::fs::remove_dir_all(&out).expect("rm");
    mkdir(&out);
    symlink(
        "../../../models--org--theirs/blobs/bbbb",
        snap.join("model.bin"),
    )
    .expect("symlink");
    let o = mpk_pack(&snap, &test_identity(1), &out.join("bad.mpk"), &[]);
    assert_refused(&o, &["model.bin"], &out, &[]);
}

#[test]
fn symlink_to_fifo_refused() {
    let c = Case::new();
    let fifo = c._tmp.path().join("pipe-outside");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo")
            .success()
    );
    symlink(&fifo, c.src.join("zzz/link-to-pipe")).expect("symlink");
    assert_refused(&c.pack(), &["link-to-pipe", "pipe-outside"], &c.outdir, &[]);
}

#[test]
fn lost_found_folder_refused() {
    let c = Case::new();
    write(&c.src.join("lost+found/x"), b"x");
    assert_refused(&c.pack(), &["lost+found"], &c.outdir, &[]);
}

#[test]
fn lost_found_prefix_refused() {
    // erofs-utils 1.5 drops every name *starting* with lost+found.
    for name in ["lost+found2", "lost+found.txt", "lost+found"] {
        let c = Case::new();
        write(&c.src.join("zzz").join(name), b"x");
        assert_refused(&c.pack(), &[name], &c.outdir, &[]);
    }
}

#[test]
fn non_utf8_file_name_refused() {
    let c = Case::new();
    let dir = c.src.join("zzz/nonutf8-dir");
    mkdir(&dir);
    write(&dir.join(OsStr::from_bytes(b"bad\xffname")), b"x");
    assert_refused(&c.pack(), &["nonutf8-dir"], &c.outdir, &[]);
}

#[test]
fn non_utf8_folder_name_refused() {
    let c = Case::new();
    let dir = c
        .src
        .join("zzz")
        .join(OsStr::from_bytes(b"latin1-\xe9t\xe9"));
    write(&dir.join("inside.txt"), b"x");
    assert_refused(&c.pack(), &["latin1-", "zzz"], &c.outdir, &[]);
}

#[test]
fn name_of_255_bytes_refused() {
    let c = Case::new();
    let name = format!("long-{}", "n".repeat(250));
    assert_eq!(name.len(), 255);
    write(&c.src.join("zzz").join(&name), b"x");
    assert_refused(&c.pack(), &["long-nnnnnnnnnn"], &c.outdir, &[]);
}

#[test]
fn name_of_255_bytes_shadowing_sibling_refused() {
    // mkfs.erofs 1.5 cuts to 254 bytes and would emit a duplicate dirent.
    let c = Case::new();
    let short = format!("twin-{}", "t".repeat(249));
    assert_eq!(short.len(), 254);
    write(&c.src.join("zzz").join(&short), b"254");
    write(&c.src.join("zzz").join(format!("{short}x")), b"255");
    assert_refused(&c.pack(), &["twin-tttttttttt"], &c.outdir, &[]);
}

#[test]
fn name_of_254_bytes_accepted() {
    let c = Case::new();
    write(&c.src.join("zzz").join("m".repeat(254)), b"ok");
    let o = c.pack();
    assert!(o.status.success(), "{}", output_text(&o));
    assert_eq!(listing(&c.outdir), ["model.info", "model.mpk"]);
}

// ---------------------------------------------------------------- identity --

const REV: &str = "0123456789abcdef0123456789abcdef01234567";

#[test]
fn bad_identities_refused() {
    let c = Case::new();
    let upper = format!("org/name@{}", REV.to_uppercase());
    let mut cases = vec![
        upper,
        format!("org/name@{}", &REV[..39]),
        format!("org/name@{REV}0"),
        format!("org/name@{}", "g".repeat(40)),
        format!("org/name@{REV}\n"),
        format!("org!/name@{REV}"),
        format!("org/na me@{REV}"),
        format!("org/name/extra@{REV}"),
        format!("org/na:me@{REV}"),
        format!("name@{REV}"),
        format!("org/@{REV}"),
        format!("/name@{REV}"),
        "org/name".to_owned(),
        "org/name@".to_owned(),
        format!("org/name@{REV}@{REV}"),
        format!("org/naé@{REV}"),
        String::new(),
    ];
    cases.push("org/name@main".to_owned());
    for id in &cases {
        let o = mpk_pack(&c.src, id, &c.out(), &[]);
        let shown = id.trim_end();
        let culprits = ["identity", "Identity", shown];
        assert_refused(&o, &culprits, &c.outdir, &[]);
        eprintln!(
            "refused {id:?}: {}",
            String::from_utf8_lossy(&o.stderr).trim_end()
        );
    }
}

#[test]
fn identity_charset_accepted() {
    let c = Case::new();
    let id = format!("Org.Name_x-1/Model-2.5_b.it@{REV}");
    let o = mpk_pack(&c.src, &id, &c.out(), &[]);
    assert!(
        o.status.success(),
        "{id} should be accepted: {}",
        output_text(&o)
    );
}

// ------------------------------------------------------------------ output --

#[test]
fn output_without_mpk_suffix_refused() {
    let c = Case::new();
    for name in [
        "model.img",
        "model",
        "model.mpk.tmp",
        "model.info",
        "modelmpk",
    ] {
        let out = c.outdir.join(name);
        let o = mpk_pack(&c.src, &test_identity(1), &out, &[]);
        assert_refused(&o, &[name, ".mpk"], &c.outdir, &[]);
    }
}

#[test]
fn existing_output_refused_without_force() {
    let c = Case::new();
    fs::write(c.out(), b"precious bytes").expect("write");
    let before = fs::metadata(c.out())
        .expect("stat")
        .modified()
        .expect("mtime");
    assert_refused(&c.pack(), &["model.mpk"], &c.outdir, &["model.mpk"]);
    assert_eq!(fs::read(c.out()).expect("read"), b"precious bytes");
    let after = fs::metadata(c.out())
        .expect("stat")
        .modified()
        .expect("mtime");
    assert_eq!(before, after, "the existing output was rewritten");
}

#[test]
fn existing_info_refused_without_force() {
    let c = Case::new();
    let info = c.outdir.join("model.info");
    fs::write(&info, b"precious info").expect("write");
    assert_refused(
        &c.pack(),
        &["model.info", "model.mpk"],
        &c.outdir,
        &["model.info"],
    );
    assert_eq!(fs::read(&info).expect("read"), b"precious info");
}

#[test]
fn force_replaces_existing_output() {
    let c = Case::new();
    let fresh = c.outdir.join("fresh.mpk");
    let o = mpk_pack(&c.src, &test_identity(1), &fresh, &[]);
    assert!(o.status.success(), "{}", output_text(&o));
    fs::write(c.out(), b"old bytes").expect("write");
    fs::write(c.outdir.join("model.info"), b"old info").expect("write");
    let o = mpk_pack(&c.src, &test_identity(1), &c.out(), &["--force"]);
    assert!(o.status.success(), "{}", output_text(&o));
    assert_eq!(
        fs::read(c.out()).expect("read"),
        fs::read(&fresh).expect("read")
    );
    assert_eq!(
        fs::read(c.outdir.join("model.info")).expect("read"),
        fs::read(c.outdir.join("fresh.info")).expect("read")
    );
    assert_eq!(
        listing(&c.outdir),
        ["fresh.info", "fresh.mpk", "model.info", "model.mpk"]
    );
}

#[test]
fn missing_dir_refused() {
    let c = Case::new();
    let missing = c._tmp.path().join("no-such-model-dir");
    let o = mpk_pack(&missing, &test_identity(1), &c.out(), &[]);
    assert_refused(&o, &["no-such-model-dir"], &c.outdir, &[]);
}

#[test]
fn dir_that_is_a_file_refused() {
    let c = Case::new();
    let file = c.src.join("a-config.json");
    let o = mpk_pack(&file, &test_identity(1), &c.out(), &[]);
    assert_refused(&o, &["a-config.json"], &c.outdir, &[]);
}

#[test]
fn refusal_leaves_source_untouched() {
    let c = Case::new();
    symlink("nowhere", c.src.join("zzz/dangling")).expect("symlink");
    let before = listing(&c.src);
    let o = c.pack();
    assert_refused(&o, &["dangling"], &c.outdir, &[]);
    assert_eq!(listing(&c.src), before);
    assert_eq!(listing(&c.src.join("zzz")), ["dangling"]);
}
