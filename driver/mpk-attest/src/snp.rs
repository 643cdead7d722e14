//! AMD SEV-SNP: report parsing, the ARK → ASK → VCEK chain, the report
//! signature, and the policy and measurement checks.
//!
//! Parsing, the pinned per-product AMD roots (Milan, Genoa, Turin) and the
//! RSA-PSS certificate chain come from the `sev` crate. The report's ECDSA
//! P-384 signature is checked with `p384` over the *received* bytes
//! `0..0x2A0` rather than over `sev`'s re-encoding, so a flipped reserved
//! byte cannot slip through. VCEK TCB extensions follow AMD's VCEK
//! specification (57230), section 3.1.

use p384::ecdsa::signature::Verifier;
use sev::certs::snp::{Certificate, Verifiable, builtin};
use sev::firmware::guest::AttestationReport;
use sev::firmware::host::TcbVersion;
use sev::parser::ByteParser;
use sha2::{Digest, Sha256};
use x509_cert::der::{Decode, DecodePem, Encode};

use crate::{
    AttestError, Check, Deployment, Policy, TrustedRoot, Verdict, hex48, report_data_check,
};

/// Length of an attestation report (SEV-SNP ABI 56860, table 22).
pub const REPORT_LEN: usize = 0x4A0;
/// The signed part of a report: bytes `0..0x2A0`.
pub const SIGNED_LEN: usize = 0x2A0;
/// SIGNATURE_ALGO value for ECDSA P-384 with SHA-384.
const SIG_ALGO_ECDSA_P384_SHA384: u32 = 1;

/// The evidence of one SEV-SNP guest.
#[derive(Debug, Clone, Copy)]
pub struct Evidence<'a> {
    /// The raw 1184-byte report.
    pub report: &'a [u8],
    /// The VCEK certificate (DER or PEM).
    pub vcek: &'a [u8],
    /// ASK and ARK (PEM), when not the pinned AMD ones.
    pub ca_chain: Option<&'a [u8]>,
}

struct Root {
    name: String,
    ark: x509_cert::Certificate,
    ask: x509_cert::Certificate,
}

fn cert_err(what: &str, e: impl std::fmt::Display) -> AttestError {
    AttestError::Certificate {
        what: what.into(),
        reason: e.to_string(),
    }
}

fn parse_cert(what: &str, bytes: &[u8]) -> Result<x509_cert::Certificate, AttestError> {
    if bytes.trim_ascii_start().starts_with(b"-----BEGIN") {
        x509_cert::Certificate::from_pem(bytes).map_err(|e| cert_err(what, e))
    } else {
        x509_cert::Certificate::from_der(bytes).map_err(|e| cert_err(what, e))
    }
}

fn der(c: &x509_cert::Certificate) -> Vec<u8> {
    c.to_der().unwrap_or_default()
}

fn fingerprint(c: &x509_cert::Certificate) -> String {
    hex::encode(Sha256::digest(der(c)))
}

fn pinned() -> Result<Vec<Root>, AttestError> {
    let products: [(&str, &[u8], &[u8]); 3] = [
        ("Milan", builtin::milan::ARK, builtin::milan::ASK),
        ("Genoa", builtin::genoa::ARK, builtin::genoa::ASK),
        ("Turin", builtin::turin::ARK, builtin::turin::ASK),
    ];
    products
        .iter()
        .map(|(name, ark, ask)| {
            Ok(Root {
                name: format!("AMD ARK-{name} (pinned)"),
                ark: parse_cert("pinned ARK", ark)?,
                ask: parse_cert("pinned ASK", ask)?,
            })
        })
        .collect()
}

