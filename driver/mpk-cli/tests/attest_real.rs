//! `mpk attest verify` on real evidence from real hardware, read from
//! `tests/vectors/attestation/` (copied in with its provenance, see the
//! PROVENANCE.md there, so no test reads outside the checkout): the Milan SEV-SNP report against its
//! VCEK and AMD's pinned Milan roots, and the TDX quote against its DCAP
//! collateral at a time inside (and outside) the collateral's window.
//! Also the policy cases that real evidence can show: measurement and
//! report-data mismatches, a truncated report, an unknown version.
mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::{Value, json};

const MILAN_MEASUREMENT: &str = "7a1e5c266c0108dbc9bb94fa926951320940915d0aafb42464bd88b579ea158d3e1a0dc39b2c60bd95b9c480cd81841f";
const TDX_RTMR1: &str = "0084452c01668329d4bc06acdf58a7205c26743304509973949e5619bf81a6a7aea8c323c173019b3093d54e579e9378";
const TDX_RTMR2: &str = "d833feef2cd945148aa38ead2c53e9b7f138190aaaebfc551dccd829fc207aa3ba80b70870d7330733642e01d48c3132";
const TDX_MRTD: &str = "91eb2b44d141d4ece09f0c75c2c53d247a3c68edd7fafe8a3520c942a604a407de03ae6dc5f87f27428b2538873118b7";
const TDX_RTMR0: &str = "44c0197b39157fdd7a4dcc44767f9d6b0bb3977c7a8e347b8492f827fe9d9e5c48aca29b220b80b6a540cf994b9bc9c0";
const AT: &str = "2025-06-20T00:00:00Z";

/// A vector file under `tests/vectors/attestation/` (part of the checkout,
/// so a missing one is a broken checkout: the test fails).
fn vector(rel: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/vectors/attestation")
        .join(rel);
    assert!(p.is_file(), "vector {} is missing", p.display());
    p
}

/// A fresh path: tests run in parallel, so no two calls share a file.
fn tmp(name: &str) -> PathBuf {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("attest-real")
        .join(n.to_string());
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

fn write_json(name: &str, v: &Value) -> PathBuf {
    let p = tmp(name);
    std::fs::write(&p, serde_json::to_vec(v).unwrap()).unwrap();
    p
}

fn run(args: &[&std::ffi::OsStr]) -> (Output, Value) {
    let out = common::mpk()
        .args(["attest", "verify", "--json"])
        .args(args)
        .output()
        .unwrap();
    let v = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out, v)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn check<'a>(v: &'a Value, name: &str) -> &'a Value {
    v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name} in {v:#}"))
}

struct Snp {
    report: Vec<u8>,
    vcek: PathBuf,
    chain: PathBuf,
}

fn snp() -> Snp {
    let hex_path = vector("snp-attestation/report_milan.hex");
    let report = hex::decode(std::fs::read_to_string(hex_path).unwrap().trim()).unwrap();
    Snp {
        report,
        vcek: vector("snp-attestation/vcek_milan.der"),
        chain: vector("snp-attestation/cert_chain_milan"),
    }
}

fn snp_deployment(measurement: &str) -> PathBuf {
    write_json(
        &format!("snp-{}.json", &measurement[..8]),
        &mpk_testutil::deployment_json(measurement, None, &"00".repeat(48), &"00".repeat(48)),
    )
}

fn verify_snp(report: &[u8], vcek: &Path, extra: &[&str]) -> (Output, Value) {
    let rp = tmp(&format!("report-{:x}.bin", crc(report)));
    std::fs::write(&rp, report).unwrap();
    let dep = snp_deployment(MILAN_MEASUREMENT);
    let mut args: Vec<&std::ffi::OsStr> = vec![
        "--deployment".as_ref(),
        dep.as_os_str(),
        "--snp-report".as_ref(),
        rp.as_os_str(),
        "--vcek".as_ref(),
        vcek.as_os_str(),
        "--at".as_ref(),
        AT.as_ref(),
    ];
    args.extend(extra.iter().map(|s| std::ffi::OsStr::new(*s)));
    run(&args)
}

