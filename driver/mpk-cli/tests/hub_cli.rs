//! Issue 3: `mpk identity`, `mpk reproduce`, `mpk lock`, `mpk fetch` and
//! `mpk build` against a mock Hub on 127.0.0.1 that speaks the Hub's real
//! HTTP interface (only the endpoint differs from production), including
//! the fault cases: each asserts the error text and that nothing is left
//! behind (no `.mpk`, no bad blob in the cache).

mod common;

use mpk_hub::mock::MockHub;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const C1: &str = "1111111111111111111111111111111111111111";
const C2: &str = "2222222222222222222222222222222222222222";
const REPO: &str = "acme/tiny";

use common::{fails, ok, walk};
use mpk_testutil::lcg_bytes as bytes;

/// The synthetic model: LFS and non-LFS files, subfolders, an empty file
/// and a UTF-8 name.
fn model(seed: u64) -> Vec<(&'static str, Vec<u8>, bool)> {
    vec![
        (".gitattributes", b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n*.bin filter=lfs diff=lfs merge=lfs -text\n".to_vec(), false),
        ("config.json", format!("{{\"hidden_size\": {seed}}}\n").into_bytes(), false),
        ("empty.txt", Vec::new(), false),
        ("model.safetensors", bytes(seed, 300_000), true),
        ("sub/dir/weights.bin", bytes(seed + 1, 5000), true),
        ("tökenizer.json", bytes(seed + 2, 9000), false),
    ]
}

struct Env {
    hub: MockHub,
    tmp: tempfile::TempDir,
}

impl Env {
    fn new() -> Self {
        let hub = MockHub::start();
        hub.put(REPO, "main", C1, model(1));
        Self {
            hub,
            tmp: tempfile::tempdir().unwrap(),
        }
    }
    fn cache(&self) -> PathBuf {
        self.tmp.path().join("cache")
    }
    fn out(&self) -> PathBuf {
        self.tmp.path().join("out")
    }
    fn mpk(&self) -> Command {
        let mut c = common::mpk();
        c.env("HF_ENDPOINT", &self.hub.endpoint)
            .env("HF_HUB_CACHE", self.cache())
            .env("HOME", self.tmp.path())
            .env_remove("HF_TOKEN")
            .env_remove("HF_HOME")
            .env_remove("HF_HUB_OFFLINE");
        common::without_proxies(&mut c);
        c
    }
    fn run(&self, args: &[&str]) -> Output {
        self.mpk().args(args).output().unwrap()
    }
    fn build(&self, extra: &[&str]) -> Output {
        let out = self.out();
        let mut a = vec!["build", "acme/tiny", "-o", out.to_str().unwrap()];
        a.extend_from_slice(extra);
        self.run(&a)
    }
    /// No image anywhere under OUTDIR and no bad or partial blob in the cache.
    fn assert_nothing_left(&self) {
        let mut images = Vec::new();
        walk(&self.out(), &mut |p| {
            if p.extension()
                .is_some_and(|e| e == "mpk" || e == "empk" || e == "tmp")
            {
                images.push(p.to_owned())
            }
        });
        assert!(images.is_empty(), "left behind: {images:?}");
        walk(&self.cache(), &mut |p| {
            for ext in [".incomplete", ".mpk-partial", ".mpk-ranges"] {
                assert!(
                    !p.to_string_lossy().ends_with(ext),
                    "partial blob left: {}",
                    p.display()
                );
            }
            if p.parent().is_some_and(|d| d.ends_with("blobs")) {
                let name = p.file_name().unwrap().to_str().unwrap().to_owned();
                let data = std::fs::read(p).unwrap();
                let ok = hex::encode(Sha256::digest(&data)) == name || git_oid(&data) == name;
                assert!(ok, "bad blob kept in the cache: {}", p.display());
            }
        });
    }
}

fn git_oid(d: &[u8]) -> String {
    mpk_hub::oid::git_blob_sha1(d)
}

fn write_model(dir: &Path, files: &[(&str, Vec<u8>, bool)]) {
    for (p, d, _) in files {
        let f = dir.join(p);
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(f, d).unwrap();
    }
}

fn pack_local(dir: &Path, identity: &str, out: &Path) -> String {
    let o = common::mpk()
        .args(["pack", dir.to_str().unwrap(), "--identity", identity, "-o"])
        .arg(out)
        .output()
        .unwrap();
    ok(&o)
}

fn listing(dir: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    walk(dir, &mut |p| v.push(p.to_owned()));
    v.sort();
    v
}

#[test]
fn identity_is_the_documented_content_hash() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("m");
    write_model(&d, &model(7));
    // Left out, as `mpk pack` leaves it out.
    write_model(&d, &[(".cache/huggingface/x.lock", b"x".to_vec(), false)]);
    let mut files: Vec<_> = model(7)
        .into_iter()
        .map(|(p, d, _)| (p.to_owned(), d.len(), hex::encode(Sha256::digest(&d))))
        .collect();
    files.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let mut h = Sha256::new();
    for (p, n, s) in &files {
        h.update(format!("{p}\0{n}\0{s}\n"));
    }
    let want = hex::encode(&h.finalize()[..20]);
    let o = common::mpk()
        .args(["identity", d.to_str().unwrap()])
        .output()
        .unwrap();
    let rev = ok(&o);
    assert_eq!(rev, want);
    // A private model packs under that revision.
    let r = pack_local(&d, &format!("private/model@{rev}"), &t.path().join("p.mpk"));
    assert!(r.contains('_'));
    // Any byte changes it.
    std::fs::write(d.join("empty.txt"), b"!").unwrap();
    let o = common::mpk()
        .args(["identity", d.to_str().unwrap()])
        .output()
        .unwrap();
    assert_ne!(ok(&o), want);
}