fn chain_from_file(bytes: &[u8]) -> Result<Root, AttestError> {
    // `load_pem_chain` computes `len - 1` and so overflows on an empty input.
    if bytes.trim_ascii().is_empty() {
        return Err(cert_err(
            "--ca-chain",
            "empty file; expected a self-signed ARK and an ASK it signs (PEM)",
        ));
    }
    let certs =
        x509_cert::Certificate::load_pem_chain(bytes).map_err(|e| cert_err("--ca-chain", e))?;
    let self_issued =
        |c: &x509_cert::Certificate| c.tbs_certificate.subject == c.tbs_certificate.issuer;
    let ark = certs.iter().find(|c| self_issued(c));
    let ask = certs.iter().find(|c| !self_issued(c));
    match (ark, ask) {
        (Some(ark), Some(ask)) => Ok(Root {
            name: "--ca-chain".into(),
            ark: ark.clone(),
            ask: ask.clone(),
        }),
        _ => Err(cert_err(
            "--ca-chain",
            "expected a self-signed ARK and an ASK it signs (PEM)",
        )),
    }
}

fn signs(signer: &x509_cert::Certificate, signee: &x509_cert::Certificate) -> Result<(), String> {
    let a = Certificate::from(signer.clone());
    let b = Certificate::from(signee.clone());
    (&a, &b).verify().map_err(|e| e.to_string())
}

fn validity(c: &x509_cert::Certificate) -> (i64, i64) {
    let v = &c.tbs_certificate.validity;
    (
        v.not_before.to_unix_duration().as_secs() as i64,
        v.not_after.to_unix_duration().as_secs() as i64,
    )
}

/// Parses a report, refusing wrong lengths and unknown versions first so
/// each gets its own message.
pub fn parse_report(raw: &[u8]) -> Result<AttestationReport, AttestError> {
    if raw.len() != REPORT_LEN {
        return Err(AttestError::TruncatedReport {
            len: raw.len(),
            expected: REPORT_LEN,
        });
    }
    let version = u32::from_le_bytes(raw[0..4].try_into().expect("4 bytes"));
    if !(2..=5).contains(&version) {
        return Err(AttestError::UnknownReportVersion(version));
    }
    AttestationReport::from_bytes(raw).map_err(|e| AttestError::Report(e.to_string()))
}

/// TCB values (bootloader, TEE, SNP, microcode, FMC) carried by a VCEK.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct CertTcb {
    bootloader: Option<u8>,
    tee: Option<u8>,
    snp: Option<u8>,
    microcode: Option<u8>,
    fmc: Option<u8>,
}

fn fmt_tcb(
    bl: Option<u8>,
    tee: Option<u8>,
    snp: Option<u8>,
    uc: Option<u8>,
    fmc: Option<u8>,
) -> String {
    let f = |v: Option<u8>| v.map_or("absent".to_string(), |v| v.to_string());
    let mut s = format!(
        "bootloader={} tee={} snp={} microcode={}",
        f(bl),
        f(tee),
        f(snp),
        f(uc)
    );
    if fmc.is_some() {
        s += &format!(" fmc={}", f(fmc));
    }
    s
}

/// AMD's VCEK extension arc: 1.3.6.1.4.1.3704.1.
const AMD_ARC: &str = "1.3.6.1.4.1.3704.1.";

fn vcek_extensions(c: &x509_cert::Certificate) -> (CertTcb, Option<Vec<u8>>) {
    let mut tcb = CertTcb::default();
    let mut hwid = None;
    for e in c.tbs_certificate.extensions.iter().flatten() {
        let oid = e.extn_id.to_string();
        let Some(rest) = oid.strip_prefix(AMD_ARC) else {
            continue;
        };
        let bytes = e.extn_value.as_bytes();
        let int = || u8::from_der(bytes).ok();
        match rest {
            "3.1" => tcb.bootloader = int(),
            "3.2" => tcb.tee = int(),
            "3.3" => tcb.snp = int(),
            "3.8" => tcb.microcode = int(),
            "3.9" => tcb.fmc = int(),
            "4" => {
                hwid = Some(
                    x509_cert::der::asn1::OctetString::from_der(bytes)
                        .map(|o| o.as_bytes().to_vec())
                        .unwrap_or_else(|_| bytes.to_vec()),
                )
            }
            _ => {}
        }
    }
    (tcb, hwid)
}

fn report_tcb(t: &TcbVersion) -> String {
    fmt_tcb(
        Some(t.bootloader),
        Some(t.tee),
        Some(t.snp),
        Some(t.microcode),
        t.fmc,
    )
}

