//! Issue 6: the Nix flake, evaluated and built offline. nixpkgs cannot be
//! fetched here, so a copy of the flake (flake.nix, flake.lock, nix/,
//! models/*.lock.json plus a synthetic lock) is evaluated with
//! `--override-input nixpkgs path:<copy of tests/nix/stand-in-nixpkgs>`,
//! whose `rustPlatform.buildRustPackage` wraps the `mpk` binary under test
//! and whose `fetchurl` fetches with curl (pointed at the mock Hub through
//! the `HF_ENDPOINT` impure env var). Checks: the output set, the generated
//! fixed-output fetches of every lock file (store name, URL, hash), the
//! synthetic model built by Nix equals `mpk build` of the same lock byte for
//! byte (`.mpk`, `.info`, `.manifest.json`, and the deployment document on
//! the Nix base image `qemu-snp`, as `mpk build --base`), and the
//! pinned-tools check.
//!
//! Base images (`packages.vm-image-<name>`, nix/vm-image.nix): with the
//! stand-in's kernel (`vm-images/example/synthetic/bzImage`), AmdSev OVMF
//! (`…/OVMF.amdsev.fd`) and the static `mpk-init` built here by cargo (as
//! the QEMU guest tests build it), `nix build .#vm-image-qemu-snp` gives a
//! folder whose `image.json` pins exactly its files, whose initrd is `mpk
//! initrd` of that init byte for byte, whose kernel config forces the
//! dm-verity/EROFS/virtio options built in, and which `mpk measure
//! deployment --base` accepts.
//!
//! Needs `nix` (Debian's nix-bin 2.8 is enough) and a writable /nix store
//! (root); skipped without `nix` unless `MPK_REQUIRE_TOOLS=1`.

mod common;
#[path = "../../mpk-guest/tests/static_build/mod.rs"]
mod static_build;

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

/// The static `mpk-init`, built exactly as the QEMU tests build it.
fn static_init() -> PathBuf {
    static_build::build_static(&repo_root())
        .unwrap()
        .join("mpk-init")
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

    /// `nix build` of one output; its store path.
    fn build_out(&self, attr: &str) -> PathBuf {
        let built = self.json(&["build", "--json", "--no-link", &self.flake_ref(attr)]);
        PathBuf::from(built[0]["outputs"]["out"].as_str().unwrap())
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
    copy_dir(&root.join("vm-images"), &flake.join("vm-images"));
    for e in std::fs::read_dir(root.join("models")).unwrap() {
        let p = e.unwrap().path();
        if p.to_str().unwrap().ends_with(".lock.json") {
            std::fs::copy(&p, flake.join("models").join(p.file_name().unwrap())).unwrap();
        }
    }
    let standin = f.standin();
    copy_dir(&root.join("tests/nix/stand-in-nixpkgs"), &standin);
    std::fs::copy(env!("CARGO_BIN_EXE_mpk"), standin.join("mpk")).unwrap();
    std::fs::copy(static_init(), standin.join("mpk-init")).unwrap();
    for n in ["bzImage", "OVMF.amdsev.fd"] {
        std::fs::copy(
            root.join("vm-images/example/synthetic").join(n),
            standin.join(n),
        )
        .unwrap();
    }

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
        "mpk-init",
        "default",
        "model-all-minilm-l6-v2",
        "model-fixture",
        "vm-image-qemu-snp",
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
    let lib = f.json(&[
        "eval",
        "--json",
        &f.flake_ref("lib"),
        "--apply",
        "l: builtins.attrNames (builtins.functionArgs l.mkVmImage)",
    ]);
    assert_eq!(lib, serde_json::json!(["mpk", "mpkInit", "pkgs"]));
    // Every model package takes every Nix base image (not the synthetic
    // example, which has no default.nix).
    let bases = f.json(&[
        "eval",
        "--json",
        &f.flake_ref(&format!("packages.{SYSTEM}.model-fixture.bases")),
        "--apply",
        "map (b: b.baseName)",
    ]);
    assert_eq!(bases, serde_json::json!(["qemu-snp"]));

    check_fetches(&f, "all-minilm-l6-v2");
    check_fetches(&f, "fixture");

    // `nix build .#model-fixture` (fetches from the mock Hub, packs
    // offline) gives the bytes of `mpk build` of the same lock, with the
    // deployment on the Nix base image (a folder named after it).
    let built = f.json(&[
        "build",
        "--json",
        "--no-link",
        &f.flake_ref("model-fixture"),
    ]);
    let out = PathBuf::from(built[0]["outputs"]["out"].as_str().unwrap());
    let lock = f.flake().join("models/fixture.lock.json");
    let expected = f.tmp.path().join("expected");
    let vm = f.build_out("vm-image-qemu-snp");
    let base = f.tmp.path().join("bases/qemu-snp");
    std::fs::create_dir_all(&base).unwrap();
    for e in std::fs::read_dir(&vm).unwrap() {
        let e = e.unwrap();
        std::os::unix::fs::symlink(e.path(), base.join(e.file_name())).unwrap();
    }
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
            "--base",
            base.to_str().unwrap(),
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
        ["info", "manifest.json", "mpk", "qemu-snp.deployment.json"]
            .map(|e| format!("{COMMIT}.{e}"))
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

fn sha256_hex(p: &Path) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(std::fs::read(p).unwrap()))
}