#[test]
fn reproduce_dir_equals_pack_and_writes_nothing() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("m");
    write_model(&d, &model(3));
    let id = format!("acme/tiny@{C1}");
    let info = t.path().join("o.info");
    let reference = pack_local(&d, &id, &t.path().join("o.mpk"));
    let before = listing(t.path());
    for args in [
        vec![
            "reproduce",
            &id,
            "--dir",
            d.to_str().unwrap(),
            "--expect",
            &reference,
        ],
        vec![
            "reproduce",
            "--identity",
            &id,
            "--dir",
            d.to_str().unwrap(),
            "--expect",
            info.to_str().unwrap(),
        ],
    ] {
        let o = common::mpk()
            .args(&args)
            .current_dir(t.path())
            .output()
            .unwrap();
        assert_eq!(ok(&o), reference);
    }
    // A wrong reference (another identity) is refused, naming both.
    let other = format!("acme/tiny@{C2}");
    let o = common::mpk()
        .args([
            "reproduce",
            &other,
            "--dir",
            d.to_str().unwrap(),
            "--expect",
            &reference,
        ])
        .output()
        .unwrap();
    let err = fails(&o, &["differs from the expected", &reference]);
    assert!(
        String::from_utf8_lossy(&o.stdout).trim() != reference,
        "{err}"
    );
    assert_eq!(listing(t.path()), before, "reproduce wrote files");
}

#[test]
fn build_equals_pack_and_reproduce() {
    let e = Env::new();
    let lockf = e.tmp.path().join("tiny.lock.json");
    ok(&e.run(&["lock", "acme/tiny", "-o", lockf.to_str().unwrap(), "-q"]));
    let lock = mpk_hub::Lock::load(&lockf).unwrap();
    assert_eq!(lock.identity, format!("{REPO}@{C1}"));
    assert_eq!(lock.files.len(), 6);
    let st = lock
        .files
        .iter()
        .find(|f| f.path == "model.safetensors")
        .unwrap();
    assert_eq!(st.lfs_sha256.as_deref(), Some(st.sha256.as_str()));
    // Paginated tree (page of 3: 6 files + 2 folders) followed to the end.
    let log = e.hub.log();
    assert!(log.iter().any(|l| l.contains("cursor=6")), "{log:?}");
    let reference = ok(&e.build(&["--lock", lockf.to_str().unwrap()]));
    // LFS bytes came from the separate download path, always by commit.
    let log = e.hub.log();
    assert!(
        log.iter().any(|l| l.starts_with("GET /lfs-cdn/")),
        "{log:?}"
    );
    assert!(
        log.iter()
            .filter(|l| l.contains("/resolve/"))
            .all(|l| l.contains(C1)),
        "{log:?}"
    );
    let dir = e.out().join("acme/tiny");
    let built = std::fs::read(dir.join(format!("{C1}.mpk"))).unwrap();
    assert_eq!(
        std::fs::read_to_string(dir.join(format!("{C1}.info"))).unwrap(),
        reference
    );
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join(format!("{C1}.manifest.json"))).unwrap())
            .unwrap();
    assert_eq!(m["reference"], reference.as_str());
    assert_eq!(m["lock_digest"], lock.digest().as_str());
    assert_eq!(m["files"].as_array().unwrap().len(), 6);
    // Same bytes as `mpk pack` on the same files.
    let local = e.tmp.path().join("local");
    write_model(&local, &model(1));
    let p = e.tmp.path().join("p.mpk");
    assert_eq!(pack_local(&local, &format!("{REPO}@{C1}"), &p), reference);
    assert!(std::fs::read(&p).unwrap() == built, "build and pack differ");
    // The HF snapshot has the files as links into blobs.
    let snap = e.cache().join(format!(
        "models--acme--tiny/snapshots/{C1}/sub/dir/weights.bin"
    ));
    assert_eq!(std::fs::read(&snap).unwrap(), model(1)[4].1);
    // `mpk reproduce` from the lock (cached) and from the Hub agree.
    ok(&e.run(&[
        "reproduce",
        "--lock",
        lockf.to_str().unwrap(),
        "--expect",
        &reference,
        "-q",
    ]));
    ok(&e.run(&[
        "reproduce",
        &format!("{REPO}@main"),
        "--expect",
        &reference,
        "-q",
    ]));
    let bad = reference.replacen(
        &reference[..2],
        if &reference[..2] == "00" { "11" } else { "00" },
        1,
    );
    fails(
        &e.run(&[
            "reproduce",
            "--lock",
            lockf.to_str().unwrap(),
            "--expect",
            &bad,
            "-q",
        ]),
        &["differs from the expected"],
    );
    // Offline: everything from the cache.
    let o = e
        .mpk()
        .env("HF_HUB_OFFLINE", "1")
        .args(["fetch", lockf.to_str().unwrap(), "-q"])
        .output()
        .unwrap();
    ok(&o);
}

