//! `vm-images/example` (a base image of small synthetic files, regenerated
//! here byte for byte) and `mpk measure deployment` end to end: the
//! document's SNP digest equals `mpk measure snp` (itself checked against
//! sev-snp-measure) and its TDX values equal the independent Python
//! reference, on the exact command line; inputs are checked against
//! image.json; schema errors are named. `MPK_REGENERATE_EXAMPLE=1`
//! rewrites the synthetic files.
mod common;
use mpk_testutil::firmware;
use mpk_testutil::tdx as tdx_support;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

const IDENTITY: &str =
    "hf-internal-testing/tiny-random-GPT2Model@d6694b0d8fe17978761c9305dc151780506b192e";
const REFERENCE: &str = "17c6605f3becf63a63da37cc6958b2d18f8abc750f9f546b9f57133db40c4326_2142208_905785b4-b198-5ed6-b97d-e7c36a0be1df";

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../vm-images/example")
}

fn synthetic() -> Vec<(&'static str, Vec<u8>)> {
    let mut initrd = b"070701".to_vec();
    initrd.resize(512, 0);
    vec![
        (
            "OVMF.amdsev.fd",
            firmware::build(&firmware::Spec::amdsev(4, 11)),
        ),
        (
            "TDVF.fd",
            tdx_support::tdvf(6, 12, &tdx_support::sections()),
        ),
        ("bzImage", tdx_support::bzimage(0x20F, 0x01, 0x7F, true, 13)),
        ("initrd", initrd),
    ]
}

#[test]
fn example_synthetic_files_are_what_the_generator_makes() {
    let dir = example().join("synthetic");
    for (name, data) in synthetic() {
        let p = dir.join(name);
        if std::env::var("MPK_REGENERATE_EXAMPLE").is_ok_and(|v| v == "1") {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&p, &data).unwrap();
        }
        assert!(
            std::fs::read(&p).unwrap() == data,
            "{} differs from the generator; rerun with MPK_REGENERATE_EXAMPLE=1",
            p.display()
        );
    }
}

/// A temporary folder of the test's own (removed when dropped): the tests
/// run in parallel, so none may write a file another one reads.
fn tmp() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("measure-deployment-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap()
}