#[test]
fn vm_image_builds_offline_and_measures() {
    let Some(f) = setup() else { return };
    let attr = format!("packages.{SYSTEM}.vm-image-qemu-snp");

    // The kernel config: every option the init relies on is forced built in.
    let config = f.json(&[
        "eval",
        "--json",
        &f.flake_ref(&format!("{attr}.kernel.structuredExtraConfig")),
        "--apply",
        "builtins.mapAttrs (n: v: v.content.tristate)",
    ]);
    for o in [
        "BLK_DEV_DM",
        "DM_INIT",
        "DM_VERITY",
        "DM_CRYPT",
        "EROFS_FS",
        "VIRTIO_PCI",
        "VIRTIO_BLK",
        "CRYPTO_XTS",
        "CRYPTO_AES",
        "CRYPTO_SHA256",
        "DEVTMPFS",
        "AMD_MEM_ENCRYPT",
        "SEV_GUEST",
    ] {
        assert_eq!(config[o], "y", "{o}: {config}");
    }
    let dsc = f.json(&[
        "eval",
        "--json",
        &f.flake_ref(&format!("{attr}.ovmf.projectDscPath")),
    ]);
    assert_eq!(dsc, "OvmfPkg/AmdSev/AmdSevX64.dsc");

    let out = f.build_out("vm-image-qemu-snp");
    let mut names: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["OVMF.amdsev.fd", "bzImage", "image.json", "initrd"]);

    // image.json: the example's shape, every file pinned by its sha256.
    let image: Value =
        serde_json::from_slice(&std::fs::read(out.join("image.json")).unwrap()).unwrap();
    for (k, file) in [
        ("snp_ovmf", "OVMF.amdsev.fd"),
        ("kernel", "bzImage"),
        ("initrd", "initrd"),
    ] {
        assert_eq!(image[k]["path"], file, "{k}");
        assert_eq!(
            image[k]["sha256"],
            sha256_hex(&out.join(file)).as_str(),
            "{k}"
        );
    }
    let example: Value = serde_json::from_slice(
        &std::fs::read(repo_root().join("vm-images/example/image.json")).unwrap(),
    )
    .unwrap();
    for k in [
        "version",
        "cmdline",
        "vcpus",
        "vcpu_type",
        "guest_features",
        "memory_mb",
    ] {
        assert_eq!(image[k], example[k], "{k}");
    }
    assert!(image.get("tdvf").is_none());
    let standin = f.standin();
    assert_eq!(
        sha256_hex(&out.join("bzImage")),
        sha256_hex(&standin.join("bzImage"))
    );
    assert_eq!(
        sha256_hex(&out.join("OVMF.amdsev.fd")),
        sha256_hex(&standin.join("OVMF.amdsev.fd"))
    );

    // The initrd is `mpk initrd` of the static init, byte for byte.
    let again = f.tmp.path().join("initrd");
    let printed = common::mpk()
        .args(["initrd", "--init"])
        .arg(standin.join("mpk-init"))
        .arg("-o")
        .arg(&again)
        .output()
        .unwrap();
    assert!(printed.status.success());
    assert_eq!(
        String::from_utf8(printed.stdout).unwrap().trim(),
        image["initrd"]["sha256"]
    );
    assert!(std::fs::read(&again).unwrap() == std::fs::read(out.join("initrd")).unwrap());

    // `mpk measure deployment --base result` takes it as it is.
    let model = f.tmp.path().join("m");
    std::fs::create_dir_all(&model).unwrap();
    std::fs::write(model.join("config.json"), b"{}\n").unwrap();
    let id = "acme/vm-fixture@0123456789abcdef0123456789abcdef01234567";
    let pack = model.with_extension("mpk");
    let o = common::mpk()
        .args(["pack"])
        .arg(&model)
        .args(["--identity", id, "-o"])
        .arg(&pack)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = common::mpk()
        .args(["measure", "deployment", "--base"])
        .arg(&out)
        .arg("--model")
        .arg(pack.with_extension("info"))
        .args(["--identity", id])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let d: Value = serde_json::from_slice(&o.stdout).unwrap();
    let reference = std::fs::read_to_string(pack.with_extension("info")).unwrap();
    assert_eq!(
        d["cmdline"],
        format!(
            "console=ttyS0 panic=-1 mpk.model={id}:{} ",
            reference.trim()
        )
    );
    assert_eq!(d["snp_measurement"].as_str().unwrap().len(), 96);
    // Named by image.json, not by the store path `<hash>-vm-image-qemu-snp`.
    assert_eq!(d["base_image"], "qemu-snp");
    assert_eq!(d["inputs_sha256"]["initrd"], image["initrd"]["sha256"]);
    assert_eq!(
        d["inputs_sha256"]["image_json"],
        sha256_hex(&out.join("image.json")).as_str()
    );
}
