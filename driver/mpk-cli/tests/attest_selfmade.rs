//! `mpk attest verify` on self-made evidence, end to end: a small model
//! folder is packed (`mpk pack`), measured into a deployment document with
//! the example base image (`mpk measure deployment`), and a synthetic
//! SEV-SNP report carrying that document's `snp_measurement` is signed by a
//! test VCEK under a test ARK → ASK hierarchy (see `selfmade/mod.rs`),
//! trusted with `--trust-ark`. Then the cases only re-signed evidence can
//! show: an untrusted root, a one-byte change of the model (the old report
//! no longer matches the new deployment), the DEBUG policy bit, and
//! REPORT_DATA.
mod common;
use mpk_testutil::selfmade;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;

use selfmade::{Pki, ReportSpec};
use serde_json::Value;
use sha2::{Digest, Sha256};
use x509_cert::der::Encode;

const IDENTITY: &str = "mpk-tests/selfmade-tiny@5e1f0000c0ffee00000000000000000000000001";

/// A fresh directory: tests run in parallel.
fn tmp(name: &str) -> PathBuf {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("attest-selfmade")
        .join(format!("{}-{n}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "mpk failed: {}\n{}",
        String::from_utf8_lossy(&o.stderr),
        String::from_utf8_lossy(&o.stdout)
    );
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn write_model(dir: &Path, weights: &[u8]) {
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::write(dir.join("config.json"), br#"{"model_type": "tiny"}"#).unwrap();
    std::fs::write(dir.join("model.safetensors"), weights).unwrap();
    std::fs::write(dir.join("sub/tokenizer.json"), b"{}").unwrap();
}

fn weights() -> Vec<u8> {
    (0..20_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}

/// `mpk pack` then `mpk measure deployment --base vm-images/example`:
/// returns the deployment document's path and its JSON.
fn pack_and_measure(dir: &Path, work: &Path) -> (PathBuf, Value) {
    let out = work.join("model.mpk");
    ok(&common::mpk()
        .arg("pack")
        .arg(dir)
        .args(["--identity", IDENTITY, "--force", "-o"])
        .arg(&out)
        .output()
        .unwrap());
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../vm-images/example");
    let doc = ok(&common::mpk()
        .args(["measure", "deployment", "--base"])
        .arg(&base)
        .arg("--model")
        .arg(work.join("model.info"))
        .args(["--identity", IDENTITY])
        .output()
        .unwrap());
    let path = work.join("deployment.json");
    std::fs::write(&path, &doc).unwrap();
    (path, serde_json::from_str(&doc).unwrap())
}

fn measurement(doc: &Value) -> [u8; 48] {
    hex::decode(doc["snp_measurement"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap()
}

/// The test hierarchy written out: `--vcek`, `--ca-chain`, `--trust-ark`.
struct Files {
    vcek: PathBuf,
    chain: PathBuf,
    ark: PathBuf,
}

fn files() -> &'static Files {
    static F: OnceLock<Files> = OnceLock::new();
    F.get_or_init(|| {
        let pki = Pki::shared();
        let d = tmp("pki");
        let f = Files {
            vcek: d.join("vcek.der"),
            chain: d.join("cert_chain.pem"),
            ark: d.join("ark.pem"),
        };
        std::fs::write(&f.vcek, pki.vcek_der()).unwrap();
        std::fs::write(&f.chain, pki.chain_pem()).unwrap();
        std::fs::write(&f.ark, pki.ark_pem()).unwrap();
        f
    })
}

/// The packed and measured model, shared by the tests that do not change it.
fn deployment() -> &'static (PathBuf, Value) {
    static D: OnceLock<(PathBuf, Value)> = OnceLock::new();
    D.get_or_init(|| {
        let work = tmp("model");
        let dir = work.join("tiny");
        write_model(&dir, &weights());
        pack_and_measure(&dir, &work)
    })
}

fn write_report(report: &[u8]) -> PathBuf {
    let p = tmp("report").join("report.bin");
    std::fs::write(&p, report).unwrap();
    p
}

/// `mpk attest verify --json` with the test VCEK and chain.
fn verify(deployment: &Path, report: &[u8], extra: &[&OsStr]) -> (Output, Value) {
    let f = files();
    let rp = write_report(report);
    let out = common::mpk()
        .args(["attest", "verify", "--json", "--deployment"])
        .arg(deployment)
        .arg("--snp-report")
        .arg(&rp)
        .arg("--vcek")
        .arg(&f.vcek)
        .arg("--ca-chain")
        .arg(&f.chain)
        .args(extra)
        .output()
        .unwrap();
    let v = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out, v)
}

fn trusted(deployment: &Path, report: &[u8], extra: &[&OsStr]) -> (Output, Value) {
    let ark = files().ark.as_os_str();
    let mut args: Vec<&OsStr> = vec!["--trust-ark".as_ref(), ark];
    args.extend_from_slice(extra);
    verify(deployment, report, &args)
}

fn check<'a>(v: &'a Value, name: &str) -> &'a Value {
    v["checks"]
        .as_array()
        .unwrap_or_else(|| panic!("no checks in {v:#}"))
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name} in {v:#}"))
}

/// Names of the failed checks.
fn failed(v: &Value) -> Vec<String> {
    v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] == "fail")
        .map(|c| c["name"].as_str().unwrap().to_owned())
        .collect()
}