/// `mpk build --schema modelwrap-v2`: the manifest names the schema, the
/// bytes equal `mpk pack --schema modelwrap-v2` of the same files, and
/// `mpk reproduce` from the Hub (streamed) and from the cache (offline)
/// finds it with `--schema auto` and with the schema named.
#[test]
fn build_with_schema_v2_equals_pack_and_reproduces() {
    let e = Env::new();
    let reference = ok(&e.build(&["--schema", "modelwrap-v2", "-q"]));
    let dir = e.out().join("acme/tiny");
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join(format!("{C1}.manifest.json"))).unwrap())
            .unwrap();
    assert_eq!(m["schema"], "modelwrap-v2");
    assert_eq!(m["reference"], reference.as_str());
    let local = e.tmp.path().join("local");
    write_model(&local, &model(1));
    let p = e.tmp.path().join("p.mpk");
    let o = common::mpk()
        .args([
            "pack",
            local.to_str().unwrap(),
            "--identity",
            &format!("{REPO}@{C1}"),
        ])
        .args(["--schema", "modelwrap-v2", "-o"])
        .arg(&p)
        .output()
        .unwrap();
    assert_eq!(ok(&o), reference);
    let built = std::fs::read(dir.join(format!("{C1}.mpk"))).unwrap();
    assert!(std::fs::read(&p).unwrap() == built, "build and pack differ");
    let v1 = pack_local(
        &local,
        &format!("{REPO}@{C1}"),
        &e.tmp.path().join("v1.mpk"),
    );
    assert_ne!(v1, reference, "v1 and v2 differ on this model");
    let id = format!("{REPO}@{C1}");
    for schema in ["auto", "modelwrap-v2"] {
        let o = e.run(&[
            "reproduce",
            &id,
            "--expect",
            &reference,
            "--schema",
            schema,
            "--json",
            "-q",
        ]);
        let v: serde_json::Value = serde_json::from_str(&ok(&o)).unwrap();
        assert_eq!(v["match"], true, "{schema}");
        assert_eq!(v["schema"], "modelwrap-v2");
    }
    let lockf = e.tmp.path().join("tiny.lock.json");
    ok(&e.run(&["lock", "acme/tiny", "-o", lockf.to_str().unwrap(), "-q"]));
    let o = e
        .mpk()
        .env("HF_HUB_OFFLINE", "1")
        .args(["reproduce", "--lock", lockf.to_str().unwrap()])
        .args(["--expect", &reference, "--schema", "auto", "-q"])
        .output()
        .unwrap();
    assert_eq!(ok(&o), reference);
    assert!(String::from_utf8_lossy(&o.stderr).contains("schema: modelwrap-v2 matched"));
    // Under the default schema the v2 reference is a finding.
    fails(
        &e.run(&["reproduce", &id, "--expect", &reference, "-q"]),
        &["differs from the expected"],
    );
}

#[test]
fn include_list_pins_part_of_a_repo() {
    let e = Env::new();
    let lockf = e.tmp.path().join("part.lock.json");
    ok(&e.run(&[
        "lock",
        "acme/tiny",
        "--include",
        "*.json",
        "--include",
        "sub/",
        "-o",
        lockf.to_str().unwrap(),
        "-q",
    ]));
    let lock = mpk_hub::Lock::load(&lockf).unwrap();
    let paths: Vec<_> = lock.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(
        paths,
        ["config.json", "sub/dir/weights.bin", "tökenizer.json"]
    );
    let r = ok(&e.build(&["--lock", lockf.to_str().unwrap(), "-q"]));
    let local = e.tmp.path().join("local");
    let part: Vec<_> = model(1)
        .into_iter()
        .filter(|f| paths.contains(&f.0))
        .collect();
    write_model(&local, &part);
    assert_eq!(
        pack_local(&local, &format!("{REPO}@{C1}"), &e.tmp.path().join("p.mpk")),
        r
    );
}

fn lock_then(e: &Env) -> PathBuf {
    let lockf = e.tmp.path().join("tiny.lock.json");
    ok(&e.run(&["lock", "acme/tiny", "-o", lockf.to_str().unwrap(), "-q"]));
    // Start from an empty cache: faults hit the downloads of `build`.
    std::fs::remove_dir_all(e.cache()).unwrap();
    lockf
}

