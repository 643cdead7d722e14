//! Issue 6: the Nix flake, evaluated and built offline. nixpkgs cannot be
//! fetched here, so a copy of the flake (flake.nix, flake.lock, nix/,
//! models/*.lock.json plus a synthetic lock) is evaluated with
//! `--override-input nixpkgs path:<copy of tests/nix/stand-in-nixpkgs>`,
//! whose `rustPlatform.buildRustPackage` wraps the `mpk` binary under test
//! and whose `fetchurl` fetches with curl (pointed at the mock Hub through
//! the `HF_ENDPOINT` impure env var). Checks: the output set, the generated
//! fixed-output fetches of every lock file (store name, URL, hash), the
//! synthetic model built by Nix equals `mpk build` of the same lock byte for
//! byte (`.mpk`, `.info`, `.manifest.json`), and the pinned-tools check.
//!
//! Needs `nix` (Debian's nix-bin 2.8 is enough) and a writable /nix store
//! (root); skipped without `nix` unless `MPK_REQUIRE_TOOLS=1`.

mod common;

use mpk_hub::mock::MockHub;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const COMMIT: &str = "6666666666666666666666666666666666666666";
const REPO: &str = "acme/flake-fixture";
const SYSTEM: &str = "x86_64-linux";

fn bytes(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// LFS and non-LFS files, a subfolder, an empty file, a UTF-8 name and a
/// name that needs percent-encoding.
fn model() -> Vec<(&'static str, Vec<u8>, bool)> {
    vec![
        (
            ".gitattributes",
            b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n".to_vec(),
            false,
        ),
        (
            "1_Pooling/config.json",
            b"{\"pooling\": \"mean\"}\n".to_vec(),
            false,
        ),
        ("config.json", b"{\"hidden_size\": 6}\n".to_vec(), false),
        ("empty.txt", Vec::new(), false),
        ("model.safetensors", bytes(6, 200_003), true),
        ("sub/dir/weights+v2.safetensors", bytes(7, 4097), true),
        ("tökenizer.json", bytes(8, 5000), false),
    ]
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let t = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &t);
        } else {
            std::fs::copy(e.path(), &t).unwrap();
        }
    }
}

/// A store name as nix/hf.nix derives it.
fn store_name(index: usize, path: &str) -> String {
    let s: String = path
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"+-._?=".contains(&b) {
                b as char
            } else {
                '_'
            }
        })
        .collect();
    let mut n = format!("hf-{index}-{s}");
    n.truncate(200);
    n
}

struct Flake {
    tmp: tempfile::TempDir,
    nix: PathBuf,
    hub: MockHub,
}

impl Flake {
    fn flake(&self) -> PathBuf {
        self.tmp.path().join("flake")
    }
    fn standin(&self) -> PathBuf {
        self.tmp.path().join("stand-in")
    }
    fn flake_ref(&self, attr: &str) -> String {
        format!("path:{}#{attr}", self.flake().display())
    }