fn crc(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf29ce484222325u64, |h, &x| {
        (h ^ x as u64).wrapping_mul(0x100000001b3)
    })
}

#[test]
fn milan_report_verifies_against_its_vcek_and_pinned_roots() {
    let s = snp();
    let (o, v) = verify_snp(&s.report, &s.vcek, &[]);
    assert!(o.status.success(), "{v:#}\n{}", stderr(&o));
    assert_eq!(v["pass"], true);
    assert_eq!(v["trusted_root"]["name"], "AMD ARK-Milan (pinned)");
    assert_eq!(check(&v, "measurement")["found"], MILAN_MEASUREMENT);
    for name in [
        "root_trusted",
        "ark_signs_ask",
        "ask_signs_vcek",
        "report_signature",
        "reported_tcb",
        "chip_id",
        "debug_disabled",
    ] {
        assert_eq!(check(&v, name)["status"], "pass", "{name}");
    }
    // The same with the chain file given, and with the report as raw bytes.
    let (o, v) = verify_snp(
        &s.report,
        &s.vcek,
        &["--ca-chain", s.chain.to_str().unwrap()],
    );
    assert!(o.status.success(), "{v:#}\n{}", stderr(&o));
    assert_eq!(v["trusted_root"]["name"], "AMD ARK-Milan (pinned)");
}