#[test]
fn concurrent_fetches_download_each_blob_once() {
    let e = Env::new();
    let l = lock_then(&e);
    // A slow LFS body: the second process starts while the first downloads.
    e.hub.faults(|f| {
        f.slow_ms.insert("model.safetensors".into(), 1500);
    });
    let spawn = || {
        e.mpk()
            .args(["fetch", l.to_str().unwrap(), "-q"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let a = spawn();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let b = spawn();
    for child in [a, b] {
        ok(&child.wait_with_output().unwrap());
    }
    let etag = hex::encode(Sha256::digest(&model(1)[3].1));
    let gets = e
        .hub
        .log()
        .iter()
        .filter(|l| l.starts_with("GET") && l.contains(&etag))
        .count();
    assert_eq!(
        gets,
        1,
        "the blob was downloaded {gets} times: {:?}",
        e.hub.log()
    );
    assert!(
        e.cache()
            .join(".locks/models--acme--tiny")
            .join(format!("{etag}.lock"))
            .exists()
    );
    e.assert_nothing_left();
}

#[test]
fn fault_lfs_byte_changed() {
    let e = Env::new();
    let l = lock_then(&e);
    e.hub.faults(|f| f.corrupt.push("model.safetensors".into()));
    let sha = hex::encode(Sha256::digest(&model(1)[3].1));
    let o = e.build(&["--lock", l.to_str().unwrap()]);
    // README, "Exit codes".
    assert_eq!(o.status.code(), Some(1));
    fails(&o, &["model.safetensors", "LFS sha256", &sha, "deleted"]);
    e.assert_nothing_left();
}

#[test]
fn fault_non_lfs_changed() {
    let e = Env::new();
    let l = lock_then(&e);
    e.hub.faults(|f| f.corrupt.push("tökenizer.json".into()));
    let oid = git_oid(&model(1)[5].1);
    let o = e.build(&["--lock", l.to_str().unwrap()]);
    // README, "Exit codes".
    assert_eq!(o.status.code(), Some(1));
    fails(&o, &["tökenizer.json", "git blob sha1", &oid]);
    e.assert_nothing_left();
}

#[test]
fn fault_truncated_body() {
    let e = Env::new();
    let l = lock_then(&e);
    e.hub
        .faults(|f| f.truncate.push("model.safetensors".into()));
    let o = e.build(&["--lock", l.to_str().unwrap()]);
    // README, "Exit codes".
    assert_eq!(o.status.code(), Some(1));
    fails(&o, &["model.safetensors", "size mismatch", "300000 bytes"]);
    e.assert_nothing_left();
}

#[test]
fn fault_404() {
    let e = Env::new();
    let l = lock_then(&e);
    e.hub.faults(|f| f.missing.push("config.json".into()));
    let o = e.build(&["--lock", l.to_str().unwrap()]);
    // README, "Exit codes".
    assert_eq!(o.status.code(), Some(2));
    fails(&o, &["404", "config.json"]);
    e.assert_nothing_left();
}

#[test]
fn fault_500_then_ok_and_dropped_connection_resumes() {
    let e = Env::new();
    let l = lock_then(&e);
    e.hub.faults(|f| {
        f.fail_500.insert("model.safetensors".into(), 2);
        f.drop_after.insert("tökenizer.json".into(), (4000, 1));
    });
    let o = e.build(&["--lock", l.to_str().unwrap()]);
    ok(&o);
    let err = String::from_utf8_lossy(&o.stderr);
    // The range resumes from the byte it reached, on its own.
    assert!(err.contains("retrying   tökenizer.json"), "{err}");
    assert!(err.contains("HTTP 500"), "{err}");
    assert!(e.hub.log().iter().any(|l| l.ends_with("range=4000-8999")));
}

#[test]
fn fault_gated_without_token() {
    let e = Env::new();
    e.hub.gate(REPO);
    fails(&e.build(&[]), &["401", "HF_TOKEN"]);
    e.assert_nothing_left();
    let o = e
        .mpk()
        .env("HF_TOKEN", &e.hub.token)
        .args(["build", "acme/tiny", "-q", "-o"])
        .arg(e.out())
        .output()
        .unwrap();
    ok(&o);
}

#[test]
fn fault_lock_disagrees_with_hub() {
    let e = Env::new();
    let l = lock_then(&e);
    // The lock says config.json is something else than the Hub serves.
    let mut lock = mpk_hub::Lock::load(&l).unwrap();
    let f = lock
        .files
        .iter_mut()
        .find(|f| f.path == "config.json")
        .unwrap();
    let other = b"{\"hidden_size\": 9}\n";
    f.git_oid = git_oid(other);
    f.sha256 = hex::encode(Sha256::digest(other));
    f.size = other.len() as u64;
    std::fs::write(&l, lock.to_json()).unwrap();
    fails(
        &e.build(&["--lock", l.to_str().unwrap()]),
        &["lock disagrees with the Hub", "config.json"],
    );
    e.assert_nothing_left();
}

#[test]
fn fault_branch_moved_after_lock() {
    let e = Env::new();
    let l = lock_then(&e);
    e.hub.put(REPO, "main", C2, model(2));
    fails(
        &e.run(&[
            "build",
            "acme/tiny@main",
            "--lock",
            l.to_str().unwrap(),
            "-o",
            e.out().to_str().unwrap(),
        ]),
        &[C1, C2, "main"],
    );
    e.assert_nothing_left();
    // By commit, the lock still builds.
    ok(&e.run(&[
        "build",
        &format!("acme/tiny@{C1}"),
        "--lock",
        l.to_str().unwrap(),
        "-q",
        "-o",
        e.out().to_str().unwrap(),
    ]));
}

/// The repository's example base image (synthetic firmware, kernel, initrd).
fn example_base() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../vm-images/example")
}

#[test]
fn build_with_base_writes_the_deployment_of_measure_deployment() {
    let env = Env::new();
    let base = example_base();
    let reference = ok(&env.build(&["--base", base.to_str().unwrap(), "-q"]));
    let dir = env.out().join("acme/tiny");
    let deployment = dir.join(format!("{C1}.example.deployment.json"));
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&deployment).unwrap()).unwrap();
    assert_eq!(doc["reference"], reference.as_str());
    // Same document as the standalone command on the written manifest.
    let manifest = dir.join(format!("{C1}.manifest.json"));
    let o = common::mpk()
        .args(["measure", "deployment", "--base"])
        .arg(&base)
        .arg("--manifest")
        .arg(&manifest)
        .output()
        .unwrap();
    let standalone: serde_json::Value = serde_json::from_str(&ok(&o)).unwrap();
    assert_eq!(doc, standalone);
    assert!(
        doc["cmdline"]
            .as_str()
            .unwrap()
            .contains(&format!("mpk.model={REPO}@{C1}:{reference}")),
        "{doc}"
    );
}