    /// `nix <args>` with the offline stand-in options.
    fn nix(&self, args: &[&str]) -> Output {
        let standin = format!("path:{}", self.standin().display());
        let mut c = Command::new(&self.nix);
        c.args(["--extra-experimental-features", "nix-command flakes"])
            .args(args)
            .args(["--offline", "--no-write-lock-file"])
            .args(["--override-input", "nixpkgs", &standin])
            .args(["--option", "build-users-group", ""])
            .args(["--option", "sandbox", "false"])
            .args(["--option", "substituters", ""])
            .env("XDG_CACHE_HOME", self.tmp.path().join("xdg-cache"))
            .env("HF_ENDPOINT", &self.hub.endpoint)
            .env_remove("SOURCE_DATE_EPOCH")
            .env_remove("NIX_PATH");
        let out = c.output().unwrap();
        assert!(
            out.status.success(),
            "nix {args:?} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    fn json(&self, args: &[&str]) -> Value {
        serde_json::from_slice(&self.nix(args).stdout).unwrap()
    }

    /// `mpk` against the mock Hub with a private cache.
    fn mpk(&self, cache: &str, args: &[&str]) {
        let out = common::mpk()
            .args(args)
            .env("HF_ENDPOINT", &self.hub.endpoint)
            .env("HF_HUB_CACHE", self.tmp.path().join(cache))
            .env("HOME", self.tmp.path())
            .env_remove("HF_TOKEN")
            .env_remove("HF_HOME")
            .env_remove("HF_HUB_OFFLINE")
            .env_remove("SOURCE_DATE_EPOCH")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mpk {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Copies the flake and the stand-in into a temporary folder, serves the
/// fixture model from a mock Hub and locks it as `models/fixture.lock.json`.
fn setup() -> Option<Flake> {
    let nix = common::tool("nix")?;
    let f = Flake {
        tmp: tempfile::tempdir().unwrap(),
        nix,
        hub: MockHub::start(),
    };
    let root = repo_root();
    let flake = f.flake();
    std::fs::create_dir_all(flake.join("models")).unwrap();
    for n in ["flake.nix", "flake.lock", "Cargo.toml", "Cargo.lock"] {
        std::fs::copy(root.join(n), flake.join(n)).unwrap();
    }
    copy_dir(&root.join("nix"), &flake.join("nix"));
    for e in std::fs::read_dir(root.join("models")).unwrap() {
        let p = e.unwrap().path();
        if p.to_str().unwrap().ends_with(".lock.json") {
            std::fs::copy(&p, flake.join("models").join(p.file_name().unwrap())).unwrap();
        }
    }
    let standin = f.standin();
    copy_dir(&root.join("tests/nix/stand-in-nixpkgs"), &standin);
    std::fs::copy(env!("CARGO_BIN_EXE_mpk"), standin.join("mpk")).unwrap();

    f.hub.put(REPO, "main", COMMIT, model());
    let lock = flake.join("models/fixture.lock.json");
    f.mpk(
        "lock-cache",
        &[
            "lock",
            &format!("{REPO}@{COMMIT}"),
            "-q",
            "-o",
            lock.to_str().unwrap(),
        ],
    );
    Some(f)
}

/// Every generated fetch matches its lock entry: store name, resolve URL
/// at the locked commit (percent-encoded as mpk does), and the sha256 pin
/// (the LFS sha256 where there is one).
fn check_fetches(f: &Flake, short: &str) {
    let lock: Value = serde_json::from_slice(
        &std::fs::read(f.flake().join(format!("models/{short}.lock.json"))).unwrap(),
    )
    .unwrap();
    let identity = lock["identity"].as_str().unwrap();
    let (repo, commit) = identity.split_once('@').unwrap();
    let got = f.json(&[
        "eval",
        "--json",
        &f.flake_ref(&format!("packages.{SYSTEM}.model-{short}.files")),
        "--apply",
        "map (f: { inherit (f) path name url sha256; drvName = f.src.name; \
         drvUrl = f.src.url; drvHash = f.src.outputHash; })",
    ]);
    let files = lock["files"].as_array().unwrap();
    let got = got.as_array().unwrap();
    assert_eq!(got.len(), files.len(), "{short}: one fetch per locked file");
    for (i, (l, g)) in files.iter().zip(got).enumerate() {
        let path = l["path"].as_str().unwrap();
        let sha = l
            .get("lfs_sha256")
            .unwrap_or(&l["sha256"])
            .as_str()
            .unwrap();
        assert_eq!(sha, l["sha256"].as_str().unwrap());
        let url = format!(
            "https://huggingface.co/{repo}/resolve/{commit}/{}",
            mpk_hub::client::encode(path, true)
        );
        let name = store_name(i, path);
        assert_eq!(g["path"], path);
        assert_eq!(g["name"], name.as_str(), "{path}");
        assert_eq!(g["drvName"], name.as_str(), "{path}");
        assert_eq!(g["url"], url.as_str(), "{path}");
        assert_eq!(g["drvUrl"], url.as_str(), "{path}");
        assert_eq!(g["sha256"], sha, "{path}");
        assert_eq!(g["drvHash"], sha, "{path}");
    }
}

#[test]
fn flake_evaluates_and_builds_a_model_offline_like_mpk_build() {
    let Some(f) = setup() else { return };

    // The output set, generated from models/*.lock.json.
    let show = f.json(&[
        "flake",
        "show",
        "--json",
        &format!("path:{}", f.flake().display()),
    ]);
    let pkgs = &show["packages"][SYSTEM];
    for p in [
        "mpk",
        "default",
        "model-all-minilm-l6-v2",
        "model-fixture",
        "erofs-utils-1_5",
        "cryptsetup-2_6_1",
    ] {
        assert_eq!(
            pkgs[p]["type"], "derivation",
            "packages.{SYSTEM}.{p}: {show}"
        );
    }
    assert_eq!(show["apps"][SYSTEM]["mpk"]["type"], "app");
    for c in ["build", "clippy", "fmt", "tests", "reference-tools"] {
        assert_eq!(
            show["checks"][SYSTEM][c]["type"], "derivation",
            "checks.{c}"
        );
    }
    assert_eq!(show["devShells"][SYSTEM]["default"]["type"], "derivation");
    assert_eq!(show["formatter"][SYSTEM]["type"], "derivation");
    let names = f.json(&[
        "eval",
        "--json",
        &f.flake_ref(&format!("packages.{SYSTEM}")),
        "--apply",
        "ps: builtins.filter (n: builtins.substring 0 6 n == \"model-\") (builtins.attrNames ps)",
    ]);
    // One package per lock file, none listed by hand.
    let mut expected: Vec<String> = std::fs::read_dir(f.flake().join("models"))
        .unwrap()
        .filter_map(|e| {
            let n = e.unwrap().file_name().into_string().unwrap();
            n.strip_suffix(".lock.json").map(|s| format!("model-{s}"))
        })
        .collect();
    expected.sort();
    assert!(expected.contains(&"model-all-minilm-l6-v2".to_string()));
    assert_eq!(names, serde_json::json!(expected));
    // Every output instantiates (nothing is built).
    f.nix(&[
        "flake",
        "check",
        "--no-build",
        &format!("path:{}", f.flake().display()),
    ]);
    let lib = f.json(&[
        "eval",
        "--json",
        &f.flake_ref("lib"),
        "--apply",
        "l: builtins.attrNames (builtins.functionArgs l.mkModelPack)",
    ]);
    assert_eq!(lib, serde_json::json!(["lock", "mpk", "pkgs"]));

    check_fetches(&f, "all-minilm-l6-v2");
    check_fetches(&f, "fixture");

    // `nix build .#model-fixture` (fetches from the mock Hub, packs
    // offline) gives the bytes of `mpk build` of the same lock.
    let built = f.json(&[
        "build",
        "--json",
        "--no-link",
        &f.flake_ref("model-fixture"),
    ]);
    let out = PathBuf::from(built[0]["outputs"]["out"].as_str().unwrap());
    let lock = f.flake().join("models/fixture.lock.json");
    let expected = f.tmp.path().join("expected");
    f.mpk(
        "build-cache",
        &[
            "build",
            REPO,
            "--lock",
            lock.to_str().unwrap(),
            "-q",
            "-o",
            expected.to_str().unwrap(),
        ],
    );
    let expected = expected.join(REPO);
    let mut names: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["info", "manifest.json", "mpk"].map(|e| format!("{COMMIT}.{e}"))
    );
    for n in &names {
        let (a, b) = (
            std::fs::read(out.join(n)).unwrap(),
            std::fs::read(expected.join(n)).unwrap(),
        );
        assert!(a == b, "{n}: nix build and mpk build differ");
    }

    // The pinned-tools check (the stand-in wraps Debian's erofs-utils 1.5 and
    // cryptsetup 2.6.1): both pipelines pack its fixture to the same bytes.
    let check = f.json(&[
        "build",
        "--json",
        "--no-link",
        &f.flake_ref(&format!("checks.{SYSTEM}.reference-tools")),
    ]);
    let info = PathBuf::from(check[0]["outputs"]["out"].as_str().unwrap()).join("fixture.info");
    assert!(std::fs::read_to_string(info).unwrap().len() > 64);
}