#[test]
fn flipped_signed_byte_fails_the_signature() {
    let s = snp();
    for at in [21usize, 0x90, 0x1A0] {
        let mut r = s.report.clone();
        r[at] ^= 1;
        let (o, v) = verify_snp(&r, &s.vcek, &[]);
        assert!(!o.status.success());
        assert_eq!(check(&v, "report_signature")["status"], "fail", "byte {at}");
        assert!(stderr(&o).contains("report_signature"), "{}", stderr(&o));
    }
    // A flipped reserved byte is refused by the parser before any check.
    let mut r = s.report.clone();
    r[0x29F] ^= 1;
    let (o, _) = verify_snp(&r, &s.vcek, &[]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("SEV-SNP report could not be parsed"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn wrong_vcek_fails() {
    let s = snp();
    // The ASK signs the VCEK, not itself: use the pinned-chain ASK as a "VCEK"
    // (an RSA key that neither ASK signs nor can verify the report).
    let pem = std::fs::read_to_string(&s.chain).unwrap();
    let ask = &pem[..pem.find("-----END CERTIFICATE-----").unwrap() + 25];
    let wrong = tmp("wrong-vcek.pem");
    std::fs::write(&wrong, ask).unwrap();
    let (o, v) = verify_snp(&s.report, &wrong, &[]);
    assert!(!o.status.success());
    assert_eq!(check(&v, "ask_signs_vcek")["status"], "fail");
    assert_eq!(check(&v, "report_signature")["status"], "fail");
}

#[test]
fn measurement_and_report_data_mismatches_fail_by_name() {
    let s = snp();
    let rp = tmp("milan.bin");
    std::fs::write(&rp, &s.report).unwrap();
    let other = "00".repeat(48);
    let dep = snp_deployment(&other);
    let (o, v) = run(&[
        "--deployment".as_ref(),
        dep.as_os_str(),
        "--snp-report".as_ref(),
        rp.as_os_str(),
        "--vcek".as_ref(),
        s.vcek.as_os_str(),
        "--at".as_ref(),
        AT.as_ref(),
    ]);
    assert!(!o.status.success());
    assert_eq!(check(&v, "measurement")["status"], "fail");
    assert_eq!(check(&v, "measurement")["expected"], other.as_str());
    assert!(stderr(&o).contains("failed: measurement"), "{}", stderr(&o));

    let (o, v) = verify_snp(&s.report, &s.vcek, &["--report-data", "00112233"]);
    assert!(!o.status.success());
    assert_eq!(check(&v, "report_data")["status"], "fail");
    assert!(stderr(&o).contains("failed: report_data"), "{}", stderr(&o));
    assert_eq!(check(&v, "measurement")["status"], "pass");
}

#[test]
fn truncated_report_and_unknown_version_are_refused_clearly() {
    let s = snp();
    let (o, _) = verify_snp(&s.report[..1000], &s.vcek, &[]);
    assert!(!o.status.success());
    assert!(
        stderr(&o)
            .contains("SEV-SNP report is 1000 bytes; an attestation report is exactly 1184 bytes"),
        "{}",
        stderr(&o)
    );
    let mut r = s.report.clone();
    r[0] = 9;
    let (o, _) = verify_snp(&r, &s.vcek, &[]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("SEV-SNP report version 9 is not supported"),
        "{}",
        stderr(&o)
    );
    let mut r = s.report.clone();
    r[0] = 1;
    let (o, _) = verify_snp(&r, &s.vcek, &[]);
    assert!(
        stderr(&o).contains("version 1 is not supported"),
        "{}",
        stderr(&o)
    );
}

fn verify_tdx(at: &str, platform: Option<&Value>, rtmr2: &str) -> (Output, Value) {
    let quote = vector("tdx-attestation/tdx_quote");
    let coll = vector("tdx-attestation/tdx_quote_collateral.json");
    let dep = write_json(
        &format!("tdx-{}.json", &rtmr2[..8]),
        &mpk_testutil::deployment_json(&"00".repeat(48), None, TDX_RTMR1, rtmr2),
    );
    let mut args: Vec<std::ffi::OsString> = vec![
        "--deployment".into(),
        dep.into(),
        "--tdx-quote".into(),
        quote.into(),
        "--collateral".into(),
        coll.into(),
        "--at".into(),
        at.into(),
    ];
    if let Some(p) = platform {
        args.push("--tdx-platform".into());
        args.push(write_json("platform.json", p).into());
    }
    let refs: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
    run(&refs)
}

#[test]
fn tdx_quote_verifies_inside_the_collateral_window() {
    let platform = json!({"mrtd": TDX_MRTD, "rtmr0": TDX_RTMR0});
    let (o, v) = verify_tdx(AT, Some(&platform), TDX_RTMR2);
    assert!(o.status.success(), "{v:#}\n{}", stderr(&o));
    for name in [
        "quote_signature",
        "tcb_status",
        "debug_disabled",
        "mrtd",
        "rtmr0",
        "rtmr1",
        "rtmr2",
        "rtmr3",
    ] {
        assert_eq!(check(&v, name)["status"], "pass", "{name}");
    }
    assert_eq!(check(&v, "tcb_status")["found"], "UpToDate");
}

#[test]
fn tdx_quote_fails_outside_the_collateral_window_and_on_mismatch() {
    for (at, why) in [
        ("2025-06-01T00:00:00Z", "future"),
        ("2025-08-01T00:00:00Z", "expired"),
    ] {
        let (o, v) = verify_tdx(at, None, TDX_RTMR2);
        assert!(!o.status.success());
        let c = check(&v, "quote_signature");
        assert_eq!(c["status"], "fail");
        assert!(c["found"].as_str().unwrap().contains(why), "{c:#}");
    }
    let other = "11".repeat(48);
    let (o, v) = verify_tdx(AT, Some(&json!({"rtmr0": "00".repeat(48)})), &other);
    assert!(!o.status.success());
    assert_eq!(check(&v, "rtmr2")["status"], "fail");
    assert_eq!(check(&v, "rtmr0")["status"], "fail");
    assert_eq!(check(&v, "quote_signature")["status"], "pass");
    assert!(
        stderr(&o).contains("failed: rtmr0, rtmr2"),
        "{}",
        stderr(&o)
    );
}