#[test]
fn encrypted_build_deploys_a_crypt_word_and_reproduces() {
    let env = Env::new();
    let base = example_base();
    let key = env.tmp.path().join("owner.key");
    ok(&env.run(&["keygen", "-o", key.to_str().unwrap()]));
    let plain = ok(&env.build(&["-q"]));
    let dir = env.out().join("acme/tiny");
    let enc = ok(&env.build(&[
        "--base",
        base.to_str().unwrap(),
        "-q",
        "--force",
        "--encrypt",
        "--key-file",
        key.to_str().unwrap(),
    ]));
    let (root, rest) = enc.split_once('_').unwrap();
    assert!(
        plain.starts_with(&format!("{root}_")),
        "same root: {plain} / {enc}"
    );
    assert_ne!(enc, plain, "the encrypted reference names the partition");
    let info = dir.join(format!("{C1}.info"));
    assert_eq!(std::fs::read_to_string(&info).unwrap(), enc);
    assert!(rest.contains('_'));
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join(format!("{C1}.manifest.json"))).unwrap())
            .unwrap();
    assert_eq!(
        manifest["reference"],
        plain.as_str(),
        "the public reference"
    );
    assert_eq!(manifest["encryption"]["encrypted_reference"], enc.as_str());
    let doc: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.join(format!("{C1}.example.deployment.json"))).unwrap(),
    )
    .unwrap();
    let cmdline = doc["cmdline"].as_str().unwrap();
    assert!(
        cmdline.contains(&format!("mpk.model={REPO}@{C1}:{enc}:crypt")),
        "{cmdline}"
    );
    // The .empk decrypts and verifies; the Hub reproduces its root.
    let empk = dir.join(format!("{C1}.empk"));
    let identity = format!("{REPO}@{C1}");
    let v = env.run(&[
        "verify",
        empk.to_str().unwrap(),
        "--key-file",
        key.to_str().unwrap(),
        "--ref",
        info.to_str().unwrap(),
        "--identity",
        &identity,
    ]);
    ok(&v);
    let r = env.run(&[
        "reproduce",
        &identity,
        "--expect",
        info.to_str().unwrap(),
        "-q",
    ]);
    assert_eq!(ok(&r), enc);
}

#[test]
fn build_with_a_bad_base_keeps_nothing() {
    let env = Env::new();
    // A copy of the example whose kernel no longer matches image.json.
    let bad = env.tmp.path().join("bad-base");
    std::fs::create_dir_all(bad.join("synthetic")).unwrap();
    for e in std::fs::read_dir(example_base().join("synthetic")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), bad.join("synthetic").join(e.file_name())).unwrap();
    }
    std::fs::copy(example_base().join("image.json"), bad.join("image.json")).unwrap();
    let mut k = std::fs::read(bad.join("synthetic/bzImage")).unwrap();
    k[600] ^= 1;
    std::fs::write(bad.join("synthetic/bzImage"), k).unwrap();
    let o = env.build(&["--base", bad.to_str().unwrap(), "-q"]);
    fails(&o, &["kernel", "sha256", "nothing was kept"]);
    env.assert_nothing_left();
    let mut left = Vec::new();
    walk(&env.out(), &mut |p| left.push(p.to_owned()));
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// `mpk build --lock` (to learn the reference), then an empty cache.
fn reference_then_empty_cache(e: &Env) -> (PathBuf, String) {
    let l = lock_then(e);
    let r = ok(&e.build(&["--lock", l.to_str().unwrap(), "-q"]));
    std::fs::remove_dir_all(e.cache()).unwrap();
    (l, r)
}

fn blobs_in_cache(e: &Env) -> Vec<PathBuf> {
    let mut v = Vec::new();
    walk(&e.cache(), &mut |p| v.push(p.to_owned()));
    v
}

#[test]
fn reproduce_streams_from_the_hub_and_writes_nothing() {
    let e = Env::new();
    let (l, r) = reference_then_empty_cache(&e);
    let o = e.run(&[
        "reproduce",
        "--lock",
        l.to_str().unwrap(),
        "--expect",
        &r,
        "-q",
    ]);
    assert_eq!(ok(&o), r);
    assert!(blobs_in_cache(&e).is_empty(), "{:?}", blobs_in_cache(&e));
    // Tails come by Range requests, full blocks by a streamed GET.
    assert!(
        e.hub.log().iter().any(|l| l.contains("range=")),
        "{:?}",
        e.hub.log()
    );
    let flipped = if r.as_bytes()[63] == b'0' { "1" } else { "0" };
    let wrong = format!("{}{flipped}{}", &r[..63], &r[64..]);
    let o = e.run(&[
        "reproduce",
        "--lock",
        l.to_str().unwrap(),
        "--expect",
        &wrong,
        "-q",
    ]);
    fails(&o, &["differs from the expected"]);
}

#[test]
fn reproduce_stream_survives_a_dropped_connection_and_a_500() {
    let e = Env::new();
    let (l, r) = reference_then_empty_cache(&e);
    // The first GET of model.safetensors is its tail (a Range request
    // shorter than 100000 bytes); the second, the full blocks, drops.
    e.hub.faults(|f| {
        f.drop_after
            .insert("model.safetensors".into(), (100_000, 2));
        f.fail_500.insert("tökenizer.json".into(), 2);
    });
    let o = e.run(&[
        "reproduce",
        "--lock",
        l.to_str().unwrap(),
        "--expect",
        &r,
        "-q",
    ]);
    assert_eq!(ok(&o), r);
    assert!(
        e.hub.log().iter().any(|l| l.contains("range=100000-")),
        "resumed with a Range request: {:?}",
        e.hub.log()
    );
    assert!(blobs_in_cache(&e).is_empty());
}