/// Verifies SEV-SNP evidence against a deployment.
pub fn verify(
    deployment: &Deployment,
    evidence: &Evidence<'_>,
    policy: &Policy,
) -> Result<Verdict, AttestError> {
    let expected_measurement =
        hex48("snp_measurement", &deployment.snp_measurement).map_err(AttestError::Deployment)?;
    let report = parse_report(evidence.report)?;
    let vcek = parse_cert("VCEK", evidence.vcek)?;
    let extra: Vec<x509_cert::Certificate> = policy
        .trusted_roots
        .iter()
        .map(|r| parse_cert("--trust-ark", r))
        .collect::<Result<_, _>>()?;
    let pinned = pinned()?;

    // Candidate (ARK, ASK) pairs: the given chain, or every pinned product.
    let candidates = match evidence.ca_chain {
        Some(bytes) => vec![chain_from_file(bytes)?],
        None => pinned
            .iter()
            .map(|r| Root {
                name: r.name.clone(),
                ark: r.ark.clone(),
                ask: r.ask.clone(),
            })
            .collect(),
    };
    let chosen = candidates
        .iter()
        .find(|r| signs(&r.ask, &vcek).is_ok())
        .unwrap_or(&candidates[0]);

    let mut checks = Vec::new();

    // Root of trust: a pinned AMD ARK or one passed with --trust-ark.
    let fp = fingerprint(&chosen.ark);
    let trusted = if let Some(p) = pinned.iter().find(|p| der(&p.ark) == der(&chosen.ark)) {
        Some(TrustedRoot {
            name: p.name.clone(),
            sha256: fp.clone(),
        })
    } else if extra.iter().any(|e| der(e) == der(&chosen.ark)) {
        Some(TrustedRoot {
            name: "--trust-ark".into(),
            sha256: fp.clone(),
        })
    } else {
        None
    };
    checks.push(Check::new(
        "root_trusted",
        "a pinned AMD ARK (Milan, Genoa, Turin) or --trust-ark",
        match &trusted {
            Some(t) => format!("{} sha256:{fp}", t.name),
            None => format!("untrusted root sha256:{fp} (from {})", chosen.name),
        },
        trusted.is_some(),
    ));
    let link = |name: &str,
                what: &str,
                signer: &x509_cert::Certificate,
                signee: &x509_cert::Certificate| {
        let r = signs(signer, signee);
        Check::new(
            name,
            what,
            r.as_ref().map_or_else(
                |e| format!("invalid: {e}"),
                |_| "valid RSA-PSS SHA-384 signature".into(),
            ),
            r.is_ok(),
        )
    };
    checks.push(link(
        "ark_self_signed",
        "ARK signs itself",
        &chosen.ark,
        &chosen.ark,
    ));
    checks.push(link(
        "ark_signs_ask",
        "ARK signs ASK",
        &chosen.ark,
        &chosen.ask,
    ));
    checks.push(link("ask_signs_vcek", "ASK signs VCEK", &chosen.ask, &vcek));

    let bad: Vec<String> = [("ARK", &chosen.ark), ("ASK", &chosen.ask), ("VCEK", &vcek)]
        .iter()
        .filter_map(|(n, c)| {
            let (nb, na) = validity(c);
            (policy.at < nb || policy.at > na).then(|| {
                format!(
                    "{n} valid {}..{}",
                    crate::format_time(nb),
                    crate::format_time(na)
                )
            })
        })
        .collect();
    checks.push(Check::new(
        "certificate_validity",
        format!("ARK, ASK, VCEK valid at {}", crate::format_time(policy.at)),
        if bad.is_empty() {
            "all valid".into()
        } else {
            bad.join("; ")
        },
        bad.is_empty(),
    ));

    // Report signature over the received bytes.
    let sig = (|| -> Result<(), String> {
        if report.sig_algo != SIG_ALGO_ECDSA_P384_SHA384 {
            return Err(format!(
                "signature algorithm {} is not ECDSA P-384 SHA-384",
                report.sig_algo
            ));
        }
        let key = p384::ecdsa::VerifyingKey::from_sec1_bytes(
            Certificate::from(vcek.clone()).public_key_sec1(),
        )
        .map_err(|e| format!("VCEK key is not P-384: {e}"))?;
        let sig = p384::ecdsa::Signature::try_from(&report.signature).map_err(|e| e.to_string())?;
        key.verify(&evidence.report[..SIGNED_LEN], &sig)
            .map_err(|_| "signature does not verify with this VCEK".to_string())
    })();
    checks.push(Check::new(
        "report_signature",
        "ECDSA P-384 SHA-384 signature of bytes 0..0x2A0 by the VCEK",
        sig.as_ref()
            .map_or_else(|e| format!("invalid: {e}"), |_| "valid".into()),
        sig.is_ok(),
    ));

    let debug = report.policy.debug_allowed();
    checks.push(Check::new(
        "debug_disabled",
        "guest policy DEBUG (bit 19) = 0",
        format!(
            "policy 0x{:x}, DEBUG = {}",
            u64::from(report.policy),
            u8::from(debug)
        ),
        !debug,
    ));

    let (cert_tcb, hwid) = vcek_extensions(&vcek);
    let want = fmt_tcb(
        cert_tcb.bootloader,
        cert_tcb.tee,
        cert_tcb.snp,
        cert_tcb.microcode,
        cert_tcb.fmc,
    );
    let got = report_tcb(&report.reported_tcb);
    let t = &report.reported_tcb;
    let tcb_ok = cert_tcb.bootloader == Some(t.bootloader)
        && cert_tcb.tee == Some(t.tee)
        && cert_tcb.snp == Some(t.snp)
        && cert_tcb.microcode == Some(t.microcode)
        && (cert_tcb.fmc.is_none() || cert_tcb.fmc == t.fmc);
    checks.push(Check::new(
        "reported_tcb",
        format!("VCEK TCB {want}"),
        got,
        tcb_ok,
    ));

    match hwid {
        Some(h) if report.chip_id.iter().any(|&b| b != 0) => {
            let found = &report.chip_id[..h.len().min(64)];
            checks.push(Check::new(
                "chip_id",
                hex::encode(&h),
                hex::encode(found),
                h.as_slice() == found,
            ));
        }
        Some(h) => checks.push(Check::skipped(
            "chip_id",
            hex::encode(h),
            "masked (MaskChipId)",
        )),
        None => checks.push(Check::skipped(
            "chip_id",
            "(VCEK has no hwID)",
            hex::encode(report.chip_id),
        )),
    }

    checks.push(Check::eq_hex(
        "measurement",
        &expected_measurement,
        &report.measurement,
    ));
    checks.push(report_data_check(policy, &report.report_data));

    Ok(Verdict::new("sev-snp", policy.at, trusted, checks))
}

