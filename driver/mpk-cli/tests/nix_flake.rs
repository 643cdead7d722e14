//! Issues 6 and 14: the Nix flake, evaluated and built offline. nixpkgs cannot be
//! fetched here, so a copy of the flake (flake.nix, flake.lock, nix/,
//! models/*.lock.json plus a synthetic lock, and the workspace source its
//! Rust packages take) is evaluated with
//! `--override-input nixpkgs path:<copy of tests/nix/stand-in-nixpkgs>`,
//! whose `rustPlatform.buildRustPackage` wraps the `mpk` binary under test
//! and whose `fetchurl` fetches with curl (pointed at the mock Hub through
//! the `HF_ENDPOINT` impure env var). Checks: the output set, the generated
//! fixed-output fetches of every lock file (store name, URL, hash), the
//! synthetic model built by Nix equals `mpk build` of the same lock byte for
//! byte (`.mpk`, `.info`, `.manifest.json`, and the deployment document on
//! the Nix base image `qemu-snp`, as `mpk build --base`), the same for a
//! model whose `models/<short>.schema` says `modelwrap-v2` (as `mpk build
//! --schema modelwrap-v2`), and the pinned-tools check (both schemas).
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
//! The stand-in is faithful where the flake depends on nixpkgs (see its
//! flake.nix): `callPackage` results are overridable, so the old
//! `checks.<system> = callPackage ./nix/checks.nix { … }` fails here as it
//! does against real nixpkgs (`old_checks_expression_fails_…`), and
//! `fetchurl` has the real arguments, TLS rule and netrc hooks, which the
//! gated-model test uses: the mock Hub requires a token for one fixture,
//! `nix build` fetches it with HF_TOKEN in its environment and fails, naming
//! HF_TOKEN, without it, and the token is nowhere in the store or the logs.
//!
//! Needs Nix >= 2.26 (what nixpkgs 25.11 supports; Debian bookworm's 2.8 is
//! too old and is never used): `$MPK_NIX`, else
//! `target/private-prefix/nix/bin/nix`, which `.ci/run` installs from
//! Debian trixie with `tests/tools/private-prefix.sh`. Every test uses its
//! own store in its temporary folder (no root, no daemon, nothing shared
//! with the system's /nix). Skipped without that Nix unless
//! `MPK_REQUIRE_TOOLS=1`, where a missing or older Nix fails.

mod common;

use mpk_testutil::static_build;

use mpk_hub::mock::MockHub;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const COMMIT: &str = "6666666666666666666666666666666666666666";
const REPO: &str = "acme/flake-fixture";
const SYSTEM: &str = "x86_64-linux";

use mpk_testutil::xorshift_bytes as bytes;

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

/// The Nix the flake tests use: `$MPK_NIX`, else the private prefix
/// `.ci/run` sets up; at least 2.26, never the system's. `None` (skip) when
/// absent, a panic when absent or older under `MPK_REQUIRE_TOOLS=1`.
fn nix_2_26() -> Option<PathBuf> {
    let nix = std::env::var_os("MPK_NIX")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/private-prefix/nix/bin/nix"));
    if !nix.is_file() {
        assert!(
            !common::tools_required(),
            "Nix 2.26 ({}) is missing and MPK_REQUIRE_TOOLS=1: run tests/tools/private-prefix.sh as .ci/run does",
            nix.display()
        );
        eprintln!("SKIP: Nix 2.26 not found at {}", nix.display());
        return None;
    }
    let v = Command::new(&nix).arg("--version").output().unwrap();
    let v = String::from_utf8_lossy(&v.stdout).into_owned();
    let version: Vec<u32> = v
        .trim()
        .rsplit(' ')
        .next()
        .unwrap_or_default()
        .split('.')
        .take(2)
        .map(|n| n.parse().unwrap_or(0))
        .collect();
    assert!(
        version.as_slice() >= [2, 26].as_slice(),
        "{} is `{}`, not Nix >= 2.26",
        nix.display(),
        v.trim()
    );
    Some(nix)
}

struct Flake {
    tmp: tempfile::TempDir,
    nix: PathBuf,
    hub: MockHub,
}

/// Nix makes its store read-only; without root the temporary folder could
/// not be removed otherwise.
impl Drop for Flake {
    fn drop(&mut self) {
        let _ = Command::new("chmod")
            .args(["-R", "u+w"])
            .arg(self.store())
            .status();
    }
}