fn ark_fingerprint() -> String {
    hex::encode(Sha256::digest(Pki::shared().ark.to_der().unwrap()))
}

#[test]
fn pack_measure_sign_verify_passes_and_a_one_byte_model_change_fails_on_measurement() {
    let work = tmp("e2e");
    let dir = work.join("tiny");
    let mut w = weights();
    write_model(&dir, &w);
    let (dep, doc) = pack_and_measure(&dir, &work);
    let pki = Pki::shared();
    let report = pki.report(&ReportSpec::new(measurement(&doc)));

    // Trusted with --trust-ark: every check passes and the verdict names
    // the test root by fingerprint.
    let (o, v) = trusted(&dep, &report, &[]);
    assert!(o.status.success(), "{v:#}\n{}", stderr(&o));
    assert_eq!(v["pass"], true);
    assert_eq!(v["platform"], "sev-snp");
    assert_eq!(v["trusted_root"]["name"], "--trust-ark");
    assert_eq!(v["trusted_root"]["sha256"], ark_fingerprint().as_str());
    for name in [
        "root_trusted",
        "ark_self_signed",
        "ark_signs_ask",
        "ask_signs_vcek",
        "certificate_validity",
        "report_signature",
        "debug_disabled",
        "reported_tcb",
        "chip_id",
        "measurement",
    ] {
        assert_eq!(check(&v, name)["status"], "pass", "{name}: {v:#}");
    }
    assert_eq!(check(&v, "report_data")["status"], "skipped");
    assert_eq!(
        check(&v, "measurement")["found"],
        doc["snp_measurement"],
        "{v:#}"
    );
    assert!(
        check(&v, "root_trusted")["found"]
            .as_str()
            .unwrap()
            .contains(&ark_fingerprint())
    );
    // The text rendering says the same.
    let text = common::mpk()
        .args(["attest", "verify", "--deployment"])
        .arg(&dep)
        .arg("--snp-report")
        .arg(write_report(&report))
        .arg("--vcek")
        .arg(&files().vcek)
        .arg("--ca-chain")
        .arg(&files().chain)
        .arg("--trust-ark")
        .arg(&files().ark)
        .output()
        .unwrap();
    let t = ok(&text);
    assert!(
        t.contains(&format!(
            "trusted root: --trust-ark sha256:{}",
            ark_fingerprint()
        )),
        "{t}"
    );
    assert!(t.contains("verdict: PASS"), "{t}");

    // Change the model by one byte: re-pack, re-measure; the old report no
    // longer matches the new deployment, and only the measurement says so.
    w[12_345] ^= 0x01;
    write_model(&dir, &w);
    let (dep2, doc2) = pack_and_measure(&dir, &work);
    assert_ne!(doc2["reference"], doc["reference"]);
    assert_ne!(doc2["snp_measurement"], doc["snp_measurement"]);
    let (o, v) = trusted(&dep2, &report, &[]);
    assert!(!o.status.success());
    assert_eq!(v["pass"], false);
    assert_eq!(failed(&v), ["measurement"], "{v:#}");
    let m = check(&v, "measurement");
    assert_eq!(m["expected"], doc2["snp_measurement"]);
    assert_eq!(m["found"], doc["snp_measurement"]);
    let err = stderr(&o);
    assert!(
        err.contains("attestation verification failed: measurement"),
        "{err}"
    );
    // A report of the new model verifies against the new deployment.
    let report2 = pki.report(&ReportSpec::new(measurement(&doc2)));
    let (o, v) = trusted(&dep2, &report2, &[]);
    assert!(o.status.success(), "{v:#}\n{}", stderr(&o));
}