fn deployment(args: &[&std::ffi::OsStr]) -> Result<Value, String> {
    let out = common::mpk()
        .args(["measure", "deployment"])
        .args(args)
        .output()
        .unwrap();
    if out.status.success() {
        Ok(serde_json::from_slice(&out.stdout).unwrap())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// `mpk measure deployment --base base --model <the test reference, in
/// tmp> --identity IDENTITY`, then `extra`.
fn deploy_model(tmp: &Path, base: &Path, extra: &[&std::ffi::OsStr]) -> Result<Value, String> {
    let info = info_file(tmp);
    let mut args: Vec<&std::ffi::OsStr> = vec![
        "--base".as_ref(),
        base.as_os_str(),
        "--model".as_ref(),
        info.as_os_str(),
        "--identity".as_ref(),
        IDENTITY.as_ref(),
    ];
    args.extend_from_slice(extra);
    deployment(&args)
}

fn info_file(tmp: &Path) -> PathBuf {
    let p = tmp.join("model.info");
    std::fs::write(&p, REFERENCE).unwrap();
    p
}

#[test]
fn deployment_of_the_example_matches_snp_and_tdx_references() {
    let t = tmp();
    let base = example();
    let doc = deploy_model(t.path(), &base, &[]).unwrap();
    let cmdline = doc["cmdline"].as_str().unwrap();
    assert_eq!(
        cmdline,
        format!("console=ttyS0 panic=-1 mpk.model={IDENTITY}:{REFERENCE} ")
    );
    assert_eq!(doc["identity"], IDENTITY);
    assert_eq!(doc["reference"], REFERENCE);
    assert_eq!(doc["base_image"], "example");
    assert_eq!(doc["vm_shape"]["cpus"], 2);
    assert_eq!(doc["vm_shape"]["memory_mb"], 2048);
    let syn = base.join("synthetic");
    // SNP: the same as `mpk measure snp` on the same inputs.
    let out = common::mpk()
        .args([
            "measure",
            "snp",
            "--mode",
            "snp",
            "--vcpus",
            "2",
            "--vcpu-type",
            "EPYC-v4",
        ])
        .arg("--ovmf")
        .arg(syn.join("OVMF.amdsev.fd"))
        .arg("--kernel")
        .arg(syn.join("bzImage"))
        .arg("--initrd")
        .arg(syn.join("initrd"))
        .arg("--append")
        .arg(cmdline)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        doc["snp_measurement"].as_str().unwrap(),
        String::from_utf8(out.stdout).unwrap().trim()
    );
    // TDX: the independent reference, with the image's memory.
    if let Some(py) = common::python_with("hashlib") {
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/vectors/tdx/tdx_reference.py");
        let out = Command::new(py)
            .arg(script)
            .arg("--firmware")
            .arg(syn.join("TDVF.fd"))
            .arg("--kernel")
            .arg(syn.join("bzImage"))
            .arg("--initrd")
            .arg(syn.join("initrd"))
            .args(["--memory-mb", "2048", "--append", cmdline])
            .output()
            .unwrap();
        let theirs: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(doc["tdx_measurement"], theirs);
    }
    // Every input's sha256 is reported.
    for k in [
        "image_json",
        "snp_ovmf",
        "tdvf",
        "kernel",
        "initrd",
        "model_info",
    ] {
        assert_eq!(doc["inputs_sha256"][k].as_str().unwrap().len(), 64, "{k}");
    }

    // The same document from a manifest (bar the model input's digest).
    let manifest = t.path().join("rev.manifest.json");
    std::fs::write(
        &manifest,
        serde_json::json!({"manifest": "mpk-manifest/1", "identity": IDENTITY, "reference": REFERENCE, "files": []})
            .to_string(),
    )
    .unwrap();
    let doc2 = deployment(&[
        "--base".as_ref(),
        base.as_os_str(),
        "--manifest".as_ref(),
        manifest.as_os_str(),
    ])
    .unwrap();
    for k in ["cmdline", "snp_measurement", "tdx_measurement", "vm_shape"] {
        assert_eq!(doc[k], doc2[k], "{k}");
    }
}

#[test]
fn image_json_name_is_the_base_name_not_the_folder() {
    let t = tmp();
    let args = |dir: &Path| deploy_model(t.path(), dir, &[]).unwrap();
    let named = edited(t.path(), "store-path-like", |v| {
        v["name"] = "qemu-snp".into()
    });
    let unnamed = edited(t.path(), "folder-name", |_| {});
    assert_eq!(args(&named)["base_image"], "qemu-snp");
    assert_eq!(args(&unnamed)["base_image"], "folder-name");
}

/// A copy of the example base image with `image.json` edited by `f`, as
/// `tmp/name`.
fn edited(tmp: &Path, name: &str, f: impl FnOnce(&mut Value)) -> PathBuf {
    let dir = tmp.join(name);
    std::fs::create_dir_all(dir.join("synthetic")).unwrap();
    for e in std::fs::read_dir(example().join("synthetic")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dir.join("synthetic").join(e.file_name())).unwrap();
    }
    let mut v: Value =
        serde_json::from_slice(&std::fs::read(example().join("image.json")).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(dir.join("image.json"), v.to_string()).unwrap();
    dir
}

#[test]
fn deployment_refuses_bad_images_and_inputs_naming_the_problem() {
    let t = tmp();
    let info = info_file(t.path());
    let cases: Vec<(PathBuf, &str)> = vec![
        (
            edited(t.path(), "unknown-field", |v| v["vcpu_count"] = 4.into()),
            "unknown field `vcpu_count`",
        ),
        (
            edited(t.path(), "no-placeholder", |v| {
                v["cmdline"] = "console=ttyS0".into()
            }),
            "@MPK_MODELS@ exactly once",
        ),
        (
            edited(t.path(), "bad-vcpu", |v| v["vcpu_type"] = "EPYC-v9".into()),
            "unknown vcpu_type",
        ),
        (
            edited(t.path(), "bad-name", |v| v["name"] = "a/b".into()),
            "name `a/b`",
        ),
        (
            edited(t.path(), "bad-path", |v| {
                v["kernel"]["path"] = "../bzImage".into()
            }),
            "without `..`",
        ),
        (
            edited(t.path(), "wrong-sha", |v| {
                v["initrd"]["sha256"] = "00".repeat(32).into()
            }),
            "initrd",
        ),
        (
            edited(
                t.path(),
                "nix",
                |v| v["kernel"] = serde_json::json!({"nix": ".#base-kernel", "file": "bzImage", "sha256": v["kernel"]["sha256"]}),
            ),
            "--input kernel=PATH",
        ),
    ];
    for (dir, want) in cases {
        let err = deploy_model(t.path(), &dir, &[]).unwrap_err();
        assert!(err.contains(want), "{}: {err}", dir.display());
    }
    // A Nix input given on the command line works, and is still checked.
    let dir = edited(
        t.path(),
        "nix-ok",
        |v| v["kernel"] = serde_json::json!({"nix": ".#base-kernel", "file": "bzImage", "sha256": v["kernel"]["sha256"]}),
    );
    let mut input = std::ffi::OsString::from("kernel=");
    input.push(example().join("synthetic/bzImage"));
    deploy_model(t.path(), &dir, &["--input".as_ref(), &input]).unwrap();
    let err = deployment(&[
        "--base".as_ref(),
        example().as_os_str(),
        "--model".as_ref(),
        info.as_os_str(),
        "--identity".as_ref(),
        "org/name@nothex".as_ref(),
    ])
    .unwrap_err();
    assert!(err.contains("40 lowercase hex"), "{err}");
}