impl Flake {
    fn flake(&self) -> PathBuf {
        self.tmp.path().join("flake")
    }
    fn standin(&self) -> PathBuf {
        self.tmp.path().join("stand-in")
    }
    /// This test's own Nix store, state and logs.
    fn store(&self) -> PathBuf {
        self.tmp.path().join("nix")
    }
    fn flake_ref(&self, attr: &str) -> String {
        format!("path:{}#{attr}", self.flake().display())
    }

    /// `nix <args>` with the offline stand-in options, HF_TOKEN set to
    /// `token` (or unset); the output whether it succeeded or not.
    fn nix_with(&self, args: &[&str], token: Option<&str>) -> Output {
        let standin = format!("path:{}", self.standin().display());
        let s = self.store();
        let store = format!(
            "local?store={0}/store&state={0}/state&log={0}/log",
            s.display()
        );
        let mut c = Command::new(&self.nix);
        c.args(["--extra-experimental-features", "nix-command flakes"])
            .args(args)
            .args(["--store", &store])
            .args(["--offline", "--no-write-lock-file"])
            .args(["--override-input", "nixpkgs", &standin])
            .args(["--option", "build-users-group", ""])
            .args(["--option", "sandbox", "false"])
            .args(["--option", "substituters", ""])
            // Plain-text build logs, so the token grep below can read them.
            .args(["--option", "compress-build-log", "false"])
            .env("NIX_CONF_DIR", self.tmp.path().join("etc"))
            .env("HOME", self.tmp.path())
            .env("XDG_CACHE_HOME", self.tmp.path().join("xdg-cache"))
            .env("XDG_STATE_HOME", self.tmp.path().join("xdg-state"))
            .env("HF_ENDPOINT", &self.hub.endpoint)
            .env_remove("SOURCE_DATE_EPOCH")
            .env_remove("NIX_PATH")
            .env_remove("NIX_REMOTE");
        match token {
            Some(t) => c.env("HF_TOKEN", t),
            None => c.env_remove("HF_TOKEN"),
        };
        c.output().unwrap()
    }

    /// `nix <args>`, which must succeed (no HF_TOKEN).
    fn nix(&self, args: &[&str]) -> Output {
        let out = self.nix_with(args, None);
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
        self.mpk_with(cache, args, None)
    }