/// The self-made test hierarchy, shared with mpk-cli's `attest_selfmade`.
#[cfg(test)]
use mpk_testutil::selfmade;

#[cfg(test)]
mod tests {
    //! Verification of synthetic reports signed by a self-made ARK → ASK →
    //! VCEK hierarchy (the support module mpk-cli's `attest_selfmade`
    //! integration test uses too): each policy case fails its own check
    //! and nothing else.

    use super::*;
    use crate::Status;
    use selfmade::{Pki, ReportSpec, TCB};

    const MEASUREMENT: [u8; 48] = [0x5a; 48];
    /// 2030-01-01T00:00:00Z, inside the test certificates' validity.
    const AT: i64 = 1_893_456_000;

    fn deployment() -> Deployment {
        with_snp(&hex::encode(MEASUREMENT))
    }

    /// A deployment document expecting `snp` (hex).
    fn with_snp(snp: &str) -> Deployment {
        let doc = mpk_testutil::deployment_json(snp, None, "01", "02");
        crate::parse_deployment(doc.to_string().as_bytes()).unwrap()
    }

    fn policy(trust: bool) -> Policy {
        Policy {
            report_data: None,
            at: AT,
            trusted_roots: if trust {
                vec![Pki::shared().ark_pem().into_bytes()]
            } else {
                vec![]
            },
        }
    }