#[test]
fn reproduce_stream_refuses_changed_bytes() {
    let e = Env::new();
    let (l, r) = reference_then_empty_cache(&e);
    e.hub.faults(|f| f.corrupt.push("model.safetensors".into()));
    let o = e.run(&[
        "reproduce",
        "--lock",
        l.to_str().unwrap(),
        "--expect",
        &r,
        "-q",
    ]);
    let want = hex::encode(Sha256::digest(&model(1)[3].1));
    fails(&o, &["model.safetensors", "lock says", &want]);
    assert!(blobs_in_cache(&e).is_empty());
}

#[test]
fn json_outputs_of_build_and_reproduce() {
    let e = Env::new();
    let l = lock_then(&e);
    let o = e.build(&["--lock", l.to_str().unwrap(), "-q", "--json"]);
    let manifest: serde_json::Value = serde_json::from_str(&ok(&o)).unwrap();
    let r = manifest["reference"].as_str().unwrap().to_owned();
    let on_disk = std::fs::read(e.out().join(format!("acme/tiny/{C1}.manifest.json"))).unwrap();
    assert_eq!(
        manifest,
        serde_json::from_slice::<serde_json::Value>(&on_disk).unwrap()
    );
    let o = e.run(&[
        "reproduce",
        "--lock",
        l.to_str().unwrap(),
        "--expect",
        &r,
        "-q",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&ok(&o)).unwrap();
    assert_eq!(v["match"], true);
    assert_eq!(v["computed"], r.as_str());
    let flipped = if r.as_bytes()[0] == b'0' { "1" } else { "0" };
    let wrong = format!("{flipped}{}", &r[1..]);
    let o = e.run(&[
        "reproduce",
        "--lock",
        l.to_str().unwrap(),
        "--expect",
        &wrong,
        "-q",
        "--json",
    ]);
    assert!(!o.status.success());
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["match"], false);
    assert_eq!(v["expected"], wrong.as_str());
}

/// Issue 16: a model whose shards span several 8 MiB ranges.
fn big_model() -> Vec<(&'static str, Vec<u8>, bool)> {
    vec![
        ("config.json", b"{\"big\": true}\n".to_vec(), false),
        ("model-1.safetensors", bytes(21, (20 << 20) + 4321), true),
        ("model-2.safetensors", bytes(22, (9 << 20) + 7), true),
        ("tokenizer.json", bytes(23, 50_000), false),
    ]
}

#[test]
fn ranges_and_connections_give_the_same_results() {
    let e = Env::new();
    e.hub.put("acme/big", "main", C1, big_model());
    let id = format!("acme/big@{C1}");
    let local = e.tmp.path().join("local");
    write_model(&local, &big_model());
    let reference = pack_local(&local, &id, &e.tmp.path().join("local.mpk"));
    let lockf = e.tmp.path().join("big.lock.json");
    ok(&e.run(&["lock", "acme/big", "-o", lockf.to_str().unwrap(), "-q"]));
    let l = lockf.to_str().unwrap();
    for n in ["1", "2", "16"] {
        // Reproduce: every connection count gives the reference, and
        // nothing is written.
        std::fs::remove_dir_all(e.cache()).unwrap();
        let o = e.run(&[
            "reproduce",
            "--lock",
            l,
            "--expect",
            &reference,
            "-q",
            "--connections",
            n,
        ]);
        assert_eq!(ok(&o), reference, "{n} connections");
        assert!(
            blobs_in_cache(&e).is_empty(),
            "{n}: {:?}",
            blobs_in_cache(&e)
        );
        // Fetch (here through MPK_CONNECTIONS): the same verified files.
        let o = e
            .mpk()
            .env("MPK_CONNECTIONS", n)
            .args(["fetch", l, "-q"])
            .output()
            .unwrap();
        let snap = PathBuf::from(ok(&o));
        for (p, d, _) in big_model() {
            assert_eq!(std::fs::read(snap.join(p)).unwrap(), d, "{n}: {p}");
        }
        e.assert_nothing_left();
    }
    assert!(
        e.hub
            .log()
            .iter()
            .any(|x| x.contains(&format!("range={}-{}", 8 << 20, (16 << 20) - 1))),
        "ranges of 8 MiB"
    );
    // Resume: a run that fails on a range (exit 2, a network failure)
    // keeps the ranges it finished beside the partial file; the next run
    // is served only the rest (counted by the mock).
    std::fs::remove_dir_all(e.cache()).unwrap();
    e.hub.faults(|f| {
        f.fail_range
            .insert("model-1.safetensors".into(), (16 << 20, 1000));
    });
    let o = e.run(&["fetch", l, "-q", "--connections", "1"]);
    assert_eq!(o.status.code(), Some(2));
    fails(&o, &["model-1.safetensors", "at byte 16777216", "HTTP 500"]);
    let etag = hex::encode(Sha256::digest(&big_model()[1].1));
    let blobs = e.cache().join("models--acme--big/blobs");
    assert!(blobs.join(format!("{etag}.mpk-partial")).exists());
    assert!(blobs.join(format!("{etag}.mpk-ranges")).exists());
    assert!(!blobs.join(&etag).exists());
    e.hub.faults(|f| f.fail_range.clear());
    let before = e.hub.served();
    let o = e.run(&["fetch", l, "--connections", "4"]);
    ok(&o);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("resuming   model-1.safetensors: 16777216 of"),
        "{err}"
    );
    let total: u64 = big_model().iter().map(|f| f.1.len() as u64).sum();
    let config = big_model()[0].1.len() as u64;
    assert_eq!(e.hub.served() - before, total - config - (16 << 20));
    e.assert_nothing_left();
    // A tampered range in the middle of a shard: reproduce finds it (exit
    // 1, naming the file), fetch keeps nothing of it.
    e.hub.faults(|f| {
        f.corrupt_at
            .insert("model-1.safetensors".into(), (12 << 20) + 3);
    });
    std::fs::remove_dir_all(e.cache()).unwrap();
    let o = e.run(&["reproduce", "--lock", l, "--expect", &reference, "-q"]);
    assert_eq!(o.status.code(), Some(1));
    fails(&o, &["model-1.safetensors"]);
    let o = e.run(&["fetch", l, "-q"]);
    assert_eq!(o.status.code(), Some(1));
    fails(&o, &["model-1.safetensors", "mismatch"]);
    e.assert_nothing_left();
    // A server that refuses ranges: whole files, the same results.
    e.hub.faults(|f| {
        f.corrupt_at.clear();
        f.no_ranges = true;
    });
    std::fs::remove_dir_all(e.cache()).unwrap();
    let o = e.run(&["reproduce", "--lock", l, "--expect", &reference, "-q"]);
    assert_eq!(ok(&o), reference);
    let o = e.run(&["fetch", l, "-q"]);
    ok(&o);
    e.assert_nothing_left();
    // Files are resolved in parallel; one that is missing is named.
    e.hub.faults(|f| {
        f.no_ranges = false;
        f.missing.push("model-2.safetensors".into());
    });
    let o = e.run(&["reproduce", "--lock", l, "--expect", &reference, "-q"]);
    assert_eq!(o.status.code(), Some(2));
    fails(&o, &["model-2.safetensors", "404"]);
    e.hub.faults(|f| f.missing.clear());
    // Connection counts out of range are refused before any transfer.
    for bad in ["0", "65", "x"] {
        let o = e.run(&["fetch", l, "-q", "--connections", bad]);
        assert_eq!(o.status.code(), Some(2), "--connections {bad}");
        let o = e
            .mpk()
            .env("MPK_CONNECTIONS", bad)
            .args(["fetch", l, "-q"])
            .output()
            .unwrap();
        fails(&o, &["MPK_CONNECTIONS"]);
        assert_eq!(o.status.code(), Some(2));
    }
}