    /// `mpk` against the mock Hub with a private cache and HF_TOKEN set to
    /// `token` (or unset).
    fn mpk_with(&self, cache: &str, args: &[&str], token: Option<&str>) {
        let mut c = common::mpk();
        match token {
            Some(t) => c.env("HF_TOKEN", t),
            None => c.env_remove("HF_TOKEN"),
        };
        let out = c
            .args(args)
            .env("HF_ENDPOINT", &self.hub.endpoint)
            .env("HF_HUB_CACHE", self.tmp.path().join(cache))
            .env("HOME", self.tmp.path())
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
    let nix = nix_2_26()?;
    // The stand-in's erofs-utils 1.8.6 (the pinned-tools check packs
    // modelwrap-v2 with it).
    let mkfs186 = mpk_testutil::tool_from_env("MPK_MKFS_EROFS_186", "1.8.6")?;
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
    // The Rust packages' source is a lib.fileset of these (nix/workspace.nix).
    for d in ["nix", "vm-images", "driver", "tests"] {
        copy_dir(&root.join(d), &flake.join(d));
    }
    // An empty configuration: nothing from the host's /etc/nix.
    std::fs::create_dir_all(f.tmp.path().join("etc")).unwrap();
    for e in std::fs::read_dir(root.join("models")).unwrap() {
        let p = e.unwrap().path();
        if p.to_str().unwrap().ends_with(".lock.json") || p.to_str().unwrap().ends_with(".schema") {
            std::fs::copy(&p, flake.join("models").join(p.file_name().unwrap())).unwrap();
        }
    }
    let standin = f.standin();
    copy_dir(&root.join("tests/nix/stand-in-nixpkgs"), &standin);
    std::fs::copy(env!("CARGO_BIN_EXE_mpk"), standin.join("mpk")).unwrap();
    std::fs::copy(static_init(), standin.join("mpk-init")).unwrap();
    std::fs::copy(&mkfs186, standin.join("mkfs.erofs-1.8.6")).unwrap();
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
    // The same model packed under modelwrap-v2: its schema beside its lock.
    std::fs::copy(&lock, flake.join("models/fixture-v2.lock.json")).unwrap();
    std::fs::write(flake.join("models/fixture-v2.schema"), "modelwrap-v2\n").unwrap();
    Some(f)
}

/// `sha256-<base64>` of a hex sha256 (written here, independently of
/// nix/hf.nix's).
fn sri(hex_sha: &str) -> String {
    const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes = hex::decode(hex_sha).unwrap();
    let mut out = String::from("sha256-");
    for c in bytes.chunks(3) {
        let n = c
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | ((b as u32) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= c.len() {
                out.push(B64[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Every generated fetch matches its lock entry: store name, resolve URL
/// at the locked commit (percent-encoded as mpk does), and the sha256 pin
/// (the LFS sha256 where there is one) as the fetch's SRI `hash`; it takes
/// HF_TOKEN by name only, through netrc, with TLS verified.
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
         drvUrl = f.src.url; drvHash = f.src.outputHash; drvPath = f.src.drvPath; })",
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
        assert_eq!(g["drvHash"], sri(sha).as_str(), "{path}");
    }
    // The fetch derivation as Nix wrote it: the token by name only, the
    // netrc hook, TLS checked against a CA bundle (not /no-cert-file.crt).
    let drv = got[0]["drvPath"].as_str().unwrap();
    let shown = f.json(&["derivation", "show", drv]);
    let env = &shown[drv]["env"];
    assert_eq!(
        env["outputHash"],
        sri(files[0]["sha256"].as_str().unwrap()).as_str()
    );
    let impure: Vec<&str> = env["impureEnvVars"].as_str().unwrap().split(' ').collect();
    assert!(impure.contains(&"HF_TOKEN"), "{impure:?}");
    assert!(
        env["netrcPhase"]
            .as_str()
            .unwrap()
            .contains("Authorization: Bearer")
    );
    assert!(
        env["postHook"]
            .as_str()
            .unwrap()
            .contains("--netrc-file $PWD/netrc")
    );
    let cert = env["SSL_CERT_FILE"].as_str().unwrap();
    assert!(cert.ends_with("/etc/ssl/certs/ca-bundle.crt"), "{cert}");
    assert!(env["failureHook"].as_str().unwrap().contains("HF_TOKEN"));
}

/// Sorted keys of a JSON object.
fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .cloned()
        .collect();
    k.sort();
    k
}

/// nix/reference-tools.nix pins each tarball by an SRI `hash` beside the
/// hex sha256 Debian's .dsc records: the two say the same.
#[test]
fn reference_tool_pins_match_their_dsc_sha256() {
    let text = std::fs::read_to_string(repo_root().join("nix/reference-tools.nix")).unwrap();
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    let mut pins = 0;
    for w in lines.windows(2) {
        if let Some(hex) = w[0].strip_prefix("# sha256 ") {
            assert_eq!(w[1], format!("hash = \"{}\";", sri(hex)), "{hex}");
            pins += 1;
        }
    }
    assert_eq!(pins, 3);
}

/// `nix flake show`, `nix flake check --no-build` and the instantiation of
/// every output, with the complete set of outputs and check names.
fn check_outputs(f: &Flake) {
    let flake = format!("path:{}", f.flake().display());
    let show = f.json(&["flake", "show", "--json", &flake]);
    assert_eq!(
        keys(&show),
        [
            "apps",
            "checks",
            "devShells",
            "formatter",
            "lib",
            "packages"
        ]
    );
    // One package per lock file, none listed by hand.
    let mut models: Vec<String> = std::fs::read_dir(f.flake().join("models"))
        .unwrap()
        .filter_map(|e| {
            let n = e.unwrap().file_name().into_string().unwrap();
            n.strip_suffix(".lock.json").map(|s| format!("model-{s}"))
        })
        .collect();
    assert!(models.contains(&"model-all-minilm-l6-v2".to_string()));
    models.extend(
        [
            "mpk",
            "mpk-init",
            "default",
            "vm-image-qemu-snp",
            "erofs-utils-1_5",
            "erofs-utils-1_8_6",
            "cryptsetup-2_6_1",
        ]
        .map(String::from),
    );
    models.sort();
    let pkgs = &show["packages"][SYSTEM];
    assert_eq!(keys(pkgs), models);
    for p in &models {
        assert_eq!(pkgs[p]["type"], "derivation", "packages.{SYSTEM}.{p}");
    }
    assert_eq!(keys(&show["apps"][SYSTEM]), ["default", "mpk"]);
    let checks = ["build", "clippy", "fmt", "reference-tools", "tests"];
    assert_eq!(keys(&show["checks"][SYSTEM]), checks);
    for c in checks {
        assert_eq!(
            show["checks"][SYSTEM][c]["type"], "derivation",
            "checks.{c}"
        );
    }
    assert_eq!(keys(&show["devShells"][SYSTEM]), ["default"]);
    assert_eq!(show["formatter"][SYSTEM]["type"], "derivation");
    assert_eq!(show["formatter"][SYSTEM]["name"], "nixfmt");
    for app in ["mpk", "default"] {
        let d = f.json(&[
            "eval",
            "--json",
            &f.flake_ref(&format!("apps.{SYSTEM}.{app}.meta.description")),
        ]);
        assert!(
            d.as_str().unwrap().starts_with("Verifiable model packs"),
            "{d}"
        );
    }

    // callPackage results are overridable, as in nixpkgs.
    let o = f.json(&[
        "eval",
        "--json",
        &f.flake_ref(&format!("packages.{SYSTEM}.mpk")),
        "--apply",
        "p: [ (p.override { }).name (p.overrideDerivation (o: { name = \"renamed\"; })).name \
         (p.overrideAttrs (o: { pname = o.pname + \"-x\"; })).name p.version ]",
    ]);
    let v = o[3].as_str().unwrap();
    assert_eq!(
        o,
        serde_json::json!([format!("mpk-{v}"), "renamed", format!("mpk-x-{v}"), v])
    );

    // `nix flake check` instantiates everything, without a single
    // evaluation warning (e.g. the nixfmt-rfc-style alias).
    let out = f.nix(&["flake", "check", "--no-build", &flake]);
    let err = String::from_utf8_lossy(&out.stderr);
    let warnings: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("warning:") && !l.contains("not writing modified lock file"))
        .collect();
    assert!(warnings.is_empty(), "{warnings:#?}");

    // Every output instantiates: a .drv in this test's store.
    let mut drvs = Vec::new();
    for cat in ["packages", "checks", "devShells"] {
        let v = f.json(&[
            "eval",
            "--json",
            &f.flake_ref(&format!("{cat}.{SYSTEM}")),
            "--apply",
            "builtins.mapAttrs (_: d: d.drvPath)",
        ]);
        for (n, d) in v.as_object().unwrap() {
            drvs.push((format!("{cat}.{n}"), d.as_str().unwrap().to_string()));
        }
    }
    let fmt = f.json(&[
        "eval",
        "--json",
        &f.flake_ref(&format!("formatter.{SYSTEM}.drvPath")),
    ]);
    drvs.push(("formatter".into(), fmt.as_str().unwrap().to_string()));
    assert_eq!(drvs.len(), models.len() + checks.len() + 2);
    for (n, d) in drvs {
        assert!(
            d.starts_with(f.store().join("store").to_str().unwrap()) && d.ends_with(".drv"),
            "{n}: {d}"
        );
        assert!(Path::new(&d).is_file(), "{n}: {d}");
    }
}

#[test]
fn flake_evaluates_and_builds_a_model_offline_like_mpk_build() {
    let Some(f) = setup() else { return };

    check_outputs(&f);
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

    // models/fixture-v2.schema says modelwrap-v2: `nix build
    // .#model-fixture-v2` gives the bytes of `mpk build --schema
    // modelwrap-v2` of the same lock, and its manifest names the schema.
    let out2 = f.build_out("model-fixture-v2");
    let expected2 = f.tmp.path().join("expected-v2");
    f.mpk(
        "build-cache",
        &[
            "build",
            REPO,
            "--lock",
            f.flake()
                .join("models/fixture-v2.lock.json")
                .to_str()
                .unwrap(),
            "--schema",
            "modelwrap-v2",
            "-q",
            "-o",
            expected2.to_str().unwrap(),
            "--base",
            base.to_str().unwrap(),
        ],
    );
    let expected2 = expected2.join(REPO);
    for n in &names {
        let (a, b) = (
            std::fs::read(out2.join(n)).unwrap(),
            std::fs::read(expected2.join(n)).unwrap(),
        );
        assert!(
            a == b,
            "{n}: nix build and mpk build --schema modelwrap-v2 differ"
        );
    }
    let m: Value = serde_json::from_slice(
        &std::fs::read(out2.join(format!("{COMMIT}.manifest.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(m["schema"], "modelwrap-v2");
    assert_ne!(
        std::fs::read(out2.join(format!("{COMMIT}.info"))).unwrap(),
        std::fs::read(out.join(format!("{COMMIT}.info"))).unwrap(),
        "the two schemas give different references"
    );

    // The pinned-tools check (the stand-in wraps Debian's erofs-utils 1.5 and
    // cryptsetup 2.6.1, and trixie's erofs-utils 1.8.6): both pipelines pack
    // its fixture to the same bytes, under each schema.
    let check = f.json(&[
        "build",
        "--json",
        "--no-link",
        &f.flake_ref(&format!("checks.{SYSTEM}.reference-tools")),
    ]);
    let checked = PathBuf::from(check[0]["outputs"]["out"].as_str().unwrap());
    for n in ["fixture.info", "fixture-v2.info"] {
        assert!(std::fs::read_to_string(checked.join(n)).unwrap().len() > 64);
    }
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

/// The `checks` output as it was before issue 14: `callPackage`'s result
/// directly, which real nixpkgs makes overridable. Against the faithful
/// stand-in, `nix flake show` and `nix flake check` stop exactly as they
/// do against nixpkgs 25.11, and so does the `nixfmt-rfc-style` alias warn.
#[test]
fn old_checks_expression_fails_against_the_faithful_stand_in() {
    let Some(f) = setup() else { return };
    let path = f.flake().join("flake.nix");
    let text = std::fs::read_to_string(&path).unwrap();
    let fixed = "checks.${system} = pkgs.lib.filterAttrs (_: pkgs.lib.isDerivation) (";
    assert_eq!(text.matches(fixed).count(), 1, "flake.nix changed shape");
    let old = text
        .replace(fixed, "checks.${system} = (")
        .replace("pkgs.nixfmt;", "pkgs.nixfmt-rfc-style;");
    std::fs::write(&path, old).unwrap();
    let flake = format!("path:{}", f.flake().display());

    let show = f.nix_with(&["flake", "show", "--json", &flake], None);
    assert!(!show.status.success());
    let err = String::from_utf8_lossy(&show.stderr);
    assert!(err.contains("error: expected a derivation"), "{err}");

    let check = f.nix_with(&["flake", "check", "--no-build", &flake], None);
    assert!(!check.status.success());
    let err = String::from_utf8_lossy(&check.stderr);
    assert!(
        err.contains("'checks.x86_64-linux.override") && err.contains("is not a derivation"),
        "{err}"
    );

    let fmt = f.nix_with(
        &[
            "eval",
            "--raw",
            &f.flake_ref(&format!("formatter.{SYSTEM}.name")),
        ],
        None,
    );
    assert!(fmt.status.success());
    let err = String::from_utf8_lossy(&fmt.stderr);
    assert!(
        err.contains("nixfmt-rfc-style is now the same as pkgs.nixfmt"),
        "{err}"
    );
}

const GATED_REPO: &str = "acme/gated-fixture";
const GATED_COMMIT: &str = "7777777777777777777777777777777777777777";

/// Every file under `dir` (not following links) that holds `needle`.
fn files_holding(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut hits = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return hits;
    };
    for e in rd {
        let e = e.unwrap();
        let t = e.file_type().unwrap();
        if t.is_dir() {
            hits.extend(files_holding(&e.path(), needle));
        } else if t.is_file() {
            let b = std::fs::read(e.path()).unwrap_or_default();
            if b.windows(needle.len()).any(|w| w == needle) {
                hits.push(e.path());
            }
        }
    }
    hits
}

/// A token-gated model through the flake: without HF_TOKEN the fetch fails
/// and the log names HF_TOKEN; with it the model builds, byte for byte what
/// `mpk build` makes; and the token is in no store path, no .drv, no build
/// log and no output of nix.
#[test]
fn gated_model_builds_with_the_token_only_and_the_token_stays_out_of_the_store() {
    let Some(f) = setup() else { return };
    let token = f.hub.token.clone();
    // Other bytes than the public fixture's, so no fetch is shared.
    let files = model()
        .into_iter()
        .map(|(p, mut d, lfs)| {
            d.extend_from_slice(b"gated\n");
            (p, d, lfs)
        })
        .collect();
    f.hub.put(GATED_REPO, "main", GATED_COMMIT, files);
    f.hub.gate(GATED_REPO);
    let lock = f.flake().join("models/gated-fixture.lock.json");
    let id = format!("{GATED_REPO}@{GATED_COMMIT}");
    let lock_args = ["lock", &id, "-q", "-o", lock.to_str().unwrap()];
    // The mock really gates it: no lock without the token.
    let denied = common::mpk()
        .args(lock_args)
        .env("HF_ENDPOINT", &f.hub.endpoint)
        .env("HF_HUB_CACHE", f.tmp.path().join("denied-cache"))
        .env("HOME", f.tmp.path())
        .env_remove("HF_TOKEN")
        .env_remove("HF_HOME")
        .output()
        .unwrap();
    assert!(!denied.status.success());
    f.mpk_with("lock-cache", &lock_args, Some(&token));
    let attr = f.flake_ref("model-gated-fixture");
    let mut outputs = Vec::new();

    let without = f.nix_with(&["build", "-L", "--no-link", &attr], None);
    let err = String::from_utf8_lossy(&without.stderr).into_owned();
    assert!(!without.status.success(), "built without a token:\n{err}");
    assert!(err.contains("HF_TOKEN is not set"), "{err}");
    assert!(err.contains(GATED_REPO), "{err}");
    outputs.push(without);
    // Nix kept the failed fetch's log, as plain text (the grep below reads
    // the logs; the next build of the same .drv replaces it).
    let logs = files_holding(&f.store().join("log"), b"HF_TOKEN is not set");
    assert!(!logs.is_empty(), "no readable build log holds the hint");

    let with = f.nix_with(&["build", "-L", "--json", "--no-link", &attr], Some(&token));
    let err = String::from_utf8_lossy(&with.stderr).into_owned();
    assert!(with.status.success(), "{err}");
    assert!(!err.contains("HF_TOKEN is not set"), "{err}");
    let built: Value = serde_json::from_slice(&with.stdout).unwrap();
    let out = PathBuf::from(built[0]["outputs"]["out"].as_str().unwrap());
    outputs.push(with);

    // The same bytes as `mpk build` of the lock with the token.
    let expected = f.tmp.path().join("expected-gated");
    f.mpk_with(
        "build-cache",
        &[
            "build",
            GATED_REPO,
            "--lock",
            lock.to_str().unwrap(),
            "-q",
            "-o",
            expected.to_str().unwrap(),
        ],
        Some(&token),
    );
    for ext in ["mpk", "info", "manifest.json"] {
        let n = format!("{GATED_COMMIT}.{ext}");
        assert!(
            std::fs::read(out.join(&n)).unwrap()
                == std::fs::read(expected.join(GATED_REPO).join(&n)).unwrap(),
            "{n}: nix build and mpk build differ"
        );
    }

    // Nowhere: the store (every .drv and output), Nix's state and logs
    // (the successful fetches' logs are there too), what nix printed.
    let fetched = files_holding(&f.store().join("log"), b"/resolve/");
    assert!(fetched.len() >= model().len(), "{fetched:?}");
    // The mock's own source holds its fixed token as a literal, and the
    // Rust packages' source (a copy of the checkout) holds that file:
    // exactly those copies are not a leak.
    let mock_rs = std::fs::read(repo_root().join("driver/mpk-hub/src/mock.rs")).unwrap();
    let hits: Vec<_> = files_holding(&f.store(), token.as_bytes())
        .into_iter()
        .filter(|p| {
            !(p.ends_with("driver/mpk-hub/src/mock.rs")
                && p.to_str().unwrap().contains("-source/")
                && std::fs::read(p).unwrap() == mock_rs)
        })
        .collect();
    assert!(hits.is_empty(), "the token is in {hits:?}");
    for o in &outputs {
        for b in [&o.stdout, &o.stderr] {
            assert!(!b.windows(token.len()).any(|w| w == token.as_bytes()));
        }
    }
}