    fn run_with(report: &[u8], vcek: &[u8], chain: &[u8], policy: &Policy) -> Verdict {
        let ev = Evidence {
            report,
            vcek,
            ca_chain: Some(chain),
        };
        verify(&deployment(), &ev, policy).expect("verdict")
    }

    fn run(report: &[u8], policy: &Policy) -> Verdict {
        let pki = Pki::shared();
        run_with(report, &pki.vcek_der(), pki.chain_pem().as_bytes(), policy)
    }

    fn spec() -> ReportSpec {
        ReportSpec::new(MEASUREMENT)
    }

    fn check<'a>(v: &'a Verdict, name: &str) -> &'a Check {
        v.checks
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no check {name}: {v:#?}"))
    }

    #[test]
    fn synthetic_report_passes_under_trusted_test_root() {
        let pki = Pki::shared();
        let v = run(&pki.report(&spec()), &policy(true));
        assert!(v.pass, "{}", v.to_text());
        let root = v.trusted_root.as_ref().expect("trusted root");
        assert_eq!(root.name, "--trust-ark");
        assert_eq!(root.sha256, fingerprint(&pki.ark));
        assert_eq!(check(&v, "measurement").found, hex::encode(MEASUREMENT));
        assert_eq!(check(&v, "chip_id").status, Status::Pass);
        assert_eq!(check(&v, "report_data").status, Status::Skipped);
        assert!(v.failed().is_empty());
        // The chain's VCEK may be given as PEM too.
        let v = run_with(
            &pki.report(&spec()),
            selfmade::pem(&pki.vcek).as_bytes(),
            pki.chain_pem().as_bytes(),
            &policy(true),
        );
        assert!(v.pass, "{}", v.to_text());
    }

    #[test]
    fn every_supported_version_verifies_and_others_are_refused() {
        let pki = Pki::shared();
        for version in 2..=5 {
            let mut s = spec();
            s.version = version;
            let v = run(&pki.report(&s), &policy(true));
            assert!(v.pass, "version {version}: {}", v.to_text());
        }
        for version in [0u32, 1, 6, 0x100] {
            let mut r = pki.report(&spec());
            r[0..4].copy_from_slice(&version.to_le_bytes());
            pki.sign(&mut r);
            let ev = Evidence {
                report: &r,
                vcek: &pki.vcek_der(),
                ca_chain: None,
            };
            match verify(&deployment(), &ev, &policy(true)) {
                Err(AttestError::UnknownReportVersion(v)) => assert_eq!(v, version),
                other => panic!("version {version}: {other:?}"),
            }
        }
    }

    #[test]
    fn truncated_and_overlong_reports_are_refused() {
        let r = Pki::shared().report(&spec());
        for len in [0, 4, REPORT_LEN - 1, REPORT_LEN + 1] {
            let mut b = r.clone();
            b.resize(len, 0);
            match parse_report(&b) {
                Err(AttestError::TruncatedReport { len: l, expected }) => {
                    assert_eq!((l, expected), (len, REPORT_LEN))
                }
                other => panic!("{len}: {other:?}"),
            }
        }
    }

    #[test]
    fn untrusted_root_fails_only_root_trusted() {
        let v = run(&Pki::shared().report(&spec()), &policy(false));
        assert!(!v.pass);
        assert_eq!(v.failed(), ["root_trusted"]);
        assert!(v.trusted_root.is_none());
        assert!(check(&v, "root_trusted").found.contains("untrusted root"));
        // Trusting some other root does not help.
        let mut p = policy(false);
        p.trusted_roots = vec![selfmade::pem(&Pki::shared().ask).into_bytes()];
        let v = run(&Pki::shared().report(&spec()), &p);
        assert_eq!(v.failed(), ["root_trusted"]);
    }

    #[test]
    fn debug_bit_fails_debug_disabled() {
        let mut s = spec();
        s.debug = true;
        let v = run(&Pki::shared().report(&s), &policy(true));
        assert_eq!(v.failed(), ["debug_disabled"]);
        assert!(check(&v, "debug_disabled").found.contains("DEBUG = 1"));
    }

    #[test]
    fn measurement_mismatch_fails_measurement() {
        let mut s = spec();
        s.measurement[47] ^= 1;
        let v = run(&Pki::shared().report(&s), &policy(true));
        assert_eq!(v.failed(), ["measurement"]);
        let c = check(&v, "measurement");
        assert_eq!(c.expected, hex::encode(MEASUREMENT));
        assert_eq!(c.found, hex::encode(s.measurement));
        assert!(v.to_text().contains("verdict: FAIL (measurement)"));
    }

    #[test]
    fn report_data_is_compared_when_given() {
        let mut s = spec();
        s.report_data[..4].copy_from_slice(b"\x01\x02\x03\x04");
        let r = Pki::shared().report(&s);
        let mut p = policy(true);
        p.report_data = Some(crate::parse_report_data("01020304").unwrap());
        assert!(run(&r, &p).pass);
        p.report_data = Some(crate::parse_report_data("01020305").unwrap());
        assert_eq!(run(&r, &p).failed(), ["report_data"]);
    }

    #[test]
    fn signature_covers_every_signed_byte_and_only_p384() {
        let pki = Pki::shared();
        let r = pki.report(&spec());
        // Bytes the parser does not police (REPORT_DATA, MEASUREMENT,
        // HOST_DATA, CHIP_ID) changed after signing.
        for at in [0x50, 0x90, 0xC0, 0x1A0] {
            let mut b = r.clone();
            b[at] ^= 0x10;
            let v = run(&b, &policy(true));
            assert!(v.failed().contains(&"report_signature"), "byte {at:#x}");
        }
        // A report claiming another signature algorithm.
        let mut s = spec();
        s.sig_algo = 2;
        let v = run(&pki.report(&s), &policy(true));
        assert_eq!(v.failed(), ["report_signature"]);
        assert!(check(&v, "report_signature").found.contains("algorithm 2"));
        // A report signed by another P-384 key.
        let other = Pki::second();
        let v = run(&other.report(&spec()), &policy(true));
        assert_eq!(v.failed(), ["report_signature"]);
    }

    #[test]
    fn reported_tcb_must_match_the_vcek() {
        let pki = Pki::shared();
        let mut s = spec();
        s.tcb.microcode -= 1;
        let v = run(&pki.report(&s), &policy(true));
        assert_eq!(v.failed(), ["reported_tcb"]);
        let c = check(&v, "reported_tcb");
        assert!(c.expected.contains(&format!("microcode={}", TCB.microcode)));
        assert!(c.found.contains(&format!("microcode={}", s.tcb.microcode)));
        // A VCEK for the report's TCB makes it pass again.
        let vcek = pki.vcek_for(
            &s.tcb,
            &selfmade::chip_id(),
            (selfmade::NOT_BEFORE, selfmade::NOT_AFTER),
        );
        let v = run_with(
            &pki.report(&s),
            &selfmade::der_of(&vcek),
            pki.chain_pem().as_bytes(),
            &policy(true),
        );
        assert!(v.pass, "{}", v.to_text());
    }

    #[test]
    fn chip_id_must_match_the_vcek_hwid_unless_masked() {
        let pki = Pki::shared();
        let mut s = spec();
        s.chip_id[3] ^= 1;
        let v = run(&pki.report(&s), &policy(true));
        assert_eq!(v.failed(), ["chip_id"]);
        // MaskChipId: all zero, reported as skipped (version 3 and up; a
        // version-2 report needs the CHIP_ID to tell the generation).
        s.chip_id = [0; 64];
        let v = run(&pki.report(&s), &policy(true));
        assert!(v.pass, "{}", v.to_text());
        assert_eq!(check(&v, "chip_id").status, Status::Skipped);
    }

    #[test]
    fn certificates_are_judged_at_the_given_time() {
        let pki = Pki::shared();
        let r = pki.report(&spec());
        let mut p = policy(true);
        p.at = selfmade::NOT_BEFORE as i64 - 1;
        let v = run(&r, &p);
        assert_eq!(v.failed(), ["certificate_validity"]);
        assert!(
            check(&v, "certificate_validity")
                .found
                .contains("VCEK valid")
        );
        p.at = selfmade::NOT_AFTER as i64 + 1;
        assert_eq!(run(&r, &p).failed(), ["certificate_validity"]);
        // An expired VCEK alone.
        let vcek = pki.vcek_for(
            &TCB,
            &selfmade::chip_id(),
            (selfmade::NOT_BEFORE, selfmade::NOT_BEFORE + 10),
        );
        let v = run_with(
            &r,
            &selfmade::der_of(&vcek),
            pki.chain_pem().as_bytes(),
            &policy(true),
        );
        assert_eq!(v.failed(), ["certificate_validity"]);
        let found = &check(&v, "certificate_validity").found;
        assert!(found.starts_with("VCEK valid"), "{found}");
    }

    #[test]
    fn broken_chain_links_fail_by_name() {
        let pki = Pki::shared();
        let other = Pki::second();
        let r = pki.report(&spec());
        // An ASK that the ARK did not sign (another hierarchy's ASK under
        // our ARK): the VCEK is not signed by it either.
        let chain = selfmade::pem(&other.ask) + &pki.ark_pem();
        let v = run_with(&r, &pki.vcek_der(), chain.as_bytes(), &policy(true));
        let failed = v.failed();
        assert!(failed.contains(&"ark_signs_ask"), "{failed:?}");
        assert!(failed.contains(&"ask_signs_vcek"), "{failed:?}");
        assert!(!failed.contains(&"root_trusted"), "{failed:?}");
        // The other hierarchy's VCEK under ours.
        let v = run_with(
            &other.report(&spec()),
            &other.vcek_der(),
            pki.chain_pem().as_bytes(),
            &policy(true),
        );
        assert_eq!(v.failed(), ["ask_signs_vcek"]);
    }

    #[test]
    fn vcek_extensions_are_read_as_amd_writes_them() {
        let pki = Pki::shared();
        let (tcb, hwid) = vcek_extensions(&pki.vcek);
        assert_eq!(
            tcb,
            CertTcb {
                bootloader: Some(TCB.bootloader),
                tee: Some(TCB.tee),
                snp: Some(TCB.snp),
                microcode: Some(TCB.microcode),
                fmc: None,
            }
        );
        assert_eq!(hwid.as_deref(), Some(&selfmade::chip_id()[..]));
        // A certificate without them (the ASK) has none.
        assert_eq!(vcek_extensions(&pki.ask), (CertTcb::default(), None));
    }

    #[test]
    fn chain_file_needs_a_self_signed_ark_and_an_ask() {
        let pki = Pki::shared();
        assert!(chain_from_file(pki.chain_pem().as_bytes()).is_ok());
        // ARK first works as well.
        let swapped = pki.ark_pem() + &selfmade::pem(&pki.ask);
        let root = chain_from_file(swapped.as_bytes()).unwrap();
        assert_eq!(der(&root.ark), der(&pki.ark));
        // An empty or blank file (once an arithmetic overflow in
        // `load_pem_chain`) is refused like the others.
        let blank = ["".to_string(), "\n\r\n".to_string(), " ".to_string()];
        for bad in [pki.ark_pem(), selfmade::pem(&pki.ask)]
            .into_iter()
            .chain(blank)
        {
            assert!(matches!(
                chain_from_file(bad.as_bytes()),
                Err(AttestError::Certificate { .. })
            ));
        }
    }

    #[test]
    fn a_malformed_snp_measurement_is_an_error() {
        let pki = Pki::shared();
        let r = pki.report(&spec());
        let ev = Evidence {
            report: &r,
            vcek: &pki.vcek_der(),
            ca_chain: None,
        };
        for d in [with_snp(""), with_snp("abcd"), with_snp("xy")] {
            assert!(matches!(
                verify(&d, &ev, &policy(true)),
                Err(AttestError::Deployment(_))
            ));
        }
    }
}