#[test]
fn fetch_killed_mid_file_resumes_with_only_the_missing_ranges() {
    let e = Env::new();
    e.hub.put("acme/big", "main", C1, big_model());
    let lockf = e.tmp.path().join("big.lock.json");
    ok(&e.run(&["lock", "acme/big", "-o", lockf.to_str().unwrap(), "-q"]));
    std::fs::remove_dir_all(e.cache()).unwrap();
    // Slow connections, so the first range of the big shard is recorded
    // long before the file is done; then SIGKILL.
    e.hub.cap(Some(4 << 20));
    let etag = hex::encode(Sha256::digest(&big_model()[1].1));
    let blobs = e.cache().join("models--acme--big/blobs");
    let ranges = blobs.join(format!("{etag}.mpk-ranges"));
    let mut child = e
        .mpk()
        .args(["fetch", lockf.to_str().unwrap(), "-q", "--connections", "1"])
        .spawn()
        .unwrap();
    let recorded = |p: &Path| -> Vec<(u64, u64)> {
        std::fs::read_to_string(p)
            .unwrap_or_default()
            .lines()
            .skip(1)
            .filter_map(|l| {
                let w: Vec<&str> = l.split(' ').collect();
                if w.len() != 3 || w[2].len() != 64 {
                    return None; // a line being written
                }
                Some((w[0].parse::<u64>().ok()?, w[1].parse::<u64>().ok()?))
            })
            .collect()
    };
    while recorded(&ranges).is_empty() {
        assert!(child.try_wait().unwrap().is_none(), "mpk ended early");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let kept: u64 = recorded(&ranges).iter().map(|(a, b)| b - a).sum();
    assert!(kept >= 8 << 20 && kept < big_model()[1].1.len() as u64);
    assert!(
        !blobs.join(&etag).exists(),
        "no final name before verification"
    );
    // The next run is served only what was missing.
    e.hub.cap(None);
    let before = e.hub.served();
    let o = e.run(&["fetch", lockf.to_str().unwrap(), "-q"]);
    let snap = PathBuf::from(ok(&o));
    let total: u64 = big_model().iter().map(|f| f.1.len() as u64).sum();
    let config = big_model()[0].1.len() as u64;
    assert_eq!(e.hub.served() - before, total - config - kept);
    for (p, d, _) in big_model() {
        assert_eq!(std::fs::read(snap.join(p)).unwrap(), d, "{p}");
    }
    e.assert_nothing_left();
}

/// Issue 18: `mpk reproduce --lock FILE -o OUTDIR` publishes, without any
/// image and without touching the cache, the same `.info`, manifest and
/// deployment documents as `mpk build -o OUTDIR`, byte for byte, for both
/// schemas; with a wrong `--expect` it publishes nothing.
#[test]
fn reproduce_with_output_publishes_what_build_publishes() {
    let e = Env::new();
    let l = lock_then(&e);
    let base = example_base();
    let docs = documents;
    for schema in ["modelwrap-v1", "modelwrap-v2"] {
        let built = e.tmp.path().join(format!("built-{schema}"));
        let streamed = e.tmp.path().join(format!("streamed-{schema}"));
        let common = [
            "--lock",
            l.to_str().unwrap(),
            "--schema",
            schema,
            "--base",
            base.to_str().unwrap(),
            "-q",
        ];
        let mut a = vec!["build", "-o", built.to_str().unwrap(), REPO];
        a.extend_from_slice(&common);
        let r = ok(&e.run(&a));
        std::fs::remove_dir_all(e.cache()).unwrap();
        let mut a = vec!["reproduce", "-o", streamed.to_str().unwrap()];
        a.extend_from_slice(&common);
        assert_eq!(ok(&e.run(&a)), r);
        assert!(
            blobs_in_cache(&e).is_empty(),
            "reproduce wrote to the cache"
        );
        let (b, s) = (docs(&built), docs(&streamed));
        assert_eq!(
            b.iter().map(|x| &x.0).collect::<Vec<_>>(),
            s.iter().map(|x| &x.0).collect::<Vec<_>>()
        );
        assert_eq!(b.len(), 3, "info, manifest, one deployment: {b:?}");
        for ((name, x), (_, y)) in b.iter().zip(&s) {
            assert!(x == y, "{schema}: {} differs", name.display());
        }
        // With the right --expect: the same; with a wrong one: exit 1 and
        // nothing published.
        let again = e.tmp.path().join(format!("again-{schema}"));
        let mut a = vec!["reproduce", "-o", again.to_str().unwrap(), "--expect", &r];
        a.extend_from_slice(&common);
        ok(&e.run(&a));
        assert_eq!(docs(&again), s);
        let wrong = r.replacen(&r[..2], if &r[..2] == "00" { "11" } else { "00" }, 1);
        let none = e.tmp.path().join(format!("none-{schema}"));
        let mut a = vec![
            "reproduce",
            "-o",
            none.to_str().unwrap(),
            "--expect",
            &wrong,
        ];
        a.extend_from_slice(&common);
        let o = e.run(&a);
        assert_eq!(
            o.status.code(),
            Some(1),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(docs(&none).is_empty(), "{:?}", docs(&none));
        // A second run refuses to replace the documents without --force.
        let mut a = vec!["reproduce", "-o", streamed.to_str().unwrap()];
        a.extend_from_slice(&common);
        fails(&e.run(&a), &["already exists", "--force"]);
        a.push("--force");
        ok(&e.run(&a));
    }
    // Publishing needs one schema.
    let o = e.run(&[
        "reproduce",
        "-o",
        "x",
        "--lock",
        l.to_str().unwrap(),
        "--schema",
        "auto",
    ]);
    fails(&o, &["--schema modelwrap-v1 or modelwrap-v2"]);
}

/// Issue 18, the large path as the workflow runs it: a model five times
/// larger than the small tmpfs that holds TMPDIR, HOME, the cache and the
/// output folder reproduces from the Hub, and its documents equal those
/// `mpk build` writes for the same files (built on the ordinary disk).
#[test]
fn a_model_larger_than_the_disk_publishes_builds_documents() {
    let uid = Command::new("id").arg("-u").output().unwrap();
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        assert!(
            !common::tools_required(),
            "this test needs root (tmpfs mount)"
        );
        eprintln!("SKIP: not root, cannot mount a small tmpfs");
        return;
    }
    let e = Env::new();
    e.hub.put("acme/big", "main", C1, big_model());
    let model_bytes: usize = big_model().iter().map(|f| f.1.len()).sum();
    let lockf = e.tmp.path().join("big.lock.json");
    ok(&e.run(&["lock", "acme/big", "-o", lockf.to_str().unwrap(), "-q"]));
    let built = e.tmp.path().join("built");
    ok(&e.run(&[
        "build",
        "acme/big",
        "--lock",
        lockf.to_str().unwrap(),
        "-o",
        built.to_str().unwrap(),
        "-q",
    ]));

    let small = e.tmp.path().join("small");
    std::fs::create_dir(&small).unwrap();
    let size = 6 << 20;
    assert!(model_bytes > 4 * size, "the model must dwarf the disk");
    let m = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(&small)
        .status()
        .unwrap();
    assert!(m.success(), "cannot mount a small tmpfs");
    let (tmp, home, cache, out) = (
        small.join("tmp"),
        small.join("home"),
        small.join("cache"),
        small.join("out"),
    );
    for d in [&tmp, &home] {
        std::fs::create_dir(d).unwrap();
    }
    let o = e
        .mpk()
        .env("TMPDIR", &tmp)
        .env("HOME", &home)
        .env("HF_HUB_CACHE", &cache)
        .args(["reproduce", "--lock", lockf.to_str().unwrap(), "-q", "-o"])
        .arg(&out)
        .output()
        .unwrap();
    let read = documents;
    let got = read(&out);
    let used = String::from_utf8_lossy(
        &Command::new("df")
            .arg("-B1")
            .arg(&small)
            .output()
            .unwrap()
            .stdout,
    )
    .into_owned();
    let _ = Command::new("umount").arg(&small).status();
    ok(&o);
    assert_eq!(got.len(), 2, "info and manifest: {got:?}");
    assert_eq!(got, read(&built), "documents differ from build's\n{used}");
}

/// Every file under `dir` but images, with its bytes, by relative path.
fn documents(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut v = Vec::new();
    walk(dir, &mut |p| {
        if p.extension().is_none_or(|x| x != "mpk") {
            v.push((
                p.strip_prefix(dir).unwrap().to_owned(),
                std::fs::read(p).unwrap(),
            ));
        }
    });
    v.sort();
    v
}