#[test]
fn without_trust_ark_the_self_made_root_is_untrusted() {
    let (dep, doc) = deployment();
    let report = Pki::shared().report(&ReportSpec::new(measurement(doc)));
    let (o, v) = verify(dep, &report, &[]);
    assert!(!o.status.success());
    assert_eq!(v["pass"], false);
    assert_eq!(v["trusted_root"], Value::Null);
    assert_eq!(failed(&v), ["root_trusted"], "{v:#}");
    let found = check(&v, "root_trusted")["found"].as_str().unwrap();
    assert!(
        found.contains("untrusted root") && found.contains(&ark_fingerprint()),
        "{found}"
    );
    assert!(
        stderr(&o).contains("attestation verification failed: root_trusted"),
        "{}",
        stderr(&o)
    );
    // Without the chain file either, no pinned AMD ASK signs the test VCEK.
    let rp = write_report(&report);
    let o = common::mpk()
        .args(["attest", "verify", "--json", "--deployment"])
        .arg(dep)
        .arg("--snp-report")
        .arg(&rp)
        .arg("--vcek")
        .arg(&files().vcek)
        .arg("--trust-ark")
        .arg(&files().ark)
        .output()
        .unwrap();
    assert!(!o.status.success());
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(check(&v, "ask_signs_vcek")["status"], "fail", "{v:#}");
}

#[test]
fn debug_policy_fails_debug_disabled_alone() {
    let (dep, doc) = deployment();
    let mut spec = ReportSpec::new(measurement(doc));
    spec.debug = true;
    let report = Pki::shared().report(&spec);
    let (o, v) = trusted(dep, &report, &[]);
    assert!(!o.status.success());
    assert_eq!(failed(&v), ["debug_disabled"], "{v:#}");
    let c = check(&v, "debug_disabled");
    assert!(c["found"].as_str().unwrap().contains("DEBUG = 1"), "{c:#}");
    assert_eq!(check(&v, "report_signature")["status"], "pass");
    assert!(
        stderr(&o).contains("attestation verification failed: debug_disabled"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn report_data_is_compared_when_given() {
    let (dep, doc) = deployment();
    let mut spec = ReportSpec::new(measurement(doc));
    let nonce: Vec<u8> = (0u8..32).collect();
    spec.report_data[..32].copy_from_slice(&nonce);
    let report = Pki::shared().report(&spec);
    // The right nonce (zero-padded to 64 bytes) passes.
    let (o, v) = trusted(
        dep,
        &report,
        &["--report-data".as_ref(), hex::encode(&nonce).as_ref()],
    );
    assert!(o.status.success(), "{v:#}\n{}", stderr(&o));
    assert_eq!(check(&v, "report_data")["status"], "pass");
    // Another one fails, by name, and nothing else does.
    let (o, v) = trusted(
        dep,
        &report,
        &["--report-data".as_ref(), "00112233".as_ref()],
    );
    assert!(!o.status.success());
    assert_eq!(failed(&v), ["report_data"], "{v:#}");
    let c = check(&v, "report_data");
    assert_eq!(c["expected"], format!("00112233{}", "00".repeat(60)));
    assert_eq!(c["found"], hex::encode(spec.report_data));
    assert!(
        stderr(&o).contains("attestation verification failed: report_data"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_byte_changed_after_signing_fails_the_report_signature() {
    let (dep, doc) = deployment();
    let mut report = Pki::shared().report(&ReportSpec::new(measurement(doc)));
    // REPORT_DATA is free for the guest to choose but signed.
    report[0x50] ^= 0x80;
    let (o, v) = trusted(dep, &report, &[]);
    assert!(!o.status.success());
    assert_eq!(failed(&v), ["report_signature"], "{v:#}");
}
